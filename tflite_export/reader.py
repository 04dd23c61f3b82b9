"""Read a .tflite file: operators and their weights as dense numpy arrays.

The flatbuffer is parsed with the schema bindings that ship with
ai-edge-litert (``schema_py_generated``), never by scanning bytes. Sparse
tensors (``EXPERIMENTAL_SPARSITY``: traversal order, block map, DENSE/CSR
dimension metadata) are decoded to dense arrays; quantized weights are given
both as stored integers and dequantized. A weight that reaches its operator
through DENSIFY or DEQUANTIZE is followed back to the stored constant.

The file is validated (``tflite_export.validation``) before anything is
decoded, so a corrupt or hostile file ends in ``InvalidModelError`` rather
than in an unbounded allocation or a stray exception.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from tflite_export import validation
from tflite_export.validation import InvalidModelError
from tflite_export.validation import Limits

WEIGHT_OPS = ('CONV_2D', 'DEPTHWISE_CONV_2D', 'FULLY_CONNECTED',
              'TRANSPOSE_CONV')
STATE_OPS = ('VAR_HANDLE', 'READ_VARIABLE', 'ASSIGN_VARIABLE', 'CALL_ONCE')
_PASS_THROUGH = ('DENSIFY', 'DEQUANTIZE')
_NUMPY_TYPES = {'FLOAT32': np.float32, 'FLOAT16': np.float16,
                'INT32': np.int32, 'UINT8': np.uint8, 'INT64': np.int64,
                'INT16': np.int16, 'INT8': np.int8, 'FLOAT64': np.float64,
                'BOOL': np.bool_}


@dataclasses.dataclass
class Weight:
  """A constant weight tensor, decoded."""

  tensor: int                  # index of the stored (constant) tensor
  name: str
  shape: List[int]
  dtype: str                   # stored type, e.g. 'FLOAT32', 'INT8'
  values: np.ndarray           # dense, stored type
  dense: np.ndarray            # dense, float32 (dequantized if quantized)
  sparse: bool                 # stored with SparsityParameters
  block_map: List[int]
  quantized: bool
  via: List[str]               # ops between the constant and its consumer

  @property
  def zeros(self) -> np.ndarray:
    """Exact zeros of the stored values (int8 zero-points are 0)."""
    return self.dense == 0


@dataclasses.dataclass
class Operator:
  index: int
  name: str
  inputs: List[int]
  outputs: List[int]
  output_names: List[str]
  weight: Optional[Weight] = None
  bias: Optional[Weight] = None

  @property
  def label(self) -> str:
    """Its first output's name (a corrupt file may give it no output)."""
    return (self.output_names or [f'operator {self.index}'])[0]


@dataclasses.dataclass
class ModelInfo:
  path: str
  size: int
  operators: List[Operator]
  tensor_names: List[str]
  input_signatures: List[List[int]]
  custom_ops: List[str]
  data: bytes = dataclasses.field(default=b'', repr=False)  # the validated file

  @property
  def op_names(self) -> List[str]:
    return [op.name for op in self.operators]

  def weight_ops(self) -> List[Operator]:
    return [op for op in self.operators if op.name in WEIGHT_OPS]

  def _producers(self) -> Dict[int, Operator]:
    return {out: op for op in self.operators for out in op.outputs}

  def densify_into(self, consumer: str) -> List[str]:
    """Outputs of ``consumer`` ops whose weight comes from a DENSIFY."""
    producers = self._producers()
    return [op.label for op in self.operators
            if op.name == consumer and any(
                producers.get(t) is not None and
                producers[t].name == 'DENSIFY' for t in op.inputs)]

  def sparse_into_dequantize(self) -> List[str]:
    """DEQUANTIZE ops reading a stored sparse tensor (the fp16 NaN bug)."""
    sparse = {w.tensor for op in self.operators for w in (op.weight, op.bias)
              if w is not None and w.sparse}
    return [op.label for op in self.operators
            if op.name == 'DEQUANTIZE' and op.inputs[:1] and
            op.inputs[0] in sparse]


def _enum_names(enum) -> Dict[int, str]:
  return {v: k for k, v in vars(enum).items() if not k.startswith('_')}


def decode_sparse(values: np.ndarray, shape, sparsity, dense_format: int):
  """Dense array from a sparse tensor's stored values and metadata.

  Walks the traversal order keeping, for every stored value, its position
  and its coordinate in each traversed dimension: a DENSE dimension of size
  n gives each position n children ``pos*n + j``; a CSR dimension gives
  position p the children ``segments[p]:segments[p+1]`` with coordinates
  ``indices[k]``. Blocked dimensions are put back as outer*block + inner.
  """
  if validation.sparse_value_count(shape, sparsity, dense_format) > len(values):
    raise InvalidModelError('sparse tensor has fewer values than its '
                            'metadata addresses (truncated or corrupt)')
  rank = len(shape)
  order = [int(d) for d in sparsity.traversalOrder]
  block_map = [int(d) for d in (sparsity.blockMap if sparsity.blockMap
                                is not None else [])]
  metas = sparsity.dimMetadata
  pos = np.zeros(1, np.int64)
  coords: List[np.ndarray] = []
  for meta in metas:
    if meta.format == dense_format:
      n = int(meta.denseSize)
      coords = [np.repeat(c, n) for c in coords]
      coords.append(np.tile(np.arange(n), len(pos)))
      pos = (pos[:, None] * n + np.arange(n)).reshape(-1)
    else:
      segments = validation.vector(meta.arraySegments)
      indices = validation.vector(meta.arrayIndices)
      starts, counts = segments[pos], segments[pos + 1] - segments[pos]
      total = int(counts.sum())
      child = (np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
               + np.repeat(starts, counts))
      coords = [np.repeat(c, counts) for c in coords]
      coords.append(indices[child])
      pos = child
  expanded = [None] * len(order)
  for k, dim in enumerate(order):
    expanded[dim] = coords[k]
  original = list(expanded[:rank])
  for j, dim in enumerate(block_map):
    block = int(metas[order.index(rank + j)].denseSize)
    original[dim] = expanded[dim] * block + expanded[rank + j]
  dense = np.zeros(shape, values.dtype)
  dense[tuple(original)] = values[pos]
  return dense


def _dequantize(values: np.ndarray, quant, shape) -> np.ndarray:
  scale = np.asarray(quant.scale, np.float32)
  zero = np.asarray(quant.zeroPoint if quant.zeroPoint is not None else [0],
                    np.float32)
  if scale.size > 1:
    axis = int(quant.quantizedDimension)
    view = [1] * len(shape)
    view[axis] = -1
    scale, zero = scale.reshape(view), zero.reshape(view)
  return ((values.astype(np.float32) - zero) * scale).astype(np.float32)


def _read(path: str) -> bytes:
  if os.path.isdir(path):
    raise InvalidModelError(f'{path} is a directory, not a .tflite file: '
                            'pass the path of the model file itself')
  if not os.path.exists(path):
    raise FileNotFoundError(f'no such .tflite file: {path}')
  with open(path, 'rb') as f:
    data = f.read()
  if len(data) < 8 or data[4:8] != b'TFL3':
    raise InvalidModelError(
        f'{path} is not a TFLite model: its flatbuffer identifier is '
        f'{data[4:8]!r}, expected b\'TFL3\' (convert the Keras model with '
        'tflite_export.convert)')
  return data


def _corrupt(path: str, error: Exception) -> InvalidModelError:
  """A parse or decode failure of a corrupt file, as one clear error."""
  return InvalidModelError(f'{path} is truncated or corrupt: '
                           f'{type(error).__name__}: {error}')


def _load(path: str, limits: Optional[Limits]) -> Tuple[bytes, object]:
  """The file's bytes and parsed model, refused unless safe to decode."""
  from ai_edge_litert import schema_py_generated as fb  # pylint: disable=g-import-not-at-top
  data = _read(path)
  try:   # flatbuffers raises struct, index, type and unicode errors
    model = fb.ModelT.InitFromPackedBuf(bytearray(data), 0)
    validation.validate_model(model, fb, path, len(data), limits)
  except InvalidModelError:
    raise
  except Exception as e:
    raise _corrupt(path, e) from e
  return data, model


def validate(path: str, limits: Optional[Limits] = None) -> bytes:
  """The bytes of a .tflite file that passed validation: what may be run.

  Raises InvalidModelError (ModelTooLargeError over ``limits``) for a file
  that is corrupt, hostile or too large.
  """
  return _load(path, limits)[0]


def inspect(path: str, limits: Optional[Limits] = None) -> ModelInfo:
  """Validate a .tflite file, then parse it into operators with weights."""
  data, model = _load(path, limits)
  try:
    return _describe(path, data, model)
  except InvalidModelError:
    raise
  except Exception as e:
    raise _corrupt(path, e) from e


def _describe(path: str, data: bytes, model) -> ModelInfo:
  from ai_edge_litert import schema_py_generated as fb  # pylint: disable=g-import-not-at-top
  graph = model.subgraphs[0]
  tensors = graph.tensors or []
  op_names = _enum_names(fb.BuiltinOperator)
  type_names = _enum_names(fb.TensorType)
  ints = validation.int_list

  def op_name(op) -> str:
    return validation.operator_name(model, op, op_names)

  producers = {}
  for op in graph.operators or []:
    for out in ints(op.outputs):
      producers[out] = op

  def constant(index: int) -> Optional[Weight]:
    via, seen = [], set()
    while True:
      if index < 0 or index in seen:   # absent, or a DEQUANTIZE loop
        return None
      seen.add(index)
      tensor = tensors[index]
      buffer = model.buffers[tensor.buffer]
      if buffer.data is not None or (buffer.size or 0) > 0:
        break
      producer = producers.get(index)
      if producer is None or op_name(producer) not in _PASS_THROUGH:
        return None
      via.append(op_name(producer))
      index = ints(producer.inputs)[0]
    dtype = type_names.get(tensor.type, str(tensor.type))
    if dtype not in _NUMPY_TYPES:
      raise InvalidModelError(f'tensor {index} has unsupported type {dtype}')
    if buffer.data is not None:
      raw = np.asarray(buffer.data, np.uint8)
    else:   # models over 2 GB keep buffers outside the flatbuffer
      raw = np.frombuffer(data, np.uint8, count=buffer.size,
                          offset=buffer.offset)
    values = raw.view(_NUMPY_TYPES[dtype])   # sizes checked by validation
    shape = ints(tensor.shape)
    if tensor.sparsity is not None:
      values = decode_sparse(values, shape, tensor.sparsity,
                             fb.DimensionType.DENSE)
    else:
      values = values.reshape(shape)
    quant = tensor.quantization
    quantized = (quant is not None and quant.scale is not None and
                 len(quant.scale) > 0 and dtype in ('INT8', 'UINT8', 'INT16'))
    dense = (_dequantize(values, quant, shape) if quantized
             else values.astype(np.float32))
    block_map = ([int(d) for d in tensor.sparsity.blockMap]
                 if tensor.sparsity is not None and
                 tensor.sparsity.blockMap is not None else [])
    return Weight(index, validation.tensor_name(tensor), shape, dtype, values,
                  dense, tensor.sparsity is not None, block_map, quantized,
                  via[::-1])

  operators = []
  for i, op in enumerate(graph.operators or []):
    name = op_name(op)
    inputs, outputs = ints(op.inputs), ints(op.outputs)
    entry = Operator(i, name, inputs, outputs,
                     [validation.tensor_name(tensors[t]) for t in outputs])
    if name in WEIGHT_OPS:
      w, b = (1, 3) if name == 'TRANSPOSE_CONV' else (1, 2)  # [shape, w, x, b]
      entry.weight = constant(inputs[w]) if len(inputs) > w else None
      if len(inputs) > b:
        entry.bias = constant(inputs[b])
    operators.append(entry)
  signatures = [ints(tensors[t].shapeSignature
                     if tensors[t].shapeSignature is not None
                     else tensors[t].shape)
                for t in ints(graph.inputs)]
  names = [validation.tensor_name(t) for t in tensors]
  custom = sorted({op.name for op in operators
                   if op.name not in op_names.values()})
  return ModelInfo(path, len(data), operators, names, signatures, custom, data)
