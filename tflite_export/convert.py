"""Keras model -> .tflite file: float, dynamic-range, int8 or float16.

A tfprune-wrapped model is stripped first: a wrapper left in the graph would
convert into variables and assign ops instead of constant, zero-holding
weights. Only built-in ops are allowed. The file is written atomically
(temporary file, then rename), so a failed conversion never leaves a
half-written model behind.

``sparse_encoding=True`` adds ``tf.lite.Optimize.EXPERIMENTAL_SPARSITY``,
which stores zero-heavy weights compressed. It is a size feature: conv
weights come back through a DENSIFY op at load time (more RAM, dense speed);
only 1x4-blocked float FULLY_CONNECTED weights run sparse. Measured failures
(../shared/TFLITE.md section 1.4, re-checked by tests/test_convert.py) decide
what is refused:
  * dynamic-range + sparse: XNNPACK fails on DENSIFY of int8 weights, and a
    1x16-blocked hybrid FC returns wrong numbers silently -> always refused;
  * int8 + sparse: fine, except DENSIFY -> FULLY_CONNECTED, which
    ai_edge_litert's default delegate cannot prepare -> refused when present;
  * float16 + sparse: a sparse tensor fed straight into DEQUANTIZE (1x4
    blocked FC) computes NaN -> refused when present.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import warnings
from typing import Callable, Dict, Iterable, List, Optional, Union

import numpy as np

from tflite_export import reader, validation

QUANTIZE_MODES = ('none', 'dynamic', 'int8', 'float16')

RepresentativeData = Union[np.ndarray, Callable[[], Iterable]]


class ConversionError(RuntimeError):
  """The model cannot be converted (or converts into a broken file)."""


def op_names(model_bytes: bytes) -> List[str]:
  """Operator names of the main subgraph, in execution order."""
  from ai_edge_litert import schema_py_generated as fb  # pylint: disable=g-import-not-at-top
  model = fb.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
  by_code = {v: k for k, v in vars(fb.BuiltinOperator).items()
             if not k.startswith('_')}
  names = []
  for op in model.subgraphs[0].operators:
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    names.append(code.customCode.decode() if code.customCode
                 else by_code.get(builtin, str(builtin)))
  return names


def write_atomically(path: str, data: bytes) -> None:
  """Write ``data`` to ``path`` via a temporary file in the same folder."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix='.tmp_', suffix='.tflite', dir=folder)
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise


def _representative(data: RepresentativeData, model) -> Callable:
  if callable(data):
    return data
  array = np.asarray(data, np.float32)
  expected = tuple(model.inputs[0].shape[1:])
  if array.shape[1:] != expected:
    raise ValueError(f'representative_data has examples of shape '
                     f'{array.shape[1:]}, the model expects {expected}')

  def generate():
    for i in range(min(len(array), 200)):
      yield [array[i:i + 1]]

  return generate


def _sparse_hazards(info, quantize: str) -> List[str]:
  """The measured failure patterns present in a converted model."""
  problems = []
  if quantize == 'int8':
    problems += [f'{name}: DENSIFY -> FULLY_CONNECTED on int8 weights '
                 '(ai_edge_litert cannot prepare it)'
                 for name in info.densify_into('FULLY_CONNECTED')]
  if quantize == 'float16':
    problems += [f'{name}: a sparse tensor feeds DEQUANTIZE directly '
                 '(computes NaN)' for name in info.sparse_into_dequantize()]
  return problems


def _convert_keras3(model, settings: Dict) -> bytes:
  """A Keras 3 model through Keras' own LiteRT export (``model.export(...,
  format='litert')``: an export archive, a SavedModel, then the TFLite
  converter), with the converter settings given as its keyword arguments.
  docs/TFLITE.md section 1.5 has the measurement behind this choice."""
  folder = tempfile.mkdtemp(prefix='tflite_export_')
  try:
    out = os.path.join(folder, 'model.tflite')
    model.export(out, format='litert', verbose=False, **settings)
    with open(out, 'rb') as f:
      return f.read()
  finally:
    shutil.rmtree(folder, ignore_errors=True)


def _tf_keras_converter(model):
  """A converter for a tf_keras model from one trace of its inference call.

  ``TFLiteConverter.from_keras_model`` first writes a Keras SavedModel,
  which traces every layer's call on its own: on MobileNetV2 that took
  about 4x the time of converting one traced call, for a file of the same
  size, operators and tensor names (docs/TFLITE.md 1.5b). The signature keeps the Keras input and output
  names as its keys, as the SavedModel's would. A model without symbolic
  inputs (subclassed, never built functionally) takes the Keras path.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not getattr(model, 'inputs', None):
    return tf.lite.TFLiteConverter.from_keras_model(model)
  names = list(model.input_names)
  specs = {name: tf.TensorSpec(t.shape, t.dtype, name=name)
           for name, t in zip(names, model.inputs)}

  @tf.function(input_signature=[specs])
  def serve(inputs):
    args = [inputs[name] for name in names]
    outputs = tf.nest.flatten(model(args[0] if len(args) == 1 else args,
                                    training=False))
    return dict(zip(model.output_names, outputs))

  # The converter saves the function with a signature; tracking the
  # variables alone (not the model) keeps Keras' per-layer export out.
  holder = tf.Module()
  holder.variables_ = list(model.variables)
  return tf.lite.TFLiteConverter.from_concrete_functions(
      [serve.get_concrete_function()], holder)


def convert(model, path: str, quantize: str = 'none',
            representative_data: Optional[RepresentativeData] = None,
            sparse_encoding: bool = False) -> Dict:
  """Convert a Keras model to a .tflite file at ``path``.

  Args:
    model: a tfprune-wrapped (stripped first; subclassed ones converted
      as they are, masks folded by the converter), stripped or shrunk
      tf_keras or Keras 3 model. One built under a mixed precision policy
      is exported in float32 (``tfprune.transform.in_float32``).
    path: where to write; the folder is created.
    quantize: 'none' (float32), 'dynamic' (int8 weights, float activations),
      'int8' (full integer, needs ``representative_data``; float input and
      output) or 'float16' (fp16 weights).
    representative_data: example inputs (an array, up to 200 are used) or a
      tfmot-style generator function, for 'int8' calibration.
    sparse_encoding: store zero-heavy weights compressed (see module doc).

  Returns:
    ``{'path', 'size', 'ops', 'densify'}``.
  """
  # TensorFlow only here: inspect, check and bench start without it.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tfprune  # lazy: TensorFlow; strips a wrapped model before converting
  if quantize not in QUANTIZE_MODES:
    raise ValueError(f'quantize must be one of {QUANTIZE_MODES}, got '
                     f'{quantize!r}')
  if sparse_encoding and quantize == 'dynamic':
    raise ValueError(
        'sparse_encoding with quantize="dynamic" is refused: XNNPACK fails '
        'on DENSIFY of int8 weights and 1x16-blocked hybrid FC layers '
        'return wrong numbers silently. Use sparse_encoding with float32 '
        '(quantize="none"), or quantize without sparse encoding.')
  if quantize == 'int8' and representative_data is None:
    raise ValueError('quantize="int8" needs representative_data (a few '
                     'hundred training inputs) to calibrate activations')
  if (tfprune.wrapper.collect_wrappers(model) and
      not tfprune.transform.is_subclassed(model)):
    model = tfprune.strip(model)
  # A subclassed model is converted wrapped (strip would change it in
  # place): in inference its graph computes weight * mask [* gate], which
  # the converter folds into one constant per weight.
  # A model trained in mixed precision is exported in float32 (TFLite has
  # no bfloat16 kernels); quantize='float16' halves its weights.
  model = tfprune.transform.in_float32(model)
  settings = {'target_spec': {'supported_ops': [
      tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if quantize == 'int8' else
      tf.lite.OpsSet.TFLITE_BUILTINS]}, 'optimizations': []}
  if quantize != 'none':
    settings['optimizations'].append(tf.lite.Optimize.DEFAULT)
  if quantize == 'int8':
    settings['representative_dataset'] = _representative(representative_data,
                                                         model)
  if quantize == 'float16':
    settings['target_spec']['supported_types'] = [tf.float16]
  if sparse_encoding:
    settings['optimizations'].append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
  try:
    if tfprune.keras_generation(model) == 'keras3':
      data = _convert_keras3(model, settings)
    else:
      converter = _tf_keras_converter(model)
      for attr, value in settings.items():
        if attr == 'target_spec':
          for key, spec in value.items():
            setattr(converter.target_spec, key, spec)
        else:
          setattr(converter, attr, value)
      data = converter.convert()
  except Exception as e:  # the converter raises several internal types
    raise ConversionError(
        f'TFLite could not convert model {model.name!r} with built-in ops '
        f'only: {e}') from e
  # Check the converted bytes before anything reaches ``path``.
  fd, probe = tempfile.mkstemp(suffix='.tflite')
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
    # The converter's own output: the structure is checked, the size is
    # the caller's business.
    info = reader.inspect(probe, reader.Limits(tensor_bytes=sys.maxsize,
                                               total_bytes=sys.maxsize))
  except validation.PartialBlockError as e:
    raise ConversionError(
        f'sparse_encoding with quantize={quantize!r} made a file LiteRT runs '
        f'wrongly: {str(e).split(": ", 1)[1]}. Convert without '
        'sparse_encoding, or make the layer width a multiple of the block.'
    ) from e
  finally:
    os.unlink(probe)
  if sparse_encoding:
    problems = _sparse_hazards(info, quantize)
    if problems:
      raise ConversionError(
          f'sparse_encoding with quantize={quantize!r} produced a pattern '
          'that fails at run time: ' + '; '.join(problems) + '. Convert '
          'without sparse_encoding, or with quantize="none".')
  densify = info.op_names.count('DENSIFY')
  if densify:
    warnings.warn(
        f'{densify} weight tensor(s) are stored sparse and expanded by '
        'DENSIFY when the model loads: the file is smaller, but load-time '
        'memory is higher and those layers run at dense speed.',
        stacklevel=2)
  write_atomically(path, data)
  return {'path': path, 'size': len(data), 'ops': info.op_names,
          'densify': densify}
