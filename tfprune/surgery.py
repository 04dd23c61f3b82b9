"""shrink(): turn dead channels into a smaller dense model with equal outputs.

TFLite runs zeros inside conv weights at dense speed, so structured pruning
only pays on a phone once dead channels are physically gone. ``shrink`` finds
them on the channel graph (:mod:`tfprune.graph`), decides per group of
coupled channels whether removing it leaves the outputs unchanged, and
rebuilds the model with every layer cut to the kept channels.

When is a group removed? Every slot of the group must be safe at every
*sink* that reads it (a Conv1D, Conv2D, Dense or SeparableConv2D input):

* the sink's weights for that input channel are all zero (kernel-level
  pruning killed it), or
* the channel is a known *constant* ``v`` for every input. A producer output
  whose weights are all zero is the constant ``activation(bias)``; the
  constant is carried through the layers between producer and sink by
  evaluating each of them on constant maps (BatchNormalization turns 0 into
  ``beta - mean*gamma/sqrt(var+eps)``; pooling keeps a constant; ZeroPadding
  or a 'same' DepthwiseConv2D with real padding do not, since their borders
  differ, so the channel stops being constant there). ``v == 0`` needs
  nothing; ``v != 0`` is folded into the sink's bias (Dense:
  ``bias += v * kernel[i]`` over every flat row the channel owns; Conv2D:
  ``bias += v * kernel[:, :, i, :].sum((0, 1))``), which is exact only when
  the sink adds no padding: a 'valid' conv, or a 'same' one whose padding is
  zero for this input size (always so for 1x1). A non-zero constant read by
  a padding conv keeps its group. A sink without bias gets one
  (``use_bias=True``) when a non-zero constant is folded into it.

Groups holding a model input or output channel, or touching a layer the graph
does not understand (a warning names it), are never removed. ``round_to``
and ``min_channels`` then give removed groups back, best-scoring first (the
L1 norm of their weights), until each producer keeps a multiple of
``round_to`` (or all) channels and at least ``min_channels``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import tensorflow as tf

from tfprune import generations
from tfprune import graph as graph_lib
from tfprune import progress, transform
from tfprune.wrapper import collect_wrappers

L = generations.layers   # each attribute: the class of both generations
_PRODUCER_KINDS = (graph_lib.CONV, graph_lib.DEPTHWISE)
_CONSTANT_RTOL = 1e-6
_PROBE_SIZE = 8   # stand-in for spatial dimensions that are not static


@dataclasses.dataclass(frozen=True, eq=False)
class LayerPlan:
  """Output channels of one producer layer that stay and that go.

  ``kept_inputs`` are the kept indices along the layer's kernel input axis
  (Dense rows, Conv2D/DepthwiseConv2D input channels), so a checker can cut
  the original weight to the shrunk one.
  """

  kept: np.ndarray
  removed: np.ndarray
  kept_inputs: np.ndarray

  @property
  def channels(self) -> int:
    return int(self.kept.size + self.removed.size)


@dataclasses.dataclass(eq=False)
class Plan:
  """What ``shrink`` removes, for inspection (and for checking a .tflite).

  ``layers`` maps every Conv2D, Dense, DepthwiseConv2D and SeparableConv2D
  the graph understands to its kept/removed output channels (for a depthwise
  layer: the ``C*M`` output channels). ``bias_folds`` maps a layer to what
  was added to its bias for removed constant inputs; ``blocked`` names the
  layers the graph does not understand. ``tensors`` are the kept channel
  indices of every tensor (internal, used to cut the layers).
  """

  layers: Dict[str, LayerPlan]
  bias_folds: Dict[str, np.ndarray]
  blocked: Tuple[str, ...]
  tensors: Dict[graph_lib.TensorKey, np.ndarray]

  def as_dict(self) -> Dict[str, Dict[str, List[int]]]:
    """``{layer: {'kept', 'removed', 'kept_inputs'}}``, JSON-serialisable."""
    return {name: {'kept': p.kept.tolist(), 'removed': p.removed.tolist(),
                   'kept_inputs': p.kept_inputs.tolist()}
            for name, p in self.layers.items()}

  def kept_counts(self) -> Dict[str, int]:
    return {name: int(p.kept.size) for name, p in self.layers.items()}

  def removed_counts(self) -> Dict[str, int]:
    return {name: int(p.removed.size) for name, p in self.layers.items()}

  def __str__(self):
    lines = [f'{name}: keep {p.kept.size}/{p.channels}'
             for name, p in self.layers.items() if p.removed.size]
    if self.blocked:
      lines.append(f'blocked by: {", ".join(self.blocked)}')
    return '\n'.join(lines) or 'nothing to remove'


# --- weights of the layers that read and make channels ----------------------


@dataclasses.dataclass
class _ConvFacts:
  """What a Conv2D/Dense/SeparableConv2D does with each channel."""

  silent_in: np.ndarray    # [I] input channel reaches no output
  effect: np.ndarray       # [I, O] bias change per unit of a constant input
  pads: bool               # adds zero borders (constants are then not exact)
  zero_out: np.ndarray     # [O] output unit has all-zero weights
  score_in: np.ndarray     # [I]
  score_out: np.ndarray    # [O]
  bias: Optional[np.ndarray] = None   # [O] (zeros when the layer has none)


def _pads(layer, spatial) -> bool:
  """True when a conv's 'same' padding really adds a border here."""
  if isinstance(layer, L.Dense) or layer.padding == 'valid':
    return False
  for n, k, s, d in zip(spatial, layer.kernel_size, layer.strides,
                        layer.dilation_rate):
    span = (k - 1) * d + 1
    if span == 1:
      continue
    if n is None:
      return True
    if max((math.ceil(n / s) - 1) * s + span - n, 0) > 0:
      return True
  return False


def _conv_facts(layer, in_shape) -> _ConvFacts:
  if isinstance(layer, L.SeparableConv2D):
    dw = np.asarray(layer.depthwise_kernel, np.float64)      # [h, w, I, M]
    n_in, mult = dw.shape[2], dw.shape[3]
    pw = np.asarray(layer.pointwise_kernel, np.float64)[0, 0]
    pw = pw.reshape(n_in, mult, -1)                          # [I, M, O]
    dw_live = dw.any(axis=(0, 1))                            # [I, M]
    path = dw_live[:, :, None] & (pw != 0)                   # [I, M, O]
    facts = _ConvFacts(
        silent_in=~path.any(axis=(1, 2)),
        effect=np.einsum('im,imo->io', dw.sum(axis=(0, 1)), pw),
        pads=_pads(layer, in_shape[:-1]),
        zero_out=~path.any(axis=(0, 1)),
        score_in=np.abs(dw).sum(axis=(0, 1, 3)) + np.abs(pw).sum(axis=(1, 2)),
        score_out=np.abs(pw).sum(axis=(0, 1)))
  else:
    kernel = np.asarray(layer.kernel, np.float64)  # [h, w, I, O] or [I, O]
    window = tuple(range(kernel.ndim - 2))
    effect = kernel.sum(axis=window)
    absolute = np.abs(kernel).sum(axis=window)
    nonzero = (kernel != 0).any(axis=window)
    facts = _ConvFacts(
        silent_in=~nonzero.any(axis=1), effect=effect,
        pads=_pads(layer, in_shape[:-1]), zero_out=~nonzero.any(axis=0),
        score_in=absolute.sum(axis=1), score_out=absolute.sum(axis=0))
  if layer.use_bias:
    facts.bias = np.asarray(layer.bias, np.float64)
    facts.score_out = facts.score_out + np.abs(facts.bias)
  else:
    facts.bias = np.zeros(facts.zero_out.size)
  return facts


# --- which channels are constants ------------------------------------------


def _spatially_constant(output, channels: int):
  """Per channel: (is constant over all positions, its value)."""
  y = np.asarray(output, np.float64).reshape(-1, channels)
  spread = y.max(axis=0) - y.min(axis=0)
  return spread <= _CONSTANT_RTOL * np.abs(y).max(axis=0), y.mean(axis=0)


def _probe(node, g, values):
  """Run one layer on constant maps (NaN inputs as 0); None if it fails."""
  arrays = []
  for key, value in zip(node.inputs, values):
    shape = [1] + [_PROBE_SIZE if d is None else d
                   for d in g.tensors[key].shape]
    filled = np.nan_to_num(value, nan=0.0).astype(np.float32)
    arrays.append(tf.constant(np.broadcast_to(filled, shape)))
  try:
    return node.apply(arrays)
  except Exception:  # pylint: disable=broad-except
    return None      # unknown -> not constant, which is always safe


def _constants(g, facts: Dict[str, _ConvFacts]) -> Dict:
  """Per tensor: the constant value of every channel, NaN where it varies."""
  const = {}
  for node in progress.track(g.nodes, 'shrink: finding constant channels'):
    out_channels = [g.channels(k) for k in node.outputs]
    result = [np.full(c, np.nan) for c in out_channels]
    if node.kind == graph_lib.CONV and not node.pin_outputs:
      f = facts[node.name]
      act = node.layer.activation(tf.constant(f.bias[None], tf.float32))
      value = np.asarray(act, np.float64)[0]
      result[0][f.zero_out] = value[f.zero_out]
    elif node.kind in (graph_lib.DEPTHWISE, graph_lib.CHANNELWISE,
                       graph_lib.MERGE, graph_lib.CONCAT, graph_lib.FLATTEN):
      values = [const[k] for k in node.inputs]
      candidate = np.ones(out_channels[0], bool)
      fed = np.zeros(out_channels[0], bool)
      for k, in_ch, out_ch in node.links:
        np.logical_and.at(candidate, out_ch, np.isfinite(values[k][in_ch]))
        fed[out_ch] = True
      candidate &= fed
      if node.kind == graph_lib.DEPTHWISE:
        kernel = np.asarray(getattr(
            node.layer, generations.depthwise_attr(node.layer)))
        candidate |= ~kernel.any(axis=(0, 1)).reshape(-1)
      if candidate.any():
        output = _probe(node, g, values)
        if output is not None:
          flat, value = _spatially_constant(output, out_channels[0])
          ok = candidate & flat
          result[0][ok] = value[ok]
    for key, value in zip(node.outputs, result):
      const[key] = value
  return const


# --- the plan ---------------------------------------------------------------


def _check_args(round_to: int, min_channels: int) -> None:
  for name, value in (('round_to', round_to), ('min_channels', min_channels)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
        or value < 1:
      raise ValueError(f'{name} must be an integer >= 1, got {value!r}')


def _prepare(model):
  """A plain model: wrappers folded with strip (the caller's is untouched)."""
  graph_lib.check_flat(model)
  return transform.strip(model) if collect_wrappers(model) else model


def _removable(g, facts, const):
  """Per group: may it go (every sink reading it is safe), and its score."""
  removable = ~g.pinned.copy()
  score = np.zeros(g.n_groups)
  for node in g.nodes:
    if node.kind == graph_lib.CONV:
      f, key = facts[node.name], node.inputs[0]
      v = const[key]
      safe = f.silent_in | (np.isfinite(v) & ((v == 0) | (not f.pads)))
      np.logical_and.at(removable, g.groups(key), safe)
      np.add.at(score, g.groups(key), f.score_in)
      np.add.at(score, g.groups(node.outputs[0]), f.score_out)
    elif node.kind == graph_lib.DEPTHWISE:
      kernel = np.abs(np.asarray(getattr(
          node.layer, generations.depthwise_attr(node.layer)), np.float64))
      np.add.at(score, g.groups(node.outputs[0]),
                kernel.sum(axis=(0, 1)).reshape(-1))
  return removable, score


def _give_back(g, removed, score, round_to: int, min_channels: int) -> None:
  """Re-keep removed groups, best score first, until every producer keeps a
  multiple of ``round_to`` (or all) and at least ``min_channels``."""
  producers = [n for n in g.nodes if n.kind in _PRODUCER_KINDS]
  changed = True
  while changed:     # every change re-keeps a group, so this ends
    changed = False
    for node in producers:
      groups = g.groups(node.outputs[0])
      while True:
        gone = removed[groups]
        total, kept = groups.size, int((~gone).sum())
        if kept == total or (kept >= min(min_channels, total) and
                             kept % round_to == 0):
          break
        back = np.flatnonzero(gone)
        best = back[np.argmax(score[groups[back]])]   # first max: lowest index
        removed[groups[best]] = False
        changed = True


def _folds(g, facts, const, removed) -> Dict[str, np.ndarray]:
  """What each sink adds to its bias for the removed constants it read."""
  folds = {}
  for node in g.nodes:
    if node.kind != graph_lib.CONV:
      continue
    f, key = facts[node.name], node.inputs[0]
    v = const[key]
    fold = removed[g.groups(key)] & np.isfinite(v) & (v != 0) & ~f.silent_in
    if fold.any():
      folds[node.name] = (v[fold, None] * f.effect[fold]).sum(axis=0)
  return folds


def _plan(model, round_to: int, min_channels: int):
  _check_args(round_to, min_channels)
  g = graph_lib.build(model)
  facts = {n.name: _conv_facts(n.layer, g.tensors[n.inputs[0]].shape)
           for n in g.nodes if n.kind == graph_lib.CONV}
  const = _constants(g, facts)
  removed, score = _removable(g, facts, const)
  _give_back(g, removed, score, round_to, min_channels)
  tensors = {key: np.flatnonzero(~removed[g.groups(key)]) for key in g.tensors}
  layers = {}
  for node in g.nodes:
    if node.kind in _PRODUCER_KINDS:
      gone = removed[g.groups(node.outputs[0])]
      layers[node.name] = LayerPlan(np.flatnonzero(~gone),
                                    np.flatnonzero(gone),
                                    tensors[node.inputs[0]])
  return g, Plan(layers, _folds(g, facts, const, removed),
                 tuple(n.name for n in g.opaque), tensors)


def plan(model, round_to: int = 1,
         min_channels: int = 1) -> Plan:
  """Which output channels of each producer layer ``shrink`` removes.

  Same arguments as :func:`shrink`; nothing is built. Useful to inspect the
  decisions, and for a TFLite checker to accept a removed channel as
  satisfying channel sparsity.
  """
  return _plan(_prepare(model), round_to, min_channels)[1]


# --- cutting layers and rebuilding ------------------------------------------


def _cut(node, g, p: Plan):
  """(new config or None, new weights) of one layer under the plan."""
  layer = node.layer
  weights = layer.get_weights()
  if node.kind not in (graph_lib.CONV, graph_lib.DEPTHWISE,
                       graph_lib.CHANNELWISE, graph_lib.FLATTEN):
    return None, weights
  in_key = node.inputs[0]
  keep_in = p.tensors[in_key]
  keep_out = p.tensors[node.outputs[0]]
  n_in = g.channels(in_key)
  config = layer.get_config()

  if node.kind == graph_lib.CONV:
    fold = p.bias_folds.get(node.name)
    bias = (np.asarray(layer.bias, np.float64) if layer.use_bias
            else np.zeros(g.channels(node.outputs[0])))
    if fold is not None:
      bias = bias + fold
    use_bias = layer.use_bias or fold is not None
    if isinstance(layer, L.SeparableConv2D):
      dw, pw = weights[0], weights[1]
      mult = dw.shape[3]
      rows = (keep_in[:, None] * mult + np.arange(mult)).reshape(-1)
      new = [dw[:, :, keep_in], pw[:, :, rows][..., keep_out]]
    elif isinstance(layer, L.Dense):
      new = [weights[0][keep_in][:, keep_out]]
      config['units'] = int(keep_out.size)
    else:                           # Conv1D/Conv2D: [..., in, out]
      new = [np.take(np.take(weights[0], keep_in, axis=-2), keep_out,
                     axis=-1)]
    if not isinstance(layer, L.Dense):
      config['filters'] = int(keep_out.size)
    if use_bias:
      new.append(bias[keep_out].astype(weights[0].dtype))
    config['use_bias'] = use_bias
    return config, new

  if node.kind == graph_lib.DEPTHWISE:
    dw = weights[0]
    new = [dw[:, :, keep_in]]
    if layer.use_bias:
      new.append(weights[1].reshape(n_in, -1)[keep_in].reshape(-1))
    return config, new

  if node.kind == graph_lib.CHANNELWISE:
    if isinstance(layer, L.Reshape):     # (..., C) -> (..., C) keeps its axis
      config['target_shape'] = tuple(layer.target_shape[:-1]) + (
          int(keep_out.size),)
    return config, [w[..., keep_in] if w.ndim and w.shape[-1] == n_in else w
                    for w in weights]

  # FLATTEN: a Reshape to one axis needs its new length.
  if isinstance(layer, L.Reshape):
    config['target_shape'] = (int(keep_out.size),)
  return config, weights


def _rebuild(model, g, p: Plan):
  cuts = {}
  for node in g.nodes:
    if node.kind != graph_lib.INPUT:
      cuts[node.name] = _cut(node, g, p)

  def clone(layer):
    config = cuts.get(layer.name, (None, None))[0]
    return layer.__class__.from_config(config if config is not None
                                       else layer.get_config())

  new_model = generations.of(model).keras.models.clone_model(
      model, clone_function=clone)
  for layer in new_model.layers:
    if layer.name in cuts:
      layer.set_weights(cuts[layer.name][1])
  for old, new in zip(model.outputs, new_model.outputs):
    if generations.tensor_shape(old) != generations.tensor_shape(new):
      raise RuntimeError(f'shrink changed an output shape from {old.shape} '
                         f'to {new.shape}; this is a bug in tfprune.surgery')
  return new_model


def shrink(model, round_to: int = 1, min_channels: int = 1,
           return_plan: bool = False) -> Union[object, Tuple[object, Plan]]:
  """A smaller dense model whose outputs equal the stripped model's.

  Args:
    model: a flat Sequential or functional model (tf_keras or Keras 3),
      plain or wrapped by ``tfprune.prune`` (it is stripped first). It is not
      modified.
    round_to: every producer layer keeps a multiple of this many channels
      (or all of them); removed channels with the largest weights come back.
    min_channels: every producer layer keeps at least this many channels.
    return_plan: also return the :class:`Plan` that was applied.

  Returns:
    A new model with the same layer names and input/output shapes (and the
    plan, when asked). Layers the channel graph does not understand are
    copied unchanged and warned about; channels around them stay.
  """
  plain = _prepare(model)
  g, p = _plan(plain, round_to, min_channels)
  with progress.elapsed(f'shrink: rebuilding {model.name!r} without the '
                        'removed channels'):
    new_model = _rebuild(plain, g, p)
  return (new_model, p) if return_plan else new_model
