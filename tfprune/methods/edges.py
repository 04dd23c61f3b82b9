"""Sparse edge sets, shared by the methods that choose edges themselves.

Small-World and Synthesis keep a budget of edges (single weights, or whole
2-D kernels) per layer instead of a sparsity target: they split it over the
layers (:func:`allocate`), start the kept weights at the dense
initialiser's output variance (:func:`rescale_to_fan_in`), and move edges
during training, dropping some and growing others (:func:`move`), with
the moved weights and their optimizer state reset.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfprune import optimizer_state
from tfprune.methods import base


def allocate(sizes: Dict[str, Sequence[int]], budget: int,
             fixed: Optional[Dict[str, float]] = None) -> Dict[str, int]:
  """Edges per layer so that sum(edges * area) == budget (if possible).

  Args:
    sizes: per layer ``(n_in, n_out, area)``; an edge costs ``area`` params.
    budget: parameters to spend on edges.
    fixed: per layer a density in (0, 1] that is not rescaled.

  Returns:
    Edge counts per layer. The total cost is exactly ``budget`` when a
    layer with area 1 has room for the rounding remainder; otherwise it is
    below by what no layer with room can take (less than the smallest area
    unless every free layer is full).
  """
  fixed = dict(fixed or {})
  unknown = sorted(set(fixed) - set(sizes))
  if unknown:
    raise ValueError(f'layer_density names {unknown}, which are not wrapped '
                     f'layers; wrapped: {sorted(sizes)}')
  possible = {n: s[0] * s[1] for n, s in sizes.items()}
  area = {n: s[2] for n, s in sizes.items()}
  for name, d in fixed.items():
    if not 0 < d <= 1:
      raise ValueError(f'layer_density[{name!r}] must be in (0, 1], got {d}')
  density = {n: float(d) for n, d in fixed.items()}
  free = [n for n in sizes if n not in fixed]
  left = budget - sum(density[n] * possible[n] * area[n] for n in fixed)
  if left < 0:
    raise ValueError('the layer_density overrides alone need more parameters'
                     f' than the budget ({budget}); lower them or raise '
                     'density')
  ratio = {n: (sizes[n][0] + sizes[n][1]) / possible[n] for n in free}
  while free:
    weight = sum(ratio[n] * possible[n] * area[n] for n in free)
    eps = left / weight if weight else 0.0
    full = [n for n in free if eps * ratio[n] >= 1.0]
    if not full:
      for n in free:
        density[n] = eps * ratio[n]
      break
    for n in full:
      density[n] = 1.0
      left -= possible[n] * area[n]
      free.remove(n)
  exact = {n: density[n] * possible[n] for n in sizes}
  edges = {n: min(int(np.floor(exact[n])), possible[n]) for n in sizes}
  remainder = budget - sum(edges[n] * area[n] for n in sizes)
  for n in sorted(sizes, key=lambda n: exact[n] - edges[n], reverse=True):
    if area[n] <= remainder and edges[n] < possible[n] and n not in fixed:
      edges[n] += 1
      remainder -= area[n]
  # whatever is left: as many edges as fit, largest edges first, so area-1
  # (Dense) layers take the last parameters and the total is exact
  for n in sorted(sizes, key=lambda n: (-area[n], -possible[n])):
    if n not in fixed and remainder > 0:
      extra = min(remainder // area[n], possible[n] - edges[n])
      edges[n] += extra
      remainder -= extra * area[n]
  return edges


def rescale_to_fan_in(wrapper, mask: np.ndarray) -> None:
  """Scale kept weights of output j by sqrt(n_in / fan_in_j) (a sparse start
  with the dense initializer's output variance; Small-World, Synthesis)."""
  kernel = wrapper.prunable[0].variable
  fan_in = mask.sum(axis=0).astype(np.float64)
  factor = np.where(fan_in > 0, np.sqrt(mask.shape[0] / np.maximum(fan_in, 1)),
                    1.0)
  kernel.assign(np.asarray(kernel) *
                factor.astype(tf.as_dtype(kernel.dtype).as_numpy_dtype))


class BudgetMethod(base.PruningMethod):
  """A method that keeps its own edge budget instead of a sparsity target,
  and moves edges of the model being trained (whose optimizer slots it
  resets)."""

  _model = None

  def on_train_begin(self, wrappers: Sequence, model) -> None:
    self._model = model

  @property
  def optimizer(self):
    """The optimizer of the model in training, or None."""
    return getattr(self._model, 'optimizer', None)

  def refuse_target(self, sparsity: Optional[float], schedules: str) -> None:
    """Raise unless ``sparsity`` is None (``schedules`` says what to pass)."""
    if sparsity is not None:
      raise ValueError(
          f'{type(self).__name__} keeps its own budget and got a target '
          f'sparsity {sparsity} (a one-shot float or a target schedule); '
          f'pass {schedules}')


def move(wrapper, drop: np.ndarray, grow: np.ndarray, optimizer,
         grown_values: Optional[np.ndarray] = None) -> None:
  """Mask off the edges ``drop`` and on the edges ``grow`` (flat indices into
  the wrapper's first mask). Every moved weight restarts at 0 (grown ones
  at ``grown_values`` where given, for single-weight edges) and its
  optimizer slots (Adam moments, momentum) are reset, so a grown edge does
  not inherit the update history of the weight it replaces."""
  mask = np.asarray(wrapper.masks[0]) > 0
  new = mask.reshape(-1).copy()
  new[drop], new[grow] = False, True
  wrapper.assign_mask(0, new.reshape(mask.shape))
  weight = wrapper.prunable[0]
  changed = np.zeros(mask.size, np.float32)
  changed[grow] = changed[drop] = 1
  changed = np.asarray(wrapper.structure.expand(
      changed.reshape(mask.shape), weight.variable.shape,
      weight.layout)) > 0
  values = np.where(changed, 0, weight.variable.numpy())
  if grown_values is not None:
    if values.size != mask.size:
      raise ValueError('grown_values need single-weight edges')
    values.reshape(-1)[grow] = grown_values
  weight.variable.assign(values)
  optimizer_state.reset_slots(optimizer, weight.variable, changed)
