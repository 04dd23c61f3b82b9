"""Synaptic Strength (Lin et al., NeurIPS 2018): one strength per connection.

A connection is one input feature map -> one output feature map of a Conv2D,
i.e. one 2-D kernel ``K[:, :, i, j]``. The wrapper computes with

    K_ij = s_ij * V_ij / ||V_ij||            (mask_ij on top)

where ``V`` is the layer's own kernel variable and ``s`` (shape (cin, cout))
a trainable gate initialised to ``||V_ij||``, so wrapping changes nothing.
An L1 penalty ``l1 * sum |s|`` over the connections still alive (added with
``add_loss``) pushes strengths towards zero; a global threshold on ``|s|``
then prunes the weak connections once and the penalty is switched off for
fine-tuning.

The BatchNormalization right after a wrapped conv loses its scale
(``scale=False``): with ``gamma`` the net could shrink every ``s`` and grow
``gamma`` instead, escaping the penalty. ``prune`` does this through the
:meth:`SynapticStrength.prepare` hook with :func:`drop_bn_scale`, which folds
a trained ``gamma`` into the conv so the inference function is unchanged
(``s_ij`` becomes ``|gamma_j| * ||K_ij||``; the sign stays in ``V``). In training mode BN divides by the
batch statistics, so a channel's overall scale is normalised away there: a
converted net trains as if ``|gamma| = 1``.

What is reconstructed (docs/METHODS.md section 5): the exact strength
definition, the threshold rule and the penalty value are not from the paper's
text.
With SGD the penalty moves an alive strength by ``lr * l1`` per step; with
an adaptive optimizer (Adam) the step is normalised by the total gradient,
so where the penalty dominates (connections the data does not need) a
strength moves by up to one learning rate per step. Strengths oscillate
around zero rather than reaching it, which is why pruning uses a threshold.

DepthwiseConv2D is never wrapped (a depthwise connection is a whole
channel: use a channel method); Dense layers have no 2-D kernels.
"""

from __future__ import annotations

import logging
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tfprune import generations, graph, schedules, structures
from tfprune import groups as groups_lib
from tfprune.methods import base

logger = logging.getLogger('tfprune')

_PENALTY = 'synaptic_penalty'


def _is_conv2d(layer) -> bool:
  return (isinstance(layer, generations.layers.Conv2D) and
          not isinstance(layer, generations.layers.Conv2DTranspose))


def _foldable_bn(conv):
  """The BatchNormalization directly after ``conv`` whose scale can fold."""
  consumers = graph.layer_consumers(conv)
  bns = [c for c in consumers if isinstance(c, generations.layers.BatchNormalization)
         and c.scale]
  if not bns:
    return None
  bn = bns[0]
  if len(consumers) != 1 or graph.call_count(bn) != 1:
    logger.warning(
        'SynapticStrength: BatchNormalization %r after %r also serves other '
        'layers, so its scale is not folded; it can absorb what the penalty '
        'removes from s', bn.name, conv.name)
    return None
  axis = bn.axis if isinstance(bn.axis, (list, tuple)) else [bn.axis]
  if list(axis) not in ([-1], [3]):
    return None
  if generations.activation_name(conv.activation) != 'linear':
    logger.warning(
        'SynapticStrength: %r is followed by BatchNormalization %r but has '
        'its own activation, so the BN scale cannot be folded into it; the '
        'scale stays and can absorb what the penalty removes from s',
        conv.name, bn.name)
    return None
  return bn


def drop_bn_scale(model, conv_names: Sequence[str]
                  ) -> Tuple[object, Dict[str, str]]:
  """A copy of ``model`` whose BNs after ``conv_names`` have ``scale=False``.

  Each such BatchNormalization's ``gamma`` is folded into the conv before it
  (kernel and bias times ``gamma``, BN moving mean times ``gamma``), so the
  copy's inference outputs equal the original's. Returns the copy and the
  ``{conv: bn}`` pairs folded. A BN that is shared with other inputs, that
  normalises another axis, or that follows a conv with its own activation
  is left as it is (with a warning).
  """
  names = set(conv_names)
  pairs = {}
  for layer in model.layers:
    if layer.name in names and _is_conv2d(layer):
      bn = _foldable_bn(layer)
      if bn is not None:
        pairs[layer.name] = bn.name
  if not pairs:
    return model, {}
  bn_names = set(pairs.values())

  def clone(layer):
    config = layer.get_config()
    if layer.name in bn_names:
      config['scale'] = False
    return layer.__class__.from_config(config)

  new_model = generations.of(model).keras.models.clone_model(
      model, clone_function=clone)
  gammas = {bn: np.asarray(model.get_layer(bn).gamma) for bn in bn_names}
  for old, new in zip(model.layers, new_model.layers):
    values = [np.asarray(v) for v in old.get_weights()]
    if old.name in pairs:
      gamma = gammas[pairs[old.name]]
      values = [v * gamma for v in values]   # kernel [..., cout], bias [cout]
    elif old.name in bn_names:   # weights: [beta,] moving mean, variance
      values = ([np.asarray(old.beta)] if old.center else []) + [
          np.asarray(old.moving_mean) * gammas[old.name],
          np.asarray(old.moving_variance)]
    new.set_weights(values)
  return new_model, pairs


def select_connections(strengths: Sequence[np.ndarray],
                       sparsity: Optional[float] = None,
                       threshold: Optional[float] = None,
                       max_ratio: float = 1.0) -> List[np.ndarray]:
  """Masks keeping the strongest connections of several layers globally.

  With ``sparsity``, exactly ``round(sparsity * N)`` of the ``N``
  connections are pruned (ties broken by position, not all kept), ranked
  by the core's global selection (:func:`tfprune.groups.select`, one unit
  a connection, one set a layer). With ``threshold``, connections with
  ``|s| < threshold`` are pruned. Either way no layer loses more than
  ``max_ratio`` of its connections and every layer keeps at least its
  strongest one, so no layer is cut off from the network (a global ranking
  otherwise leaves deep 3x3 layers 1-3 of 16,384 kernels at 96%).
  """
  if (sparsity is None) == (threshold is None):
    raise ValueError('give exactly one of sparsity and threshold')
  if not 0.0 < float(max_ratio) <= 1.0:
    raise ValueError(f'max_ratio must be in (0, 1], got {max_ratio}')
  scores = [np.abs(np.asarray(s, np.float64)) for s in strengths]
  sizes = np.array([s.size for s in scores])
  flat = np.concatenate([s.reshape(-1) for s in scores])
  offsets = np.cumsum([0] + list(sizes[:-1]))
  layer_of = np.repeat(np.arange(sizes.size), sizes)
  floors = np.maximum(np.ceil(sizes * (1.0 - max_ratio) - 1e-9), 1).astype(
      np.int64)
  if threshold is not None:
    if threshold < 0:
      raise ValueError(f'threshold must be >= 0, got {threshold}')
    keep = flat >= threshold
    short = [i for i, o in enumerate(offsets)
             if keep[o:o + sizes[i]].sum() < floors[i]]
    if short:
      logger.warning('SynapticStrength: threshold %g leaves %d layer(s) under '
                     'their floor; each keeps its strongest connections up to'
                     ' it', threshold, len(short))
    for i in short:
      part = flat[offsets[i]:offsets[i] + sizes[i]]
      keep[offsets[i] + np.argsort(-part, kind='stable')[:floors[i]]] = True
  else:
    structures.check_sparsity(sparsity)
    n_keep = flat.size - int(round(sparsity * flat.size))
    if n_keep < floors.sum():
      raise ValueError(
          f'sparsity {sparsity} keeps {n_keep} of {flat.size} connections, '
          f'fewer than the per-layer floors ({int(floors.sum())} for '
          f'{len(sizes)} layers at max_ratio={max_ratio}); the largest '
          f'possible is {1 - floors.sum() / flat.size:.6f}')
    rule = groups_lib.ChannelSelection(ranking='global', max_ratio=max_ratio)
    keep = ~groups_lib.select(flat, -np.arange(flat.size, dtype=np.float64),
                              layer_of, sizes.size, sparsity, rule)
  return [part.reshape(s.shape) for part, s in
          zip(np.split(keep.astype(np.float32), offsets[1:]), scores)]


def unit_norm_scaled(kernel: tf.Tensor, factor: tf.Tensor,
                     axes: Tuple[int, ...], epsilon: float) -> tf.Tensor:
  """``kernel / ||kernel|| * factor``, norms over ``axes`` (one per 2-D
  kernel) with ``epsilon`` under the root; ``factor`` holds one value per
  kernel (the strength times the mask).

  Computed as ``kernel * (factor / norm)``, with the gradient written out:
  the divisor and the factor are per kernel, so a training step makes
  three kernel-sized passes forward (square, sum, product) and five
  backward, where automatic differentiation of ``kernel / norm * factor``
  took about ten (VGG-16 width 0.5, its convs wrapped, interleaved in one
  process, three runs: 1.09-1.12x of the plain step before, 1.05-1.09x
  after). With ``s = factor / norm`` and ``p = sum(upstream * kernel)``
  per kernel, the gradients are ``s * (upstream - p / norm**2 * kernel)``
  for the kernel and ``p / norm`` for the factor: 0 for a pruned kernel
  (zeroed, its factor 0), not 0/0.
  """

  @tf.custom_gradient
  def scaled(v, f):
    norm = tf.sqrt(tf.reduce_sum(tf.square(v), axis=axes, keepdims=True) +
                   epsilon)
    scale = tf.reshape(f, norm.shape) / norm

    def gradient(upstream):
      p = tf.reduce_sum(upstream * v, axis=axes, keepdims=True)
      return ((upstream - p / tf.square(norm) * v) * scale,
              tf.reshape(p / norm, f.shape))

    return v * scale, gradient

  return scaled(kernel, factor)


@base.register
class SynapticStrength(base.PruningMethod):
  """Per-connection strengths with an L1 penalty, pruned once by threshold.

  Args:
    l1: penalty weight on ``sum |s|`` over alive connections (0: none).
    target: connection sparsity to prune to at a ``Periodic`` schedule
      point (exactly, by the percentile of ``|s|`` over all wrapped convs).
    threshold: prune ``|s| < threshold`` at a ``Periodic`` point instead.
    fold_bn: drop the scale of the BatchNormalization after each wrapped
      conv (folding a trained one into the conv) when ``prune`` wraps.
    epsilon: added under the square root of ``||V_ij||^2``.
    max_ratio: no layer loses more than this fraction of its connections
      (a floor under the global ranking; 1.0: only its strongest one is
      sure to stay).

  When: with ``prune(..., schedule=0.9)`` the strengths prune once, now
  (for a trained model). With ``tfprune.schedules.Periodic(T, T)`` and
  ``target`` or ``threshold``, training is penalised until step ``T`` and
  pruned there. With a tfmot schedule (``PolynomialDecay``) masks follow its
  sparsity globally at every update point. In every case the masks freeze
  and the penalty switches off at the last update (for tfmot schedules: the
  last point before ``end_step``; never when ``end_step`` is -1).
  """

  gate_structure = structures.Kernel()
  zero_pruned_weights = True

  def __init__(self, l1: float = 1e-4, target: Optional[float] = None,
               threshold: Optional[float] = None, fold_bn: bool = True,
               epsilon: float = 1e-12, max_ratio: float = 1.0):
    super().__init__('kernel')
    if not l1 >= 0:
      raise ValueError(f'l1 must be >= 0, got {l1}')
    if target is not None and threshold is not None:
      raise ValueError('give target (a connection sparsity) or threshold (a '
                       'strength), not both')
    if target is not None:
      structures.check_sparsity(target, 'target')
    if threshold is not None and not threshold >= 0:
      raise ValueError(f'threshold must be >= 0, got {threshold}')
    if not epsilon > 0:
      raise ValueError(f'epsilon must be > 0, got {epsilon}')
    if not 0.0 < float(max_ratio) <= 1.0:
      raise ValueError(f'max_ratio must be in (0, 1], got {max_ratio}: the '
                       'largest fraction of one layer\'s connections pruned')
    self.max_ratio = float(max_ratio)
    self.l1 = float(l1)
    self.target = None if target is None else float(target)
    self.threshold = None if threshold is None else float(threshold)
    self.fold_bn = bool(fold_bn)
    self.epsilon = float(epsilon)
    # Facts of the prune() that used this object; None = not known (e.g. a
    # loaded model, whose method object is rebuilt from its config).
    self.info: Dict = {'l1': self.l1, 'folded_bn': None, 'pruned': None}

  # --- layers ----------------------------------------------------------------
  def refusal(self, layer) -> Optional[str]:
    if _is_conv2d(layer):
      return None
    extra = (' A depthwise connection is a whole channel: prune it with a '
             "channel method such as Magnitude('channel')."
             if isinstance(layer, generations.layers.DepthwiseConv2D) else '')
    return (f'SynapticStrength has one strength per 2-D kernel of a Conv2D; '
            f'layer {layer.name!r} is a {type(layer).__name__}.{extra} Select '
            'only Conv2D layers, e.g. prune(..., layers=keras.layers.Conv2D) '
            'or layers=None.')

  def _check_layer(self, layer) -> None:
    reason = self.refusal(layer)
    if reason is not None:
      raise ValueError(reason)

  def prepare(self, model, names: Sequence[str]):
    self.info = {'l1': self.l1, 'folded_bn': {}, 'pruned': None}
    for name in names:
      self._check_layer(model.get_layer(name))
    if not self.fold_bn:
      return model
    model, pairs = drop_bn_scale(model, names)
    if pairs:
      logger.info('SynapticStrength: BatchNormalization scale folded into '
                  'the conv before it (scale=False): %s', pairs)
    self.info['folded_bn'] = dict(pairs)
    return model

  # --- re-parameterisation ---------------------------------------------------
  def effective_weight(self, weight, factor, layout):
    """``V / ||V|| * strength * mask`` (:func:`unit_norm_scaled`)."""
    # In float32 at least: in float16 epsilon (1e-12) and the squares of
    # small weights underflow, and a pruned (all-zero) kernel would then
    # give 0/0.
    wide = tf.cast(weight, tf.float32) if weight.dtype.size < 4 else weight
    return unit_norm_scaled(wide, tf.cast(factor, wide.dtype),
                            tuple(layout.spatial), self.epsilon)

  def _norms(self, wrapper) -> np.ndarray:
    weight = wrapper.prunable[0]
    kernel = np.asarray(weight.variable, np.float64)
    return np.sqrt((kernel ** 2).sum(axis=weight.layout.spatial) +
                   self.epsilon)     # the divisor effective_weight uses

  def build(self, wrapper) -> None:
    self._check_layer(wrapper.layer)
    wrapper.gates[0].assign(self._norms(wrapper).astype(np.float32))
    penalty = wrapper.add_weight(name=_PENALTY, shape=[], initializer='ones',
                                 trainable=False)
    if self.l1 > 0:
      mask, l1 = wrapper.masks[0], self.l1
      generations.of(wrapper).add_penalty(
          wrapper, wrapper.gates[0],
          lambda strength: l1 * tf.cast(penalty, strength.dtype) *
          tf.reduce_sum(tf.abs(strength) * tf.cast(mask, strength.dtype)))

  def on_wrapped(self, wrappers: Sequence, model) -> None:
    del model
    for wrapper in wrappers:      # the weights were copied after build
      wrapper.gates[0].assign(self._norms(wrapper).astype(np.float32))
    schedule = wrappers[0].schedule
    own_rule = self.target is not None or self.threshold is not None
    if isinstance(schedule, schedules.Periodic) and not own_rule:
      raise ValueError('a Periodic schedule gives no sparsity: set target= '
                       '(a connection sparsity) or threshold= (a strength)')
    if own_rule and not isinstance(schedule, schedules.Periodic):
      given = ('no schedule' if schedule is None else
               f'{type(schedule).__name__}, which gives the sparsity itself')
      raise ValueError(
          f'target= and threshold= prune once at the point of a '
          f'tfprune.schedules.Periodic(T, T) schedule; got {given}. To prune '
          'a trained model now, pass the sparsity as schedule= instead')
    if (schedule is not None and not isinstance(schedule, schedules.Periodic)
        and getattr(schedule, 'end_step', -1) < 0):
      logger.warning('SynapticStrength with %s(end_step=-1): the masks never '
                     'freeze and the penalty stays on', type(schedule).__name__)

  # --- pruning ---------------------------------------------------------------
  def score(self, wrapper, index):
    return tf.abs(wrapper.gates[index])

  @staticmethod
  def _penalty(wrapper) -> tf.Variable:
    return next(w for w in wrapper.non_trainable_weights
                if w.name.split('/')[-1].startswith(_PENALTY))

  def is_frozen(self, wrappers: Sequence) -> bool:
    """Whether the masks are final and the penalty off."""
    return float(self._penalty(wrappers[0]).numpy()) == 0.0

  def _is_last_update(self, schedule, sparsity: Optional[float],
                      step: int) -> bool:
    if schedule is None or sparsity is None:
      return True
    end = getattr(schedule, 'end_step', -1)
    frequency = getattr(schedule, 'frequency', 1)
    return end >= 0 and step + frequency > end

  def update_masks(self, wrappers: Sequence, sparsity: Optional[float],
                   step: int) -> None:
    if self.is_frozen(wrappers):
      return       # pruned once; a Periodic schedule's later points are no-ops
    own_rule = self.target is not None or self.threshold is not None
    if sparsity is not None and own_rule:
      raise ValueError('the schedule gave a sparsity, but target= or '
                       'threshold= is set: use one of them (a Periodic '
                       'schedule with target/threshold, or a sparsity '
                       'schedule without)')
    if sparsity is None and not own_rule:
      raise ValueError('no sparsity to prune to: set target= or threshold=, '
                       'or use a schedule that gives a sparsity')
    # Rank |s| of the connections still alive: a pruned connection's s gets
    # no gradient and must not come back as a zero kernel at a later point.
    strengths = [np.asarray(w.gates[0]) * np.asarray(w.masks[0])
                 for w in wrappers]
    if self.threshold is not None:
      masks = select_connections(strengths, threshold=self.threshold,
                                 max_ratio=self.max_ratio)
    else:
      masks = select_connections(
          strengths, sparsity=self.target if own_rule else sparsity,
          max_ratio=self.max_ratio)
    for wrapper, mask in zip(wrappers, masks):
      wrapper.assign_mask(0, mask)
    total = sum(m.size for m in masks)
    pruned = sum(int((m == 0).sum()) for m in masks)
    kept = np.concatenate([np.abs(s[m > 0]) for s, m in zip(strengths, masks)])
    self.info['pruned'] = {
        'step': int(step), 'connections': int(total), 'pruned': pruned,
        'sparsity': pruned / total, 'smallest_kept_strength': float(kept.min()),
        'dead_output_channels': int(sum((m.sum(axis=0) == 0).sum()
                                        for m in masks)),
        'unused_input_channels': int(sum((m.sum(axis=1) == 0).sum()
                                         for m in masks))}
    if self._is_last_update(wrappers[0].schedule, sparsity, step):
      for wrapper in wrappers:
        self._penalty(wrapper).assign(0.0)
      self.info['pruned']['frozen'] = True
      logger.info('SynapticStrength: pruned %d of %d connections (%.4f) at '
                  'step %d; masks frozen, penalty off', pruned, total,
                  pruned / total, step)

  def report_info(self) -> Optional[dict]:
    return dict(self.info)

  def get_state(self) -> dict:
    return {'info': self.info}

  def set_state(self, state: dict) -> None:
    self.info = dict(state.get('info') or {'l1': self.l1, 'folded_bn': None,
                                           'pruned': None})

  def get_config(self):
    return {'l1': self.l1, 'target': self.target, 'threshold': self.threshold,
            'fold_bn': self.fold_bn, 'epsilon': self.epsilon,
            'max_ratio': self.max_ratio}

