"""PruningWrapper: masks (and optional gates) over a layer's prunable weights.

The wrapped layer computes with ``weight * mask [* gate]`` in training and
inference alike. The product is substituted for the layer's own variable only
for the duration of ``call`` (the variable itself is never replaced), so the
layer's code runs unchanged and gradients reach the weight and the gates.
Masks are non-trainable variables written only at schedule points (by the
``PruningStep`` callback); gates are trainable. Biases follow their channel
when the structure is ``channel`` or ``layer``.

Per training step the hot path is: read each weight, multiply by its mask
(times its gate, for gated methods) forward, multiply the gradient by the
same factor backward, and advance the step counter. A method that
re-parameterises the weight (Synaptic Strength's unit-norm kernels) computes
the product itself (``PruningMethod.effective_weight``). For a masking method
(no gates) trained by ``PruningStep`` with one of Keras' own optimizers, in
a traced step, the forward product is skipped (:func:`_gradient_masked`):
the weights hold exact zeros under their masks then (see
:mod:`tfprune.zeroing`), so the product would return the weight bit for
bit; only the gradient is masked (for a Dense layer masked per unit, the
gradient of its output: batch x units entries instead of fan_in x units).
An eager step (``run_eagerly=True``) dispatches every op on its own, so
there the step's check runs in Python (:meth:`WrapperCore._advance_eagerly`)
and the forward product stays (a custom gradient costs more Python than the
product it saves on all but the largest kernels).
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import json
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import tensorflow as tf
# XLA contexts, which tf.function(jit_compile=True) enters while tracing
from tensorflow.python.ops import control_flow_util  # pylint: disable=g-direct-tensorflow-import

from tfprune import (generations, optimizer_state, prunable, registry,
                     schedules, structures)

_NO_CALLBACK = (
    'A tfprune-wrapped model was trained without the tfprune.PruningStep '
    'callback, so its masks would never follow the schedule. Fix: '
    'model.fit(..., callbacks=[tfprune.PruningStep()]).')


_FOLLOWER_STRUCTURE = structures.Channel()


@contextlib.contextmanager
def _substituted(layer, values: Dict[str, tf.Tensor]):
  """Temporarily point ``layer.<attr>`` at a tensor, bypassing tracking.

  ``attr`` is where the layer's code reads the weight from
  (``generations.substitution_attr``).
  """
  saved = {attr: getattr(layer, attr) for attr in values}
  try:
    for attr, value in values.items():
      object.__setattr__(layer, attr, value)
    yield
  finally:
    for attr, value in saved.items():
      object.__setattr__(layer, attr, value)


@tf.custom_gradient
def _gradient_masked(value, factor):
  """``value`` forward and ``value * factor``'s gradient backward.

  Equal to ``value * factor`` in both directions when ``value`` is already
  0 wherever ``factor`` is (0/1 masks): one elementwise product per step
  instead of two, which on Dense-heavy models (LeNet-300-100's 235K-weight
  first layer) is most of the wrappers' cost.
  """
  def gradient(upstream):
    return upstream * factor, None
  return tf.identity(value), gradient


def _no_callback_error() -> Exception:
  """What the graph's check raises, for the checks made in Python."""
  return tf.errors.InvalidArgumentError(None, None, _NO_CALLBACK)


def _xla_compiled() -> bool:
  """Whether the function being traced is compiled by XLA."""
  return control_flow_util.GraphOrParentsInXlaContext(
      tf.compat.v1.get_default_graph())


def _identity_keeping_logits(tensor):
  """``tf.identity`` that keeps the ``_keras_logits`` a softmax or sigmoid
  output carries: both Keras generations' cross-entropies read them to work
  from the logits, so a wrapped output layer trains on the same loss as the
  plain one (without them: a clipped ``log`` of the probabilities and more
  ops per step)."""
  out = tf.identity(tensor)
  logits = getattr(tensor, '_keras_logits', None)
  if logits is not None:
    out._keras_logits = logits  # pylint: disable=protected-access
  return out


class WrapperCore:
  """The behaviour of :class:`PruningWrapper`, written once for both Keras
  generations; the concrete classes below add the generation's ``Wrapper``
  base. ``isinstance(layer, WrapperCore)`` finds a wrapper of either."""

  graph_transparent = True   # tfprune.graph sees the wrapped layer's role

  def __init__(self, layer, method=None, schedule=None,
               cohort: str = 'default', follower: bool = False,
               holds_state: bool = False, method_state=None, **kwargs):
    if 'group' in kwargs:                 # saved by tfprune before 0.2
      cohort = kwargs.pop('group')
    self.follower = bool(follower)
    if not self.follower:
      prunable.check_supported(layer)
    kwargs.setdefault('name', f'pruned_{layer.name}')
    super().__init__(layer, **kwargs)
    self._slots: Dict[str, str] = {}     # weight attr -> attribute read
    self.method = (registry.get('Magnitude') if method is None
                   else registry.deserialize(method))
    self.schedule = schedules.get(schedule)
    self.cohort = cohort
    self.holds_state = bool(holds_state)
    if method_state:
      self.method.set_state(method_state)
    self._call_accepts_training = 'training' in inspect.signature(
        layer.call).parameters
    self.prunable: List[prunable.PrunableWeight] = []
    self.masks: List[tf.Variable] = []
    self.gates: List[Optional[tf.Variable]] = []
    # Mask indices written lately whose removed entries must still be
    # zeroed in the optimizer state (and in the weights, when deferred).
    self.pending_zeroing: set = set()
    # Set by PruningStep while it keeps the weights exactly 0 under their
    # masks (and clears the optimizer's state there): training steps may
    # then skip the forward product (``_gradient_masked``).
    self.zeros_kept = False

  @property
  def structure(self):
    return _FOLLOWER_STRUCTURE if self.follower else self.method.structure

  def build(self, input_shape):
    super().build(input_shape)
    gen = generations.of(self)
    self.prunable = (prunable.follower_weights(self.layer) if self.follower
                     else prunable.prunable_weights(self.layer))
    self._slots = {attr: generations.substitution_attr(self.layer, attr)
                   for attr in [w.attr for w in self.prunable] + ['bias']
                   if hasattr(self.layer, attr)}
    gate_structure = None if self.follower else self.method.gate_structure
    for weight in self.prunable:
      where = f'the {weight.attr} of layer {self.layer.name!r}'
      self.structure.validate(weight.variable.shape, weight.layout, where)
      shape = self.structure.mask_shape(weight.variable.shape, weight.layout)
      self.masks.append(self.add_weight(
          name=f'{weight.attr}_mask', shape=shape, initializer='ones',
          dtype=gen.storage_dtype(weight.variable), trainable=False,
          aggregation=gen.first_replica))
      gate = None
      if gate_structure is not None:
        gate_structure.validate(weight.variable.shape, weight.layout, where)
        gate = self.add_weight(
            name=f'{weight.attr}_gate',
            shape=gate_structure.mask_shape(weight.variable.shape,
                                             weight.layout),
            initializer=self.method.gate_initializer(),
            regularizer=self.method.gate_regularizer(),
            dtype=gen.storage_dtype(weight.variable), trainable=True)
      self.gates.append(gate)
    self.pruning_step = self.add_weight(
        name='pruning_step', shape=[],
        initializer=gen.keras.initializers.Constant(-1),
        dtype=tf.int64, trainable=False, aggregation=gen.first_replica)
    if not self.follower:
      self.method.build(self)
    self.built = True

  # --- effective weights ---------------------------------------------------
  def _gate_value(self, index: int, dtype,
                  cache: Optional[Dict[int, tf.Tensor]]) -> tf.Tensor:
    """Gate ``index`` as the method computes with it, once per call: the
    weight and its bias share it through ``cache`` (PSP's threshold is
    about ten ops, which an eager step would otherwise run twice per
    layer)."""
    if cache is None:
      cache = {}
    if index not in cache:
      stored = generations.of(self).stored_value(self.gates[index])
      cache[index] = self.method.gate_value(tf.cast(stored, dtype), self)
    return cache[index]

  def _effective(self, index: int, zeros_kept: bool,
                 gate_outside: bool = False,
                 mask_outside: bool = False,
                 gate_cache: Optional[Dict[int, tf.Tensor]] = None
                 ) -> tf.Tensor:
    weight = self.prunable[index]
    if mask_outside:      # the output's gradient is masked (``_unit_mask``)
      return tf.convert_to_tensor(weight.variable)
    shape = weight.variable.shape
    gate = None if gate_outside else self.gates[index]
    gen = generations.of(self)
    if zeros_kept and gate is None and not self.method.reparameterizes_weight:
      # Masked in the stored dtype, then cast like a plain layer's read:
      # under mixed precision the mask is read as stored, not cast to the
      # compute dtype and back (two kernel-sized casts per step for weight
      # structure), and the gradient is masked in float32.
      stored = gen.stored_value(weight.variable)
      factor = self.structure.broadcastable(
          tf.cast(gen.stored_value(self.masks[index]), stored.dtype), shape,
          weight.layout)
      return tf.cast(_gradient_masked(stored, factor), weight.variable.dtype)
    reparameterized = (not self.follower and
                       self.method.reparameterizes_weight)
    # A re-parameterisation computes from the weight as stored (float32
    # under mixed precision), cast once at the end like a plain read.
    value = (gen.stored_value(weight.variable) if reparameterized
             else tf.convert_to_tensor(weight.variable))
    factor = self.structure.broadcastable(
        tf.cast(gen.stored_value(self.masks[index]), value.dtype), shape,
        weight.layout)
    if gate is not None:
      # Mask times gate first: both are usually per channel or per kernel,
      # so the weight is multiplied once, not twice (forward and backward);
      # with 0/1 masks the product is bit-identical to masking, then gating.
      factor = factor * self.method.gate_structure.broadcastable(
          self._gate_value(index, value.dtype, gate_cache), shape,
          weight.layout)
    if not reparameterized:
      return value * factor
    return tf.cast(self.method.effective_weight(value, factor, weight.layout),
                   weight.variable.dtype)

  def _fast_path(self, training) -> bool:
    """Whether this call may skip the forward products: a traced training
    step of a masking wrapper whose zeros ``PruningStep`` keeps. Not in
    eager steps (``run_eagerly=True``), where every op is dispatched on
    its own and the custom gradients cost more ops than the products they
    save (LeNet-5, interleaved: 1.24x against 1.15x of the plain step for
    weight masks, 1.48x against 1.20x for channel masks)."""
    return (training is True and self.zeros_kept and not self.follower and
            not tf.executing_eagerly())

  def _single_dense(self) -> bool:
    return (len(self.prunable) == 1 and
            isinstance(self.layer, generations.layers.Dense))

  def _dense_vector(self, factor) -> Optional[Tuple[int, tf.Tensor]]:
    """For a single-kernel Dense, ``(axis, vector)`` when ``factor``
    (broadcastable to the kernel) is one value per kernel row (axis 0: it
    can scale the input) or per unit (axis 1: the pre-activation output);
    None for any other shape."""
    fan_in, units = self.prunable[0].variable.shape
    if tuple(factor.shape) in ((units,), (1, units)) and fan_in > 1:
      return 1, tf.reshape(factor, [units])
    if tuple(factor.shape) == (fan_in, 1) and units > 1:
      return 0, tf.reshape(factor, [fan_in])
    return None

  def _gate_outside(self, fast: bool) -> Optional[Tuple[int, tf.Tensor]]:
    """``(axis, gates)`` when a fast step of a gated Dense applies its
    gates to the layer's input (axis 0: gates per kernel row) or to its
    output before the activation (axis 1: per unit, with the bias), not
    to the kernel: the same product, batch x units entries instead of
    fan_in x units (LeNet-300-100's first layer: 64 x 300 against 784 x
    300). None otherwise."""
    if not fast or self.gates[0] is None or not self._single_dense():
      return None
    weight = self.prunable[0]
    return self._dense_vector(self.method.gate_structure.broadcastable(
        self._gate_value(0, weight.variable.dtype, None),
        weight.variable.shape, weight.layout))

  def _unit_mask(self, fast: bool, outside) -> Optional[tf.Tensor]:
    """A fast step of a Dense whose mask keeps or removes whole units (and
    whose gates, if any, act outside the kernel): the mask per unit, to
    mask the gradient of the pre-activation output (batch x units) instead
    of the kernel's (fan_in x units). The kernel's gradient is then
    ``inputs^T (upstream * mask)``: the same numbers, bit for bit, as the
    masked kernel gradient; the input's gradient is unchanged because the
    removed units' kernel columns are 0. None otherwise."""
    if (not fast or (self.gates[0] is not None and outside is None) or
        self.method.reparameterizes_weight or not self._single_dense()):
      return None
    weight = self.prunable[0]
    found = self._dense_vector(self.structure.broadcastable(
        self.masks[0], weight.variable.shape, weight.layout))
    return found[1] if found is not None and found[0] == 1 else None

  def _bias_factor(self, gate_outside: bool = False,
                   gate_cache: Optional[Dict[int, tf.Tensor]] = None
                   ) -> Optional[tf.Tensor]:
    """What the bias is multiplied by (its channel's mask, times its gate
    unless the gates act outside the kernel), or None."""
    bias = prunable.bias_of(self.layer)
    if bias is None or len(self.prunable) != 1:
      return None
    weight = self.prunable[0]
    factor = self.structure.bias_mask(self.masks[0], weight.layout)
    gate_structure = None if gate_outside else self.method.gate_structure
    if gate_structure is not None:
      gate = gate_structure.bias_mask(
          self._gate_value(0, self.gates[0].dtype, gate_cache),
          weight.layout)
      if gate is not None:
        factor = gate if factor is None else factor * gate
    if factor is None:
      return None
    if factor.shape[0] == 1:
      factor = tf.broadcast_to(factor, bias.shape)
    return factor

  def _substitutions(self, zeros_kept: bool = False,
                     gate_outside: bool = False,
                     mask_outside: bool = False) -> Dict[str, tf.Tensor]:
    gates: Dict[int, tf.Tensor] = {}
    values = {w.attr: self._effective(i, zeros_kept, gate_outside,
                                      mask_outside, gates)
              for i, w in enumerate(self.prunable)}
    if mask_outside:      # mask and gates act on the output: bias as is
      return values
    factor = self._bias_factor(gate_outside, gates)
    if factor is not None:
      bias = self.layer.bias
      value, factor = tf.convert_to_tensor(bias), tf.cast(factor, bias.dtype)
      masks_only = gate_outside or self.gates[0] is None
      values['bias'] = (_gradient_masked(value, factor)
                        if zeros_kept and masks_only else value * factor)
    return values

  def effective_weights(self) -> Dict[str, np.ndarray]:
    """The weights the layer computes with, by attribute name (numpy)."""
    return {attr: np.asarray(value)
            for attr, value in self._substitutions().items()}

  def call(self, inputs, training=None, **kwargs):
    # Only the wrapped layer's own call is left to autograph (a user's
    # subclassed layer keeps its tensor-dependent Python control flow, as
    # unwrapped); the wrapper's code around it has none, and converting it
    # and every helper it calls made prune() of MobileNetV2 about 25%
    # slower (1.4 s against 1.1 s).
    inputs, training, values, after = self._before(inputs, training, kwargs)
    with _substituted(self.layer, values):
      outputs = self.layer.call(inputs, **kwargs)
    return self._after(outputs, training, after)

  @tf.autograph.experimental.do_not_convert
  def _before(self, inputs, training, kwargs: dict):
    """The inputs, ``training``, the substituted weights, and what
    :meth:`_after` applies to the outputs; adds ``training`` to ``kwargs``
    when the layer takes it."""
    if training is None:
      training = generations.of(self).default_training()
    if self._call_accepts_training:
      kwargs['training'] = training
    fast = self._fast_path(training)
    outside = self._gate_outside(fast)
    unit_mask = self._unit_mask(fast, outside)
    values = {self._slots.get(attr, attr): value for attr, value in
              self._substitutions(fast, outside is not None,
                                  unit_mask is not None).items()}
    out_gate = None
    if outside is not None:
      axis, gate = outside
      if axis == 0:
        inputs = inputs * tf.cast(gate, inputs.dtype)
      else:
        out_gate = gate
    activation = None
    if out_gate is not None or unit_mask is not None:
      activation = self.layer.activation      # applied after the factors
      values['activation'] = tf.identity
    return inputs, training, values, (activation, unit_mask, out_gate)

  @tf.autograph.experimental.do_not_convert
  def _after(self, outputs, training, after: tuple):
    activation, unit_mask, out_gate = after
    if activation is not None:
      if unit_mask is not None:
        outputs = _gradient_masked(outputs, tf.cast(unit_mask, outputs.dtype))
      if out_gate is not None:
        outputs = outputs * tf.cast(out_gate, outputs.dtype)
      outputs = activation(outputs)
    if (isinstance(training, bool) and not training) or self.follower:
      return outputs          # a follower has no schedule of its own
    if tf.executing_eagerly():
      return self._advance_eagerly(outputs, training)
    # In training the step advances here, in the graph (as in tfmot 0.8), so
    # PruningStep runs no TF op per batch; it sets -1 (never trained) to 0,
    # which this check needs. No tf.cond (a cond per wrapper made cloning a
    # 400-layer model several seconds slower): a symbolic ``training`` adds
    # 0 or 1.
    if isinstance(training, bool):
      if _xla_compiled():       # checked now; an Assert would only be
        self._check_started()   # dropped, with a warning per layer
        self.pruning_step.assign_add(np.int64(1))
        return outputs
      step = self.pruning_step.assign_add(np.int64(1))
      ok = step >= np.int64(1)
    else:
      training = tf.cast(training, tf.bool)
      step = self.pruning_step.assign_add(tf.cast(training, tf.int64))
      ok = tf.logical_or(step >= np.int64(1), tf.logical_not(training))
    with tf.control_dependencies([tf.debugging.Assert(ok, [_NO_CALLBACK])]):
      return tf.nest.map_structure(_identity_keeping_logits, outputs)

  def _check_started(self) -> None:
    """The no-callback check made in Python: in an eager step, and while a
    step that XLA compiles (``jit_compile=True``) is traced. XLA drops
    Assert ops, so the graph's check would never fire there, and a fit
    without ``PruningStep`` would train masks that never follow the
    schedule. The callback sets the step before the first batch, so before
    the first trace."""
    with tf.init_scope():         # the value now, also while tracing
      if int(self.pruning_step.numpy()) < 0:
        raise _no_callback_error()

  def _advance_eagerly(self, outputs, training):
    """The step advance and its check in an eager step (``run_eagerly``):
    the check in Python, and no identity to order it after (eager ops run
    in order). Each op costs its own dispatch there, and the identity a
    gradient function: 2 forward ops and 1 backward call fewer per layer
    than the traced form. Checked before the advance, so a step refused
    here leaves every counter as it was, and a fit with the callback can
    follow."""
    if not bool(training):
      return outputs
    self._check_started()
    self.pruning_step.assign_add(np.int64(1))
    return outputs

  # --- masks -----------------------------------------------------------------
  def assign_mask(self, index: int, mask) -> None:
    """Write a new mask (and, for masking methods, zero the pruned weights).

    The optimizer's momentum would move zeroed weights away from 0 again;
    ``pending_zeroing`` tells ``PruningStep`` to clear that state. An
    unchanged mask is not written again: what it zeroed is still zero (the
    gradient there is 0 and the optimizer state was cleared). Each variable
    is written with one numpy round trip, not a chain of eager ops; inside
    :func:`deferred_zeroing` (``PruningStep`` updating masks) the weights
    are left to :class:`tfprune.zeroing.Zeroing`, which zeroes weights and
    optimizer state under every mask in one graph call: one MobileNetV2
    update writes about 150 masks.
    """
    variable = self.masks[index]
    old = variable.numpy()
    new = np.asarray(mask).reshape(old.shape)
    if np.array_equal(old, new):
      return
    variable.assign(new.astype(old.dtype))
    if not self.method.zero_pruned_weights:
      return
    self.pending_zeroing.add(index)
    if id(self) in _DEFERRED.get():
      return
    for target, keep in self.masked_variables(index, new):
      if not keep.all():
        optimizer_state.zero_where(target, ~keep)

  def masked_variables(self, index: int, mask=None) -> List[tuple]:
    """``(variable, keep)`` for what mask ``index`` zeroes: its weight, and
    the bias when the structure's units own one (``keep``: boolean, at the
    variable's shape; numpy, or a tensor for a tensor ``mask``). ``mask``:
    its value, when the caller has it (saves reading the variable back), or
    a tensor read in a graph."""
    if mask is None:
      mask = self.masks[index].numpy()
    ops = structures.array_ops(mask)
    keep = ops.not_equal(mask, 0)
    weight = self.prunable[index]
    pairs = [(weight.variable, self.structure.expand(
        keep, weight.variable.shape, weight.layout))]
    bias = prunable.bias_of(self.layer)
    factor = self.structure.bias_mask(keep, weight.layout)
    if (bias is not None and factor is not None and index == 0 and
        len(self.prunable) == 1):         # the mask only, never the gate
      pairs.append((bias, ops.broadcast_to(factor, tuple(bias.shape))))
    return pairs

  def compute_output_shape(self, input_shape):
    return self.layer.compute_output_shape(input_shape)

  # --- serialisation -------------------------------------------------------
  def get_config(self):
    config = super().get_config()
    config.update({
        'method': registry.serialize(self.method),
        'schedule': schedules.serialize(self.schedule),
        'cohort': self.cohort,
    })
    if self.follower:
      config['follower'] = True
    if self.holds_state:
      config['holds_state'] = True
      config['method_state'] = self.method.get_state()
    return config

  @classmethod
  def from_config(cls, config, custom_objects=None):
    config = dict(config)
    layer = generations.of_class(cls).keras.layers.deserialize(
        config.pop('layer'), custom_objects=custom_objects)
    return cls(layer, **config)


@generations.TF_KERAS.register
class PruningWrapper(WrapperCore, generations.TF_KERAS.keras.layers.Wrapper):
  """Applies a pruning method's masks and gates to one layer.

  ``PruningWrapper(layer, ...)`` returns a wrapper of the layer's Keras
  generation: a tf_keras layer gets this class, a Keras 3 layer a Keras 3
  ``Wrapper`` with the same behaviour (``Keras3PruningWrapper``).

  Args:
    layer: a Dense, Conv2D, DepthwiseConv2D or tfmot ``PrunableLayer``.
    method: a ``tfprune.methods`` object (default: weight magnitude).
    schedule: a tfmot ``PruningSchedule`` saying when masks change and to
      what sparsity, or None for masks that only the method sets.
    cohort: wrappers of one cohort share one method and are updated
      together (one ``prune()`` call makes one cohort; global methods rank
      across it).
    holds_state: this wrapper saves its method's run state
      (``method.get_state()``: a chosen topology, measured statistics), once
      for its cohort; ``prune`` sets it on the cohort's first wrapper.
    follower: wrap a BatchNormalization whose gamma and beta follow the
      channel masks of the layers before it (set by channel-group pruning;
      no gates, never scored).
  """


  def __new__(cls, layer=None, *args, **kwargs):
    if cls is PruningWrapper and isinstance(layer, generations.KERAS3.keras.layers.Layer):
      return Keras3PruningWrapper(layer, *args, **kwargs)
    return super().__new__(cls, layer, *args, **kwargs)


class Keras3PruningWrapper(WrapperCore, generations.KERAS3.keras.layers.Wrapper):
  """:class:`PruningWrapper` for a Keras 3 layer (saved as
  ``tfprune>PruningWrapper``, like the tf_keras one)."""


generations.KERAS3.register(Keras3PruningWrapper, 'PruningWrapper')


# ids of the wrappers whose mask writes leave the weights to a Zeroing (a
# context variable: setting an attribute on ~150 Keras layers per update
# costs more than the update's numpy work).
_DEFERRED: contextvars.ContextVar = contextvars.ContextVar(
    'tfprune_deferred_zeroing', default=frozenset())


@contextlib.contextmanager
def deferred_zeroing(wrappers) -> Iterator[None]:
  """Inside the block, ``assign_mask`` of ``wrappers`` writes masks only
  and marks them in ``pending_zeroing``; the caller zeroes the weights
  (``tfprune.zeroing.Zeroing``) before the next training step."""
  token = _DEFERRED.set(_DEFERRED.get() | {id(w) for w in wrappers})
  try:
    yield
  finally:
    _DEFERRED.reset(token)


def cohorts(wrappers) -> List[List[WrapperCore]]:
  """Wrappers whose masks one method updates together, in model order.

  One ``prune()`` call makes one cohort. Wrappers made by hand may share a
  cohort name (the default one) but carry different methods or schedules;
  those are updated apart, each by its own method. A loaded model gives
  every wrapper its own copy of the method: here the wrappers of a cohort
  are made to share one again, the one restored with the run state.
  """
  grouped: Dict[tuple, List[PruningWrapper]] = {}
  for wrapper in wrappers:
    key = (wrapper.cohort,
           json.dumps(registry.serialize(wrapper.method), sort_keys=True,
                      default=repr),
           json.dumps(schedules.serialize(wrapper.schedule), sort_keys=True,
                      default=repr))
    grouped.setdefault(key, []).append(wrapper)
  for members in grouped.values():
    holder = next((w for w in members if w.holds_state), members[0])
    for wrapper in members:
      wrapper.method = holder.method
  return list(grouped.values())


def collect_wrappers(model, followers: bool = False) -> List[WrapperCore]:
  """Every PruningWrapper in a model, nested models included, in order.

  BatchNormalization followers (masked by channel-group pruning, never
  scored by a method) are left out unless ``followers`` is True.
  """
  found = []
  for layer in model.layers:
    if isinstance(layer, WrapperCore):
      if followers or not layer.follower:
        found.append(layer)
    elif isinstance(layer, generations.MODEL):
      found += collect_wrappers(layer, followers)
  return found
