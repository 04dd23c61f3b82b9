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
