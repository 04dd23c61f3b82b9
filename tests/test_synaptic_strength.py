"""Synaptic Strength: re-parameterisation, penalty, one global threshold."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import tfprune
import tflite_export
from tfprune.methods import SynapticStrength
from tfprune.methods.synaptic_strength import drop_bn_scale
from tfprune.methods.synaptic_strength import select_connections
from tfprune.methods.synaptic_strength import unit_norm_scaled

L = keras.layers


def conv_bn_net(name='ssnet', depthwise=False):
  """conv(4) -> BN -> ReLU -> conv(6, bias) -> BN -> pool -> Dense(3)."""
  inputs = keras.Input((8, 8, 2))
  x = L.Conv2D(4, 3, use_bias=False, name='conv1')(inputs)
  x = L.BatchNormalization(name='bn1')(x)
  x = L.ReLU(name='relu1')(x)
  if depthwise:
    x = L.DepthwiseConv2D(3, padding='same', name='dw')(x)
  x = L.Conv2D(6, 3, name='conv2')(x)
  x = L.BatchNormalization(name='bn2')(x)
  x = L.GlobalAveragePooling2D(name='pool')(x)
  outputs = L.Dense(3, activation='softmax', name='dense')(x)
  return keras.Model(inputs, outputs, name=name)


def randomise_bn(model, seed=0):
  """Trained-looking BN statistics and scales, some of them negative."""
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    if isinstance(layer, L.BatchNormalization):
      gamma, beta, mean, var = layer.get_weights()
      layer.set_weights([rng.uniform(-2, 2, gamma.shape),
                         rng.normal(size=beta.shape),
                         rng.normal(size=mean.shape),
                         rng.uniform(0.3, 3, var.shape)])
  return model


def data(n=64, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, 8, 8, 2)).astype(np.float32)
  return x, (x[:, :4, :4, 0].sum((1, 2)) > 0).astype(np.int64)


def strengths(model, name):
  return np.asarray(model.get_layer(f'pruned_{name}').gates[0])


def masks(model):
  return [np.asarray(w.masks[0])
          for w in tfprune.wrapper.collect_wrappers(model)]


def compile_fit(model, x, y, epochs=2, lr=1e-2):
  model.compile(keras.optimizers.Adam(lr), 'sparse_categorical_crossentropy')
  model.fit(x, y, epochs=epochs, batch_size=16, verbose=0,
            callbacks=[tfprune.PruningStep()])


def test_drop_bn_scale_keeps_the_inference_function():
  model = randomise_bn(conv_bn_net())
  x, _ = data(8)
  folded, pairs = drop_bn_scale(model, ['conv1', 'conv2'])
  assert pairs == {'conv1': 'bn1', 'conv2': 'bn2'}
  assert not folded.get_layer('bn1').scale and model.get_layer('bn1').scale
  assert [w.shape for w in folded.get_layer('bn2').weights] == [(6,)] * 3
  np.testing.assert_allclose(folded(x, training=False),
                             model(x, training=False), atol=1e-5)
  gamma = np.asarray(model.get_layer('bn2').gamma)
  np.testing.assert_allclose(np.asarray(folded.get_layer('conv2').bias),
                             np.asarray(model.get_layer('conv2').bias) * gamma,
                             rtol=1e-6)


def test_wrapping_keeps_the_function_and_strength_is_gamma_times_norm():
  model = randomise_bn(conv_bn_net())
  x, _ = data(8)
  pruned = tfprune.prune(model, SynapticStrength())
  wrapped = [w.layer.name for w in tfprune.wrapper.collect_wrappers(pruned)]
  assert wrapped == ['conv1', 'conv2']        # Dense is not a conv: skipped
  np.testing.assert_allclose(pruned(x, training=False),
                             model(x, training=False), atol=1e-5)
  kernel = np.asarray(model.get_layer('conv2').kernel)
  gamma = np.asarray(model.get_layer('bn2').gamma)
  expected = np.sqrt((kernel ** 2).sum((0, 1))) * np.abs(gamma)
  np.testing.assert_allclose(np.abs(strengths(pruned, 'conv2')), expected,
                             rtol=1e-5)
  info = tfprune.report(pruned)['methods']['synapticstrength_0']
  assert info['folded_bn'] == {'conv1': 'bn1', 'conv2': 'bn2'}


def test_effective_kernel_is_strength_times_unit_kernel():
  pruned = tfprune.prune(conv_bn_net(), SynapticStrength())
  wrapper = pruned.get_layer('pruned_conv2')
  s = np.random.default_rng(1).normal(size=(4, 6)).astype(np.float32)
  wrapper.gates[0].assign(s)
  kernel = wrapper.effective_weights()['kernel']
  np.testing.assert_allclose(np.sqrt((kernel ** 2).sum((0, 1))), np.abs(s),
                             rtol=1e-5)
  v = np.asarray(wrapper.layer.kernel)
  direction = v / np.sqrt((v ** 2).sum((0, 1)))
  np.testing.assert_allclose(kernel, s * direction, rtol=1e-5, atol=1e-7)


def test_written_out_gradients_equal_automatic_differentiation():
  # unit_norm_scaled writes its gradient by hand (fewer kernel-sized passes
  # per step); it must give what differentiating the formula gives, for the
  # kernel and the per-kernel factor, and 0 (not 0/0) on a pruned kernel.
  rng = np.random.default_rng(3)
  kernel = rng.normal(size=(3, 3, 4, 6)).astype(np.float32)
  factor = rng.normal(size=(4, 6)).astype(np.float32)
  kernel[:, :, 1, 2] = factor[1, 2] = 0     # a pruned kernel: masked, zeroed
  upstream = rng.normal(size=kernel.shape).astype(np.float32)
  v, f = tf.constant(kernel), tf.constant(factor)

  def reference(v, f):
    norm = tf.sqrt(tf.reduce_sum(tf.square(v), axis=(0, 1), keepdims=True) +
                   1e-12)
    return v / norm * f

  grads = []
  for fn in (lambda v, f: unit_norm_scaled(v, f, (0, 1), 1e-12), reference):
    with tf.GradientTape() as tape:
      tape.watch([v, f])
      out = fn(v, f)
      loss = tf.reduce_sum(out * upstream)
    grads.append([out] + tape.gradient(loss, [v, f]))
  for ours, expected in zip(*grads):
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=2e-5, atol=1e-6)
  assert np.isfinite(grads[0][1]).all()
  np.testing.assert_array_equal(grads[0][1][:, :, 1, 2], 0)
  assert float(tf.reduce_max(tf.abs(grads[0][2]))) > 0.1   # not all zero


def test_penalty_gradient_is_l1_times_sign_on_alive_connections():
  pruned = tfprune.prune(conv_bn_net(), SynapticStrength(l1=0.01))
  wrapper = pruned.get_layer('pruned_conv2')
  s = np.random.default_rng(2).normal(size=(4, 6)).astype(np.float32)
  wrapper.gates[0].assign(s)
  mask = np.ones((4, 6), np.float32)
  mask[1, 2] = mask[3, 0] = 0
  wrapper.masks[0].assign(mask)
  with tf.GradientTape() as tape:
    loss = tf.add_n(pruned.losses)
  grad = tape.gradient(loss, wrapper.gates[0])
  np.testing.assert_allclose(grad, 0.01 * np.sign(s) * mask, rtol=1e-6)
  conv1 = np.asarray(pruned.get_layer('pruned_conv1').gates[0])
  np.testing.assert_allclose(
      float(loss), 0.01 * (np.abs(s * mask).sum() + np.abs(conv1).sum()),
      rtol=1e-5)


@pytest.mark.parametrize('sparsity', [0.5, 0.9, 0.96, 0.3333])
def test_percentile_prunes_exactly_the_requested_fraction(sparsity):
  rng = np.random.default_rng(3)
  scores = [rng.normal(size=(1, 20)), rng.normal(size=(20, 50)),
            rng.normal(size=(50, 7))]
  kept = select_connections(scores, sparsity=sparsity)
  total = sum(s.size for s in scores)
  assert sum(int((k == 0).sum()) for k in kept) == round(sparsity * total)
  assert all(k.any() for k in kept)
  # apart from the one forced per layer, nothing pruned beats anything kept
  flat = np.concatenate([np.abs(s).ravel() for s in scores])
  keep = np.concatenate([k.ravel() for k in kept]) > 0
  forced = {int(np.argmax(np.abs(s))) + o for s, o in
            zip(scores, np.cumsum([0] + [s.size for s in scores[:-1]]))}
  free = np.array([i for i in np.flatnonzero(keep) if i not in forced])
  assert flat[~keep].max() <= flat[free].min()


def test_ties_are_broken_to_hit_the_count_and_threshold_mode():
  kept = select_connections([np.ones((4, 5)), np.ones((5, 2))], sparsity=0.5)
  assert sum(int(k.sum()) for k in kept) == 15
  kept = select_connections([np.array([[0.1, -0.5, 0.3]]),
                             np.array([[0.01, 0.02]])], threshold=0.2)
  np.testing.assert_array_equal(kept[0], [[0, 1, 1]])
  np.testing.assert_array_equal(kept[1], [[0, 1]])   # strongest one stays
  with pytest.raises(ValueError, match='largest possible is 0.6'):
    select_connections([np.ones((1, 2)), np.ones((1, 3))], sparsity=0.7)
  with pytest.raises(ValueError, match='exactly one'):
    select_connections([np.ones((1, 2))])


def test_penalised_training_then_one_prune_then_frozen_fine_tuning():
  x, y = data()
  steps_per_epoch = 4
  method = SynapticStrength(l1=1e-2, target=0.75)
  pruned = tfprune.prune(
      conv_bn_net(), method,
      schedule=tfprune.schedules.Periodic(2 * steps_per_epoch + 1, -1, 1))
  compile_fit(pruned, x, y, epochs=2)
  assert all(m.all() for m in masks(pruned))
  assert not method.is_frozen(tfprune.wrapper.collect_wrappers(pruned))
  assert float(tf.add_n(pruned.losses)) > 0
  compile_fit(pruned, x, y, epochs=1)    # the schedule point is its 1st step
  first = masks(pruned)
  assert sum(int((m == 0).sum()) for m in first) == round(0.75 * (8 + 24))
  assert float(tf.add_n(pruned.losses)) == 0.0
  compile_fit(pruned, x, y, epochs=1)    # later Periodic points: no-ops
  for a, b in zip(first, masks(pruned)):
    np.testing.assert_array_equal(a, b)
  info = tfprune.report(pruned)['methods']['synapticstrength_0']['pruned']
  assert info['step'] == 9 and info['frozen'] and info['sparsity'] == 0.75


def test_penalty_pulls_strengths_down():
  x, y = data()
  means = {}
  for l1 in (0.0, 0.05):
    keras.utils.set_random_seed(0)
    pruned = tfprune.prune(conv_bn_net(), SynapticStrength(l1=l1))
    compile_fit(pruned, x, y, epochs=10)
    means[l1] = np.abs(strengths(pruned, 'conv2')).mean()
  assert means[0.05] < 0.5 * means[0.0]


def test_gradual_tfmot_schedule_freezes_at_its_last_point():
  x, y = data()
  method = SynapticStrength(l1=1e-3)
  schedule = tfprune.schedules.PolynomialDecay(0.2, 0.6, 1, 5, frequency=2)
  pruned = tfprune.prune(conv_bn_net(), method, schedule=schedule)
  wrappers = tfprune.wrapper.collect_wrappers(pruned)
  compile_fit(pruned, x, y, epochs=1)    # 4 steps: points 1 and 3
  assert not method.is_frozen(wrappers)
  compile_fit(pruned, x, y, epochs=1)    # point 5 = end_step: last one
  assert method.is_frozen(wrappers)
  assert sum(int((m == 0).sum()) for m in masks(pruned)) == round(0.6 * 32)


def test_gradual_masks_only_shrink_and_kept_kernels_are_not_empty():
  pruned = tfprune.prune(conv_bn_net(), SynapticStrength(l1=1e-3),
                         schedule=tfprune.schedules.PolynomialDecay(
                             0.5, 0.75, 1, 9, frequency=4))
  wrappers = tfprune.wrapper.collect_wrappers(pruned)
  method = wrappers[0].method
  method.update_masks(wrappers, 0.5, 1)
  before = masks(pruned)
  for w in wrappers:          # alive strengths fall below the pruned ones
    w.gates[0].assign(w.gates[0] * 1e-3 * w.masks[0] +
                      w.gates[0] * (1 - w.masks[0]))
  method.update_masks(wrappers, 0.75, 5)
  for a, b in zip(before, masks(pruned)):
    assert not (b > a).any()
  for w in wrappers:
    kernel = w.effective_weights()['kernel']
    alive = np.abs(kernel).sum((0, 1)) > 0
    np.testing.assert_array_equal(alive, np.asarray(w.masks[0]) > 0)


def test_shared_batch_norm_is_not_folded():
  inputs = keras.Input((8, 8, 2))
  bn = L.BatchNormalization(name='bn')
  a = bn(L.Conv2D(3, 3, name='conv_a')(inputs))
  b = bn(L.Conv2D(3, 3, name='conv_b')(inputs))
  model = randomise_bn(keras.Model(inputs, L.Add()([a, b])))
  x, _ = data(4)
  pruned = tfprune.prune(model, SynapticStrength(), layers=['conv_a'])
  assert pruned.get_layer('bn').scale
  np.testing.assert_allclose(pruned(x, training=False),
                             model(x, training=False), atol=1e-5)


def test_callable_selection_survives_the_bn_fold():
  model = conv_bn_net()
  conv2 = model.get_layer('conv2')
  pruned = tfprune.prune(model, SynapticStrength(),
                         layers=lambda layer: layer is conv2)
  assert [w.layer.name for w in tfprune.wrapper.collect_wrappers(pruned)] == [
      'conv2']
  assert not pruned.get_layer('bn2').scale and pruned.get_layer('bn1').scale


def test_pruned_kernels_are_zero_in_the_stripped_model_and_the_tflite(
    tmp_path):
  x, y = data()
  model = randomise_bn(conv_bn_net())
  pruned = tfprune.prune(model, SynapticStrength(l1=0), schedule=0.8)
  compile_fit(pruned, x, y, epochs=1)
  stripped = tfprune.strip(pruned)
  for name, mask in zip(('conv1', 'conv2'), masks(pruned)):
    kernel = np.asarray(stripped.get_layer(name).kernel)
    np.testing.assert_array_equal(np.abs(kernel).sum((0, 1)) > 0, mask > 0)
  np.testing.assert_allclose(stripped.predict(x, verbose=0),
                             pruned.predict(x, verbose=0), atol=1e-5)
  path = str(tmp_path / 'ss.tflite')
  tflite_export.convert(stripped, path)
  result = tflite_export.check(path, tfprune.report(pruned))
  assert result.ok, result.failures
  assert {l.structure for l in result.layers if l.layer.startswith('conv')} \
      == {'kernel'}


def test_channels_without_connections_are_removed_by_shrink():
  x, _ = data(8)
  pruned = tfprune.prune(conv_bn_net(), SynapticStrength(l1=0))
  conv2 = pruned.get_layer('pruned_conv2')
  mask = np.ones((4, 6), np.float32)
  mask[1, :] = 0          # input channel 1 read by no kernel
  mask[:, 4] = 0          # output channel 4 has no kernel left
  conv2.assign_mask(0, mask)
  stripped = tfprune.strip(pruned)
  shrunk = tfprune.shrink(stripped)
  assert shrunk.get_layer('conv1').filters == 3
  assert shrunk.get_layer('conv2').filters == 5
  np.testing.assert_allclose(shrunk.predict(x, verbose=0),
                             stripped.predict(x, verbose=0), atol=1e-5)


def test_wrong_layers_and_schedules_are_refused():
  with pytest.raises(ValueError, match='Dense'):
    tfprune.prune(conv_bn_net(), SynapticStrength(), layers=['dense'])
  with pytest.raises(ValueError, match='whole channel'):
    tfprune.prune(conv_bn_net(depthwise=True), SynapticStrength(),
                  layers=['dw'])
  pruned = tfprune.prune(conv_bn_net(depthwise=True), SynapticStrength())
  assert [w.layer.name for w in tfprune.wrapper.collect_wrappers(pruned)] == [
      'conv1', 'conv2']
  with pytest.raises(ValueError, match='Periodic schedule gives no sparsity'):
    tfprune.prune(conv_bn_net(), SynapticStrength(),
                  schedule=tfprune.schedules.Periodic(3, 3))
  with pytest.raises(ValueError, match='got no schedule'):
    tfprune.prune(conv_bn_net(), SynapticStrength(target=0.9))
  with pytest.raises(ValueError, match='gives the sparsity itself'):
    tfprune.prune(conv_bn_net(), SynapticStrength(target=0.9),
                  schedule=tfprune.schedules.ConstantSparsity(0.9, 0))
  with pytest.raises(ValueError, match='not both'):
    SynapticStrength(target=0.9, threshold=0.1)
  with pytest.raises(ValueError, match='l1 must be'):
    SynapticStrength(l1=-1.0)


def test_saved_model_keeps_strengths_masks_and_penalty_state(tmp_path):
  x, _ = data(8)
  pruned = tfprune.prune(randomise_bn(conv_bn_net()),
                         SynapticStrength(l1=3e-4), schedule=0.5)
  path = str(tmp_path / 'ss.keras')
  pruned.save(path)
  with tfprune.custom_object_scope():
    loaded = keras.models.load_model(path)
  np.testing.assert_allclose(loaded.predict(x, verbose=0),
                             pruned.predict(x, verbose=0), atol=1e-6)
  np.testing.assert_array_equal(strengths(loaded, 'conv2'),
                                strengths(pruned, 'conv2'))
  method = loaded.get_layer('pruned_conv2').method
  assert isinstance(method, SynapticStrength) and method.l1 == 3e-4
  assert method.is_frozen(tfprune.wrapper.collect_wrappers(loaded))
  assert float(tf.add_n(loaded.losses)) == 0.0
  assert not loaded.get_layer('bn2').scale
  info = tfprune.report(loaded)['methods']['synapticstrength_0']
  assert info == tfprune.report(pruned)['methods']['synapticstrength_0']
  assert info['folded_bn'] == {'conv1': 'bn1', 'conv2': 'bn2'}   # run state
  assert info['pruned']['frozen']                                # saved


def test_max_ratio_floor_keeps_every_layer_from_collapsing():
  rng = np.random.RandomState(0)
  strong = rng.rand(8, 8) + 10.0            # one layer far stronger
  weak = rng.rand(8, 8) * 0.01              # one far weaker
  masks = select_connections([strong, weak], sparsity=0.5)
  assert masks[1].sum() == 1                # global ranking: 1 of 64 left
  masks = select_connections([strong, weak], sparsity=0.5, max_ratio=0.75)
  assert masks[1].sum() == 16               # floor: 25% of 64 kept
  assert masks[0].sum() + masks[1].sum() == 64
  kept_weak = weak.reshape(-1)[masks[1].reshape(-1) == 1]
  assert kept_weak.min() >= np.sort(weak.reshape(-1))[-16]   # the strongest
  masks = select_connections([strong, weak], threshold=5.0, max_ratio=0.75)
  assert masks[1].sum() == 16 and masks[0].all()
  with pytest.raises(ValueError, match='per-layer floors'):
    select_connections([strong, weak], sparsity=0.9, max_ratio=0.5)


def floor_net():
  """conv1 (4 -> 8, 32 connections, BN) -> conv2 (8 -> 8, 64, BN) -> Dense.

  bn1's gamma is tiny, so conv1's strengths (|gamma| * ||K||) are far below
  conv2's and a global ranking takes conv1's connections first.
  """
  inputs = keras.Input((8, 8, 4))
  x = L.Conv2D(8, 3, padding='same', use_bias=False, name='conv1')(inputs)
  x = L.BatchNormalization(name='bn1', gamma_initializer=keras.initializers
                           .Constant(1e-3))(x)
  x = L.ReLU()(x)
  x = L.Conv2D(8, 3, use_bias=False, name='conv2')(x)
  x = L.BatchNormalization(name='bn2')(x)
  x = L.GlobalAveragePooling2D()(x)
  return keras.Model(inputs, L.Dense(3, activation='softmax')(x))


def test_max_ratio_floor_through_prune_and_fit_and_its_config():
  keras.utils.set_random_seed(0)
  model = floor_net()
  # one-shot, no floor: conv1 keeps only its strongest connection of 32
  kept = masks(tfprune.prune(model, SynapticStrength(l1=0), schedule=0.85))
  assert [int(m.sum()) for m in kept] == [1, 13]
  # one-shot with the floor: at most 90% of each layer pruned, same total
  kept = masks(tfprune.prune(model, SynapticStrength(l1=0, max_ratio=0.9),
                             schedule=0.85))
  assert [int(m.sum()) for m in kept] == [4, 10]      # ceil(3.2), 14 - 4
  # penalised training, pruned once at a Periodic point by target=
  rng = np.random.default_rng(0)
  x = rng.normal(size=(32, 8, 8, 4)).astype(np.float32)
  y = (x[:, :4, :4, 0].sum((1, 2)) > 0).astype(np.int64)
  method = SynapticStrength(l1=1e-3, target=0.85, max_ratio=0.9)
  pruned = tfprune.prune(model, method,
                         schedule=tfprune.schedules.Periodic(3, 3, 1))
  compile_fit(pruned, x, y, epochs=2, lr=1e-3)    # 4 steps: pruned at step 3
  wrappers = tfprune.wrapper.collect_wrappers(pruned)
  assert method.is_frozen(wrappers)
  kept = masks(pruned)
  assert sum(int(m.sum()) for m in kept) == 96 - round(0.85 * 96)
  for m in kept:
    assert m.sum() / m.size >= 1 - 0.9
  # saved in the config, restored by name; bad values refused
  config = tfprune.methods.base.serialize(method)
  assert config['config']['max_ratio'] == 0.9
  assert tfprune.methods.base.deserialize(config).max_ratio == 0.9
  assert pruned.get_layer('pruned_conv1').method.max_ratio == 0.9
  for bad in (0.0, -0.1, 1.5):
    with pytest.raises(ValueError, match='max_ratio must be in'):
      SynapticStrength(target=0.5, max_ratio=bad)
  with pytest.raises(ValueError, match='per-layer floors'):   # 0.9 > 1 - 0.15
    tfprune.prune(model, SynapticStrength(l1=0, max_ratio=0.1), schedule=0.9)
