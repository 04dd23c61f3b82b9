"""Reading .tflite files: dense, sparse (CSR and blocks), quantized, broken."""

import os
import warnings

import numpy as np
import pytest
import tf_keras as keras

import tflite_export
import tfprune
from conftest import rewrite_tflite


def _model():
  inputs = keras.Input((6, 6, 4))
  x = keras.layers.Conv2D(8, 3, name='conv')(inputs)
  x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name='dw')(x)
  x = keras.layers.Flatten(name='flat')(x)
  return keras.Model(inputs, keras.layers.Dense(16, name='fc')(x))


def _convert(model, path, **kwargs):
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    return tflite_export.convert(model, str(path), **kwargs)['path']


@pytest.mark.parametrize('structure,sparse', [
    ('weight', False), ('weight', True), ('block(4,1)', True)])
def test_weights_decode_to_the_keras_values(tmp_path, structure, sparse):
  model = tfprune.strip(tfprune.prune(
      _model(), tfprune.methods.Magnitude(structure), schedule=0.75,
      layers=['fc'] if 'block' in structure else None))
  info = tflite_export.inspect(_convert(model, tmp_path / 'm.tflite',
                                        sparse_encoding=sparse))
  ops = {op.name: op for op in info.weight_ops()}
  assert sorted(ops) == ['CONV_2D', 'DEPTHWISE_CONV_2D', 'FULLY_CONNECTED']
  conv, dw, fc = (ops['CONV_2D'].weight, ops['DEPTHWISE_CONV_2D'].weight,
                  ops['FULLY_CONNECTED'].weight)
  np.testing.assert_array_equal(
      conv.dense, model.get_layer('conv').kernel.numpy().transpose(3, 0, 1, 2))
  np.testing.assert_array_equal(
      dw.dense, model.get_layer('dw').depthwise_kernel.numpy().reshape(
          1, 3, 3, 16))
  np.testing.assert_array_equal(fc.dense,
                                model.get_layer('fc').kernel.numpy().T)
  assert fc.sparse == sparse
  if structure == 'block(4,1)':
    assert fc.block_map == [1] and fc.via == []   # direct 1x4 sparse FC
  elif sparse:
    assert fc.via == ['DENSIFY'] and conv.via == ['DENSIFY']


def test_int8_weights_are_dequantized_with_their_scales(tmp_path):
  model = tfprune.strip(tfprune.prune(_model(), schedule=0.5))
  path = _convert(model, tmp_path / 'q.tflite', quantize='int8',
                  representative_data=np.random.rand(16, 6, 6, 4))
  fc = [op for op in tflite_export.inspect(path).weight_ops()
        if op.name == 'FULLY_CONNECTED'][0].weight
  assert fc.quantized and fc.dtype == 'INT8'
  keras_fc = model.get_layer('fc').kernel.numpy().T
  step = np.abs(keras_fc).max(axis=1, keepdims=True) / 127
  assert np.all(np.abs(fc.dense - keras_fc) <= step / 2 + 1e-6)
  assert np.all(fc.zeros[keras_fc == 0])


def test_float16_weights_are_found_behind_dequantize(tmp_path):
  model = _model()
  path = _convert(model, tmp_path / 'h.tflite', quantize='float16')
  conv = tflite_export.inspect(path).weight_ops()[0].weight
  assert conv.dtype == 'FLOAT16' and conv.via == ['DEQUANTIZE']
  np.testing.assert_allclose(
      conv.dense, model.get_layer('conv').kernel.numpy().transpose(3, 0, 1, 2),
      rtol=1e-3, atol=1e-4)


def test_not_a_tflite_file(tmp_path):
  path = tmp_path / 'model.tflite'
  path.write_bytes(b'this is text, not a flatbuffer model')
  with pytest.raises(tflite_export.InvalidModelError,
                     match="not a TFLite model.*b'TFL3'"):
    tflite_export.inspect(str(path))
  with pytest.raises(FileNotFoundError, match='no such .tflite'):
    tflite_export.inspect(str(tmp_path / 'missing.tflite'))


@pytest.mark.parametrize('keep', [0.3, 0.6, 0.9])
def test_truncated_file(tmp_path, keep):
  path = _convert(_model(), tmp_path / 'm.tflite')
  data = open(path, 'rb').read()
  with open(path, 'wb') as f:
    f.write(data[:int(len(data) * keep)])
  with pytest.raises(tflite_export.InvalidModelError,
                     match='truncated or corrupt'):
    tflite_export.inspect(path)


def _sparse_fc_file(tmp_path, edit):
  """A 1x4-blocked sparse FC file, with ``edit(sparsity)`` applied."""
  model = tfprune.strip(tfprune.prune(
      _model(), tfprune.methods.Magnitude('block(4,1)'), schedule=0.75,
      layers=['fc']))
  path = _convert(model, tmp_path / 'm.tflite', sparse_encoding=True)

  def apply(flat, schema):
    del schema
    sparse = [t for t in flat.subgraphs[0].tensors if t.sparsity is not None]
    edit(sparse[0].sparsity)
  return rewrite_tflite(path, tmp_path / 'bad.tflite', apply)


def _scale_dense_size(sparsity):
  sparsity.dimMetadata[0].denseSize *= 100000


def _index_out_of_range(sparsity):
  indices = sparsity.dimMetadata[1].arrayIndices
  indices.values = np.asarray(indices.values).copy()
  indices.values[-1] = 200


@pytest.mark.parametrize('edit,message', [
    (_scale_dense_size, 'metadata gives dimension 0 size 1600000, its shape '
     'says 16'),
    (_index_out_of_range, 'CSR segments or indices do not fit its shape'),
])
def test_sparse_metadata_that_does_not_fit_the_shape(tmp_path, edit, message):
  """Decoding sizes arrays by the metadata: it must describe the tensor."""
  with pytest.raises(tflite_export.InvalidModelError, match=message):
    tflite_export.inspect(_sparse_fc_file(tmp_path, edit))


def test_a_directory_is_not_a_model(tmp_path):
  with pytest.raises(tflite_export.InvalidModelError,
                     match='is a directory, not a .tflite file'):
    tflite_export.inspect(str(tmp_path))


def test_transpose_conv_weights_and_bias_are_read_from_their_inputs(tmp_path):
  # TRANSPOSE_CONV's inputs are [output_shape, weights, input, bias].
  import tflite_export  # pylint: disable=g-import-not-at-top
  inputs = keras.Input((4, 4, 3))
  layer = keras.layers.Conv2DTranspose(5, 3, name='up')
  model = keras.Model(inputs, layer(inputs))
  layer.set_weights([np.arange(3 * 3 * 5 * 3, dtype=np.float32).reshape(
      3, 3, 5, 3), np.arange(5, dtype=np.float32) + 100])
  path = str(tmp_path / 'up.tflite')
  tflite_export.convert(model, path)
  op = next(o for o in tflite_export.inspect(path).operators
            if o.name == 'TRANSPOSE_CONV')
  assert list(op.weight.shape) == [5, 3, 3, 3]    # OHWI
  np.testing.assert_array_equal(op.weight.values, np.transpose(
      layer.get_weights()[0], (2, 0, 1, 3)))
  np.testing.assert_array_equal(op.bias.values, np.arange(5) + 100)
