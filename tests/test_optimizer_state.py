"""reset_slots zeroes per-weight optimizer state exactly where asked."""

import numpy as np
import pytest
import tensorflow as tf
import keras as keras3
import tf_keras as keras

from tfprune import optimizer_state


@pytest.mark.parametrize('make, n_slots, variable', [
    (lambda: keras.optimizers.Adam(0.1), 2, tf.Variable),
    (lambda: keras.optimizers.SGD(0.1, momentum=0.9), 1, tf.Variable),
    (lambda: keras.optimizers.legacy.Adam(0.1), 2, tf.Variable),
    (lambda: keras3.optimizers.Adam(0.1), 2, keras3.Variable),
    (lambda: keras3.optimizers.SGD(0.1, momentum=0.9), 1, keras3.Variable),
])
def test_reset_only_the_chosen_entries(make, n_slots, variable):
  optimizer = make()
  var = variable(np.ones((3, 4), np.float32))
  other = variable(np.ones((3, 4), np.float32))
  assert optimizer_state.reset_slots(optimizer, var, np.ones((3, 4))) == 0
  for _ in range(2):
    optimizer.apply_gradients([(tf.ones((3, 4)), var),
                               (tf.ones((3, 4)), other)])
  where = np.zeros((3, 4), bool)
  where[1, 2] = where[0, 0] = True
  assert optimizer_state.reset_slots(optimizer, var, where) == n_slots
  for slot in optimizer_state.slot_variables(optimizer, var):
    value = np.asarray(slot)
    assert (value[where] == 0).all() and (value[~where] != 0).all()
  for slot in optimizer_state.slot_variables(optimizer, other):
    assert (np.asarray(slot) != 0).all()


def test_no_optimizer_means_no_state():
  var = tf.Variable(np.ones(2, np.float32))
  assert optimizer_state.reset_slots(None, var, [True, False]) == 0


class _Noisy(keras.optimizers.Adam):
  """A user's optimizer: tfprune cannot know what it does at a 0."""


@pytest.mark.parametrize('make, kept', [
    (lambda: keras.optimizers.Adam(), True),
    (lambda: keras.optimizers.SGD(momentum=0.9), True),
    (lambda: keras.optimizers.legacy.RMSprop(), True),
    (lambda: keras.mixed_precision.LossScaleOptimizer(
        keras.optimizers.Adam()), True),
    (lambda: keras3.optimizers.AdamW(), True),
    (lambda: keras3.optimizers.LossScaleOptimizer(
        keras3.optimizers.Lion()), True),
    (lambda: keras3.optimizers.Muon(), False),        # whole-matrix updates
    (lambda: keras.optimizers.Adam(use_ema=True), False),
    (lambda: _Noisy(), False),
    (lambda: None, False),
])
def test_keeps_zeros_only_for_known_elementwise_optimizers(make, kept):
  assert optimizer_state.keeps_zeros(make()) is kept
