"""reset_slots zeroes per-weight optimizer state exactly where asked."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tfprune import optimizer_state


@pytest.mark.parametrize('make, n_slots', [
    (lambda: keras.optimizers.Adam(0.1), 2),
    (lambda: keras.optimizers.SGD(0.1, momentum=0.9), 1),
    (lambda: keras.optimizers.legacy.Adam(0.1), 2),
])
def test_reset_only_the_chosen_entries(make, n_slots):
  optimizer = make()
  var = tf.Variable(np.ones((3, 4), np.float32))
  other = tf.Variable(np.ones((3, 4), np.float32))
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
