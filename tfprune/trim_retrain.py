"""Network Trimming's one-call driver: trim, shrink, retrain, repeat.

Unlike :class:`tfprune.TrimmingCallback` (masks inside one ``fit``), this
removes the trimmed units physically after every iteration
(:func:`tfprune.shrink`), so retraining runs on the smaller network. It stops
when no unit passes the rule or validation accuracy falls more than
``tolerance`` below the starting model's (that last iteration is undone).
The rule is :class:`tfprune.methods.NetworkTrimming`'s.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfprune import generations
from tfprune import apoz as apoz_lib
from tfprune import surgery
from tfprune.methods.network_trimming import NetworkTrimming


@dataclasses.dataclass
class Iteration:
  """One trim + retrain step of :func:`trim_and_retrain`."""

  iteration: int
  trimmed: Dict[str, int]
  widths: Dict[str, int]
  params: int
  validation_accuracy: float
  apoz: Dict[str, np.ndarray]      # measured before this trim (0: none)

  @property
  def mean_apoz(self) -> Dict[str, float]:
    return {n: float(v.mean()) for n, v in self.apoz.items()}


def _zero_units(model, units: Dict[str, np.ndarray]) -> None:
  """Zero trimmed units' filters, biases and BN scale/shift (in place)."""
  for name, idx in units.items():
    if not len(idx):
      continue
    layer = model.get_layer(name)
    weights = layer.get_weights()
    weights[0][..., idx] = 0
    if getattr(layer, 'use_bias', False):
      weights[1][idx] = 0
    layer.set_weights(weights)
    for follower in apoz_lib.followers(layer)[0]:
      for variable in (getattr(follower, 'gamma', None),
                       getattr(follower, 'beta', None)):   # BatchNorm
        if variable is not None:
          value = variable.numpy()
          value[idx] = 0
          variable.assign(value)


def _widths(model, names) -> Dict[str, int]:
  out = {}
  for name in names:
    layer = model.get_layer(name)
    out[name] = int(layer.get_weights()[0].shape[-1])
  return out


def trim_and_retrain(model, train: Tuple, validation: Tuple,
         layers: Sequence[str], compile_fn: Callable[[object], None],
         retrain_epochs: int = 1, iterations: int = 5,
         tolerance: float = 0.005, method: Optional[NetworkTrimming] = None,
         batch_size: int = 64, verbose: int = 1,
         fit_kwargs: Optional[dict] = None,
         on_iteration: Optional[Callable[[Iteration, object], None]]
         = None) -> Tuple[object, List[Iteration]]:
  """Trim, shrink, retrain, repeat; returns the last accepted model.

  Args:
    model: a trained plain (unwrapped) model.
    train, validation: ``(x, y)`` arrays; APoZ and accuracy use validation.
    layers: Dense/Conv2D layers to trim (each followed by a ReLU).
    compile_fn: compiles a model (called on every new, smaller model).
    retrain_epochs: epochs of retraining after each trim.
    iterations: at most this many trims.
    tolerance: stop (and undo the iteration) when validation accuracy is
      more than this below the starting model's.
    on_iteration: called with every accepted iteration and its model
      (e.g. to measure test accuracy).

  Returns:
    ``(model, history)``; ``history[0]`` is the starting model.
  """
  method = method or NetworkTrimming()
  fit_kwargs = dict(fit_kwargs or {})
  x_val, y_val = validation

  def accuracy(m) -> float:
    pred = m.predict(x_val, batch_size=512, verbose=0)
    return float((pred.argmax(-1) == np.asarray(y_val)).mean())

  def say(row: Iteration):
    if verbose:
      print(f'trim {row.iteration}: trimmed {row.trimmed} -> widths '
            f'{row.widths}, params {row.params:,}, validation accuracy '
            f'{row.validation_accuracy:.4f}', flush=True)

  baseline = accuracy(model)
  history = [Iteration(0, {}, _widths(model, layers), model.count_params(),
                       baseline, {})]
  say(history[0])
  if on_iteration:
    on_iteration(history[0], model)
  for it in range(1, iterations + 1):
    values = apoz_lib.measure(model, x_val, layers)
    alive = {n: np.ones(v.shape, bool) for n, v in values.items()}
    chosen = method.choose(values, alive)
    if not any(u.size for u in chosen.values()):
      if verbose:
        print(f'trim {it}: no unit passes the rule; stopping', flush=True)
      break
    candidate = generations.of(model).keras.models.clone_model(model)
    candidate.set_weights(model.get_weights())
    _zero_units(candidate, chosen)
    candidate = surgery.shrink(candidate)
    compile_fn(candidate)
    if retrain_epochs:
      candidate.fit(*train, epochs=retrain_epochs, batch_size=batch_size,
                    verbose=0, **fit_kwargs)
    row = Iteration(it, {n: int(u.size) for n, u in chosen.items()},
                    _widths(candidate, layers), candidate.count_params(),
                    accuracy(candidate), values)
    say(row)
    if baseline - row.validation_accuracy > tolerance:
      if verbose:
        print(f'trim {it}: validation accuracy fell more than {tolerance} '
              'below the start; undone, stopping', flush=True)
      break
    model = candidate
    history.append(row)
    if on_iteration:
      on_iteration(row, model)
  return model, history
