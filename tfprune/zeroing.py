"""Zeroing what masks removed, for every wrapper of a model in one graph call.

When a mask turns an entry off, the weight there must become exactly 0 and
stay 0: its gradient is 0 from then on (the wrapper multiplies by the mask),
and with its optimizer state (momentum, Adam moments) cleared no update moves
it. Done eagerly that is four to six variable reads and writes per mask
(weight, bias, each optimizer slot); a MobileNetV2 update writes about 150
masks, about 1,400 eager operations that took most of its 400 ms. Here one
``tf.function`` reads every mask and zeroes every weight, bias and slot
where it is 0. It zeroes them all, not only the ones just written: zeroing a
zero is free in a graph, and one fixed set of variables traces once per
model and optimizer instead of once per set of changed masks.
"""

from __future__ import annotations

import functools
from typing import List, Sequence

import numpy as np
import tensorflow as tf

from tfprune import optimizer_state


class Zeroing:
  """Zeroes weights and optimizer state where masks are 0, in one call.

  ``PruningStep`` holds one: inside ``wrapper.deferred_zeroing`` the
  wrappers' mask writes leave the weights to it, and calling it (once per
  batch that wrote masks) clears weights and state at once.
  """

  def __init__(self):
    self._key = None
    self._function = None

  def __call__(self, wrappers: Sequence, optimizer) -> bool:
    """Zero weights and optimizer state under every mask of ``wrappers``
    if a mask was written since the last call; returns whether it ran.

    The first call for a set of variables runs eagerly over the masks just
    written; from the second on, one traced function zeroes under all
    masks (tracing costs seconds on MobileNetV2: worth it only for a model
    updated again, and the optimizer's state appears after its first
    step, which changes the set).
    """
    if not any(w.pending_zeroing for w in wrappers):
      return False
    entries = [(w, index) for w in wrappers if w.method.zero_pruned_weights
               for index in range(len(w.masks))]
    # Which variables a mask zeroes does not depend on its values: a
    # placeholder of ones saves reading every mask eagerly.
    targets = [[[v] + optimizer_state.slot_variables(optimizer, v)
                for v, _ in w.masked_variables(
                    index, np.ones(tuple(w.masks[index].shape), bool))]
               for w, index in entries]
    key = tuple(id(v) for t in targets for vs in t for v in vs)
    if key != self._key:
      self._key, self._function = key, None
      pending = [(e, t) for e, t in zip(entries, targets)
                 if e[1] in e[0].pending_zeroing]
      _zero([e for e, _ in pending], [t for _, t in pending])
    else:
      if self._function is None:
        # The function holds the variables, so their ids stay unique.
        self._function = tf.function(
            functools.partial(_zero, entries, targets), autograph=False)
      self._function()
    for wrapper in wrappers:
      wrapper.pending_zeroing.clear()
    return True


def restore(wrappers: Sequence, optimizer) -> int:
  """Zero weights and optimizer state under every mask where something
  else wrote a value (``set_weights``, a loaded dense checkpoint); returns
  how many variables were written. Eager and read-only where the zeros
  hold already: ``PruningStep`` runs it once per ``fit`` before training
  steps rely on the zeros."""
  written = 0
  for w in wrappers:
    if not w.method.zero_pruned_weights:
      continue
    for index, mask in enumerate(w.masks):
      mask = mask.numpy()
      if mask.all():
        continue
      for variable, keep in w.masked_variables(index, mask):
        for target in [variable] + optimizer_state.slot_variables(
            optimizer, variable):
          if np.any(np.where(keep, 0, target.numpy())):
            optimizer_state.zero_where(target, ~keep)
            written += 1
  return written


def _zero(entries: List[tuple], targets: List[list]) -> None:
  """Zero ``targets[i][j]`` (a variable and its optimizer slots) where the
  ``j``-th keep of ``entries[i]``'s mask is False: with numpy when eager
  (one read and one write per variable that has zeros to write), with
  graph ops when traced."""
  eager = tf.executing_eagerly()
  for (wrapper, index), variables in zip(entries, targets):
    mask = wrapper.masks[index]
    mask = mask.numpy() if eager else tf.convert_to_tensor(mask)
    pairs = wrapper.masked_variables(index, mask)
    for (_, keep), group in zip(pairs, variables):
      if eager and keep.all():
        continue
      for variable in group:
        if eager:
          optimizer_state.zero_where(variable, ~keep)
        else:
          value = tf.convert_to_tensor(variable)
          variable.assign(tf.where(keep, value, tf.zeros_like(value)))
