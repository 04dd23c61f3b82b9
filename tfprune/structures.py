"""Structure kinds: what one prunable unit of a weight tensor is.

A structure kind turns a weight tensor into a set of units. Every kind gives
  * ``mask_shape(weight_shape, layout)`` -- one mask entry per unit,
  * ``expand(mask, weight_shape, layout)`` -- the mask at the weight's shape,
  * ``reduce(values, layout, reduction)`` -- one score per unit,
  * ``select(scores, sparsity)`` -- the mask that keeps the best units.

The axes of a weight are described by a :class:`WeightLayout`, so the same kind
works on Dense ``[in, out]``, Conv2D ``[kh, kw, in, out]``, DepthwiseConv2D
``[kh, kw, C, M]`` (output unit ``c*M + m``) and custom ``PrunableLayer`` weights.
"""

from __future__ import annotations

import abc
import dataclasses
import re
from typing import Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

Shape = Tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class WeightLayout:
  """Which axes of a weight are the 2-D window, the inputs and the outputs.

  ``outputs`` are the axes that together index one output unit (channel); for
  a depthwise kernel that is ``(C, M)``. ``in_axis``/``out_axis`` are the two
  axes of the ``[in, out]`` plane that blocks and n:m groups tile.
  """

  spatial: Shape
  in_axis: int
  outputs: Shape

  @property
  def out_axis(self) -> int:
    return self.outputs[-1]

  def channel_count(self, shape: Sequence[int]) -> int:
    return int(np.prod([shape[a] for a in self.outputs]))


DENSE_LAYOUT = WeightLayout(spatial=(), in_axis=0, outputs=(1,))
CONV2D_LAYOUT = WeightLayout(spatial=(0, 1), in_axis=2, outputs=(3,))
DEPTHWISE_LAYOUT = WeightLayout(spatial=(0, 1), in_axis=2, outputs=(2, 3))
CONV1D_LAYOUT = WeightLayout(spatial=(0,), in_axis=1, outputs=(2,))
# A per-channel vector (BatchNormalization gamma/beta): one unit per channel.
VECTOR_LAYOUT = WeightLayout(spatial=(), in_axis=0, outputs=(0,))


def default_layout(rank: int) -> WeightLayout:
  """Layout of a custom weight: last axis = outputs, the one before = inputs."""
  if rank < 1:
    raise ValueError('a prunable weight needs at least one axis')
  if rank == 1:
    return WeightLayout(spatial=(), in_axis=0, outputs=(0,))
  return WeightLayout(spatial=tuple(range(rank - 2)), in_axis=rank - 2,
                      outputs=(rank - 1,))


# reduction -> (numpy, TensorFlow) implementation of (values, axes).
_REDUCE = {
    'l1': (lambda v, a: np.abs(v).sum(axis=a),
           lambda v, a: tf.reduce_sum(tf.abs(v), axis=a)),
    'l2': (lambda v, a: np.sqrt(np.square(v).sum(axis=a)),
           lambda v, a: tf.sqrt(tf.reduce_sum(tf.square(v), axis=a))),
    'mean_abs': (lambda v, a: np.abs(v).mean(axis=a),
                 lambda v, a: tf.reduce_mean(tf.abs(v), axis=a)),
    'max_abs': (lambda v, a: np.abs(v).max(axis=a, initial=0),
                lambda v, a: tf.reduce_max(tf.abs(v), axis=a)),
    'sum': (lambda v, a: v.sum(axis=a),
            lambda v, a: tf.reduce_sum(v, axis=a)),
    'mean': (lambda v, a: v.mean(axis=a),
             lambda v, a: tf.reduce_mean(v, axis=a)),
}
_REDUCTIONS = tuple(_REDUCE)


def _reduce(values, axes: Sequence[int], reduction: str):
  """``reduction`` over ``axes``: numpy for a numpy array (mask updates
  score every layer eagerly, where each TF op costs more than the numpy
  reduction), TensorFlow otherwise."""
  if reduction not in _REDUCE:
    raise ValueError(
        f'unknown reduction {reduction!r}; use one of {_REDUCTIONS}')
  in_numpy, in_tf = _REDUCE[reduction]
  if isinstance(values, np.ndarray):
    return in_numpy(values, tuple(axes))
  return in_tf(values, list(axes))


def _tensor_or_array(values):
  """``values`` as a numpy array if it is one, else as a tensor."""
  if isinstance(values, (np.ndarray, np.generic)):
    return np.asarray(values)
  return tf.convert_to_tensor(values)


def _kth_largest(values: np.ndarray, k: int):
  """The k-th largest value, by selection among the positive values when
  there are at least k: pruned weights score exactly 0, and ``np.partition``
  is slow on many equal values (16 ms vs 3 ms on a 235K-weight layer with
  40% of it pruned)."""
  positive = values[values > 0]
  if positive.size >= k:
    values = positive
  return np.partition(values, values.size - k)[values.size - k]


def keep_top(scores, sparsity: float) -> tf.Tensor:
  """Mask keeping the highest scores, with tfmot's rule.

  ``k = max(round(n * (1 - sparsity)), 1)`` units are kept: every score
  ``>=`` the k-th largest (ties at the threshold are all kept), exactly as
  tfmot's ``pruning_impl.Pruning._update_mask`` decides. Eagerly, the k-th
  largest value comes from a linear-time selection instead of a full sort,
  which is 10-20x faster on a 400K-weight layer.
  """
  check_sparsity(sparsity)
  scores = tf.convert_to_tensor(scores)
  flat = tf.reshape(scores, [-1])
  size = tf.size(flat)
  k = tf.cast(tf.maximum(tf.round(tf.cast(size, tf.float32) *
                                  (1.0 - tf.cast(sparsity, tf.float32))), 1),
              tf.int32)
  if tf.executing_eagerly():   # O(n) selection instead of a full sort
    threshold = _kth_largest(flat.numpy(), int(k))
  else:
    values, _ = tf.math.top_k(flat, k=size)
    threshold = tf.gather(values, k - 1)
  return tf.cast(scores >= threshold, tf.float32)


def array_ops(mask):
  """numpy for a numpy mask, TensorFlow otherwise. Mask updates run eagerly
  over every wrapped layer (about 150 on MobileNetV2), where one eager TF op
  costs ~100x the numpy call; in the graph the mask is a tensor."""
  return np if isinstance(mask, (np.ndarray, np.generic)) else tf


def _reshaped(mask, shape: Sequence[int]):
  """``mask`` reshaped to ``shape``, or ``mask`` itself where it already
  broadcasts like that (the same shape, or ``shape`` without its leading 1s,
  e.g. a channel mask against a kernel): one op less per wrapped weight in
  every training step."""
  shape = [int(d) for d in shape]
  lead = 0
  while lead < len(shape) and shape[lead] == 1:
    lead += 1
  if (hasattr(mask, 'shape') and
      list(mask.shape) in (shape, shape[lead:])):
    return mask
  return array_ops(mask).reshape(mask, shape)


def check_sparsity(sparsity: float, what: str = 'sparsity') -> None:
  """Raise a ValueError that names the fix for a sparsity outside [0, 1)."""
  if isinstance(sparsity, tf.Tensor):
    return
  if not 0.0 <= float(sparsity) < 1.0:
    raise ValueError(
        f'{what} must be in [0, 1), got {sparsity}: it is the fraction of '
        'units pruned, so 0.9 keeps 10%; 1.0 would remove everything.')


class Structure(abc.ABC):
  """Base class of the structure kinds; subclasses reduce over some axes."""

  name = 'structure'

  @abc.abstractmethod
  def _kept_axes(self, rank: int, layout: WeightLayout) -> Shape:
    """The weight axes that index units (the others are reduced over)."""

  def validate(self, weight_shape: Sequence[int], layout: WeightLayout,
               where: str = 'this weight') -> None:
    """Raise a ValueError when the kind cannot tile ``weight_shape``."""
    del weight_shape, layout, where

  def mask_shape(self, weight_shape: Sequence[int],
                 layout: WeightLayout) -> Shape:
    kept = self._kept_axes(len(weight_shape), layout)
    return tuple(int(weight_shape[a]) for a in kept)

  def broadcastable(self, mask, weight_shape: Sequence[int],
                    layout: WeightLayout) -> tf.Tensor:
    """The mask reshaped so that ``weight * mask`` broadcasts (cheap)."""
    kept = self._kept_axes(len(weight_shape), layout)
    shape = [int(weight_shape[a]) if a in kept else 1
             for a in range(len(weight_shape))]
    return _reshaped(mask, shape)

  def expand(self, mask, weight_shape: Sequence[int],
             layout: WeightLayout) -> tf.Tensor:
    """The mask at the full weight shape (numpy for a numpy mask)."""
    return array_ops(mask).broadcast_to(
        self.broadcastable(mask, weight_shape, layout), list(weight_shape))

  def reduce(self, values, layout: WeightLayout,
             reduction: str = 'l1') -> tf.Tensor:
    """One score per unit from a weight-shaped tensor (weights, grads, ...);
    numpy for a numpy array."""
    values = _tensor_or_array(values)
    rank = len(values.shape)
    kept = self._kept_axes(rank, layout)
    axes = [a for a in range(rank) if a not in kept]
    return _reduce(values, axes, reduction)

  def select(self, scores, sparsity: float,
             layout: WeightLayout = None) -> tf.Tensor:
    """Mask over units that prunes ``sparsity`` of them, lowest scores first."""
    del layout
    return keep_top(scores, sparsity)

  def bias_mask(self, mask, layout: WeightLayout):
    """The per-output-unit mask a bias follows, or None when it has none."""
    del mask, layout
    return None

  def __eq__(self, other):
    return isinstance(other, Structure) and str(self) == str(other)

  def __hash__(self):
    return hash(str(self))

  def __str__(self):
    return self.name

  def __repr__(self):
    return f'structures.get({str(self)!r})'


class Weight(Structure):
  """One scalar weight per unit (unstructured)."""

  name = 'weight'

  def _kept_axes(self, rank, layout):
    return tuple(range(rank))

  def broadcastable(self, mask, weight_shape, layout):
    return _reshaped(mask, weight_shape)


class Kernel(Structure):
  """One whole 2-D kernel, i.e. one input->output connection, per unit."""

  name = 'kernel'

  def _kept_axes(self, rank, layout):
    return tuple(a for a in range(rank) if a not in layout.spatial)


class Column(Structure):
  """Everything feeding one output from one input position: a Conv2D
  ``(kh, kw, cin)`` position (its column in the im2col matrix) or a Dense
  input row; one unit spans all outputs."""

  name = 'column'

  def _kept_axes(self, rank, layout):
    return tuple(a for a in range(rank) if a not in layout.outputs)


class InputChannel(Structure):
  """One input channel (Conv2D) or input row (Dense) across all outputs."""

  name = 'input_channel'

  def _kept_axes(self, rank, layout):
    return (layout.in_axis,)


class Channel(Structure):
  """One output unit (neuron or filter) per unit; biases follow it."""

  name = 'channel'

  def _kept_axes(self, rank, layout):
    return tuple(layout.outputs)

  def bias_mask(self, mask, layout):
    return array_ops(mask).reshape(mask, [-1])


class Layer(Structure):
  """The whole tensor is one unit; biases follow it."""

  name = 'layer'

  def _kept_axes(self, rank, layout):
    return ()

  def bias_mask(self, mask, layout):
    return array_ops(mask).reshape(mask, [1])


class Block(Structure):
  """An ``r x c`` tile of the ``[in, out]`` plane (per window position)."""

  def __init__(self, rows: int, cols: int):
    if int(rows) < 1 or int(cols) < 1:
      raise ValueError(f'block sizes must be >= 1, got ({rows}, {cols})')
    self.rows, self.cols = int(rows), int(cols)

  @property
  def name(self):
    return f'block({self.rows},{self.cols})'

  def _kept_axes(self, rank, layout):
    return tuple(range(rank))

  def validate(self, weight_shape, layout, where='this weight'):
    n_in, n_out = weight_shape[layout.in_axis], weight_shape[layout.out_axis]
    if n_in % self.rows or n_out % self.cols:
      raise ValueError(
          f'{self} does not divide {where} of shape {tuple(weight_shape)}: '
          f'the [in, out] plane is {n_in} x {n_out} and needs in % {self.rows}'
          f' == 0 and out % {self.cols} == 0. Choose a block size that divides'
          ' it, or exclude this layer with prune(..., layers=...).')

  def mask_shape(self, weight_shape, layout):
    self.validate(weight_shape, layout)
    shape = list(int(d) for d in weight_shape)
    shape[layout.in_axis] //= self.rows
    shape[layout.out_axis] //= self.cols
    return tuple(shape)

  def broadcastable(self, mask, weight_shape, layout):
    ops = array_ops(mask)
    mask = ops.repeat(mask, self.rows, axis=layout.in_axis)
    return ops.repeat(mask, self.cols, axis=layout.out_axis)

  def reduce(self, values, layout, reduction='l1'):
    values = _tensor_or_array(values)
    shape = list(values.shape)
    self.validate(shape, layout)
    # Split each tiled axis d into (d / b, b) and reduce over the b parts.
    split, inner = [], []
    for axis, dim in enumerate(shape):
      block = {layout.in_axis: self.rows, layout.out_axis: self.cols}.get(axis)
      if block is None:
        split.append(dim)
      else:
        split += [dim // block, block]
        inner.append(len(split) - 1)
    return _reduce(array_ops(values).reshape(values, split), inner,
                   reduction)


class NM(Structure):
  """``n`` weights kept in every group of ``m`` consecutive inputs.

  The sparsity is fixed at ``1 - n/m``; a schedule only says when to redo
  the selection (a schedule's sparsity value is not used).
  """

  def __init__(self, n: int, m: int):
    if not 0 < int(n) < int(m):
      raise ValueError(f'n:m needs 0 < n < m, got {n}:{m}')
    self.n, self.m = int(n), int(m)

  @property
  def name(self):
    return f'{self.n}:{self.m}'

  def _kept_axes(self, rank, layout):
    return tuple(range(rank))

  def broadcastable(self, mask, weight_shape, layout):
    return _reshaped(mask, weight_shape)

  def validate(self, weight_shape, layout, where='this weight'):
    n_in = weight_shape[layout.in_axis]
    if n_in % self.m:
      raise ValueError(
          f'{self} groups {self.m} consecutive inputs but {where} of shape '
          f'{tuple(weight_shape)} has {n_in} inputs ({n_in} % {self.m} != 0).'
          ' Choose m dividing the input size, or exclude this layer.')

  def mask_shape(self, weight_shape, layout):
    self.validate(weight_shape, layout)
    return tuple(int(d) for d in weight_shape)

  def reduce(self, values, layout, reduction='l1'):
    # n:m units are single weights; only the selection is grouped.
    return Weight().reduce(values, layout, reduction)

  def select_grouped(self, scores, layout: WeightLayout) -> tf.Tensor:
    """Keep the ``n`` highest scores of every ``m`` consecutive inputs."""
    scores = tf.convert_to_tensor(scores, tf.float32)
    shape = scores.shape.as_list()
    self.validate(shape, layout)
    perm = [a for a in range(len(shape)) if a != layout.in_axis]
    perm.append(layout.in_axis)
    moved = tf.transpose(scores, perm)
    groups = tf.reshape(moved, [-1, self.m])
    # Rank inside a group; ties go to the lower input index (stable).
    order = tf.argsort(groups, axis=1, direction='DESCENDING', stable=True)
    ranks = tf.argsort(order, axis=1, stable=True)
    kept = tf.cast(ranks < self.n, tf.float32)
    kept = tf.reshape(kept, tf.shape(moved))
    return tf.transpose(kept, tf.math.invert_permutation(perm))

  def select(self, scores, sparsity, layout=None):
    if layout is None:
      raise TypeError(f'{self} selection groups along the input axis and '
                      'needs the weight layout')
    return self.select_grouped(scores, layout)


StructureLike = Union[str, Structure]

_SIMPLE = {'weight': Weight, 'kernel': Kernel, 'column': Column,
           'input_channel': InputChannel, 'channel': Channel, 'layer': Layer}
KINDS = ('weight', 'kernel', 'column', 'input_channel', 'channel', 'layer',
         'block(r,c)', 'n:m')


def get(spec: StructureLike) -> Structure:
  """A structure from its name: 'weight', 'kernel', 'column',
  'input_channel', 'channel', 'layer',
  'block(4,1)' or '2:4' (an instance passes through)."""
  if isinstance(spec, Structure):
    return spec
  if not isinstance(spec, str):
    raise TypeError(f'a structure is a name or a Structure, got {spec!r}')
  text = spec.strip().lower().replace(' ', '')
  if text in _SIMPLE:
    return _SIMPLE[text]()
  match = re.fullmatch(r'block\((\d+),(\d+)\)', text)
  if match:
    return Block(int(match.group(1)), int(match.group(2)))
  match = re.fullmatch(r'(\d+):(\d+)', text)
  if match:
    return NM(int(match.group(1)), int(match.group(2)))
  raise ValueError(f'unknown structure {spec!r}; the kinds are {KINDS}, '
                   "e.g. 'block(4,1)' or '2:4'")
