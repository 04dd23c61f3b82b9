"""Per-weight optimizer state (momentum, Adam moments) of chosen entries.

When a method grows a connection (Small-World regrowth, Synthesis), the new
weight must start like a fresh one: with the momentum or Adam moments it had
before it was pruned, Adam would scale its first updates by a stale second
moment. ``reset_slots`` zeroes the optimizer's per-weight state at the grown
positions. It supports tf_keras optimizers (the default ones, whose state is
kept in per-variable lists indexed by ``_index_dict``) and the legacy
``keras.optimizers.legacy`` ones (``get_slot``).
"""

from __future__ import annotations

from typing import List

import numpy as np
import tensorflow as tf


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
  index_dict = getattr(optimizer, '_index_dict', None)
  if not index_dict:
    return []               # not built yet: no state to reset
  index = index_dict.get(optimizer._var_key(variable))  # pylint: disable=protected-access
  if index is None:
    return []
  slots = []
  for value in vars(optimizer).values():
    if (isinstance(value, list) and len(value) == len(index_dict) and
        all(isinstance(v, tf.Variable) for v in value) and
        value[index].shape == variable.shape):
      slots.append(value[index])
  return slots


def reset_slots(optimizer, variable: tf.Variable, where) -> int:
  """Zero the optimizer state of ``variable`` where ``where`` is True.

  Returns how many state variables were touched (0 before the optimizer's
  first step, when there is no state yet).
  """
  keep = tf.constant(~np.asarray(where, bool).reshape(variable.shape))
  slots = slot_variables(optimizer, variable)
  for slot in slots:
    slot.assign(slot * tf.cast(keep, slot.dtype))
  return len(slots)
