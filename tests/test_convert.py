"""The float TFLite conversion used at the end of tfprune.train."""

import os

import numpy as np
import pytest

import tflite_export
import tfprune
from conftest import random_batch, small_conv_model


def test_wrapped_model_is_stripped_and_matches_keras(tmp_path):
  x, _ = random_batch()
  model = tfprune.prune(small_conv_model(), tfprune.methods.Magnitude('kernel'),
                        schedule=0.6)
  path = str(tmp_path / 'out' / 'm.tflite')
  result = tflite_export.convert(model, path)
  assert result['path'] == path and result['size'] == os.path.getsize(path)
  assert result['ops'] == ['CONV_2D', 'DEPTHWISE_CONV_2D', 'RESHAPE',
                           'FULLY_CONNECTED']
  np.testing.assert_allclose(tflite_export.predict(path, x),
                             model.predict(x, verbose=0), atol=1e-5)
  assert [f for f in os.listdir(tmp_path / 'out')] == ['m.tflite']


@pytest.mark.parametrize('generation', ['tf_keras', 'keras3'])
def test_mixed_precision_model_is_exported_in_float32(tmp_path, generation):
  # TFLite has no bfloat16 kernels: a model trained under mixed_bfloat16 is
  # rebuilt in float32 with its weights, so its export converts and
  # computes what the float32 model computes.
  import importlib  # pylint: disable=g-import-not-at-top
  keras = importlib.import_module(
      'tf_keras' if generation == 'tf_keras' else 'keras')
  x, y = random_batch()
  keras.mixed_precision.set_global_policy('mixed_bfloat16')
  try:
    inputs = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(4, 3, name='conv')(inputs)
    h = keras.layers.Flatten(name='flat')(h)
    outputs = keras.layers.Dense(3, name='dense', dtype='float32')(h)
    model = tfprune.prune(keras.Model(inputs, outputs),
                          tfprune.methods.Magnitude('channel'), schedule=0.5)
  finally:
    keras.mixed_precision.set_global_policy('float32')
  model.compile(keras.optimizers.SGD(0.1), 'sparse_categorical_crossentropy')
  model.fit(x, y, epochs=1, verbose=0, callbacks=[tfprune.PruningStep()])
  stripped = tfprune.strip(model)
  assert stripped.get_layer('conv').compute_dtype == 'bfloat16'
  wide = tfprune.transform.in_float32(stripped)
  assert {l.compute_dtype for l in wide.layers[1:]} == {'float32'}
  assert tfprune.transform.in_float32(wide) is wide
  for old, new in zip(stripped.weights, wide.weights):
    np.testing.assert_array_equal(np.asarray(old), np.asarray(new))
  path = str(tmp_path / 'm.tflite')
  tflite_export.convert(model, path)
  np.testing.assert_allclose(tflite_export.predict(path, x),
                             wide.predict(x, verbose=0), atol=1e-5)
  assert tflite_export.check(path, tfprune.report(model)).ok


def test_unconvertible_model_is_a_clear_error_and_leaves_nothing(tmp_path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  inputs = keras.Input((4, 4))
  outputs = keras.layers.Lambda(
      lambda t: tf.linalg.svd(t, compute_uv=False))(inputs)
  model = keras.Model(inputs, outputs, name='svd')
  with pytest.raises(tflite_export.ConversionError,
                     match="'svd' with built-in ops only.*Svd"):
    tflite_export.convert(model, str(tmp_path / 'out' / 'm.tflite'))
  assert os.listdir(tmp_path) == []


def test_evaluate_accuracy(tmp_path):
  x, y = random_batch(n=40)
  model = small_conv_model()
  path = tflite_export.convert(model, str(tmp_path / 'm.tflite'))['path']
  keras_acc = float((model.predict(x, verbose=0).argmax(-1) == y).mean())
  assert tflite_export.evaluate(path, x, y, batch_size=16) == keras_acc


def _fc_model():
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  inputs = keras.Input((32,))
  x = keras.layers.Dense(64, name='fc1')(inputs)
  return keras.Model(inputs, keras.layers.Dense(8, name='fc2')(x))


def _raw_convert(model, mode):
  """The converter's bytes for int8/float16 + sparsity, no tfprune guard."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  converter = tf.lite.TFLiteConverter.from_keras_model(model)
  converter.optimizations = [tf.lite.Optimize.DEFAULT,
                             tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
  if mode == 'int8':
    rng = np.random.RandomState(0)
    shape = (1,) + tuple(model.input_shape[1:])
    converter.representative_dataset = lambda: (
        [rng.rand(*shape).astype(np.float32)] for _ in range(20))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  else:
    converter.target_spec.supported_types = [tf.float16]
  return converter.convert()


def test_refused_int8_sparse_pattern_really_fails_to_load(tmp_path):
  """Re-measures docs/TFLITE.md section 1.4: int8 DENSIFY -> FULLY_CONNECTED."""
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  model = tfprune.strip(tfprune.prune(_fc_model(), schedule=0.75))
  with pytest.raises(RuntimeError, match='failed to prepare'):
    Interpreter(model_content=_raw_convert(model, 'int8')).allocate_tensors()
  with pytest.raises(tflite_export.ConversionError,
                     match='DENSIFY -> FULLY_CONNECTED'):
    tflite_export.convert(model, str(tmp_path / 'm.tflite'), quantize='int8',
                          representative_data=np.random.rand(8, 32),
                          sparse_encoding=True)
  assert not os.path.exists(tmp_path / 'm.tflite')


def test_refused_fp16_blocked_pattern_really_gives_nan(tmp_path):
  """Re-measures docs/TFLITE.md section 1.4: a 1x4-blocked sparse FC behind
  DEQUANTIZE."""
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  model = tfprune.strip(tfprune.prune(
      _fc_model(), tfprune.methods.Magnitude('block(4,1)'), schedule=0.75))
  interpreter = Interpreter(model_content=_raw_convert(model, 'float16'))
  interpreter.allocate_tensors()
  interpreter.set_tensor(interpreter.get_input_details()[0]['index'],
                         np.ones((1, 32), np.float32))
  interpreter.invoke()
  out = interpreter.get_tensor(interpreter.get_output_details()[0]['index'])
  assert np.isnan(out).all()
  with pytest.raises(tflite_export.ConversionError, match='NaN'):
    tflite_export.convert(model, str(tmp_path / 'm.tflite'),
                          quantize='float16', sparse_encoding=True)


def test_partial_sparse_block_really_drops_inputs_and_is_refused(tmp_path):
  """Re-measures: an int8 FULLY_CONNECTED stored in 1x16 blocks over 500
  inputs (31 blocks + 4) runs in LiteRT as if the last 4 inputs were 0."""
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(0)
  inputs = keras.Input((500,))
  model = keras.Model(inputs, keras.layers.Dense(10, name='fc')(inputs))
  keep = np.zeros((500, 10), bool)
  for unit in range(10):                     # 4 of 32 blocks per unit
    for block in rng.choice(31, 4, replace=False):
      keep[16 * block:16 * (block + 1), unit] = True
  keep[496:] = True                          # the partial block
  model.get_layer('fc').set_weights([rng.randn(500, 10).astype(np.float32) *
                                     keep, np.zeros(10, np.float32)])
  interpreter = Interpreter(model_content=_raw_convert(model, 'int8'))
  interpreter.allocate_tensors()
  x = rng.rand(4, 500).astype(np.float32)
  got = []
  for row in x:
    interpreter.set_tensor(interpreter.get_input_details()[0]['index'],
                           row[None])
    interpreter.invoke()
    got.append(interpreter.get_tensor(
        interpreter.get_output_details()[0]['index'])[0])
  cut = x.copy()
  cut[:, 496:] = 0
  off_full = np.abs(np.array(got) - model.predict(x, verbose=0)).max()
  off_cut = np.abs(np.array(got) - model.predict(cut, verbose=0)).max()
  assert off_full > 4 * off_cut        # it computed without the last 4
  with pytest.raises(tflite_export.ConversionError,
                     match='runs wrongly.*drops the last 4'):
    tflite_export.convert(model, str(tmp_path / 'm.tflite'), quantize='int8',
                          representative_data=x, sparse_encoding=True)
  assert not os.path.exists(tmp_path / 'm.tflite')


def test_dynamic_sparse_and_bad_arguments_are_refused(tmp_path):
  path = str(tmp_path / 'm.tflite')
  with pytest.raises(ValueError, match='dynamic.*refused'):
    tflite_export.convert(_fc_model(), path, quantize='dynamic',
                          sparse_encoding=True)
  with pytest.raises(ValueError, match='representative_data'):
    tflite_export.convert(_fc_model(), path, quantize='int8')
  with pytest.raises(ValueError, match='quantize must be one of'):
    tflite_export.convert(_fc_model(), path, quantize='int4')
  with pytest.raises(ValueError, match=r'shape \(16,\)'):
    tflite_export.convert(_fc_model(), path, quantize='int8',
                          representative_data=np.zeros((4, 16)))
  assert os.listdir(tmp_path) == []


def test_sparse_encoding_shrinks_the_file_and_warns(tmp_path):
  model = tfprune.prune(_fc_model(), schedule=0.9)
  dense = tflite_export.convert(model, str(tmp_path / 'd.tflite'))
  with pytest.warns(UserWarning, match='DENSIFY'):
    sparse = tflite_export.convert(model, str(tmp_path / 's.tflite'),
                                   sparse_encoding=True)
  assert sparse['densify'] == 2 and dense['densify'] == 0
  assert sparse['size'] < 0.4 * dense['size']
  x = np.random.RandomState(0).rand(5, 32).astype(np.float32)
  np.testing.assert_allclose(tflite_export.predict(sparse['path'], x),
                             tflite_export.predict(dense['path'], x),
                             atol=1e-5)


def test_tf_keras_file_keeps_the_keras_signature_names(tmp_path):
  """One traced call converted (not a Keras SavedModel): the file still
  has a serving signature keyed by the Keras input and output names, for a
  model with two inputs and two outputs, and computes what Keras does."""
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  image, side = keras.Input((8, 8, 3), name='image'), keras.Input(
      (5,), name='side')
  h = keras.layers.Conv2D(4, 3, name='conv')(image)
  h = keras.layers.GlobalAveragePooling2D()(h)
  h = keras.layers.Concatenate()([h, keras.layers.Dense(4)(side)])
  model = keras.Model([image, side], [keras.layers.Dense(3, name='logits')(h),
                                      keras.layers.Dense(1, name='score')(h)])
  path = str(tmp_path / 'm.tflite')
  tflite_export.convert(model, path)
  interpreter = Interpreter(path)
  assert interpreter.get_signature_list() == {'serving_default': {
      'inputs': ['image', 'side'], 'outputs': ['logits', 'score']}}
  rng = np.random.RandomState(0)
  x = {'image': rng.rand(2, 8, 8, 3).astype(np.float32),
       'side': rng.rand(2, 5).astype(np.float32)}
  got = interpreter.get_signature_runner()(**x)
  want = model([x['image'], x['side']])
  for name, value in zip(('logits', 'score'), want):
    np.testing.assert_allclose(got[name], value.numpy(), atol=1e-5)
