"""Hostile .tflite files: refused by inspect before anything runs.

The two reported files are rebuilt here from a small converted model: a
RESHAPE whose shape input is -1 (LiteRT dereferences it: SIGSEGV) and a
tensor shape set to [1, 5505052, 28, 1] (gigabytes allocated before any
error).
"""

import numpy as np
import pytest

import tflite_export
import tfprune
from conftest import rewrite_tflite
from conftest import small_conv_model
from tflite_export import validation

HUGE = [1, 5505052, 28, 1]


@pytest.fixture(scope='module')
def model_file(tmp_path_factory):
  """(path, report) of conftest's conv -> depthwise -> reshape -> dense."""
  folder = tmp_path_factory.mktemp('hostile')
  model = small_conv_model()
  path = tflite_export.convert(model, str(folder / 'm.tflite'))['path']
  report = str(folder / 'report.json')
  tfprune.report(model).to_json(report)
  return path, report


def reshape_without_shape(model, fb):
  for op in model.subgraphs[0].operators:
    code = model.operatorCodes[op.opcodeIndex]
    if max(code.builtinCode,
           code.deprecatedBuiltinCode) == fb.BuiltinOperator.RESHAPE:
      op.inputs[1] = -1


def reshaped(tensor_index, shape, signature=None):
  """An edit giving one tensor another shape (and shape signature)."""
  def edit(model, fb):
    del fb
    tensor = model.subgraphs[0].tensors[tensor_index]
    tensor.shape = np.asarray(shape, np.int32)
    if signature is not None:
      tensor.shapeSignature = np.asarray(signature, np.int32)
  return edit


def set_quantization(tensor_index, scale, zero_point):
  def edit(model, fb):
    quant = fb.QuantizationParametersT()
    quant.scale, quant.zeroPoint = scale, zero_point
    model.subgraphs[0].tensors[tensor_index].quantization = quant
  return edit


def set_field(getter, attribute, value):
  def edit(model, fb):
    del fb
    setattr(getter(model), attribute, value)
  return edit


def test_reshape_without_its_shape_is_refused_by_inspect(model_file, tmp_path):
  path = rewrite_tflite(model_file[0], tmp_path / 'r.tflite',
                        reshape_without_shape)
  with pytest.raises(tflite_export.InvalidModelError,
                     match=r'operator 2 .*\(RESHAPE\) has input 1 absent'):
    tflite_export.inspect(path)


@pytest.mark.parametrize('edit,message', [
    (set_quantization(7, [float('nan')], [0]),
     r"tensor 7 'net/conv/Conv2D1' .* scales that are negative, infinite or "
     'NaN'),
    (set_quantization(7, [1.0, 1.0], [0, 0]),
     r'2 quantization scales and 2 zero points on axis 0 of shape \[1, 4'),
    (set_field(lambda m: m.subgraphs[0].tensors[6], 'buffer', 99),
     r'tensor 6 .* refers to buffer 99 of 14'),
    (set_field(lambda m: m.subgraphs[0].tensors[6], 'shape',
               np.asarray([4, 3, 3, 3], np.int32)),
     r"tensor 6 'net/conv/Conv2D' .* stores 288 bytes but its shape "
     r'\[4, 3, 3, 3\] \(FLOAT32\) needs 432'),
    (set_field(lambda m: m.subgraphs[0].operators[1], 'inputs',
               np.asarray([7, 999, 3], np.int32)),
     r'operator 1 .*\(DEPTHWISE_CONV_2D\) input 1 is tensor 999 of 11'),
    (set_field(lambda m: m.subgraphs[0].operators[1], 'inputs',
               np.asarray([7, -1, 3], np.int32)),
     r'\(DEPTHWISE_CONV_2D\) has input 1 absent \(-1\)'),
    (set_field(lambda m: m.subgraphs[0].operators[0], 'opcodeIndex', 40),
     r'operator 0 of subgraph 0 uses operator code 40 of 4'),
    (set_field(lambda m: m.subgraphs[0], 'inputs', np.asarray([11], np.int32)),
     r'subgraph 0 inputs \[11\] are not tensors'),
    (set_field(lambda m: m.subgraphs[0].tensors[0], 'type', 77),
     r'tensor 0 .* unknown type code 77'),
])
def test_structural_faults_are_refused_by_inspect(model_file, tmp_path, edit,
                                                  message):
  path = rewrite_tflite(model_file[0], tmp_path / 'bad.tflite', edit)
  with pytest.raises(tflite_export.InvalidModelError,
                     match=message + '.*truncated or corrupt'):
    tflite_export.inspect(path)


def test_tensor_size_limits(model_file, tmp_path):
  path = rewrite_tflite(model_file[0], tmp_path / 'big.tflite',
                 reshaped(0, [1, 5505052, 28, 2], [-1, 5505052, 28, 2]))
  with pytest.raises(tflite_export.ModelTooLargeError,
                     match=r"tensor 0 'serving_default_input_1:0' of subgraph "
                     r'0 would take 1.15 GiB .* over the 1 GiB limit for one '
                     r'tensor.*Limits\(tensor_bytes=...\) / --max-tensor-mib'):
    tflite_export.inspect(path)
  raised = validation.Limits(tensor_bytes=2 << 30)
  assert tflite_export.inspect(path, raised).op_names[0] == 'CONV_2D'
  with pytest.raises(tflite_export.ModelTooLargeError,
                     match=r'take 1.15 GiB, over the 1 GiB limit for all '
                     r'tensors.*--max-total-mib'):
    tflite_export.inspect(path, validation.Limits(tensor_bytes=2 << 30,
                                                  total_bytes=1 << 30))
