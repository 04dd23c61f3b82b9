"""The channel dependency graph: which tensor channels must go together.

Removing one output channel of a Conv2D changes the shape of every tensor
that carries that channel onward: the BatchNormalization after it, the
activation, pooling and padding, the other branch of a residual ``Add``, the
slice of a ``Concatenate``, the flat indices of a ``Flatten``, and the
matching input rows of the next Conv2D or Dense. The graph makes one *slot*
per channel of every tensor of a (flat) functional or Sequential model and
joins slots that are the same channel seen at different places. The
connected sets of slots are *groups*; a group is removed whole or not at all.

Layers play one of these roles (:data:`KINDS`):

* ``input``: a model input; its channels are never removed.
* ``conv``: Conv1D, Conv2D, Dense, SeparableConv2D. Reads every input channel through
  its weights (a *sink*: input and output channels are not joined) and makes
  new output channels (a *producer*).
* ``depthwise``: DepthwiseConv2D joins input channel ``c`` with its outputs
  ``c*M .. c*M+M-1`` (depth multiplier ``M``), and is a producer too.
* ``channelwise``: output channel ``c`` depends only on input channel ``c``
  (BatchNormalization, elementwise activations, dropout, pooling, padding,
  cropping, upsampling, global pooling, Rescaling/Normalization, a Reshape
  that keeps the channel axis last and whole, e.g. the squeeze-excite
  ``Reshape((1, 1, C))``, a Permute of the other axes (``Permute((2, 1,
  3))``: the channel axis stays last), and TF op layers such as ``x + 3`` or
  ``x * (1 / 6)`` with a scalar constant: the hard-swish pattern).
* ``merge``: Add, Subtract, Multiply, Average, Maximum, Minimum (and an
  elementwise TF op of two tensors); channel ``c`` of every input and of the
  output are one channel; an input of one channel broadcast over ``C``
  pins its group.
* ``concat``: Concatenate on the channel axis; input ``k``'s channel ``c`` is
  output channel ``offset_k + c`` (on another axis it acts like a merge).
* ``flatten``: Flatten, or a Reshape to one axis, of channels-last data:
  flat index ``j`` belongs to channel ``j % C``.
* ``opaque``: anything else (Lambda, custom layers, shared layers, a Permute
  that moves the channel axis: its channels become positions, which a later
  layer reads as one tensor axis, not as channels). Its
  input and output channels are *pinned*, and one warning names every such
  layer.

A ``PruningWrapper`` (any layer with ``graph_transparent = True`` and a
``layer`` attribute) takes the role of the layer it wraps, so the same graph
serves a model being pruned and its stripped copy.

Pinned slots (model inputs and outputs, opaque layers, outputs of a producer
whose activation mixes channels such as softmax) make their whole group
unremovable. Which groups are actually dead is decided from the weights by
``tfprune.surgery``; this module only knows the topology.
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from tfprune import generations

TensorKey = Tuple[str, int, int]   # (producing layer, node index, tensor index)

INPUT = 'input'
CONV = 'conv'
DEPTHWISE = 'depthwise'
CHANNELWISE = 'channelwise'
MERGE = 'merge'
CONCAT = 'concat'
FLATTEN = 'flatten'
OPAQUE = 'opaque'
KINDS = (INPUT, CONV, DEPTHWISE, CHANNELWISE, MERGE, CONCAT, FLATTEN, OPAQUE)

L = generations.layers   # each attribute: the class of both generations


def _types(*classes) -> frozenset:
  return frozenset(c for group in classes for c in group)

_CHANNELWISE_TYPES = _types(*[
    L.BatchNormalization, L.ReLU, L.Activation, L.LeakyReLU, L.ELU,
    L.ThresholdedReLU, L.PReLU, L.Dropout, L.SpatialDropout1D,
    L.SpatialDropout2D, L.SpatialDropout3D, L.GaussianNoise,
    L.GaussianDropout, L.AlphaDropout, L.ActivityRegularization, L.Identity,
    L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.AveragePooling1D,
    L.AveragePooling2D, L.AveragePooling3D, L.GlobalMaxPooling1D,
    L.GlobalMaxPooling2D, L.GlobalMaxPooling3D, L.GlobalAveragePooling1D,
    L.GlobalAveragePooling2D, L.GlobalAveragePooling3D, L.ZeroPadding1D,
    L.ZeroPadding2D, L.ZeroPadding3D, L.Cropping1D, L.Cropping2D,
    L.Cropping3D, L.UpSampling1D, L.UpSampling2D, L.UpSampling3D,
])
_MERGE_TYPES = _types(*[L.Add, L.Subtract, L.Multiply, L.Average,
                          L.Maximum, L.Minimum])
_CONV_TYPES = _types(*[L.Conv1D, L.Conv2D, L.Dense, L.SeparableConv2D])
_SCALING_TYPES = _types(*[L.Rescaling, L.Normalization])

# TF op layers (``x + 3``, ``tf.nn.relu6(x)``) that act on every element alone.
ELEMENTWISE_OPS = frozenset([
    '__operators__.add', 'math.add', 'math.subtract', 'math.multiply',
    'math.truediv', 'math.divide', 'math.negative', 'math.abs',
    'math.maximum', 'math.minimum', 'math.sigmoid', 'math.tanh', 'nn.relu',
    'nn.relu6', 'nn.silu', 'nn.swish', 'nn.elu', 'nn.selu', 'nn.gelu',
    'nn.leaky_relu', 'math.square', 'math.sqrt', 'math.exp',
    'clip_by_value',
    # Keras 3 operations (``keras.ops``, and ``x + y`` on symbolic tensors)
    'ops.Add', 'ops.Subtract', 'ops.Multiply', 'ops.Divide', 'ops.TrueDivide',
    'ops.Negative', 'ops.Absolute', 'ops.Maximum', 'ops.Minimum',
    'ops.Square', 'ops.Sqrt', 'ops.Exp', 'ops.Clip', 'ops.Sigmoid',
    'ops.Tanh', 'ops.Relu', 'ops.Relu6', 'ops.Silu', 'ops.Elu', 'ops.Selu',
    'ops.Gelu', 'ops.LeakyRelu', 'ops.HardSigmoid', 'ops.HardSilu'])

# Activations that act on every element alone (so channel c stays channel c).
ELEMENTWISE_ACTIVATIONS = frozenset([
    'linear', 'relu', 'relu6', 'leaky_relu', 'sigmoid', 'hard_sigmoid',
    'tanh', 'elu', 'selu', 'softplus', 'softsign', 'swish', 'silu', 'gelu',
    'exponential', 'mish', 'hard_silu', 'hard_swish'])


class ShrinkWarning(UserWarning):
  """A layer stops channel removal (the model stays correct, only bigger)."""


@dataclasses.dataclass
class TensorInfo:
  """One symbolic tensor: its static shape (no batch) and its slot range."""

  key: TensorKey
  shape: Tuple[Optional[int], ...]
  first_slot: int
  channels: int           # 0 when the channel count is not static

  @property
  def slots(self) -> np.ndarray:
    return np.arange(self.first_slot, self.first_slot + self.channels)


@dataclasses.dataclass
class Node:
  """One call of a layer in the model, with the role the graph gave it.

  ``links`` join channels: ``(k, in_channels, out_channels)`` says that
  channel ``in_channels[i]`` of input ``k`` is channel ``out_channels[i]`` of
  the output.
  """

  layer: object              # a Keras layer (Keras 3: or an operation)
  kind: str
  inputs: List[TensorKey]
  outputs: List[TensorKey]
  links: List[Tuple[int, np.ndarray, np.ndarray]] = dataclasses.field(
      default_factory=list)
  reason: str = ''              # why the node is opaque / its outputs pinned
  pin_outputs: bool = False     # producer whose activation mixes channels
  call_args: tuple = ()         # how the model called the layer (KerasTensors
  call_kwargs: dict = dataclasses.field(default_factory=dict)  # inside)

  @property
  def name(self) -> str:
    return self.layer.name

  @property
  def role_layer(self):
    """The layer whose role this node plays (the wrapped one for wrappers)."""
    return unwrapped(self.layer)

  def apply(self, values: Sequence) -> object:
    """Call the layer as the model does, with ``values`` in place of its
    input tensors (in order); other call arguments (an op layer's constant)
    stay."""
    values = list(values)
    keys = list(self.call_kwargs)
    args, kw_values = tf.nest.map_structure(
        lambda t: values.pop(0) if _is_symbolic(t) else t,
        (list(self.call_args), [self.call_kwargs[k] for k in keys]))
    kwargs = dict(zip(keys, kw_values))
    if 'training' in inspect.signature(self.layer.call).parameters:
      kwargs['training'] = False
    return self.layer(*args, **kwargs)


@dataclasses.dataclass
class ChannelGraph:
  """Nodes in topological order, tensors, and the slot -> group map."""

  model: object               # a Keras model
  nodes: List[Node]
  tensors: Dict[TensorKey, TensorInfo]
  group: np.ndarray       # group id of every slot
  pinned: np.ndarray      # per group: must keep every channel

  @property
  def n_groups(self) -> int:
    return int(self.pinned.size)

  def groups(self, key: TensorKey) -> np.ndarray:
    """The group id of every channel of a tensor."""
    return self.group[self.tensors[key].slots]

  def channels(self, key: TensorKey) -> int:
    return self.tensors[key].channels

  @property
  def opaque(self) -> List[Node]:
    return [n for n in self.nodes if n.kind == OPAQUE]

  def opaque_touching(self, groups: np.ndarray) -> List[Node]:
    """The opaque nodes that read or make a channel of ``groups``."""
    wanted = np.zeros(self.n_groups, bool)
    wanted[groups] = True
    return [n for n in self.opaque if any(
        wanted[self.groups(k)].any() for k in n.inputs + n.outputs)]

  def consumers(self, key: TensorKey) -> List[Tuple[Node, int]]:
    """Every (node, input position) that reads a tensor."""
    return [(n, i) for n in self.nodes for i, k in enumerate(n.inputs)
            if k == key]

  def producer(self, key: TensorKey) -> Node:
    """The node that makes a tensor."""
    return next(n for n in self.nodes if key in n.outputs)


def layer_consumers(layer) -> List:
  """The layers that read ``layer``'s output, in node order (Keras layer
  graph; every model the layer was called in counts)."""
  return [generations.node_layer(node)
          for node in layer._outbound_nodes]  # pylint: disable=protected-access


def single_consumer(layer):
  """The one layer that reads ``layer``'s output, or None (none, or
  several)."""
  consumers = {id(c): c for c in layer_consumers(layer)}
  return next(iter(consumers.values())) if len(consumers) == 1 else None


def consumer_chain(layer, through: Callable) -> Tuple[List, Optional[object]]:
  """Follow single consumers from ``layer`` while ``through(consumer)``
  holds: ``(the layers passed, the first single consumer not passed)``;
  the second is None where the chain forks or ends."""
  chain, current = [], layer
  while True:
    nxt = single_consumer(current)
    if nxt is None or not through(nxt):
      return chain, nxt
    chain.append(nxt)
    current = nxt


def call_count(layer) -> int:
  """How many times ``layer`` was called (more than once: shared)."""
  return len(layer._inbound_nodes)  # pylint: disable=protected-access


def unwrapped(layer):
  """``layer.layer`` for a graph-transparent wrapper, else ``layer``."""
  if getattr(layer, 'graph_transparent', False):
    return layer.layer
  return layer


def _is_symbolic(value) -> bool:
  return hasattr(value, '_keras_history')


def tensor_key(tensor) -> TensorKey:
  layer, node_index, tensor_index = tensor._keras_history  # pylint: disable=protected-access
  return (layer.name, int(node_index), int(tensor_index))


activation_name = generations.activation_name


def _is_elementwise(fn) -> bool:
  return activation_name(fn) in ELEMENTWISE_ACTIVATIONS


def _channels_last(layer) -> bool:
  return getattr(layer, 'data_format', 'channels_last') in (None,
                                                             'channels_last')


def _arange(n: int) -> np.ndarray:
  return np.arange(n, dtype=np.int64)


def _scalar(value) -> bool:
  """A Python or numpy number, or a constant with one element."""
  if _is_symbolic(value):
    return False
  try:
    return np.size(np.asarray(value)) == 1 and np.asarray(value).dtype != object
  except (TypeError, ValueError):
    return False


def _classify_op(layer, ins, out, call_args, call_kwargs):
  """Role of a TF op layer (``x + 3``, ``x * y``): channelwise, merge or
  opaque."""
  symbol = generations.op_symbol(layer)
  if symbol not in ELEMENTWISE_OPS:
    return OPAQUE, [], f'TF op {symbol!r} is not known to be elementwise', \
        False
  constants = [v for v in tf.nest.flatten((list(call_args),
                                            list(call_kwargs.values())))
               if not _is_symbolic(v) and v is not None and
               not isinstance(v, (str, bool))]
  if not all(_scalar(v) for v in constants):
    return OPAQUE, [], f'TF op {symbol!r} has a non-scalar constant', False
  c = out.channels
  if any(t.channels != c or t.shape != out.shape for t in ins):
    return OPAQUE, [], f'TF op {symbol!r} broadcasts', False
  if len(ins) == 1:
    return CHANNELWISE, [(0, _arange(c), _arange(c))], '', False
  return MERGE, [(k, _arange(c), _arange(c)) for k in range(len(ins))], '', \
      False


def _classify_scaling(layer, ins, out):
  """Rescaling (scalar scale/offset) and Normalization on the last axis."""
  if isinstance(layer, L.Rescaling):
    if not (_scalar(layer.scale) and _scalar(layer.offset)):
      return OPAQUE, [], 'Rescaling with per-channel constants', False
  else:
    if layer.get_config().get('mean') is not None:
      return OPAQUE, [], 'Normalization with constant mean/variance', False
    rank = len(ins[0].shape) + 1
    axis = [a % rank for a in (layer.axis or ())]
    if axis != [rank - 1]:
      return OPAQUE, [], f'normalises axis {layer.axis}', False
  c = out.channels
  if ins[0].channels != c:
    return OPAQUE, [], 'input and output channels differ', False
  return CHANNELWISE, [(0, _arange(c), _arange(c))], '', False


def _keeps_channel_axis(src: TensorInfo, out: TensorInfo) -> bool:
  """A reshape that moves whole channel vectors: ``(..., C) -> (..., C)``
  with the same number of positions (e.g. ``(C,) -> (1, 1, C)``)."""
  dims = list(src.shape) + list(out.shape)
  if any(d is None for d in dims) or not src.shape or not out.shape:
    return False
  return (src.shape[-1] == out.shape[-1] and
          int(np.prod(src.shape[:-1])) == int(np.prod(out.shape[:-1])))


def _classify(layer, ins: Sequence[TensorInfo], outs: Sequence[TensorInfo],
              call_args=(), call_kwargs=None) -> Tuple[str, list, str, bool]:
  """(kind, links, reason, pin_outputs) for one call of ``layer``."""
  layer = unwrapped(layer)
  kind_type = type(layer)
  if len(outs) != 1:
    return OPAQUE, [], f'it has {len(outs)} outputs', False
  if any(t.channels == 0 for t in list(ins) + list(outs)):
    return OPAQUE, [], 'a channel count is not static', False
  out = outs[0]
  if not _channels_last(layer):
    return OPAQUE, [], 'data_format is not channels_last', False

  if kind_type in _CONV_TYPES:
    if len(ins) != 1:
      return OPAQUE, [], f'it has {len(ins)} inputs', False
    if getattr(layer, 'groups', 1) != 1:
      return OPAQUE, [], f'grouped convolution (groups={layer.groups})', False
    pin = not _is_elementwise(layer.activation)
    reason = (f'activation {activation_name(layer.activation)!r} mixes '
              'channels' if pin else '')
    return CONV, [], reason, pin

  if kind_type in L.DepthwiseConv2D:
    if len(ins) != 1:
      return OPAQUE, [], f'it has {len(ins)} inputs', False
    if not _is_elementwise(layer.activation):
      return OPAQUE, [], (f'activation {activation_name(layer.activation)!r}'
                          ' mixes channels'), False
    c, m = ins[0].channels, int(layer.depth_multiplier)
    if out.channels != c * m:
      return OPAQUE, [], 'unexpected output channel count', False
    return DEPTHWISE, [(0, np.repeat(_arange(c), m), _arange(c * m))], '', \
        False

  if kind_type in _CHANNELWISE_TYPES:
    if len(ins) != 1 or ins[0].channels != out.channels:
      return OPAQUE, [], 'input and output channels differ', False
    if kind_type in L.Activation and not _is_elementwise(layer.activation):
      return OPAQUE, [], (f'activation {activation_name(layer.activation)!r}'
                          ' mixes channels'), False
    if kind_type in L.BatchNormalization:
      rank = len(ins[0].shape) + 1
      axis = [a % rank for a in np.atleast_1d(layer.axis).tolist()]
      if axis != [rank - 1]:
        return OPAQUE, [], f'normalises axis {layer.axis}', False
    c = out.channels
    return CHANNELWISE, [(0, _arange(c), _arange(c))], '', False

  if kind_type in _SCALING_TYPES:
    if len(ins) != 1:
      return OPAQUE, [], f'it has {len(ins)} inputs', False
    return _classify_scaling(layer, ins, out)

  if generations.is_op(layer):
    return _classify_op(layer, ins, out, call_args, call_kwargs or {})

  if kind_type in _MERGE_TYPES or kind_type in L.Concatenate:
    if len(ins) < 2:
      return OPAQUE, [], 'a merge of fewer than two inputs', False
    rank = len(out.shape) + 1
    channel_axis = (kind_type in L.Concatenate and
                    int(layer.axis) % rank == rank - 1)
    if channel_axis:
      links, offset = [], 0
      for k, t in enumerate(ins):
        links.append((k, _arange(t.channels), offset + _arange(t.channels)))
        offset += t.channels
      if offset != out.channels:
        return OPAQUE, [], 'unexpected output channel count', False
      return CONCAT, links, '', False
    if any(t.channels != out.channels for t in ins):
      return OPAQUE, [], 'it broadcasts over channels', False
    c = out.channels
    return MERGE, [(k, _arange(c), _arange(c)) for k in range(len(ins))], \
        '', False

  if kind_type in L.Permute:
    if len(ins) != 1 or tuple(layer.dims)[-1] != len(layer.dims):
      return OPAQUE, [], 'a Permute that moves the channel axis', False
    c = out.channels
    return CHANNELWISE, [(0, _arange(c), _arange(c))], '', False

  if kind_type in L.Flatten + L.Reshape:
    if len(ins) != 1:
      return OPAQUE, [], f'it has {len(ins)} inputs', False
    src = ins[0]
    if kind_type in L.Reshape and _keeps_channel_axis(src, out):
      c = out.channels
      return CHANNELWISE, [(0, _arange(c), _arange(c))], '', False
    size = (int(np.prod(src.shape)) if all(d is not None for d in src.shape)
            else None)
    if kind_type in L.Reshape and not (
        len(layer.target_shape) == 1 and len(out.shape) == 1):
      return OPAQUE, [], ('a Reshape that neither flattens nor keeps the '
                          'channel axis'), False
    if size is None or len(out.shape) != 1 or out.channels != size:
      return OPAQUE, [], 'the flattened size is not static', False
    flat = _arange(size)
    return FLATTEN, [(0, flat % src.channels, flat)], '', False

  return OPAQUE, [], f'tfprune.graph does not know {kind_type.__name__}', \
      False


class _UnionFind:

  def __init__(self, n: int):
    self.parent = list(range(n))

  def find(self, a: int) -> int:
    parent = self.parent
    while parent[a] != a:
      parent[a] = parent[parent[a]]
      a = parent[a]
    return a

  def union(self, a_items, b_items) -> None:
    for a, b in zip(a_items, b_items):
      ra, rb = self.find(a), self.find(b)
      if ra != rb:
        self.parent[max(ra, rb)] = min(ra, rb)


def check_flat(model) -> None:
  """Raise a TypeError unless ``model`` is a flat Sequential/functional model."""
  if not isinstance(model, generations.MODEL):
    raise TypeError(f'expected a Keras Model, got {type(model).__name__}: a '
                    'tf_keras or a Keras 3 model.')
  for layer in model.layers:
    if isinstance(layer, generations.MODEL):
      raise TypeError(
          f'model {model.name!r} nests the model {layer.name!r}; shrink works'
          ' on flat models: rebuild it as one functional model first.')
  if not generations.is_graph_network(model):
    what = ('an unbuilt Sequential' if isinstance(model, generations.SEQUENTIAL)
            else 'a subclassed Model')
    raise TypeError(f'model {model.name!r} is {what}; shrink needs a '
                    'Sequential or functional model with a known input shape '
                    '(start it with keras.Input(shape)).')


def build(model, warn: bool = True) -> ChannelGraph:
  """The channel graph of a flat Sequential or functional model.

  Warns (:class:`ShrinkWarning`) once per layer the graph does not
  understand, naming it: channels are not removed through that layer.
  """
  check_flat(model)
  keras_nodes = generations.graph_nodes(model)
  calls: Dict[str, int] = {}
  for kn in keras_nodes:
    name = generations.node_layer(kn).name
    calls[name] = calls.get(name, 0) + 1

  tensors: Dict[TensorKey, TensorInfo] = {}
  next_slot = 0

  def info(tensor) -> TensorInfo:
    nonlocal next_slot
    key = tensor_key(tensor)
    if key not in tensors:
      shape = generations.tensor_shape(tensor)[1:]
      channels = shape[-1] if shape and shape[-1] is not None else 0
      tensors[key] = TensorInfo(key, shape, next_slot, int(channels))
      next_slot += int(channels)
    return tensors[key]

  nodes: List[Node] = []
  for kn in keras_nodes:
    layer = generations.node_layer(kn)
    outs = [info(t) for t in _flatten(kn.outputs)]
    if kn.is_input:
      nodes.append(Node(layer, INPUT, [], [t.key for t in outs]))
      continue
    ins = [info(t) for t in generations.node_inputs(kn)]
    call_args, call_kwargs = generations.node_arguments(kn)
    if calls[layer.name] > 1:
      kind, links, reason, pin = (OPAQUE, [], f'it is called '
                                  f'{calls[layer.name]} times (shared layer)',
                                  False)
    else:
      kind, links, reason, pin = _classify(layer, ins, outs, call_args,
                                           call_kwargs)
    nodes.append(Node(layer, kind, [t.key for t in ins],
                      [t.key for t in outs], links, reason, pin, call_args,
                      call_kwargs))

  uf = _UnionFind(next_slot)
  pinned_slots = np.zeros(next_slot, bool)
  opaque_slots = np.zeros(next_slot, bool)
  for node in nodes:
    if node.kind in (INPUT, OPAQUE):
      for key in node.inputs + node.outputs:
        (pinned_slots if node.kind == INPUT else opaque_slots)[
            tensors[key].slots] = True
    if node.pin_outputs:
      for key in node.outputs:
        pinned_slots[tensors[key].slots] = True
    out_first = tensors[node.outputs[0]].first_slot if node.outputs else 0
    for k, in_channels, out_channels in node.links:
      in_first = tensors[node.inputs[k]].first_slot
      uf.union((in_first + in_channels).tolist(),
               (out_first + out_channels).tolist())
  for tensor in _flatten(model.outputs):
    pinned_slots[tensors[tensor_key(tensor)].slots] = True

  roots = np.array([uf.find(s) for s in range(next_slot)], dtype=np.int64)
  _, group = np.unique(roots, return_inverse=True)
  group = group.reshape(-1).astype(np.int64)
  pinned = np.zeros(int(group.max()) + 1 if group.size else 0, bool)
  np.logical_or.at(pinned, group, pinned_slots)
  pinned_anyway = pinned.copy()     # without the opaque layers
  np.logical_or.at(pinned, group, opaque_slots)

  graph = ChannelGraph(model, nodes, tensors, group, pinned)
  # Warn about the opaque layers that cost channels: not a final softmax
  # (an opaque layer whose outputs are model outputs only pins the logits).
  model_outputs = {tensor_key(t) for t in _flatten(model.outputs)}
  costly = [n for n in graph.opaque
            if not all(k in model_outputs for k in n.outputs) and
            not all(pinned_anyway[graph.groups(k)].all()
                    for k in n.inputs + n.outputs)]
  if warn and costly:
    warnings.warn(opaque_summary(graph, costly), ShrinkWarning, stacklevel=3)
  return graph


def opaque_summary(graph: ChannelGraph,
                   nodes: Optional[Sequence[Node]] = None) -> str:
  """One message naming every layer that pins its channels, by reason."""
  nodes = graph.opaque if nodes is None else list(nodes)
  by_reason: Dict[str, List[str]] = {}
  for node in nodes:
    what = f'{type(node.role_layer).__name__}: {node.reason}'
    by_reason.setdefault(what, []).append(node.name)
  parts = []
  for what, names in by_reason.items():
    shown = ', '.join(repr(n) for n in names[:4])
    more = f' and {len(names) - 4} more' if len(names) > 4 else ''
    parts.append(f'{shown}{more} ({what})')
  return (f'{len(nodes)} layer(s) of model {graph.model.name!r} are not '
          'understood by the channel graph, so their inputs and outputs keep '
          'every channel: ' + '; '.join(parts) + '.')


def _flatten(tensors) -> list:
  if isinstance(tensors, (list, tuple)):
    return [t for item in tensors for t in _flatten(item)]
  if isinstance(tensors, dict):
    return [t for item in tensors.values() for t in _flatten(item)]
  return [tensors]
