"""Zeroing under masks: weights, biases and optimizer state, in one call."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import tfprune
from conftest import random_batch, small_conv_model
from tfprune import optimizer_state, zeroing
from tfprune.wrapper import collect_wrappers, deferred_zeroing


class CheckZeros(keras.callbacks.Callback):
  """After PruningStep's hook: every weight, bias and Adam slot is exactly
  0 where its mask is 0 (recorded per batch)."""

  def __init__(self):
    super().__init__()
    self.violations = []
    self.masked = 0

  def on_train_batch_begin(self, batch, logs=None):
    for wrapper in collect_wrappers(self.model):
      for variable, keep in wrapper.masked_variables(0):
        self.masked += int((~keep).sum())
        for v in [variable] + optimizer_state.slot_variables(
            self.model.optimizer, variable):
          if np.any(np.asarray(v)[~keep] != 0):
            self.violations.append((batch, v.name))


def _gradual(structure):
  schedule = tfprune.schedules.PolynomialDecay(0.2, 0.7, 2, 8, frequency=2)
  model = tfprune.prune(small_conv_model(), schedule=schedule,
                        method=tfprune.methods.Magnitude(structure))
  model.compile(keras.optimizers.Adam(0.05),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  return model


def test_pruning_step_zeroes_weights_bias_and_state_in_a_traced_call():
  x, y = random_batch(n=30)
  model = _gradual('channel')      # channels own their bias
  step, check = tfprune.PruningStep(), CheckZeros()
  model.fit(x, y, batch_size=3, epochs=1, verbose=0, shuffle=False,
            callbacks=[step, check])   # 10 batches, updates at 2, 4, 6, 8
  assert check.masked > 0 and check.violations == []
  # steps 1 (no Adam state yet) and 2 ran eagerly; later ones traced once
  assert step._zeroing._function is not None     # pylint: disable=protected-access
  assert not any(w.pending_zeroing for w in collect_wrappers(model))


def _masked_model():
  model = tfprune.prune(small_conv_model(), schedule=0.5)
  dense = model.get_layer('pruned_dense')
  conv = model.get_layer('pruned_conv')
  return model, dense, conv


def test_deferred_mask_writes_leave_weights_to_the_zeroing():
  model, dense, _ = _masked_model()
  kernel = dense.prunable[0].variable
  kernel.assign(np.ones(kernel.shape, np.float32))
  dense.pending_zeroing.clear()
  mask = np.ones(dense.masks[0].shape, np.float32)
  mask[0] = 0
  with deferred_zeroing([dense]):
    dense.assign_mask(0, mask)
  assert dense.pending_zeroing == {0}
  assert np.all(np.asarray(kernel) == 1)          # not zeroed yet
  assert zeroing.Zeroing()(collect_wrappers(model), None)
  assert np.all(np.asarray(kernel)[0] == 0)
  assert np.all(np.asarray(kernel)[1:] == 1)
  assert not dense.pending_zeroing
  # outside the block a write zeroes at once
  mask[1] = 0
  dense.assign_mask(0, mask)
  assert np.all(np.asarray(kernel)[1] == 0) and dense.pending_zeroing == {0}


def test_first_call_is_eager_on_written_masks_then_traced_over_all():
  model, dense, conv = _masked_model()
  wrappers = collect_wrappers(model)
  assert zeroing.Zeroing()(wrappers, None)     # prune's one-shot writes
  z = zeroing.Zeroing()
  assert not z(wrappers, None)                 # nothing written since
  conv_kernel = conv.prunable[0].variable
  keep = np.asarray(conv.masks[0]) != 0
  stray = np.where(keep, np.asarray(conv_kernel), 7.0)    # nonzero under 0s
  for traced in (False, True):
    conv_kernel.assign(stray)
    dense.pending_zeroing.add(0)
    assert z(wrappers, None)
    # eager: only the written dense mask; traced: under every mask
    assert (z._function is not None) == traced   # pylint: disable=protected-access
    untouched = np.all(np.asarray(conv_kernel)[~keep] == 7.0)
    assert untouched != traced
  assert np.all(np.asarray(conv_kernel)[~keep] == 0)
  assert np.array_equal(np.asarray(conv_kernel)[keep], stray[keep])


# --- training steps that rely on the zeros ----------------------------------
class _OwnAdam(keras.optimizers.Adam):
  """Adam's arithmetic in a class tfprune does not know: it cannot vouch
  that zeroed entries stay 0, so the wrappers keep the forward product."""


class RecordKept(keras.callbacks.Callback):
  def __init__(self):
    super().__init__()
    self.kept = set()

  def on_train_batch_end(self, batch, logs=None):
    self.kept |= {w.zeros_kept for w in collect_wrappers(self.model)}


@pytest.fixture
def policy(request):
  keras.mixed_precision.set_global_policy(request.param)
  yield request.param
  keras.mixed_precision.set_global_policy('float32')


@pytest.mark.parametrize('structure, policy', [
    ('weight', 'float32'), ('channel', 'float32'),
    ('weight', 'mixed_bfloat16')], indirect=['policy'])
def test_skipping_the_forward_product_trains_bit_for_bit_alike(
    structure, policy):
  """Under mixed precision the gradient is masked in float32 (the stored
  dtype), the product's in bfloat16: 0/1 masking commutes with the cast."""
  x, y = random_batch(n=30)
  trained = {}
  initial = None
  for optimizer in (keras.optimizers.Adam, _OwnAdam):
    keras.utils.set_random_seed(0)
    model = _gradual(structure)
    initial = model.get_weights()
    model.compile(optimizer(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    record, check = RecordKept(), CheckZeros()
    model.fit(x, y, batch_size=3, epochs=2, verbose=0, shuffle=False,
              callbacks=[tfprune.PruningStep(), record, check])
    assert record.kept == {optimizer is keras.optimizers.Adam}
    assert check.masked > 0 and check.violations == []
    assert not any(w.zeros_kept for w in collect_wrappers(model))  # fit ended
    trained[optimizer] = model.get_weights()
  for fast, exact in zip(*trained.values()):
    np.testing.assert_array_equal(fast, exact)
  changed = [not np.array_equal(a, b) for a, b in zip(initial, trained[_OwnAdam])]
  assert sum(changed) >= 4            # kernels and biases trained


def _products_of_shape(layer, x, shape):
  """Multiplies in the graph of a training call whose output has ``shape``
  (``layer``: a wrapper or a whole model)."""
  graph = tf.function(lambda t: layer(t, training=True)).get_concrete_function(
      tf.TensorSpec(x.shape, tf.float32)).graph
  return [op for op in graph.get_operations() if op.type == 'Mul' and
          tuple(op.outputs[0].shape) == tuple(shape)]


def test_a_kept_zeros_training_call_has_no_kernel_product():
  model, dense, _ = _masked_model()
  x = np.zeros((2,) + tuple(dense.input_shape[1:]), np.float32)
  kernel_shape = dense.prunable[0].variable.shape
  assert len(_products_of_shape(dense, x, kernel_shape)) == 1
  dense.zeros_kept = True
  assert _products_of_shape(dense, x, kernel_shape) == []
  # through the functional model, as fit calls it
  inputs = np.zeros((2,) + tuple(model.input_shape[1:]), np.float32)
  assert _products_of_shape(model, inputs, kernel_shape) == []
  dense.zeros_kept = False
  assert len(_products_of_shape(model, inputs, kernel_shape)) == 1
  # inference keeps the product: it must be exact whatever the weights hold
  graph = tf.function(lambda t: dense(t, training=False)).get_concrete_function(
      tf.TensorSpec(x.shape, tf.float32)).graph
  assert any(op.type == 'Mul' for op in graph.get_operations())


def test_fit_restores_zeros_a_set_weights_wrote_under_masks():
  x, y = random_batch(n=6)
  model, dense, _ = _masked_model()
  model.compile(keras.optimizers.SGD(0.0),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  step = tfprune.PruningStep()
  model.fit(x, y, batch_size=3, verbose=0, callbacks=[step])
  assert not any(w.pending_zeroing for w in collect_wrappers(model))
  kernel = dense.prunable[0].variable
  keep = np.asarray(dense.masks[0]) != 0
  assert not keep.all()
  kernel.assign(np.full(kernel.shape, 3.0, np.float32))
  assert zeroing.restore(collect_wrappers(model), None) == 1
  assert np.all(np.asarray(kernel)[~keep] == 0)
  assert zeroing.restore(collect_wrappers(model), None) == 0  # read only
  # a second fit (nothing pending, no mask due) starts from the zeros
  kernel.assign(np.full(kernel.shape, 3.0, np.float32))
  check = CheckZeros()
  model.fit(x, y, batch_size=3, verbose=0, callbacks=[step, check])
  assert check.masked > 0 and check.violations == []
  assert np.all(np.asarray(kernel)[keep] == 3.0)   # lr 0: the kept stay


def _step_products(model, kernel, kind='Mul'):
  """Ops of ``kind`` the size of ``kernel`` (a variable) in a traced
  training step (forward and gradient) of ``model``."""
  x = np.zeros((2,) + tuple(model.input_shape[1:]), np.float32)

  def step(t):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(model(t, training=True))
    return tape.gradient(loss, kernel)

  graph = tf.function(step).get_concrete_function(
      tf.TensorSpec(x.shape, tf.float32)).graph
  return [op for op in graph.get_operations() if op.type == kind and
          tuple(op.outputs[0].shape) == tuple(kernel.shape)]


def _mlp():
  inputs = keras.Input((6,))
  # tanh'(0) = 1: a removed unit's output still has a gradient to mask
  x = keras.layers.Dense(8, activation='tanh', name='hidden')(inputs)
  return keras.Model(inputs, keras.layers.Dense(3, name='out')(x))


@pytest.mark.parametrize('structure, products', [
    ('weight', 1),        # the gradient's mask
    ('channel', 0)])      # the output's gradient is masked per unit
def test_kept_zeros_step_multiplies_a_dense_kernel_at_most_once(
    structure, products):
  model = tfprune.prune(_mlp(), schedule=0.5,
                        method=tfprune.methods.Magnitude(structure))
  hidden = model.get_layer('pruned_hidden')
  kernel = hidden.prunable[0].variable
  assert len(_step_products(model, kernel)) >= 2   # forward and gradient
  hidden.zeros_kept = True
  assert len(_step_products(model, kernel)) == products


@pytest.mark.parametrize('policy', ['mixed_bfloat16'], indirect=True)
def test_kept_zeros_step_casts_a_weight_masked_kernel_like_a_plain_one(
    policy):
  """Under mixed precision a plain layer casts its kernel to bfloat16 and
  the kernel's gradient back: two kernel-sized casts. A kept-zeros step of
  a weight-masked kernel has the same two; its kernel-sized mask is read
  as stored (float32), not cast to bfloat16 and back."""
  plain = _mlp()
  assert len(_step_products(plain, plain.get_layer('hidden').kernel,
                            'Cast')) == 2
  model = tfprune.prune(_mlp(), schedule=0.5,
                        method=tfprune.methods.Magnitude('weight'))
  hidden = model.get_layer('pruned_hidden')
  hidden.zeros_kept = True
  kernel = hidden.prunable[0].variable
  assert len(_step_products(model, kernel, 'Cast')) == 2
  assert len(_step_products(model, kernel)) == 1


def test_unit_masked_dense_output_trains_bit_for_bit_like_the_product():
  rng = np.random.RandomState(0)
  x, y = rng.rand(30, 6).astype(np.float32), rng.randint(0, 3, 30)
  trained, kept = {}, {}
  for optimizer in (keras.optimizers.Adam, _OwnAdam):
    keras.utils.set_random_seed(0)
    model = tfprune.prune(_mlp(), tfprune.methods.Magnitude('channel'),
                          tfprune.schedules.PolynomialDecay(
                              0.2, 0.6, 2, 8, frequency=2))
    model.compile(optimizer(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    record, check = RecordKept(), CheckZeros()
    model.fit(x, y, batch_size=3, epochs=2, verbose=0, shuffle=False,
              callbacks=[tfprune.PruningStep(), record, check])
    assert check.masked > 0 and check.violations == []
    trained[optimizer], kept[optimizer] = model.get_weights(), record.kept
  assert kept == {keras.optimizers.Adam: {True}, _OwnAdam: {False}}
  for fast, exact in zip(*trained.values()):
    np.testing.assert_array_equal(fast, exact)


@pytest.mark.parametrize('run_eagerly, masked_gradients', [(False, True),
                                                           (True, False)])
def test_eager_steps_keep_the_products(monkeypatch, run_eagerly,
                                       masked_gradients):
  """Only traced steps mask gradients instead of multiplying: eager ops
  are dispatched one by one, and the custom gradient costs more of them
  than the product it saves."""
  from tfprune import wrapper as wrapper_lib  # pylint: disable=g-import-not-at-top
  calls = []
  real = wrapper_lib._gradient_masked  # pylint: disable=protected-access
  monkeypatch.setattr(wrapper_lib, '_gradient_masked',
                      lambda value, factor: calls.append(1) or
                      real(value, factor))
  x, y = random_batch(n=6)
  model, _, _ = _masked_model()
  model.compile(keras.optimizers.Adam(0.01),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                run_eagerly=run_eagerly)
  check = CheckZeros()
  model.fit(x, y, batch_size=3, verbose=0,
            callbacks=[tfprune.PruningStep(), check])
  assert bool(calls) is masked_gradients
  assert check.masked > 0 and check.violations == []
