"""Schedules: WHEN masks change and to WHAT sparsity.

tfprune uses tfmot's ``PruningSchedule`` contract unchanged:
``schedule(step) -> (should_update, target_sparsity)``; tfmot's own
``ConstantSparsity`` and ``PolynomialDecay`` work with every method that
takes a target. The step is tfmot's: 1 during the first training batch.

:class:`ScheduleTable` evaluates a schedule for thousands of steps in one
graph call, so the per-batch cost in the ``PruningStep`` callback is a
Python list lookup instead of a TensorFlow call.
"""

from __future__ import annotations

import weakref
from typing import Dict, Optional, Tuple, Type

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.sparsity.keras import ConstantSparsity
from tensorflow_model_optimization.sparsity.keras import PolynomialDecay
from tensorflow_model_optimization.sparsity.keras import PruningSchedule

__all__ = ['ConstantSparsity', 'PolynomialDecay', 'Periodic',
           'PruningSchedule', 'ScheduleTable', 'get', 'serialize', 'register']

_REGISTRY: Dict[str, Type[PruningSchedule]] = {
    'ConstantSparsity': ConstantSparsity,
    'PolynomialDecay': PolynomialDecay,
}


class Periodic(PruningSchedule):
  """Says only WHEN: every ``frequency`` steps in [begin_step, end_step].

  For methods that keep their own budget and only need update points (e.g.
  Small-World's prune-and-regrow). It gives no target (``gives_sparsity``
  is False): ``PruningStep`` calls ``update_masks(..., sparsity=None, ...)``,
  and a method that needs a target (Magnitude) says so. Inside the tfmot
  contract, which must return a number, the sparsity is NaN.
  ``end_step=-1`` means no end.
  """

  gives_sparsity = False

  def __init__(self, begin_step: int = 0, end_step: int = -1,
               frequency: int = 100):
    self.begin_step = int(begin_step)
    self.end_step = int(end_step)
    self.frequency = int(frequency)
    self._validate_step(self.begin_step, self.end_step, self.frequency, True)

  def __call__(self, step):
    return (self._should_prune_in_step(step, self.begin_step, self.end_step,
                                       self.frequency),
            tf.constant(float('nan'), tf.float32))

  def get_config(self):
    return {'class_name': type(self).__name__,
            'config': {'begin_step': self.begin_step,
                       'end_step': self.end_step,
                       'frequency': self.frequency}}


def register(cls: Type[PruningSchedule]) -> Type[PruningSchedule]:
  """Class decorator making a custom schedule loadable from a saved model."""
  _REGISTRY[cls.__name__] = cls
  return cls


register(Periodic)


def serialize(schedule: Optional[PruningSchedule]) -> Optional[dict]:
  return None if schedule is None else schedule.get_config()


def get(spec) -> Optional[PruningSchedule]:
  """A schedule from an instance, None, or its ``get_config()`` dict."""
  if spec is None or isinstance(spec, PruningSchedule):
    return spec
  if isinstance(spec, dict) and 'class_name' in spec:
    name = spec['class_name']
    if name not in _REGISTRY:
      raise ValueError(f'unknown schedule {name!r}; known: {sorted(_REGISTRY)}'
                       ' (decorate custom ones with tfprune.schedules.register)')
    return _REGISTRY[name].from_config(spec['config'])
  raise TypeError(
      f'a schedule must be a tfmot PruningSchedule (e.g. '
      f'tfprune.schedules.PolynomialDecay(...)) or None, got {spec!r}')


EAGER_CHUNK = 64     # table steps filled at once when functions run eagerly
# Schedules whose __call__ is elementwise in the step (exact types: a
# subclass may override __call__).
ELEMENTWISE = (ConstantSparsity, PolynomialDecay, Periodic)


class ScheduleTable:
  """Looks up ``schedule(step)`` from a table filled in large chunks.

  Use :meth:`of` to share one table per schedule. The built-in schedules
  (:data:`ELEMENTWISE`) are elementwise in the step, so a chunk is one call
  on a vector of steps: nothing is traced (a process that trains many
  pruned models would otherwise trace one function per table, and
  TensorFlow warns of retracing). Any other schedule may branch on a scalar
  step, so it is mapped over the steps in a traced ``tf.function``; with
  ``tf.config.run_functions_eagerly(True)`` that runs op by op (about 30 s
  for 4,096 steps), so its chunks are then at most :data:`EAGER_CHUNK`
  steps.
  """

  _shared = weakref.WeakKeyDictionary()

  @classmethod
  def of(cls, schedule: PruningSchedule) -> 'ScheduleTable':
    table = cls._shared.get(schedule)
    if table is None:
      table = cls._shared[schedule] = cls(schedule)
    return table

  def __init__(self, schedule: PruningSchedule, chunk: int = 4096):
    self.schedule = schedule
    self.chunk = int(chunk)
    self._start = 0
    self._updates = np.zeros([0], bool)
    self._sparsity = np.zeros([0], np.float32)
    self._elementwise = type(schedule) in ELEMENTWISE

    def evaluate(steps):
      def one(step):
        update, sparsity = schedule(step)
        return (tf.cast(update, tf.bool), tf.cast(sparsity, tf.float32))
      return tf.map_fn(one, steps,
                       fn_output_signature=(tf.bool, tf.float32))

    self._evaluate = tf.function(evaluate)

  def __call__(self, step: int) -> Tuple[bool, Optional[float]]:
    """(update?, target sparsity, or None for a schedule that gives none)."""
    offset = step - self._start
    if not 0 <= offset < len(self._updates):
      self._start = step
      chunk = (min(self.chunk, EAGER_CHUNK) if tf.config.functions_run_eagerly()
               and not self._elementwise else self.chunk)
      steps = tf.range(step, step + chunk, dtype=tf.int64)
      if self._elementwise:
        updates, sparsity = self.schedule(steps)
        updates = tf.cast(updates, tf.bool)
        sparsity = tf.cast(sparsity, tf.float32)
      else:
        updates, sparsity = self._evaluate(steps)
      self._updates = np.broadcast_to(updates.numpy(), [chunk])
      self._sparsity = np.broadcast_to(sparsity.numpy(), [chunk])
      offset = 0
    if not getattr(self.schedule, 'gives_sparsity', True):
      return bool(self._updates[offset]), None
    return bool(self._updates[offset]), float(self._sparsity[offset])
