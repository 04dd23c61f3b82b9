"""Per-weight optimizer state (momentum, Adam moments) of chosen entries.

When a method grows a connection (Small-World regrowth, Synthesis), the new
weight must start like a fresh one: with the momentum or Adam moments it had
before it was pruned, Adam would scale its first updates by a stale second
moment. ``reset_slots`` zeroes the optimizer's per-weight state at the grown
positions. It supports the optimizers of both Keras generations (their state is kept
in per-variable lists; ``generations.optimizer_index`` finds the position)
and tf_keras' legacy ``keras.optimizers.legacy`` ones (``get_slot``).
"""

from __future__ import annotations

from typing import List

import numpy as np
import tensorflow as tf

from tfprune import generations


# Keras' own optimizers (either generation, legacy tf_keras ones included)
# whose every update at an entry is a product with that entry's gradient or
# state: with both 0 there, the entry does not move. Not Muon (it
# orthogonalises whole matrices) nor any subclass defined elsewhere.
_ELEMENTWISE = frozenset([
    'SGD', 'Adam', 'AdamW', 'Adamax', 'Nadam', 'RMSprop', 'Adagrad',
    'Adadelta', 'Adafactor', 'Ftrl', 'Lion', 'Lamb'])


def keeps_zeros(optimizer) -> bool:
  """Whether ``optimizer`` leaves a weight at exactly 0 once its gradient
  and its state there are 0 (see ``_ELEMENTWISE``; averaging the weights
  with ``use_ema`` would write other values back)."""
  while hasattr(optimizer, 'inner_optimizer'):   # LossScaleOptimizer
    optimizer = optimizer.inner_optimizer
  if optimizer is None or getattr(optimizer, 'use_ema', False):
    return False
  cls = type(optimizer)
  return (cls.__name__ in _ELEMENTWISE and
          cls.__module__.startswith(('keras.', 'tf_keras.')))


def slot_variables(optimizer, variable: tf.Variable) -> List[tf.Variable]:
  """The optimizer's per-weight state variables of ``variable`` (maybe [])."""
  if optimizer is None:
    return []
  while hasattr(optimizer, 'inner_optimizer'):   # LossScaleOptimizer
    optimizer = optimizer.inner_optimizer
  if hasattr(optimizer, 'get_slot_names'):   # legacy OptimizerV2
    slots = []
    for name in optimizer.get_slot_names():
      try:
        slots.append(optimizer.get_slot(variable, name))
      except KeyError:
        pass
    return slots
  index, count = generations.optimizer_index(optimizer, variable)
  if index is None:
    return []               # not built yet, or not one of its variables
  # Only the entry at ``index`` is checked: testing every entry of every
  # list made a mask update quadratic in the number of variables (the
  # lookups for MobileNetV2's 158 variables took 83 ms, now 11 ms).
  slots = []
  for value in vars(optimizer).values():
    if isinstance(value, list) and len(value) == count:
      slot = value[index]
      if (slot is not variable and hasattr(slot, 'assign') and
          hasattr(slot, 'shape') and
          tuple(slot.shape) == tuple(variable.shape)):
        slots.append(slot)
  return slots


def reset_slots(optimizer, variable: tf.Variable, where) -> int:
  """Zero the optimizer state of ``variable`` where ``where`` is True.

  Returns how many state variables were touched (0 before the optimizer's
  first step, when there is no state yet).
  """
  where = np.asarray(where, bool).reshape(tuple(variable.shape))
  slots = slot_variables(optimizer, variable)
  if where.any():
    for slot in slots:
      zero_where(slot, where)
  return len(slots)


def zero_where(variable: tf.Variable, where) -> None:
  """Write 0 into ``variable`` where ``where`` (boolean, broadcastable) is
  True, in one numpy round trip (a mask update writes many variables; a
  chain of eager ops per variable costs more than the numpy work)."""
  value = variable.numpy()
  variable.assign(np.where(where, 0, value).astype(value.dtype))
