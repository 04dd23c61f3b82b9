"""Magnitude: identical masks to tfmot's prune_low_magnitude; structured kinds."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras

import tfprune
from conftest import random_batch, small_conv_model


def _mlp():
  inputs = keras.Input((12,))
  x = keras.layers.Dense(16, activation='relu', name='h1')(inputs)
  x = keras.layers.Dense(8, activation='relu', name='h2')(x)
  return keras.Model(inputs, keras.layers.Dense(3, name='out')(x))


def _tfmot_masks(model):
  return {w.layer.name: w.pruning_vars[0][1].numpy() for w in model.layers
          if getattr(w, 'pruning_vars', None)}


def _our_masks(model):
  return {w.layer.name: w.masks[0].numpy()
          for w in tfprune.wrapper.collect_wrappers(model)}


def _fit_both(base, x, y, schedule, lr, epochs=2, batch_size=4):
  ours = tfprune.prune(base, tfprune.methods.Magnitude('weight'), schedule)
  theirs = keras.models.clone_model(base)
  theirs.set_weights(base.get_weights())
  theirs = tfmot.sparsity.keras.prune_low_magnitude(theirs,
                                                    pruning_schedule=schedule)
  for model, cb in ((ours, tfprune.PruningStep()),
                    (theirs, tfmot.sparsity.keras.UpdatePruningStep())):
    model.compile(keras.optimizers.SGD(lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=False,
              verbose=0, callbacks=[cb])
  return ours, theirs


@pytest.mark.parametrize('sparsity', [0.1, 0.5, 0.9, 0.977])
def test_same_masks_as_tfmot_for_the_same_weights(sparsity):
  base = small_conv_model()
  # coarse values create ties at the threshold, which tfmot keeps
  base.set_weights([np.round(w, 1) for w in base.get_weights()])
  x, y = random_batch(n=8)
  schedule = tfprune.schedules.ConstantSparsity(sparsity, 0, frequency=1)
  ours, theirs = _fit_both(base, x, y, schedule, lr=0.0, epochs=1)
  want, got = _tfmot_masks(theirs), _our_masks(ours)
  assert set(want) == {'conv', 'dense'}   # tfmot does not prune depthwise
  assert set(got) == {'conv', 'dw', 'dense'}
  for name in want:
    np.testing.assert_array_equal(got[name], want[name], err_msg=name)
  # ties at the threshold are kept, so sparsity can only fall short
  assert 0 < 1 - got['dense'].mean() <= sparsity


def test_same_masks_as_tfmot_along_a_gradual_schedule():
  x = np.random.RandomState(0).rand(64, 12).astype(np.float32)
  y = np.random.RandomState(1).randint(0, 3, 64)
  schedule = tfprune.schedules.PolynomialDecay(0.2, 0.9, 2, 20, frequency=3)
  ours, theirs = _fit_both(_mlp(), x, y, schedule, lr=0.05, epochs=2)
  want, got = _tfmot_masks(theirs), _our_masks(ours)
  for name in want:
    np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert 1 - got[name].mean() == pytest.approx(0.9, abs=0.02)
  np.testing.assert_allclose(
      tfprune.strip(ours).predict(x, verbose=0),
      tfmot.sparsity.keras.strip_pruning(theirs).predict(x, verbose=0),
      atol=1e-4)


def test_channel_magnitude_prunes_smallest_l1_channels():
  model = tfprune.prune(_mlp(), tfprune.methods.Magnitude('channel'),
                        layers=['h1'])
  wrapper = model.get_layer('pruned_h1')
  kernel = np.ones((12, 16), np.float32) * np.arange(1, 17)
  kernel[:, 5] = -100.0   # large magnitude despite the sign
  wrapper.layer.kernel.assign(kernel)
  wrapper.layer.bias.assign(np.full(16, 0.5, np.float32))
  wrapper.method.update_masks([wrapper], 0.5, step=1)
  kept = np.flatnonzero(wrapper.masks[0].numpy())
  np.testing.assert_array_equal(kept, [5, 9, 10, 11, 12, 13, 14, 15])
  # pruned channels are zeroed, bias included
  assert np.all(wrapper.layer.kernel.numpy()[:, 0] == 0)
  assert np.all(wrapper.layer.kernel.numpy()[:, 5] == -100)
  bias = wrapper.layer.bias.numpy()
  np.testing.assert_array_equal(np.flatnonzero(bias), kept)
  stripped = tfprune.strip(model).get_layer('h1')
  np.testing.assert_array_equal(np.flatnonzero(stripped.bias.numpy()), kept)


def test_global_scope_ranks_across_layers():
  base = _mlp()
  rng = np.random.RandomState(0)
  base.get_layer('h1').kernel.assign(0.01 * rng.rand(12, 16) + 0.01)
  base.get_layer('h2').kernel.assign(rng.rand(16, 8) + 1.0)
  model = tfprune.prune(base, tfprune.methods.Magnitude('weight',
                                                        scope='global'),
                        schedule=0.5, layers=['h1', 'h2'])
  masks = _our_masks(model)
  # 192 + 128 weights: the 160 pruned are all taken from h1
  assert masks['h1'].sum() == 32 and masks['h2'].sum() == 128


def test_layer_kind_removes_whole_layers_globally():
  base = _mlp()
  base.get_layer('h2').kernel.assign(
      base.get_layer('h2').kernel.numpy() * 1e-3)
  model = tfprune.prune(base, tfprune.methods.Magnitude('layer'),
                        schedule=0.4)
  masks = _our_masks(model)
  assert float(masks['h2']) == 0 and float(masks['h1']) == 1
  assert float(masks['out']) == 1
  assert model.get_layer('pruned_h2').method.scope == 'global'
  assert np.all(tfprune.strip(model).get_layer('h2').bias.numpy() == 0)


def test_block_and_n_m_masks_have_their_pattern():
  model = tfprune.prune(_mlp(), tfprune.methods.Magnitude('block(4,1)'),
                        schedule=0.75, layers=['h1'])
  kernel = tfprune.strip(model).get_layer('h1').kernel.numpy()
  blocks = (kernel.reshape(3, 4, 16) != 0).any(axis=1)
  assert blocks.mean() == pytest.approx(0.25, abs=0.03)
  assert np.all((kernel.reshape(3, 4, 16) != 0).sum(1) % 4 == 0)

  model = tfprune.prune(_mlp(), tfprune.methods.Magnitude('2:4'),
                        schedule=0.0, layers=['h1'])
  kernel = tfprune.strip(model).get_layer('h1').kernel.numpy()
  np.testing.assert_array_equal((kernel.reshape(3, 4, 16) != 0).sum(1), 2)


def test_bad_arguments():
  with pytest.raises(ValueError, match='scope'):
    tfprune.methods.Magnitude(scope='network')
  with pytest.raises(ValueError, match='reduction'):
    tfprune.methods.Magnitude(reduction='median')
  with pytest.raises(ValueError, match='no global ranking'):
    tfprune.methods.Magnitude('2:4', scope='global')
  with pytest.raises(ValueError, match=r'must be in \[0, 1\)'):
    tfprune.prune(_mlp(), schedule=1.0)
  with pytest.raises(ValueError, match=r'must be in \[0, 1\)'):
    tfprune.methods.Magnitude().update_masks([], 1.2, 0)
