"""Structural checks that make an untrusted .tflite file safe to hand on.

ai_edge_litert trusts its input. An operator input of -1 where the kernel
expects a tensor (RESHAPE's shape) is dereferenced and ends the process
with SIGSEGV; a tensor shape far beyond what the file holds (one dimension
set to 5505052) makes it allocate and touch gigabytes before any error.
``validate_model`` refuses such files from the parsed flatbuffer alone,
before anything is decoded, allocated or run:

  * every index (operator code, tensor, buffer, subgraph) is in range, and
    an operator input is -1 (absent) only where that operator's kernel
    treats the input as optional;
  * every tensor has a known type and non-negative dimensions that agree
    with its shape signature (which may only add -1 for unknown sizes);
  * every constant holds exactly the bytes its shape and type need (for a
    sparse constant: the values its sparsity metadata addresses, with
    metadata that describes the tensor's shape);
  * quantization scales are finite and not negative, zero points fit the
    stored type, and per-channel quantization has one scale per channel of
    a real axis;
  * no tensor and no model exceeds the byte ``Limits``.

The checks are a first line of defence; the runtime still runs in a child
process (``tflite_export.guard``) with its own memory and time ceilings.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Dict, List, Optional, Sequence

import numpy as np

MIB = 1 << 20
GIB = 1 << 30

# Bits per element; the types missing here have no fixed size.
_TYPE_BITS = {'FLOAT32': 32, 'FLOAT16': 16, 'INT32': 32, 'UINT8': 8,
              'INT64': 64, 'BOOL': 8, 'INT16': 16, 'COMPLEX64': 64,
              'INT8': 8, 'FLOAT64': 64, 'COMPLEX128': 128, 'UINT64': 64,
              'UINT32': 32, 'UINT16': 16, 'INT4': 4, 'BFLOAT16': 16,
              'INT2': 2, 'UINT4': 4, 'FLOAT8_E4M3FN': 8, 'FLOAT8_E5M2': 8}
_UNSIZED_TYPES = ('STRING', 'RESOURCE', 'VARIANT')
_ZERO_POINT_RANGE = {'INT8': (-128, 127), 'UINT8': (0, 255),
                     'INT16': (-32768, 32767), 'INT4': (-8, 7)}

_ANY = None   # every input of the op may be absent (see _OPTIONAL_INPUTS)
_LSTM_OPTIONAL = frozenset({1, 5, 9, 10, 11, 12, 16, 17, 20, 21, 22, 23})
# Inputs that the op's kernel checks for absence (tensor index -1), from
# the TFLite kernels; any other -1 input is refused. RESHAPE is absent on
# purpose: ai_edge_litert dereferences a -1 shape input even when the op
# carries new_shape options (a one-input RESHAPE is the valid form). The
# bidirectional sequence ops have dozens of optional inputs; for them only
# the runtime child process guards.
_OPTIONAL_INPUTS = {
    'CONV_2D': frozenset({2}), 'DEPTHWISE_CONV_2D': frozenset({2}),
    'FULLY_CONNECTED': frozenset({2}), 'TRANSPOSE_CONV': frozenset({3}),
    'CONV_3D': frozenset({2}), 'CONV_3D_TRANSPOSE': frozenset({3}),
    'SVDF': frozenset({3}), 'LSH_PROJECTION': frozenset({2}),
    'LSTM': _LSTM_OPTIONAL, 'UNIDIRECTIONAL_SEQUENCE_LSTM': _LSTM_OPTIONAL,
    'BIDIRECTIONAL_SEQUENCE_LSTM': _ANY, 'BIDIRECTIONAL_SEQUENCE_RNN': _ANY,
}


class InvalidModelError(ValueError):
  """The file is not a readable TFLite model."""


class ModelTooLargeError(InvalidModelError):
  """The file declares tensors above the Limits: corrupt, or that large."""


@dataclasses.dataclass(frozen=True)
class Limits:
  """Resource ceilings for one untrusted model.

  The defaults are far above any model tfprune makes and far below what
  would exhaust a workstation; raise them for a model that is really that
  large.
  """

  tensor_bytes: int = GIB         # one tensor, as the file declares it
  total_bytes: int = 2 * GIB      # all tensors of all subgraphs together
  runtime_bytes: int = 4 * GIB    # address space the runtime child may add
  seconds: float = 60.0           # one runtime step: a load, a timed
                                  # block of invokes, a predict batch

  @staticmethod
  def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line flags that raise or lower each ceiling."""
    default = Limits()
    flags = [('--max-tensor-mib', default.tensor_bytes / MIB,
              'largest tensor the file may declare (MiB)'),
             ('--max-total-mib', default.total_bytes / MIB,
              'largest sum of all tensors (MiB)'),
             ('--max-runtime-mib', default.runtime_bytes / MIB,
              'memory the TFLite runtime process may add (MiB)'),
             ('--max-seconds', default.seconds,
              'longest one runtime step may take (seconds)')]
    for flag, value, text in flags:
      parser.add_argument(flag, type=_positive, default=value,
                          help=f'{text}; default {value:g}')

  @staticmethod
  def from_arguments(args: argparse.Namespace) -> 'Limits':
    return Limits(int(args.max_tensor_mib * MIB), int(args.max_total_mib * MIB),
                  int(args.max_runtime_mib * MIB), float(args.max_seconds))

  def __post_init__(self):
    for name in ('tensor_bytes', 'total_bytes', 'runtime_bytes', 'seconds'):
      value = getattr(self, name)
      if not value > 0:   # also refuses NaN
        raise ValueError(f'Limits.{name} must be positive, got {value!r}')


def _positive(text: str) -> float:
  """An argparse type: a finite number above 0."""
  try:
    value = float(text)
  except ValueError:
    value = float('nan')
  if not 0 < value < float('inf'):
    raise argparse.ArgumentTypeError(f'must be a positive number, got {text}')
  return value


def format_bytes(count: int) -> str:
  """Bytes as MiB or GiB, for messages about limits."""
  if count >= GIB:
    return f'{count / GIB:.3g} GiB'
  return f'{count / MIB:.3g} MiB'


def operator_name(model, op, builtin_names: Dict[int, str]) -> str:
  """The builtin name of ``op`` (or its custom code)."""
  code = model.operatorCodes[op.opcodeIndex]
  if code.customCode:
    return code.customCode.decode('utf-8', 'replace')
  builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
  return builtin_names.get(builtin, str(builtin))


def tensor_name(tensor) -> str:
  """The tensor's name for messages; a corrupt file may give none."""
  return (tensor.name or b'').decode('utf-8', 'replace')


def element_bits(type_name: str) -> Optional[int]:
  """Bits per element, or None for types without a fixed size (STRING)."""
  return _TYPE_BITS.get(type_name)


def int_list(values) -> List[int]:
  """A flatbuffer vector as ints; an absent vector (None) is empty."""
  return [] if values is None else [int(v) for v in values]


def vector(union) -> np.ndarray:
  """The values of a sparse CSR array (a union of int vector types)."""
  if union is None or getattr(union, 'values', None) is None:
    raise InvalidModelError('sparse tensor metadata lacks its CSR arrays')
  return np.asarray(union.values, np.int64)


class PartialBlockError(InvalidModelError):
  """A block-sparse weight whose blocks do not tile it: the TFLite converter
  writes such files (int8 1x16 blocks on a 500-wide layer), and LiteRT runs
  them without the remainder."""


def _block_sizes(shape, order, block_map, metas, dense_format) -> List[int]:
  """Per traversed dimension its size: blocked axes split into outer*inner."""
  rank = len(shape)
  sizes = list(shape)
  for j, dim in enumerate(block_map):
    meta = metas[order.index(rank + j)]
    block = int(meta.denseSize)
    if meta.format != dense_format or block < 1:
      raise InvalidModelError(f'sparse block {block} of dimension {dim} '
                              f'of shape {list(shape)} is not a dense level')
    if shape[dim] % block:
      raise PartialBlockError(
          f'sparse block {block} does not divide dimension {dim} of shape '
          f'{list(shape)}: LiteRT drops the last {shape[dim] % block} '
          'entries of that dimension (measured: the outputs of such a '
          'fully connected layer lose those inputs), so the file computes '
          'something else than the model')
    sizes[dim] = shape[dim] // block
    sizes.append(block)
  return sizes


def _csr_count(meta, positions: int, size: int) -> int:
  """Values below a CSR level; refuses segments or indices out of range."""
  segments, indices = vector(meta.arraySegments), vector(meta.arrayIndices)
  if (len(segments) != positions + 1 or segments[0] != 0 or
      np.any(np.diff(segments) < 0) or segments[-1] != len(indices) or
      (indices.size and (indices.min() < 0 or indices.max() >= size))):
    raise InvalidModelError('sparse tensor CSR segments or indices do not '
                            'fit its shape')
  return len(indices)


def sparse_value_count(shape: Sequence[int], sparsity,
                       dense_format: int) -> int:
  """How many stored values the sparsity metadata of ``shape`` addresses.

  Refuses metadata that does not describe ``shape``: decoding trusts it to
  size its arrays and to index the stored values.
  """
  rank = len(shape)
  order = int_list(sparsity.traversalOrder)
  block_map = int_list(sparsity.blockMap)
  metas = sparsity.dimMetadata or []
  expanded = rank + len(block_map)
  if (sorted(order) != list(range(expanded)) or len(metas) != expanded or
      len(set(block_map)) != len(block_map) or
      any(not 0 <= d < rank for d in block_map)):
    raise InvalidModelError('sparse tensor metadata is inconsistent')
  sizes = _block_sizes(shape, order, block_map, metas, dense_format)
  count = 1
  for dim, meta in zip(order, metas):
    if meta.format == dense_format:
      if int(meta.denseSize) != sizes[dim]:
        raise InvalidModelError(
            f'sparse tensor metadata gives dimension {dim} size '
            f'{int(meta.denseSize)}, its shape says {sizes[dim]}')
      count *= sizes[dim]
    else:
      count = _csr_count(meta, count, sizes[dim])
  return count


class _Checker:
  """Walks one parsed model; every refusal names the file and the fix."""

  def __init__(self, model, fb, path: str, size: int, limits: Limits):
    self.model, self.fb, self.path, self.size = model, fb, path, size
    self.limits = limits
    self.buffers = model.buffers or []
    self.types = {v: k for k, v in vars(fb.TensorType).items()
                  if not k.startswith('_')}
    self.op_names = {v: k for k, v in vars(fb.BuiltinOperator).items()
                     if not k.startswith('_')}
    self.total = 0

  def fail(self, message: str, error=InvalidModelError):
    raise error(f'{self.path}: {message}')

  def corrupt(self, message: str):
    self.fail(f'{message}: the file is truncated or corrupt (re-export it '
              'with tflite_export.convert)')

  def run(self) -> None:
    if not self.model.subgraphs:
      self.corrupt('the model has no subgraph')
    for buffer in self.buffers:
      self.check_buffer(buffer)
    for s, graph in enumerate(self.model.subgraphs):
      tensors = graph.tensors or []
      for i, tensor in enumerate(tensors):
        self.check_tensor(s, i, tensor)
      for i, op in enumerate(graph.operators or []):
        self.check_operator(s, i, op, len(tensors))
      for kind in ('inputs', 'outputs'):
        bad = [t for t in int_list(getattr(graph, kind))
               if not 0 <= t < len(tensors)]
        if bad:
          self.corrupt(f'subgraph {s} {kind} {bad} are not tensors '
                       f'(it has {len(tensors)})')
    self.check_signatures()

  def check_buffer(self, buffer) -> None:
    offset, size = int(buffer.offset or 0), int(buffer.size or 0)
    if buffer.data is None and size and (offset < 0 or
                                         offset + size > self.size):
      self.corrupt(f'a buffer points at bytes {offset}..{offset + size} '
                   f'beyond the file ({self.size} bytes)')

  def check_tensor(self, s: int, i: int, tensor) -> None:
    name = f'tensor {i} {tensor_name(tensor)!r} of subgraph {s}'
    type_name = self.types.get(tensor.type)
    if type_name is None:
      self.corrupt(f'{name} has unknown type code {tensor.type}')
    shape = int_list(tensor.shape)
    if any(d < 0 for d in shape):
      self.corrupt(f'{name} has negative dimensions {shape}')
    signature = int_list(tensor.shapeSignature)
    if len(signature) == len(shape) and any(
        g != d and g != -1 for g, d in zip(signature, shape)):
      self.corrupt(f'{name} has shape {shape} but shape signature '
                   f'{signature} (they may differ only where the signature '
                   'is -1)')
    if not 0 <= tensor.buffer < max(len(self.buffers), 1):
      self.corrupt(f'{name} refers to buffer {tensor.buffer} of '
                   f'{len(self.buffers)}')
    nbytes = self.check_size(name, shape, type_name)
    if self.buffers:
      self.check_constant(name, shape, type_name, tensor, nbytes)
    self.check_quantization(name, shape, type_name, tensor.quantization)

  def check_size(self, name: str, shape: List[int], type_name: str) -> int:
    bits = element_bits(type_name) or 0
    nbytes = (int(np.prod(shape, dtype=object)) * bits + 7) // 8
    if nbytes > self.limits.tensor_bytes:
      limit = format_bytes(self.limits.tensor_bytes)
      self.fail(f'{name} would take {format_bytes(nbytes)} (shape {shape}, '
                f'{type_name}), over the {limit} limit for one tensor: the '
                'file is corrupt, or the model is really this large and needs '
                'Limits(tensor_bytes=...) / --max-tensor-mib',
                ModelTooLargeError)
    self.total += nbytes
    if self.total > self.limits.total_bytes:
      self.fail(f'the tensors up to {name} take {format_bytes(self.total)}, '
                f'over the {format_bytes(self.limits.total_bytes)} limit for '
                'all tensors: the file is corrupt, or the model is really this'
                ' large and needs Limits(total_bytes=...) / --max-total-mib',
                ModelTooLargeError)
    return nbytes

  def check_constant(self, name, shape, type_name, tensor, nbytes) -> None:
    buffer = self.buffers[tensor.buffer]
    stored = (len(buffer.data) if buffer.data is not None
              else int(buffer.size or 0))
    if not stored or type_name in _UNSIZED_TYPES:
      return
    if tensor.sparsity is not None:
      try:
        count = sparse_value_count(shape, tensor.sparsity,
                                   self.fb.DimensionType.DENSE)
      except PartialBlockError as e:
        self.fail(f'{name}: {e}', PartialBlockError)
      except InvalidModelError as e:
        self.corrupt(f'{name}: {e}')
      nbytes = (count * element_bits(type_name) + 7) // 8
    if stored != nbytes:
      self.corrupt(f'{name} stores {stored} bytes but its shape {shape} '
                   f'({type_name}{", sparse" if tensor.sparsity else ""}) '
                   f'needs {nbytes}')

  def check_quantization(self, name, shape, type_name, quant) -> None:
    """Scales and zero points the int kernels can turn into multipliers."""
    if quant is None or quant.scale is None or not len(quant.scale):
      return
    scale = np.asarray(quant.scale, np.float64)
    zero = np.asarray([] if quant.zeroPoint is None else quant.zeroPoint,
                      np.int64)
    if not np.all(np.isfinite(scale) & (scale >= 0)):
      self.corrupt(f'{name} has quantization scales that are negative, '
                   'infinite or NaN')
    low, high = _ZERO_POINT_RANGE.get(type_name, (-2**63, 2**63 - 1))
    if zero.size and (zero.min() < low or zero.max() > high):
      self.corrupt(f'{name} has zero points outside {type_name} '
                   f'[{low}, {high}]')
    axis, channels = int(quant.quantizedDimension), len(scale)
    if channels > 1 and (not 0 <= axis < len(shape) or
                         shape[axis] != channels or
                         zero.size not in (0, 1, channels)):
      self.corrupt(f'{name} has {channels} quantization scales and '
                   f'{zero.size} zero points on axis {axis} of shape {shape}')

  def check_operator(self, s: int, i: int, op, n_tensors: int) -> None:
    where = f'operator {i} of subgraph {s}'
    codes = self.model.operatorCodes or []
    if not 0 <= op.opcodeIndex < len(codes):
      self.corrupt(f'{where} uses operator code {op.opcodeIndex} of '
                   f'{len(codes)}')
    name = operator_name(self.model, op, self.op_names)
    optional = _OPTIONAL_INPUTS.get(name, frozenset())
    for position, t in enumerate(int_list(op.inputs)):
      if t == -1 and optional is not _ANY and position not in optional:
        self.corrupt(f'{where} ({name}) has input {position} absent (-1), '
                     f'which {name} requires')
      if not -1 <= t < n_tensors:
        self.corrupt(f'{where} ({name}) input {position} is tensor {t} of '
                     f'{n_tensors}')
    bad = [t for t in int_list(op.outputs) if not 0 <= t < n_tensors]
    bad += [t for t in int_list(op.intermediates) if not -1 <= t < n_tensors]
    if bad:
      self.corrupt(f'{where} ({name}) outputs or intermediates {bad} are not '
                   f'tensors (there are {n_tensors})')
    self.check_subgraph_refs(where, name, op.builtinOptions)

  def check_subgraph_refs(self, where: str, name: str, options) -> None:
    """WHILE, IF, CALL_ONCE, ... name other subgraphs by index."""
    n = len(self.model.subgraphs)
    for attribute, value in getattr(options, '__dict__', {}).items():
      if attribute.endswith('SubgraphIndex') and not 0 <= int(value) < n:
        self.corrupt(f'{where} ({name}) {attribute} is {value} of {n} '
                     'subgraphs')

  def check_signatures(self) -> None:
    n = len(self.model.subgraphs)
    for signature in self.model.signatureDefs or []:
      s = int(signature.subgraphIndex)
      if not 0 <= s < n:
        self.corrupt(f'a signature names subgraph {s} of {n}')
      count = len(self.model.subgraphs[s].tensors or [])
      for entry in (signature.inputs or []) + (signature.outputs or []):
        if not 0 <= int(entry.tensorIndex) < count:
          self.corrupt(f'a signature names tensor {entry.tensorIndex} of '
                       f'{count}')


def validate_model(model, fb, path: str, size: int,
                   limits: Optional[Limits] = None) -> None:
  """Refuse a parsed model (``fb.ModelT``) the runtime must not be given.

  ``fb`` is ai_edge_litert's ``schema_py_generated``, ``size`` the file's
  length in bytes. Raises InvalidModelError (ModelTooLargeError for the
  byte limits) naming the first fault found.
  """
  _Checker(model, fb, path, size, limits or Limits()).run()
