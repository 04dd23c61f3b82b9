"""tfprune.recalibrate_batchnorm: moving statistics re-estimated in graph
order, in both Keras generations, wrapped models included."""

import numpy as np
import pytest

import tfprune
from tfprune import generations


def _net(keras):
  """conv -> BN -> relu -> conv -> BN -> relu -> dense: the second BN's
  input depends on the first BN's statistics."""
  inputs = keras.Input((8, 8, 3))
  h = keras.layers.Conv2D(6, 3, name='conv1')(inputs)
  h = keras.layers.BatchNormalization(name='bn1')(h)
  h = keras.layers.ReLU()(h)
  h = keras.layers.Conv2D(5, 3, name='conv2')(h)
  h = keras.layers.BatchNormalization(name='bn2')(h)
  h = keras.layers.ReLU()(h)
  h = keras.layers.GlobalAveragePooling2D()(h)
  return keras.Model(inputs, keras.layers.Dense(4, name='out')(h))


def _stale(model, keras):
  for layer in model.layers:
    bn = getattr(layer, 'layer', layer)
    if isinstance(bn, keras.layers.BatchNormalization):
      bn.moving_mean.assign(np.full(bn.moving_mean.shape, 3.0, np.float32))
      bn.moving_variance.assign(
          np.full(bn.moving_variance.shape, 40.0, np.float32))


@pytest.mark.parametrize('generation', ['tf_keras', 'keras3'])
def test_inference_then_matches_batch_statistics(generation):
  """With one batch covering x, each BN's population statistics are the
  ones a training-mode call normalises with, so inference outputs equal
  training-mode outputs (up to epsilon and Bessel's correction, which the
  tolerance covers); with the stale statistics they are far apart."""
  keras = generations.named(generation).keras
  keras.utils.set_random_seed(0)
  model = _net(keras)
  x = np.random.RandomState(0).rand(256, 8, 8, 3).astype(np.float32)
  _stale(model, keras)
  reference = np.asarray(model(x, training=True))
  before = np.abs(np.asarray(model(x, training=False)) - reference).max()
  # the training call moved the statistics a little (momentum 0.99): stale
  _stale(model, keras)
  assert tfprune.recalibrate_batchnorm(model, x, batch_size=64) == 2
  after = np.abs(np.asarray(model(x, training=False)) - reference).max()
  assert before > 0.1 and after < 2e-3, (before, after)


@pytest.mark.parametrize('generation', ['tf_keras', 'keras3'])
def test_second_layer_is_measured_after_the_first(generation):
  """bn2's statistics are those of its input in inference mode with bn1
  already re-estimated (not with bn1's stale numbers)."""
  keras = generations.named(generation).keras
  keras.utils.set_random_seed(1)
  model = _net(keras)
  x = np.random.RandomState(1).rand(100, 8, 8, 3).astype(np.float32)
  _stale(model, keras)
  tfprune.recalibrate_batchnorm(model, x, batch_size=32)
  bn2 = model.get_layer('bn2')
  seen = np.asarray(keras.Model(model.inputs, bn2.input)(x, training=False),
                    np.float64).reshape(-1, 5)
  np.testing.assert_allclose(np.asarray(bn2.moving_mean), seen.mean(0),
                             rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(bn2.moving_variance), seen.var(0),
                             rtol=1e-3, atol=1e-6)


def test_wrapped_model_keeps_its_step_and_masks():
  """A PSP-wrapped model (BN followers wrapped too): the statistics change,
  the wrappers' step counters and masks do not (no training call)."""
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(2)
  pruned = tfprune.prune(_net(keras), tfprune.methods.PSP('filter',
                                                          weight_decay=0),
                         layers=['conv1', 'conv2'])
  wrappers = [l for l in pruned.layers if hasattr(l, 'pruning_step')]
  steps = [int(w.pruning_step.numpy()) for w in wrappers]
  masks = [v.numpy().copy() for w in wrappers for v in w.weights
           if 'mask' in v.name]
  _stale(pruned, keras)
  x = np.random.RandomState(2).rand(64, 8, 8, 3).astype(np.float32)
  assert tfprune.recalibrate_batchnorm(pruned, x) == 2
  bn1 = pruned.get_layer('pruned_bn1').layer   # a follower wrapper
  assert not np.allclose(bn1.moving_mean.numpy(), 3.0)
  assert [int(w.pruning_step.numpy()) for w in wrappers] == steps
  after = [v.numpy() for w in wrappers for v in w.weights if 'mask' in v.name]
  assert masks and all(np.array_equal(a, b) for a, b in zip(masks, after))


def test_bad_input_is_a_clear_error():
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  model = _net(keras)
  with pytest.raises(ValueError, match='at least one example'):
    tfprune.recalibrate_batchnorm(model, np.zeros((0, 8, 8, 3), np.float32))
  with pytest.raises(ValueError, match='2 input array'):
    tfprune.recalibrate_batchnorm(model, [np.zeros((1, 8, 8, 3))] * 2)
  with pytest.raises(ValueError, match='batch_size'):
    tfprune.recalibrate_batchnorm(model, np.zeros((1, 8, 8, 3)), batch_size=0)

  class Sub(keras.Model):

    def __init__(self):
      super().__init__()
      self.bn = keras.layers.BatchNormalization()

    def call(self, x):
      return self.bn(x)

  sub = Sub()
  sub(np.zeros((1, 4), np.float32))
  with pytest.raises(ValueError, match='subclassed'):
    tfprune.recalibrate_batchnorm(sub, np.zeros((1, 4), np.float32))
