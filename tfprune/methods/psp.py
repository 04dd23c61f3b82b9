"""Parameterized Structured Pruning (Schindler et al., arXiv 1906.05180).

Every structure of a weight (a column, an input channel, a filter or the
whole layer) gets a trainable parameter ``alpha``, initialised to 1; the layer
computes with ``q = w * T(alpha)``, so ``dE/d alpha_i = sum_j dE/dq_ij * w_ij``
aggregates the gradient of the whole structure. Weight decay on alpha (an
L2 regulariser ``lambda/2 * alpha^2``) drives the alphas of structures the
data does not need towards zero while the others stay large.

Learned mode (no sparsity target, the paper's main mode): from ``begin_step``
on, ``T(alpha) = alpha * 1[|alpha| >= epsilon]`` in the forward pass with a
straight-through gradient (the backward pass sees ``alpha``), so a structure
below ``epsilon`` still gets gradient and can come back. At ``freeze_step``
the structures with ``|alpha| < epsilon`` become masks (their weights set to
zero) and stay pruned while the rest fine-tunes. Target mode ("PSP at fixed
sparsity"): a tfmot schedule gives the sparsity and each layer keeps the
structures with the largest ``|alpha|``.

Filter and layer structures also scale the layer's bias (a pruned filter
must output exactly zero), so their gradient has an extra ``dE/db * b``.

Optimizer assumption: Keras' L2 adds ``lambda/2 * alpha^2`` per alpha, whose
gradient is ``lambda * alpha``; with ``SGD(momentum=0.9)`` the update is the
paper's Eq. 6, ``dA(t+1) = mu*dA(t) - eta*dE/dA - lambda*eta*A``. Adam and
other adaptive optimizers rescale that decay per parameter, so it no longer
separates structures the same way; a warning says so. The kernels get no
decay from PSP (add it to the layers if wanted).

Known limit: a layer followed by BatchNormalization is invariant to the
scale of its output in training mode, so a filter's or a whole layer's
alpha gets (almost) no gradient from the data there and the decay alone
decides when it crosses epsilon (all at about the same step); a warning says
so. Columns are ranked against each other by the data, but their common
scale in such a layer is free too.

Layer structures remove a whole layer, which only leaves a working network
where the layer sits on a residual branch with an identity shortcut (a
ResNet block); elsewhere they are refused.
"""

from __future__ import annotations

import logging
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfprune import generations, graph, schedules, structures
from tfprune import groups as groups_lib
from tfprune.methods import base

logger = logging.getLogger('tfprune')

STRUCTURES = ('column', 'input_channel', 'filter', 'layer')
_ALIASES = {'filter': 'channel'}


def on_residual_branch(model, name: str) -> bool:
  """Whether layer ``name`` sits on a branch that an identity shortcut
  bypasses: its output reaches an ``Add`` through single-consumer layers,
  and the Add's other input is a tensor the branch started from (an
  ancestor through single-input layers)."""
  try:
    g = graph.build(model, warn=False)
  except TypeError:               # not a flat model: no shortcut to find
    return False
  current = next(n for n in g.nodes if n.name == name)
  if len(current.inputs) != 1:
    return False
  ancestors, key = set(), current.inputs[0]
  while True:
    ancestors.add(key)
    producer = g.producer(key)
    if producer.kind == graph.INPUT or len(producer.inputs) != 1:
      break
    key = producer.inputs[0]
  while True:
    readers = g.consumers(current.outputs[0])
    if len(readers) != 1:
      return False
    nxt = readers[0][0]
    if isinstance(nxt.role_layer, generations.layers.Add):
      others = [k for k in nxt.inputs if k != current.outputs[0]]
      return len(others) == 1 and others[0] in ancestors
    if len(nxt.inputs) != 1:
      return False
    current = nxt


@base.register
class PSP(base.PruningMethod):
  """Learnable structure parameters with weight decay, thresholded.

  Args:
    structure: 'column' (Conv2D (kh, kw, cin) position / Dense input row),
      'input_channel', 'filter' (output channel) or 'layer'.
    weight_decay: lambda of the L2 decay on alpha (Keras adds lambda/2 *
      alpha^2). The paper sweeps it to trade sparsity for error.
    epsilon: structures with |alpha| < epsilon are pruned.
    begin_step: first training step (tfmot counting, 1 = first batch) at
      which the threshold applies (learned mode).
    freeze_step: step at which the masks are fixed; -1 = never (the
      threshold keeps applying, structures can always come back). With
      'filter', filters coupled across layers (a residual stage, a
      depthwise conv and its producer) are one channel group: it is frozen
      out when the mean |alpha| over its producers is below epsilon, in
      every member at once, and kept whole otherwise, so the frozen masks
      are exactly what ``shrink`` removes. Before the freeze the threshold
      acts per layer, so the freeze can revive a member's filter (its small
      alpha then scales it) or cut one whose own alpha was large; the
      fine-tuning after it absorbs that.
  """

  zero_pruned_weights = True

  def __init__(self, structure: str = 'column', weight_decay: float = 3e-4,
               epsilon: float = 1e-2, begin_step: int = 0,
               freeze_step: int = -1):
    if str(structure) not in STRUCTURES + ('channel',):
      raise ValueError(f'PSP structures are {STRUCTURES}, got {structure!r}')
    super().__init__(_ALIASES.get(str(structure), str(structure)))
    self.gate_structure = self.structure
    if not weight_decay >= 0:
      raise ValueError(f'weight_decay must be >= 0, got {weight_decay}')
    if not epsilon > 0:
      raise ValueError(f'epsilon must be > 0, got {epsilon}')
    if begin_step < 0:
      raise ValueError(f'begin_step must be >= 0, got {begin_step}')
    if freeze_step != -1 and freeze_step <= max(begin_step, 0):
      raise ValueError(f'freeze_step ({freeze_step}) must come after '
                       f'begin_step ({begin_step}) (steps count from 1); use '
                       'freeze_step=-1 for no freeze')
    self.weight_decay = float(weight_decay)
    self.epsilon = float(epsilon)
    self.begin_step = int(begin_step)
    self.freeze_step = int(freeze_step)
    self.info: Dict = {'frozen_at': None}
    self._warned = False

  # --- gates -------------------------------------------------------------
  def gate_regularizer(self):
    if self.weight_decay == 0:
      return None
    scale = self.weight_decay / 2      # Keras' L2(weight_decay / 2)
    return lambda alpha: scale * tf.reduce_sum(tf.square(alpha))

  @staticmethod
  def _learned(wrapper) -> bool:
    return (wrapper.schedule is None or
            isinstance(wrapper.schedule, schedules.Periodic))

  def gate_value(self, gate, wrapper):
    if not self._learned(wrapper):
      return gate         # target mode: the masks cut, alpha only scales
    if tf.executing_eagerly():
      # An eager step knows the phase: no select, and no select gradient
      # (about ten eager ops), per layer and step.
      step = int(wrapper.pruning_step.numpy())
      return self._thresholded(gate) if self._active(step) else gate
    return tf.where(self._active(wrapper.pruning_step),
                    self._thresholded(gate), gate)

  def _active(self, step):
    """Whether the threshold applies at ``step`` (an int or a tensor):
    from ``begin_step`` on, until the freeze hands over to the masks."""
    started = step >= self.begin_step
    if self.freeze_step < 0:
      return started
    if isinstance(step, int):
      return started and step < self.freeze_step
    return tf.logical_and(started, step < self.freeze_step)

  def _thresholded(self, gate):
    """``gate`` with the entries below epsilon set to 0; the gradient
    passes through as if unthresholded (straight-through)."""
    keep = tf.cast(tf.abs(gate) >= self.epsilon, gate.dtype)
    return gate + tf.stop_gradient(gate * keep - gate)

  # --- wrapping and training ----------------------------------------------
  def on_wrapped(self, wrappers: Sequence, model) -> None:
    schedule = wrappers[0].schedule
    if isinstance(schedule, schedules.Periodic):
      raise ValueError('PSP sets its own freeze point: pass freeze_step= '
                       'instead of a Periodic schedule')
    if schedule is not None and (self.begin_step or self.freeze_step != -1):
      raise ValueError('with a sparsity schedule (target mode) the masks '
                       'follow the schedule; begin_step/freeze_step are for '
                       'the learned mode (schedule=None)')
    if not isinstance(self.structure, structures.Column):
      fed = [w.layer.name for w in wrappers
             if any(isinstance(graph.unwrapped(c),
                               generations.layers.BatchNormalization)
                    for c in graph.layer_consumers(w))]
      if fed:                                  # one warning for all of them
        logger.warning(
            'PSP %s alphas of %d layer(s) (%s%s) feed a BatchNormalization, '
            'which removes the scale of each output in training: the data '
            'gives alpha (almost) no gradient, so the decay alone decides when'
            ' it crosses epsilon', self.structure, len(fed),
            ', '.join(fed[:3]), ' ...' if len(fed) > 3 else '')
    if isinstance(self.structure, structures.Layer):
      for wrapper in wrappers:
        if not on_residual_branch(model, wrapper.layer.name):
          raise ValueError(
              f"PSP structure='layer' would remove layer "
              f'{wrapper.layer.name!r}, which no identity shortcut bypasses '
              '(only layers inside ResNet-style residual branches can go). '
              "Select only such layers, or use structure='filter'.")
    if schedule is None and self.freeze_step >= 0:
      freeze = schedules.Periodic(self.freeze_step, self.freeze_step, 1)
      for wrapper in wrappers:
        wrapper.schedule = freeze

  def on_train_begin(self, wrappers: Sequence, model) -> None:
    optimizer = getattr(model, 'optimizer', None)
    while hasattr(optimizer, 'inner_optimizer'):
      optimizer = optimizer.inner_optimizer
    if optimizer is None or self._warned or self.weight_decay == 0:
      return
    momentum = getattr(optimizer, 'momentum', None)
    if (type(optimizer).__name__ != 'SGD' or not momentum or
        getattr(optimizer, 'nesterov', False) or
        getattr(optimizer, 'weight_decay', None)):
      self._warned = True
      logger.warning(
          'PSP: alpha is trained by %s (momentum %s); the decay matches the '
          "paper's Eq. 6 only with plain SGD(momentum=0.9) (no Nesterov, no "
          'optimizer weight_decay); adaptive optimizers rescale it per '
          'parameter.', type(optimizer).__name__, momentum)

  # --- masks ---------------------------------------------------------------
  def score(self, wrapper, index):
    return tf.abs(wrapper.gates[index])

  def update_masks(self, wrappers: Sequence, sparsity: float,
                   step: int) -> None:
    if sparsity is not None:                                    # target mode
      if wrappers[0].schedule is None:
        raise ValueError(
            'PSP ranks its alphas, which all start at 1: a one-shot prune '
            'when wrapping has nothing to rank. Pass a tfmot schedule '
            '(e.g. PolynomialDecay) so masks follow alpha during training.')
      if isinstance(self.structure, structures.Layer):   # one alpha a layer
        slots = [(w, i) for w in wrappers for i in range(len(w.prunable))]
        kept = base.global_keep_top([self.score(w, i) for w, i in slots],
                                    sparsity)
        for (wrapper, index), mask in zip(slots, kept):
          wrapper.assign_mask(index, mask)
        return None
      return super().update_masks(wrappers, sparsity, step)
    self._freeze(wrappers)
    self.info = {'frozen_at': int(step),
                 'pruned': alpha_sparsity(wrappers, epsilon=0.0)}
    logger.info('PSP: masks frozen at step %d: %s', step, self.info['pruned'])

  def _freeze(self, wrappers: Sequence) -> None:
    """Learned mode's freeze: a structure is masked where its |alpha| is
    below epsilon; a channel group (filters coupled across layers, with
    their BatchNorm followers) where the mean |alpha| over its producers
    is, in every member at once."""
    cg = self.channel_groups
    grouped = set() if cg is None else {id(m.wrapper) for m in cg.members}
    for wrapper in wrappers:
      if id(wrapper) in grouped:
        continue
      for index in range(len(wrapper.prunable)):
        keep = np.abs(np.asarray(wrapper.gates[index])) >= self.epsilon
        wrapper.assign_mask(index, keep.astype(np.float32))
    if cg is not None and cg.members:
      alpha = groups_lib.group_mean(
          cg, lambda w: np.abs(np.asarray(w.gates[0])))
      groups_lib.assign(cg, alpha < self.epsilon)

  def report_info(self) -> Optional[dict]:
    return dict(self.info)

  def get_state(self) -> dict:
    return {'info': self.info}

  def set_state(self, state: dict) -> None:
    self.info = dict(state.get('info') or {'frozen_at': None})

  def get_config(self):
    name = {v: k for k, v in _ALIASES.items()}.get(str(self.structure),
                                                   str(self.structure))
    return {'structure': name, 'weight_decay': self.weight_decay,
            'epsilon': self.epsilon, 'begin_step': self.begin_step,
            'freeze_step': self.freeze_step}


def alpha_sparsity(wrappers: Sequence, epsilon: Optional[float] = None
                   ) -> Dict[str, float]:
  """Per layer, the fraction of structures with |alpha| < epsilon (and of
  masked ones), plus 'total' over all structures of the given wrappers."""
  out, pruned, count = {}, 0, 0
  for wrapper in wrappers:
    eps = wrapper.method.epsilon if epsilon is None else epsilon
    gone = [(np.abs(np.asarray(g)) < eps) | (np.asarray(m) == 0)
            for g, m in zip(wrapper.gates, wrapper.masks)]
    n = sum(x.size for x in gone)
    k = sum(int(x.sum()) for x in gone)
    out[wrapper.layer.name] = k / n
    pruned, count = pruned + k, count + n
  out['total'] = pruned / max(count, 1)
  return out
