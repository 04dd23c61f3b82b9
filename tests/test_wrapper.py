"""PruningWrapper: masks in call, gates, bias, serialisation, resume, devices."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras

import tfprune
from tfprune.methods import base as methods_base
from conftest import mirrored_strategy, random_batch, small_conv_model


def _dense_model():
  inputs = keras.Input((5,))
  outputs = keras.layers.Dense(4, name='d')(inputs)
  return keras.Model(inputs, outputs)


@methods_base.register
class HalfGates(methods_base.PruningMethod):
  """Test method: channel gates initialised to 0.5 (checks gate plumbing)."""

  gate_structure = tfprune.structures.get('channel')

  def gate_initializer(self):
    return keras.initializers.Constant(0.5)

  def score(self, wrapper, index):
    return tfprune.structures.get('channel').reduce(
        wrapper.prunable[index].variable, wrapper.prunable[index].layout)


def test_mask_applies_in_training_and_inference():
  model = tfprune.prune(_dense_model(), schedule=None)
  wrapper = model.layers[1]
  kernel = wrapper.layer.kernel.numpy()
  mask = np.ones((5, 4), np.float32)
  mask[0, 0] = mask[3, 2] = 0
  wrapper.masks[0].assign(mask)
  x = np.random.RandomState(0).rand(3, 5).astype(np.float32)
  expected = x @ (kernel * mask) + wrapper.layer.bias.numpy()
  np.testing.assert_allclose(model(x, training=False), expected, rtol=1e-5)
  wrapper.pruning_step.assign(1)  # as PruningStep would during fit
  np.testing.assert_allclose(model(x, training=True), expected, rtol=1e-5)
  # the layer's own variable is untouched by call()
  np.testing.assert_array_equal(wrapper.layer.kernel.numpy(), kernel)
  assert wrapper.layer.kernel is wrapper.prunable[0].variable


def test_masks_are_non_trainable_and_get_no_gradient():
  model = tfprune.prune(_dense_model(), schedule=0.5)
  wrapper = model.layers[1]
  assert all(not m.trainable for m in wrapper.masks)
  names = [v.name for v in model.trainable_variables]
  assert not any('mask' in n for n in names)
  x = np.ones((2, 5), np.float32)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(model(x))
  grad = tape.gradient(loss, wrapper.layer.kernel).numpy()
  np.testing.assert_array_equal(grad[wrapper.masks[0].numpy() == 0], 0)
  assert np.count_nonzero(grad) == 10


def test_bias_follows_channel_mask_and_gate():
  model = tfprune.prune(_dense_model(), HalfGates('channel'), layers=['d'])
  wrapper = model.layers[1]           # the logits: only wrapped when named
  wrapper.layer.bias.assign([1., 2., 3., 4.])
  wrapper.masks[0].assign([1., 0., 1., 1.])
  eff = wrapper.effective_weights()
  np.testing.assert_allclose(eff['bias'], [0.5, 0., 1.5, 2.])
  np.testing.assert_allclose(eff['kernel'][:, 1], 0)
  np.testing.assert_allclose(eff['kernel'][:, 0],
                             0.5 * wrapper.layer.kernel.numpy()[:, 0])
  assert len(wrapper.trainable_weights) == 3  # kernel, bias, gate
  x = np.ones((1, 5), np.float32)
  np.testing.assert_allclose(model(x), x @ eff['kernel'] + eff['bias'],
                             rtol=1e-5)


def test_weight_mask_does_not_touch_bias():
  model = tfprune.prune(_dense_model(), tfprune.methods.Magnitude('weight'),
                        schedule=0.9)
  wrapper = model.layers[1]
  wrapper.layer.bias.assign([1., 2., 3., 4.])
  assert 'bias' not in wrapper.effective_weights()   # used as it is
  np.testing.assert_allclose(tfprune.strip(model).get_layer('d').bias.numpy(),
                             [1., 2., 3., 4.])


def test_unsupported_layer_is_refused():
  with pytest.raises(tfprune.UnsupportedLayerError,
                     match="'bn' .*BatchNormalization.*layers="):
    tfprune.PruningWrapper(keras.layers.BatchNormalization(name='bn'))
  with pytest.raises(tfprune.UnsupportedLayerError, match='Conv2DTranspose'):
    tfprune.PruningWrapper(keras.layers.Conv2DTranspose(2, 3))


def test_block_that_does_not_divide_is_refused():
  with pytest.raises(ValueError, match=r"block\(3,1\) does not divide .*'d'"):
    tfprune.prune(_dense_model(), tfprune.methods.Magnitude('block(3,1)'))


def test_config_round_trip():
  schedule = tfprune.schedules.PolynomialDecay(0.1, 0.8, 3, 30, frequency=7)
  model = tfprune.prune(_dense_model(),
                        tfprune.methods.Magnitude('block(5,2)', scope='global'),
                        schedule)
  wrapper = model.layers[1]
  clone = tfprune.PruningWrapper.from_config(wrapper.get_config())
  assert clone.structure == tfprune.structures.get('block(5,2)')
  assert clone.method.scope == 'global'
  assert clone.schedule.get_config() == schedule.get_config()
  assert clone.cohort == wrapper.cohort


def _train(model, x, y, epochs=1, callbacks=None):
  model.compile(keras.optimizers.SGD(0.05),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  model.fit(x, y, batch_size=4, epochs=epochs, verbose=0,
            callbacks=[tfprune.PruningStep()] + (callbacks or []))
  return model


@pytest.mark.parametrize('suffix', ['.keras', '.h5', ''])
def test_save_load_predictions_identical(tmp_path, suffix):
  x, y = random_batch()
  schedule = tfprune.schedules.ConstantSparsity(0.6, 0, frequency=2)
  model = _train(tfprune.prune(small_conv_model(),
                               tfprune.methods.Magnitude('kernel'), schedule),
                 x, y)
  path = str(tmp_path / f'model{suffix}')
  model.save(path)
  with tfprune.custom_object_scope():
    loaded = keras.models.load_model(path)
  np.testing.assert_array_equal(loaded.predict(x, verbose=0),
                                model.predict(x, verbose=0))
  wrappers = tfprune.wrapper.collect_wrappers(loaded)
  assert [w.layer.name for w in wrappers] == ['conv', 'dw', 'dense']
  for old, new in zip(tfprune.wrapper.collect_wrappers(model), wrappers):
    np.testing.assert_array_equal(old.masks[0].numpy(), new.masks[0].numpy())
    assert int(new.pruning_step.numpy()) == 4   # 16 examples / batch 4


def test_resumed_training_keeps_masks_and_step(tmp_path):
  x, y = random_batch()
  # masks updated at steps 2 and 6 only: 2 from the first fit, 6 after resume
  schedule = tfprune.schedules.PolynomialDecay(0.3, 0.7, 2, 6, frequency=4)
  model = _train(tfprune.prune(small_conv_model(), schedule=schedule), x, y)
  first = [w.masks[0].numpy() for w in tfprune.wrapper.collect_wrappers(model)]
  path = str(tmp_path / 'ckpt.keras')
  model.save(path)
  with tfprune.custom_object_scope():
    resumed = keras.models.load_model(path)
  wrappers = tfprune.wrapper.collect_wrappers(resumed)
  for mask, w in zip(first, wrappers):
    np.testing.assert_array_equal(mask, w.masks[0].numpy())
    assert 0.29 < 1 - mask.mean() < 0.31
  step = tfprune.PruningStep()
  resumed.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[step])
  assert step.step == 8
  for w in wrappers:
    assert int(w.pruning_step.numpy()) == 8
    assert 0.69 < 1 - w.masks[0].numpy().mean() < 0.71


@pytest.mark.parametrize('mode', ['graph', 'eager', 'jit'])
def test_fit_without_pruning_step_is_a_clear_error(mode):
  """In every mode: XLA drops the graph's Assert ops, so a jit-compiled
  step is checked while it is traced (it trained silently unpruned). The
  refused fit leaves the model ready for one with the callback."""
  x, y = random_batch()
  model = tfprune.prune(small_conv_model(), schedule=0.5)
  model.compile('sgd', keras.losses.SparseCategoricalCrossentropy(
      from_logits=True), run_eagerly=mode == 'eager',
                jit_compile=mode == 'jit')
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'callbacks=\[tfprune.PruningStep\(\)\]'):
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
  # inference needs no callback
  model.predict(x, verbose=0)
  model.fit(x, y, batch_size=4, epochs=1, verbose=0,
            callbacks=[tfprune.PruningStep()])
  wrappers = tfprune.wrapper.collect_wrappers(model)
  assert [int(w.pruning_step.numpy()) for w in wrappers] == [4] * 3
  assert all((w.masks[0].numpy() == 0).mean() == 0.5 for w in wrappers)


def test_mirrored_strategy_two_cpus():
  assert len(tf.config.list_logical_devices('CPU')) == 2
  strategy = mirrored_strategy()
  x, y = random_batch(n=32)
  schedule = tfprune.schedules.PolynomialDecay(0.0, 0.75, 1, 6, frequency=1)
  with strategy.scope():
    model = tfprune.prune(small_conv_model(),
                          tfprune.methods.Magnitude('channel'), schedule)
    model.compile(keras.optimizers.SGD(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  assert model.distribute_strategy is strategy
  model.fit(x, y, batch_size=8, epochs=2, verbose=0,
            callbacks=[tfprune.PruningStep()])
  for wrapper in tfprune.wrapper.collect_wrappers(model):
    mask = wrapper.masks[0]
    # every replica holds the same mask, at the scheduled 75% of channels
    values = [v.numpy() for v in mask.values]
    assert len(values) == 2
    np.testing.assert_array_equal(values[0], values[1])
    assert abs((1 - values[0].mean()) - 0.75) < 0.2
    assert int(wrapper.pruning_step.numpy()) == 8
  stripped = tfprune.strip(model)
  np.testing.assert_allclose(stripped.predict(x, verbose=0),
                             model.predict(x, verbose=0), atol=1e-5)


class Bilinear(keras.layers.Layer, tfmot.sparsity.keras.PrunableLayer):
  """A custom layer that takes part through tfmot's PrunableLayer."""

  def __init__(self, units, **kwargs):
    super().__init__(**kwargs)
    self.units = units

  def build(self, input_shape):
    self.weight_matrix = self.add_weight('w', (input_shape[-1], self.units))
    self.scale = self.add_weight('scale', (self.units,), initializer='ones')

  def call(self, inputs):
    return tf.matmul(inputs, self.weight_matrix) * self.scale

  def get_prunable_weights(self):
    return [self.weight_matrix]

  def get_config(self):
    return dict(super().get_config(), units=self.units)


class SignSwitch(keras.layers.Dense, tfmot.sparsity.keras.PrunableLayer):
  """A custom layer whose call branches on a tensor: it needs autograph in
  graph mode, which the wrapper must leave on for the layer it wraps."""

  def call(self, inputs):
    outputs = super().call(inputs)
    if tf.reduce_sum(inputs) > 0:
      outputs = outputs * 2.0
    return outputs

  def get_prunable_weights(self):
    return [self.kernel]


def test_wrapped_custom_layer_keeps_its_tensor_branches():
  inputs = keras.Input((4,))
  model = keras.Model(inputs, SignSwitch(3, name='sw')(inputs))
  pruned = tfprune.prune(model, tfprune.methods.Magnitude(), schedule=0.5,
                         layers=['sw'])
  x = np.ones((2, 4), np.float32)
  pruned.compile(keras.optimizers.SGD(0.0), 'mse')
  pruned.fit(x, np.zeros((2, 3)), verbose=0,
             callbacks=[tfprune.PruningStep()])
  wrapper = pruned.get_layer('pruned_sw')
  kernel = wrapper.layer.kernel.numpy() * wrapper.masks[0].numpy()
  expected = 2.0 * (x @ kernel + wrapper.layer.bias.numpy())
  np.testing.assert_allclose(pruned.predict(x, verbose=0), expected,
                             rtol=1e-6)
  np.testing.assert_allclose(pruned.predict(-x, verbose=0),
                             -x @ kernel + wrapper.layer.bias.numpy(),
                             rtol=1e-6)


def test_custom_prunable_layer_gets_masks_by_structure():
  inputs = keras.Input((6,))
  outputs = Bilinear(4, name='bil')(inputs)
  model = tfprune.prune(keras.Model(inputs, outputs),
                        tfprune.methods.Magnitude('channel'), schedule=0.5,
                        layers=['bil'])
  wrapper = model.get_layer('pruned_bil')
  assert wrapper.prunable[0].attr == 'weight_matrix'
  assert wrapper.masks[0].shape == (4,)
  assert wrapper.masks[0].numpy().sum() == 2
  x = np.random.RandomState(0).rand(3, 6).astype(np.float32)
  out = model(x).numpy()
  dead = wrapper.masks[0].numpy() == 0
  np.testing.assert_array_equal(out[:, dead], 0)
  assert np.all(out[:, ~dead] != 0)
  with keras.utils.custom_object_scope({'Bilinear': Bilinear}):
    stripped = tfprune.strip(model)
  np.testing.assert_allclose(stripped(x).numpy(), out, rtol=1e-6)


@pytest.mark.parametrize('generation', ['tf_keras', 'keras3'])
def test_wrapped_softmax_layer_trains_on_the_plain_models_loss(generation):
  """A wrapped softmax output keeps the logits Keras' cross-entropy reads:
  with a true-class probability far below the 1e-7 clip, the training loss
  must be the logits' (~20.7), not the clipped log's (~16.1)."""
  from tfprune import generations  # pylint: disable=g-import-not-at-top
  k = (generations.TF_KERAS if generation == 'tf_keras'
       else generations.KERAS3).keras
  inputs = k.Input((2,))
  outputs = k.layers.Dense(3, activation='softmax', name='out')(inputs)
  plain = k.Model(inputs, outputs)
  plain.set_weights([np.array([[0., 20., 0.], [0., 0., 20.]], np.float32),
                     np.zeros(3, np.float32)])
  x = np.ones((4, 2), np.float32)
  y = np.zeros(4, np.int64)               # class 0: logit 0 vs 20 and 20
  losses = []
  for model in (plain, tfprune.prune(plain, schedule=None)):
    model.compile(k.optimizers.SGD(0.0), 'sparse_categorical_crossentropy')
    model.fit(x, y, epochs=1, verbose=0,
              callbacks=[tfprune.PruningStep()] if model is not plain
              else [])
    losses.append(model.history.history['loss'][0])
  expected = 20 + np.log(2.0)             # -log softmax(0, 20, 20)[0]
  np.testing.assert_allclose(losses, [expected, expected], rtol=1e-5)


def _eager_ops_per_step(model, callbacks, monkeypatch) -> float:
  """TensorFlow ops an eager ``fit`` step of ``model`` dispatches (the
  difference between a 4-step and a 2-step fit, over 2: what a fit does
  once cancels)."""
  from tensorflow.python import pywrap_tfe  # pylint: disable=g-direct-tensorflow-import
  x, y = random_batch(n=64)
  model.compile(keras.optimizers.Adam(1e-3),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                run_eagerly=True)
  model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=callbacks)
  counts = []
  for n in (32, 64):
    count = [0]
    for name in ('TFE_Py_FastPathExecute', 'TFE_Py_Execute'):
      def counted(*args, _run=getattr(pywrap_tfe, name)):
        count[0] += 1
        return _run(*args)
      monkeypatch.setattr(pywrap_tfe, name, counted)
    model.fit(x[:n], y[:n], batch_size=16, epochs=1, verbose=0,
              callbacks=callbacks)
    monkeypatch.undo()
    counts.append(count[0])
  return (counts[1] - counts[0]) / 2


@pytest.mark.parametrize('method, most', [
    (lambda: tfprune.methods.Magnitude(), 8),
    (lambda: tfprune.methods.PSP('filter', begin_step=0), 85)])
def test_an_eager_step_adds_few_ops_per_wrapped_layer(method, most,
                                                      monkeypatch):
  """``run_eagerly`` pays a dispatch (and a gradient function) for every op
  a wrapper adds, so its step keeps them few: the step's advance and check
  and PSP's phase are Python there, not graph ops. Bounds per wrapped
  layer, over the plain model's step (measured: 6.3 and 78, PSP's with
  its gates' Adam updates and regularizer; in the traced forms 9.3 and
  96)."""
  plain = _eager_ops_per_step(small_conv_model(), [], monkeypatch)
  pruned = tfprune.prune(small_conv_model(), method(), None)
  layers = len(tfprune.wrapper.collect_wrappers(pruned))
  wrapped = _eager_ops_per_step(pruned, [tfprune.PruningStep()], monkeypatch)
  assert (wrapped - plain) / layers <= most
