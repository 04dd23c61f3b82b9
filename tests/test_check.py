"""check(): sparsity survives conversion, for every kind, layer and mode."""

import importlib
import json
import warnings

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras

import tflite_export
import tfprune

# The package exports the function check(); the CLI lives in the module.
check_module = importlib.import_module('tflite_export.check')


def _model(batch_norm):
  """Conv2D [-> BN] -> ReLU -> DepthwiseConv2D [-> BN] -> Dense -> Dense."""
  inputs = keras.Input((8, 8, 4))
  x = keras.layers.Conv2D(8, 3, name='conv')(inputs)
  if batch_norm:
    x = keras.layers.BatchNormalization(name='bn1')(x)
  x = keras.layers.ReLU(name='relu1')(x)
  x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name='dw')(x)
  if batch_norm:
    x = keras.layers.BatchNormalization(name='bn2')(x)
  x = keras.layers.Flatten(name='flat')(x)
  x = keras.layers.Dense(16, name='fc1')(x)
  model = keras.Model(inputs, keras.layers.Dense(8, name='fc2')(x))
  rng = np.random.RandomState(0)
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      n = layer.gamma.shape[0]
      layer.set_weights([rng.rand(n) + 0.5, rng.rand(n), rng.rand(n),
                         rng.rand(n) + 0.5])
  return model


def _convert(model, path, **kwargs):
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    return tflite_export.convert(model, str(path), **kwargs)


REPRESENTATIVE = np.random.RandomState(1).rand(32, 8, 8, 4).astype(np.float32)


@pytest.mark.parametrize('structure', ['weight', 'kernel', 'channel',
                                       'layer', 'block(2,2)', '2:4'])
@pytest.mark.parametrize('batch_norm', [False, True])
def test_round_trip(tmp_path, structure, batch_norm):
  """float and int8, with and without sparse encoding: the check passes."""
  pruned = tfprune.prune(_model(batch_norm),
                         tfprune.methods.Magnitude(structure), schedule=0.6,
                         layers=['conv', 'dw', 'fc1'])
  expected = tfprune.report(pruned)
  sparsity = [e['weights'][0]['sparsity'][structure]
              for e in expected['layers'] if e['name'] in ('conv', 'dw', 'fc1')]
  if structure == 'layer':   # 2 of the 3 layers removed whole
    assert sorted(sparsity) == [0.0, 1.0, 1.0]
  else:
    assert min(sparsity) > 0.4
  outcomes = {}
  for quantize in ('none', 'int8'):
    for sparse in (False, True):
      path = tmp_path / f'{quantize}_{sparse}.tflite'
      try:
        _convert(pruned, path, quantize=quantize, sparse_encoding=sparse,
                 representative_data=REPRESENTATIVE)
      except tflite_export.ConversionError as e:
        # the only refusal allowed here: int8 DENSIFY -> FULLY_CONNECTED
        assert quantize == 'int8' and sparse
        assert 'DENSIFY -> FULLY_CONNECTED' in str(e)
        outcomes[(quantize, sparse)] = 'refused'
        continue
      result = tflite_export.check(str(path), expected)
      assert result.ok, result.failures
      assert [r.layer for r in result.layers] == ['conv', 'dw', 'fc1', 'fc2']
      assert result.layers[0].structure == structure
      outcomes[(quantize, sparse)] = 'ok'
  assert outcomes[('none', False)] == outcomes[('none', True)] == 'ok'
  assert outcomes[('int8', False)] == 'ok'


def test_a_dense_file_fails_against_a_sparse_report(tmp_path):
  base = _model(batch_norm=True)
  pruned = tfprune.prune(base, tfprune.methods.Magnitude('channel'),
                         schedule=0.5, layers=['conv', 'fc1'])
  path = str(tmp_path / 'dense.tflite')
  _convert(base, path)                       # the unpruned model
  result = tflite_export.check(path, tfprune.report(pruned))
  assert not result.ok
  failed = {l.layer for l in result.layers if not l.ok}
  assert failed == {'conv', 'dw', 'fc1'}   # dw: coupled with conv, wrapped too
  conv = result.layers[0]
  assert any('4 of 4 channel units zero in Keras are non-zero' in p
             for p in conv.problems)


def test_int8_rounding_zeros_need_the_tolerance(tmp_path):
  model = _model(batch_norm=False)
  kernel = model.get_layer('fc1').kernel.numpy()
  kernel[:, :] = 1.0
  kernel[:20, 3] = 1e-4              # rounds to 0 in int8: 20 extra zeros
  model.get_layer('fc1').kernel.assign(kernel)
  path = str(tmp_path / 'q.tflite')
  _convert(model, path, quantize='int8', representative_data=REPRESENTATIVE)
  expected = tfprune.report(model)
  assert tflite_export.check(path, expected).ok          # 20/4096 < 5%
  strict = tflite_export.check(path, expected, tolerance=0.0)
  fc1 = strict.layers[2]
  assert fc1.layer == 'fc1' and not fc1.ok
  assert fc1.problems == ['0.49% extra zero weights in the file (tolerance '
                          '0.00%)']   # 20 of 4096, the ones set to 1e-4


def test_report_of_another_model_is_refused(tmp_path):
  path = str(tmp_path / 'm.tflite')
  _convert(_model(False), path)
  inputs = keras.Input((8, 8, 4))
  other = keras.Model(inputs, keras.layers.Conv2D(3, 3, name='conv')(inputs))
  with pytest.raises(tflite_export.ReportMismatchError,
                     match="'conv'.*does not belong"):
    tflite_export.check(path, tfprune.report(other))
  with pytest.raises(tflite_export.ReportMismatchError, match='tfprune.report'):
    tflite_export.check(path, {'model': 'x'})


def test_leftover_wrapper_state_fails_deployment(tmp_path):
  """A tfmot wrapper converted without stripping keeps variables."""
  base = _model(False)
  wrapped = tfmot.sparsity.keras.prune_low_magnitude(base)
  path = str(tmp_path / 'stateful.tflite')
  converter = tf.lite.TFLiteConverter.from_keras_model(wrapped)
  with open(path, 'wb') as f:
    f.write(converter.convert())
  result = tflite_export.check(path, tfprune.report(base))
  assert not result.ok
  assert any('leftover variable state' in p and 'VAR_HANDLE' in p
             for p in result.deployment_problems)


def test_command_line(tmp_path, capsys):
  pruned = tfprune.prune(_model(False), tfprune.methods.Magnitude('kernel'),
                         schedule=0.5, layers=['conv'])
  good, bad = str(tmp_path / 'good.tflite'), str(tmp_path / 'bad.tflite')
  _convert(pruned, good)
  _convert(_model(False), bad)
  report_path = str(tmp_path / 'report.json')
  tfprune.report(pruned).to_json(report_path)
  assert check_module.main([good, '--expect', report_path]) == 0
  assert 'OK: every layer keeps its zero pattern' in capsys.readouterr().out
  assert check_module.main([bad, '--expect', report_path]) == 1
  captured = capsys.readouterr()
  assert "FAILED: sparsity did not survive in ['conv']" in captured.err
  assert '| conv | CONV_2D | kernel |' in captured.out
  (tmp_path / 'junk.tflite').write_bytes(b'0' * 64)
  assert check_module.main([str(tmp_path / 'junk.tflite'), '--expect',
                            report_path]) == 2
  assert 'not a TFLite model' in capsys.readouterr().err
  (tmp_path / 'r.json').write_text('{not json')
  assert check_module.main([good, '--expect', str(tmp_path / 'r.json')]) == 2


def test_layers_sharing_one_weight_buffer(tmp_path):
  """The converter dedups identical constants; each layer still maps."""
  inputs = keras.Input((8,))
  a = keras.layers.Dense(8, name='a')(inputs)
  b = keras.layers.Dense(8, name='b')(a)
  model = keras.Model(inputs, b)
  kernel = np.eye(8, dtype=np.float32) * 2
  kernel[:, 5] = 0
  for name in ('a', 'b'):
    model.get_layer(name).set_weights([kernel, np.zeros(8, np.float32)])
  path = str(tmp_path / 'shared.tflite')
  _convert(model, path)
  ops = tflite_export.inspect(path).weight_ops()
  assert ops[0].weight.tensor == ops[1].weight.tensor   # one buffer
  result = tflite_export.check(path, tfprune.report(model))
  assert result.ok and [l.layer for l in result.layers] == ['a', 'b']


def test_shrunk_file_against_the_report_before_shrinking(tmp_path, capsys):
  pruned = tfprune.prune(_model(batch_norm=True),
                         tfprune.methods.Magnitude('channel'), schedule=0.5,
                         layers=['conv', 'fc1'])
  before = tfprune.report(pruned)
  shrunk, plan = tfprune.shrink(tfprune.strip(pruned), return_plan=True)
  assert plan.kept_counts()['conv'] == 4 and plan.kept_counts()['fc1'] == 8
  path = str(tmp_path / 'shrunk.tflite')
  _convert(shrunk, path)
  result = tflite_export.check(path, before, plan=plan)
  assert result.ok, result.failures
  rows = {r.layer: r for r in result.layers}
  assert rows['conv'].details['removed'] == '4 outputs, 0 inputs'
  assert rows['dw'].details['removed'] == '8 outputs, 4 inputs'
  assert rows['fc1'].details['removed'] == '8 outputs, 128 inputs'  # 8 of 16 channels x 4x4
  assert rows['conv'].details['channel'] == '4/4'   # removed = zero
  # without the plan the shapes do not fit the report
  with pytest.raises(tflite_export.ReportMismatchError, match='does not belong'):
    tflite_export.check(path, before)
  # the command line takes the plan as JSON
  report_path, plan_path = tmp_path / 'report.json', tmp_path / 'plan.json'
  before.to_json(str(report_path))
  plan_path.write_text(json.dumps(plan.as_dict()))
  assert check_module.main([path, '--expect', str(report_path), '--plan',
                            str(plan_path)]) == 0
  assert 'removed 8 outputs, 128 inputs' in capsys.readouterr().out
  plan_path.write_text('{"conv": [1, 2]}')
  assert check_module.main([path, '--expect', str(report_path), '--plan',
                            str(plan_path)]) == 2


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
  """(file, report dict) of a kernel-pruned model."""
  pruned = tfprune.prune(_model(False), tfprune.methods.Magnitude('kernel'),
                         schedule=0.5, layers=['conv'])
  path = str(tmp_path_factory.mktemp('converted') / 'm.tflite')
  _convert(pruned, path)
  return path, json.loads(json.dumps(tfprune.report(pruned)))


def _edit_conv(report, **fields):
  report = json.loads(json.dumps(report))
  entry = report['layers'][[e['name'] for e in report['layers']].index('conv')]
  for key, value in fields.items():
    (entry['weights'][0] if key in ('shape', 'zeros') else entry)[key] = value
  return report


@pytest.mark.parametrize('edit,message', [
    (lambda r: {'layers': {'conv': 1}}, r'"layers" must be a list'),
    (lambda r: dict(r, layers=['conv']), r'report layer 0: is a str'),
    (lambda r: _edit_conv(r, name=7), r'"name" must be a string'),
    (lambda r: _edit_conv(r, zeros='!!not base64'),
     r"layer \d+ \('conv'\): weights\[0\].zeros is not base64"),
    (lambda r: _edit_conv(r, shape=[3, 3, 4, 100000000]),
     r'zeros holds 288 bits, shape \[3, 3, 4, 100000000\] has 3600000000'),
    (lambda r: _edit_conv(r, shape=[3, 'x', 4, 8]),
     r'shape must be 4 positive integers for a Conv2D'),
    (lambda r: _edit_conv(r, structure='hexagon'),
     r"structure 'hexagon': unknown structure"),
    (lambda r: _edit_conv(r, structure='block(5,1)'),
     r"structure 'block\(5,1\)': block\(5,1\) does not divide"),
])
def test_malformed_report_is_one_clear_error(converted, tmp_path, capsys,
                                             edit, message):
  path, report = converted
  bad = edit(report)
  with pytest.raises(tflite_export.ReportMismatchError, match=message):
    tflite_export.check(path, bad)
  report_path = tmp_path / 'report.json'
  report_path.write_text(json.dumps(bad))
  assert check_module.main([path, '--expect', str(report_path)]) == 2
  err = capsys.readouterr().err
  assert err.startswith('tflite_export.check: error: ') and err.count('\n') == 1


def test_unreadable_inputs_are_one_clear_error(converted, tmp_path, capsys):
  path, report = converted
  report_path = tmp_path / 'report.json'
  report_path.write_text(json.dumps(report))
  folder = tmp_path / 'folder.tflite'
  folder.mkdir()
  cases = [
      ([str(folder), '--expect', str(report_path)],
       'folder.tflite is a directory, not a .tflite file'),
      ([path, '--expect', str(tmp_path)], 'is a directory, not a report JSON'),
      ([path, '--expect', str(tmp_path / 'none.json')],
       'no such report file'),
      ([path, '--expect', str(report_path), '--plan', str(tmp_path)],
       'is a directory, not a shrink plan JSON'),
  ]
  for argv, message in cases:
    assert check_module.main(argv) == 2, argv
    err = capsys.readouterr().err
    assert message in err and err.count('\n') == 1, err
  (tmp_path / 'deep.json').write_text('[' * 100000 + ']' * 100000)
  with pytest.raises(tflite_export.ReportMismatchError, match='not a JSON'):
    tflite_export.check(path, str(tmp_path / 'deep.json'))


def test_plan_that_does_not_fit_the_report(converted):
  path, report = converted
  fc1 = {'kept_inputs': list(range(128)), 'kept': [0, 1, 99]}
  with pytest.raises(tflite_export.ReportMismatchError,
                     match=r"keeps output 99 of layer 'fc1', which has 16"):
    tflite_export.check(path, report, plan={'fc1': fc1})
  with pytest.raises(tflite_export.ReportMismatchError,
                     match='lists of distinct non-negative integers'):
    tflite_export.check(path, report, plan={'fc1': dict(fc1, kept=[1, 1])})
