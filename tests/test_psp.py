"""PSP: structure parameters alpha, decay, straight-through threshold, freeze."""

import logging

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import tfprune
import tflite_export
from tfprune.methods import PSP
from tfprune.methods.psp import alpha_sparsity

L = keras.layers


def conv_net():
  inputs = keras.Input((6, 6, 3))
  x = L.Conv2D(4, 3, name='conv')(inputs)
  x = L.Flatten(name='flat')(x)
  outputs = L.Dense(2, name='dense')(x)
  return keras.Model(inputs, outputs)


def wrappers(model):
  return tfprune.wrapper.collect_wrappers(model)


@pytest.mark.parametrize('structure,shape', [
    ('column', (3, 3, 3, 1)), ('input_channel', (1, 1, 3, 1)),
    ('filter', (1, 1, 1, 4))])
def test_alpha_gradient_is_the_structure_sum_of_dq_times_w(structure, shape):
  model = conv_net()
  rng = np.random.default_rng(0)
  x = rng.normal(size=(5, 6, 6, 3)).astype(np.float32)
  pruned = tfprune.prune(model, PSP(structure, weight_decay=0),
                         layers=['conv'])
  wrapper = wrappers(pruned)[0]
  alpha = rng.uniform(0.5, 1.5, wrapper.gates[0].shape).astype(np.float32)
  wrapper.gates[0].assign(alpha)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(pruned(x) ** 2)
  grad = tape.gradient(loss, wrapper.gates[0]).numpy()
  # the same loss with q as a free variable
  w = np.asarray(wrapper.layer.kernel)
  q = tf.Variable(w * alpha.reshape(shape))
  plain = keras.models.clone_model(model)
  plain.set_weights(model.get_weights())
  conv = plain.get_layer('conv')
  with tf.GradientTape() as tape:
    object.__setattr__(conv, 'kernel', q)
    loss_q = tf.reduce_sum(plain(x) ** 2)
  dq = tape.gradient(loss_q, q).numpy()
  np.testing.assert_allclose(float(loss), float(loss_q), rtol=1e-5)
  axes = tuple(a for a in range(4) if shape[a] == 1)
  expected = (dq * w).sum(axis=axes).reshape(grad.shape)
  np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)


def _dense_data(n=64):
  rng = np.random.default_rng(1)
  x = rng.normal(size=(n, 4)).astype(np.float32)
  x[:, 3] = 0.0                        # input 3 carries nothing
  y = (x[:, 0] + x[:, 1] - x[:, 2] > 0).astype(np.int64)
  return x, y


def _dense_model():
  inputs = keras.Input((4,))
  outputs = L.Dense(2, activation='softmax', name='fc')(inputs)
  return keras.Model(inputs, outputs)


def _fit(model, x, y, epochs, optimizer=None):
  model.compile(optimizer or keras.optimizers.SGD(0.1, momentum=0.9),
                'sparse_categorical_crossentropy')
  model.fit(x, y, epochs=epochs, batch_size=16, verbose=0,
            callbacks=[tfprune.PruningStep()])


def test_decay_drives_an_unused_alpha_under_epsilon():
  x, y = _dense_data()
  pruned = tfprune.prune(_dense_model(), PSP('column', weight_decay=0.1))
  _fit(pruned, x, y, epochs=30)   # decay alone: |alpha| ~ 0.95^step envelope
  alpha = np.abs(np.asarray(wrappers(pruned)[0].gates[0])).ravel()
  assert alpha[3] < 1e-2 < alpha[0]
  assert min(alpha[:3]) > 0.3
  kernel = tfprune.strip(pruned).get_layer('fc').kernel.numpy()
  assert not kernel[3].any() and kernel[0].all()   # thresholded in strip
  assert alpha_sparsity(wrappers(pruned))['total'] >= 0.25


def test_straight_through_lets_a_pruned_structure_come_back():
  x, y = _dense_data()
  pruned = tfprune.prune(_dense_model(), PSP('column', weight_decay=0))
  wrapper = wrappers(pruned)[0]
  wrapper.gates[0].assign([1.0, 1e-3, 1.0, 1.0])  # input 1 is cut
  wrapper.pruning_step.assign(5)                      # thresholding active
  assert not wrapper.effective_weights()['kernel'][1].any()
  with tf.GradientTape() as tape:
    loss = tf.reduce_mean(
        keras.losses.sparse_categorical_crossentropy(y, pruned(x)))
  grad = tape.gradient(loss, wrapper.gates[0]).numpy()
  assert abs(grad[1]) > 1e-4          # the cut structure still learns
  _fit(pruned, x, y, epochs=10)
  assert abs(float(wrapper.gates[0][1])) > 1e-2
  assert wrapper.effective_weights()['kernel'][1].all()


def test_freeze_step_fixes_the_masks():
  x, y = _dense_data()
  method = PSP('column', weight_decay=0.1, freeze_step=120)
  pruned = tfprune.prune(_dense_model(), method)
  wrapper = wrappers(pruned)[0]
  _fit(pruned, x, y, epochs=30)          # 120 steps: frozen at the last
  mask = np.asarray(wrapper.masks[0]).ravel()
  np.testing.assert_array_equal(mask, [1, 1, 1, 0])
  assert method.report_info()['frozen_at'] == 120
  assert not np.asarray(wrapper.layer.kernel)[3].any()
  wrapper.gates[0].assign(np.ones(4))   # alpha back up: stays pruned
  _fit(pruned, x, y, epochs=1)
  assert not wrapper.effective_weights()['kernel'][3].any()
  np.testing.assert_array_equal(np.asarray(wrapper.masks[0]).ravel(), mask)


def test_target_mode_keeps_the_largest_alphas_per_layer():
  pruned = tfprune.prune(
      conv_net(), PSP('filter', weight_decay=0),
      schedule=tfprune.schedules.ConstantSparsity(0.5, 0, frequency=1))
  conv = pruned.get_layer('pruned_conv')
  conv.gates[0].assign(np.array([0.1, 2.0, -3.0, 0.5], np.float32))
  conv.method.update_masks([conv], 0.5, 1)
  np.testing.assert_array_equal(np.asarray(conv.masks[0]), [0, 1, 1, 0])
  conv.pruning_step.assign(1)
  # target mode: no epsilon threshold, alpha only scales
  conv.gates[0].assign(np.array([1e-3, 1e-3, 1.0, 1.0], np.float32))
  kernel = conv.effective_weights()['kernel']
  assert np.abs(kernel[..., 1]).sum() > 0


def test_layer_structure_only_on_residual_branches():
  model = tfprune.models.resnet(20, input_shape=(8, 8, 1), width=0.25)
  ok = ['s1b1_conv1', 's1b1_conv2', 's2b2_conv2']
  pruned = tfprune.prune(model, PSP('layer'), layers=ok)
  assert len(wrappers(pruned)) == 3
  for bad in ('stem', 's2b1_conv1', 's2b1_proj'):   # s2b1 has a projection
    with pytest.raises(ValueError, match='no identity shortcut'):
      tfprune.prune(model, PSP('layer'), layers=[bad])
  with pytest.raises(ValueError, match='no identity shortcut'):
    tfprune.prune(conv_net(), PSP('layer'))


def test_filter_pruning_strips_shrinks_and_exports(tmp_path):
  model = conv_net()
  pruned = tfprune.prune(model, PSP('filter'), layers=['conv'])
  conv = pruned.get_layer('pruned_conv')
  conv.gates[0].assign(np.array([1.0, 1e-3, 0.7, 1e-4], np.float32))
  conv.pruning_step.assign(1)
  x = np.random.default_rng(2).normal(size=(4, 6, 6, 3)).astype(np.float32)
  stripped = tfprune.strip(pruned)
  np.testing.assert_allclose(stripped.predict(x, verbose=0),
                             pruned.predict(x, verbose=0), atol=1e-5)
  shrunk = tfprune.shrink(stripped)
  assert shrunk.get_layer('conv').filters == 2
  np.testing.assert_allclose(shrunk.predict(x, verbose=0),
                             stripped.predict(x, verbose=0), atol=1e-5)
  col = tfprune.prune(model, PSP('column'), layers=['conv'])
  wrapper = col.get_layer('pruned_conv')
  alpha = np.ones((3, 3, 3), np.float32)
  alpha[0, :, 1] = 0.0
  wrapper.gates[0].assign(alpha)
  path = str(tmp_path / 'col.tflite')
  tflite_export.convert(tfprune.strip(col), path)
  result = tflite_export.check(path, tfprune.report(col))
  assert result.ok, result.failures
  entry = next(l for l in result.layers if l.layer == 'conv')
  assert entry.structure == 'column'


def test_adaptive_optimizer_warns_and_bad_arguments_fail(caplog):
  x, y = _dense_data()
  pruned = tfprune.prune(_dense_model(), PSP())
  with caplog.at_level(logging.WARNING, logger='tfprune'):
    _fit(pruned, x, y, 1, keras.optimizers.Adam(1e-3))
  assert 'SGD(momentum=0.9)' in caplog.text
  with pytest.raises(ValueError, match='PSP structures'):
    PSP('kernel')
  with pytest.raises(ValueError, match='must come after'):
    PSP(begin_step=10, freeze_step=5)
  with pytest.raises(ValueError, match='freeze_step='):
    tfprune.prune(_dense_model(), PSP(),
                  schedule=tfprune.schedules.Periodic(3, 3))


def test_saved_model_round_trip(tmp_path):
  x, y = _dense_data()
  method = PSP('filter', weight_decay=1e-3, epsilon=0.05, freeze_step=40)
  pruned = tfprune.prune(conv_net(), method, layers=['conv'])
  xc = np.random.default_rng(3).normal(size=(4, 6, 6, 3)).astype(np.float32)
  pruned.get_layer('pruned_conv').gates[0].assign(
      np.array([1.0, 0.01, 0.7, 2.0], np.float32))
  pruned.get_layer('pruned_conv').pruning_step.assign(3)
  path = str(tmp_path / 'psp.keras')
  pruned.save(path)
  with tfprune.custom_object_scope():
    loaded = keras.models.load_model(path)
  np.testing.assert_allclose(loaded.predict(xc, verbose=0),
                             pruned.predict(xc, verbose=0), atol=1e-6)
  again = loaded.get_layer('pruned_conv')
  assert again.method.get_config() == method.get_config()
  assert again.method.get_config()['structure'] == 'filter'
  assert isinstance(again.schedule, tfprune.schedules.Periodic)
  assert again.schedule.begin_step == 40
  del x, y


def test_decay_is_lambda_alpha_per_unit_learning_rate():
  x, y = _dense_data(16)
  pruned = tfprune.prune(_dense_model(), PSP('column', weight_decay=0.2,
                                             begin_step=1000))
  wrapper = wrappers(pruned)[0]
  wrapper.gates[0].assign([1.0, 1.0, 1.0, 0.5])
  _fit(pruned, x, y, 1, keras.optimizers.SGD(0.1))   # one batch, no momentum
  # input 3 is always 0: only the decay moves its alpha, by lr * lambda * a
  np.testing.assert_allclose(float(wrapper.gates[0][3]), 0.5 * (1 - 0.02),
                             rtol=1e-6)


def test_freezing_a_filter_with_a_bias_keeps_the_output():
  model = _dense_model()
  model.get_layer('fc').bias.assign([0.5, -2.0])
  pruned = tfprune.prune(model, PSP('filter', weight_decay=0, freeze_step=5),
                         layers=['fc'])       # the logits, named explicitly
  wrapper = wrappers(pruned)[0]
  wrapper.gates[0].assign([1e-3, 1.5])
  wrapper.pruning_step.assign(3)                    # thresholding, not frozen
  x, _ = _dense_data(8)
  before = pruned.predict(x, verbose=0)
  wrapper.pruning_step.assign(5)
  wrapper.method.update_masks([wrapper], None, 5)   # the freeze
  np.testing.assert_array_equal(np.asarray(wrapper.masks[0]), [0, 1])
  np.testing.assert_allclose(pruned.predict(x, verbose=0), before, atol=1e-6)
  np.testing.assert_allclose(np.asarray(wrapper.layer.bias), [0.0, -2.0])


def test_target_mode_through_fit_and_layers_ranked_globally():
  x, y = _dense_data()
  pruned = tfprune.prune(
      _dense_model(), PSP('column', weight_decay=0),
      schedule=tfprune.schedules.PolynomialDecay(0.25, 0.5, 1, 4, frequency=1))
  _fit(pruned, x, y, epochs=1)
  assert np.asarray(wrappers(pruned)[0].masks[0]).sum() == 2
  model = tfprune.models.resnet(20, input_shape=(8, 8, 1), width=0.25)
  block_convs = ['s1b1_conv1', 's1b1_conv2', 's1b2_conv1', 's1b2_conv2']
  pruned = tfprune.prune(model, PSP('layer'), layers=block_convs,
                         schedule=tfprune.schedules.ConstantSparsity(0.5, 0))
  group = wrappers(pruned)
  for wrapper, alpha in zip(group, (0.3, 2.0, 0.1, 1.0)):
    wrapper.gates[0].assign(np.full(wrapper.gates[0].shape, alpha))
  group[0].method.update_masks(group, 0.5, 1)
  assert [float(np.asarray(w.masks[0]).sum()) for w in group] == [0, 1, 0, 1]


def test_modes_that_would_do_nothing_are_refused():
  with pytest.raises(ValueError, match='nothing to rank'):
    tfprune.prune(_dense_model(), PSP(), schedule=0.5)
  with pytest.raises(ValueError, match='must come after'):
    PSP(freeze_step=0)
  with pytest.raises(ValueError, match='learned mode'):
    tfprune.prune(_dense_model(), PSP(freeze_step=10),
                  schedule=tfprune.schedules.ConstantSparsity(0.5, 0))


class _UsersSGD(keras.optimizers.SGD):
  """SGD in a class tfprune does not vouch for: the product path."""


def _mlp():
  inputs = keras.Input((4,))
  x = L.Dense(6, activation='relu', name='hidden')(inputs)
  outputs = L.Dense(2, activation='softmax', name='fc')(x)
  return keras.Model(inputs, outputs)


@pytest.mark.parametrize('structure', ['filter', 'column'])
def test_dense_gates_outside_the_kernel_train_like_the_product(structure):
  """A fast step applies a Dense's alphas to its output (filter) or input
  (column) instead of its kernel: no kernel-sized product in the step, and
  the same training as the product up to float rounding (masks included:
  frozen at step 24 of 40)."""
  x, y = _dense_data()
  trained = {}
  for optimizer in (keras.optimizers.SGD, _UsersSGD):
    keras.utils.set_random_seed(0)
    pruned = tfprune.prune(_mlp(), PSP(structure, weight_decay=1.0,
                                       epsilon=0.1, freeze_step=24))
    _fit(pruned, x, y, epochs=10, optimizer=optimizer(0.1))
    trained[optimizer] = pruned
  fast, exact = trained.values()
  assert {w.zeros_kept for w in wrappers(fast)} == {False}   # after fit
  for a, b in zip(fast.get_weights(), exact.get_weights()):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
  masks = np.concatenate([np.asarray(w.masks[0]).ravel()
                          for w in wrappers(fast)])
  assert 0 < (masks == 0).sum() < masks.size, (masks == 0).sum()
  hidden = wrappers(fast)[0]
  hidden.zeros_kept = True
  kernel = hidden.prunable[0].variable
  graph = tf.function(lambda t: hidden(t, training=True)).get_concrete_function(
      tf.TensorSpec((None, 4), tf.float32)).graph
  assert not [op for op in graph.get_operations() if op.type == 'Mul' and
              tuple(op.outputs[0].shape) == tuple(kernel.shape)]


def test_a_filter_gate_is_thresholded_once_per_call_for_kernel_and_bias(
    monkeypatch):
  """The kernel and its bias share one gate value per call (an eager step
  would otherwise run PSP's threshold twice per layer), and the output is
  still (W * a) x + b * a."""
  model = conv_net()
  pruned = tfprune.prune(model, PSP('filter', weight_decay=0),
                         layers=['conv'])
  wrapper = wrappers(pruned)[0]
  wrapper.gates[0].assign([1e-3, 1.5, -0.7, 2.0])
  wrapper.layer.bias.assign([0.5, -2.0, 1.0, 0.25])
  wrapper.pruning_step.assign(1)
  calls = []
  real = PSP.gate_value
  monkeypatch.setattr(PSP, 'gate_value',
                      lambda self, gate, w: calls.append(w) or
                      real(self, gate, w))
  x = np.random.RandomState(0).rand(2, 6, 6, 3).astype(np.float32)
  out = wrapper(x, training=False).numpy()
  assert len(calls) == 1
  alpha = np.array([0.0, 1.5, -0.7, 2.0], np.float32)   # 1e-3 < epsilon
  kernel = wrapper.layer.kernel.numpy() * alpha
  bias = wrapper.layer.bias.numpy() * alpha
  expected = tf.nn.conv2d(x, kernel, 1, 'VALID').numpy() + bias
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
