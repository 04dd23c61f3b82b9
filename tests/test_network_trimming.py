"""Network Trimming: APoZ, the trim rule, the callback and the driver."""

import numpy as np
import pytest
import tf_keras as keras

import tfprune
from tfprune import apoz
from tfprune import TrimmingCallback, trim_and_retrain
from tfprune.methods import NetworkTrimming
from tfprune.methods.network_trimming import select_units

L = keras.layers


def test_apoz_counts_exact_zeros_per_unit_and_position():
  # Dense(identity, relu): unit j is zero exactly where input j is <= 0.
  inputs = keras.Input((3,))
  out = L.Dense(3, activation='relu', use_bias=False, name='fc',
                kernel_initializer='identity')(inputs)
  model = keras.Model(inputs, out)
  x = np.array([[1, -1, 0], [2, -3, 1], [-1, -2, 5], [1, 1, 1]], np.float32)
  np.testing.assert_allclose(apoz.measure(model, x, ['fc'], batch_size=3)['fc'],
                             [1 / 4, 3 / 4, 1 / 4])
  # Conv2D 1x1 -> BN (identity at init) -> ReLU: zeros over 2x2 positions
  inputs = keras.Input((2, 2, 2))
  conv = L.Conv2D(2, 1, use_bias=False, name='conv')
  y = conv(inputs)
  y = L.BatchNormalization(epsilon=0.0, name='bn')(y)
  y = L.ReLU(name='relu')(y)
  model = keras.Model(inputs, L.GlobalAveragePooling2D()(y))
  conv.set_weights([np.eye(2, dtype=np.float32).reshape(1, 1, 2, 2)])
  x = np.ones((2, 2, 2, 2), np.float32)
  x[0, 0, 0, 0] = x[1, :, :, 1] = -1        # channel 0: 1 of 8, channel 1: 4
  np.testing.assert_allclose(apoz.measure(model, x, ['conv'])['conv'],
                             [1 / 8, 4 / 8])


def test_apoz_needs_a_relu():
  inputs = keras.Input((3,))
  out = L.Dense(2, name='fc')(inputs)
  with pytest.raises(ValueError, match="'fc' is not followed by a ReLU"):
    apoz.measure(keras.Model(inputs, out), np.ones((1, 3)), ['fc'])


def test_rule_picks_exactly_the_expected_units():
  values = np.array([0.1, 0.2, 0.3, 0.9, 0.95])
  alive = np.array([True, True, True, True, False])
  # alive: mean 0.375, std 0.3112 -> cut 0.686: only unit 3 (4 is gone)
  np.testing.assert_array_equal(select_units(values, alive), [3])
  np.testing.assert_array_equal(
      select_units(values, alive, threshold_std=0.0), [3])
  np.testing.assert_array_equal(
      select_units(values, alive, threshold_std=-1.0), [1, 2, 3])
  np.testing.assert_array_equal(
      select_units(values, alive, fraction=0.5), [2, 3])
  np.testing.assert_array_equal(                  # keeps 3 alive: trims 1
      select_units(values, alive, threshold_std=-1.0, min_units=3), [3])
  assert select_units(np.full(4, 0.5), np.ones(4, bool)).size == 0


def test_highest_mean_apoz_layers_first():
  method = NetworkTrimming(layers_per_trim=1)
  values = {'a': np.array([0.1, 0.1, 0.9]), 'b': np.array([0.5, 0.6, 0.99])}
  alive = {n: np.ones(3, bool) for n in values}
  chosen = method.choose(values, alive)
  assert list(chosen) == ['b']


def _conv_net():
  inputs = keras.Input((8, 8, 1))
  x = L.Conv2D(6, 3, activation='relu', name='conv')(inputs)
  x = L.MaxPooling2D(2, name='pool')(x)
  x = L.Flatten(name='flat')(x)
  x = L.Dense(12, activation='relu', name='fc')(x)
  return keras.Model(inputs, L.Dense(10, activation='softmax',
                                     name='logits')(x))


def _digits():
  x, y = tfprune.data.load('digits', 'train')
  return (x[:1000], y[:1000]), (x[1000:], y[1000:])


def test_callback_trims_at_its_epochs_and_masks_reach_the_next_dense():
  (x, y), (x_val, y_val) = _digits()
  method = NetworkTrimming(threshold_std=0.0)
  pruned = tfprune.prune(_conv_net(), method, None, layers=['conv', 'fc'])
  pruned.compile('adam', 'sparse_categorical_crossentropy')
  trimming = TrimmingCallback(x_val, epochs=[1, 3])
  pruned.fit(x, y, epochs=3, batch_size=50, verbose=0,
             callbacks=[tfprune.PruningStep(), trimming])
  assert [h['epoch'] for h in trimming.history] == [1, 3]
  first = trimming.history[0]
  assert first['widths']['conv'] == 6 - len(first['trimmed']['conv'])
  conv_mask = np.asarray(pruned.get_layer('pruned_conv').masks[0])
  trimmed = np.flatnonzero(conv_mask == 0)
  assert trimmed.size > 0
  # the trimmed channels' flat rows (c, c+6, ...) leave ip1 after shrink
  _, plan = tfprune.shrink(tfprune.strip(pruned), return_plan=True)
  assert plan.layers['conv'].removed.tolist() == trimmed.tolist()
  rows = np.asarray(plan.layers['fc'].kept_inputs)
  assert not np.isin(rows % 6, trimmed).any()
  assert rows.size == (6 - trimmed.size) * 9


def test_driver_trims_shrinks_and_stops_on_tolerance():
  (x, y), (x_val, y_val) = _digits()
  model = _conv_net()

  def compile_fn(m):
    m.compile(keras.optimizers.Adam(0.01), 'sparse_categorical_crossentropy')

  compile_fn(model)
  model.fit(x, y, epochs=5, batch_size=50, verbose=0)
  small, history = trim_and_retrain(model, (x, y), (x_val, y_val), ['conv', 'fc'],
                           compile_fn, retrain_epochs=2, iterations=2,
                           tolerance=0.05, verbose=0)
  assert history[0].widths == {'conv': 6, 'fc': 12}
  assert len(history) >= 2
  last = history[-1]
  assert small.get_layer('fc').units == last.widths['fc'] < 12
  assert small.count_params() == last.params < history[0].params
  # an impossible tolerance undoes the first trim and keeps the model
  same, history = trim_and_retrain(model, (x, y), (x_val, y_val), ['conv', 'fc'],
                          compile_fn, retrain_epochs=0, iterations=3,
                          tolerance=-1.0,
                          method=NetworkTrimming(fraction=0.5), verbose=0)
  assert len(history) == 1 and same is model


def test_callback_stops_on_tolerance_and_feeds_the_report():
  (x, y), (x_val, y_val) = _digits()
  method = NetworkTrimming(threshold_std=0.0)
  pruned = tfprune.prune(_conv_net(), method, None, layers=['conv', 'fc'])
  pruned.compile('adam', 'sparse_categorical_crossentropy')
  # tolerance -1: any later accuracy counts as a drop of more than -1
  trimming = TrimmingCallback(x_val, every=1, validation_y=y_val, tolerance=-1.0)
  pruned.fit(x, y, epochs=3, batch_size=50, verbose=0,
             callbacks=[tfprune.PruningStep(), trimming])
  assert [h['epoch'] for h in trimming.history] == [1]
  assert 'below' in trimming.stopped
  info = tfprune.report(pruned)['methods']['networktrimming_0']
  assert info['trims'] == trimming.history
  assert set(info['apoz']) == {'conv', 'fc'}
  with pytest.raises(ValueError, match='exactly one of'):
    TrimmingCallback(x_val)
  with pytest.raises(ValueError, match='needs validation_y'):
    TrimmingCallback(x_val, every=1, tolerance=0.1)


def test_a_layer_without_relu_is_refused_when_wrapping(caplog):
  inputs = keras.Input((4,))
  x = L.Dense(6, activation='relu', name='a')(inputs)
  x = L.Dense(5, name='b')(x)                         # no ReLU after it
  model = keras.Model(inputs, L.Dense(2, name='logits')(x))
  with pytest.raises(ValueError, match="'b' is not followed by a ReLU"):
    tfprune.prune(model, NetworkTrimming(), layers=['a', 'b'])
  import logging  # pylint: disable=g-import-not-at-top
  with caplog.at_level(logging.INFO, logger='tfprune'):
    pruned = tfprune.prune(model, NetworkTrimming())
  assert [w.layer.name for w in tfprune.wrapper.collect_wrappers(pruned)] \
      == ['a']
  assert 'b, logits (NetworkTrimming does not prune it)' in caplog.text


def test_trimming_masks_coupled_channels_together():
  inputs = keras.Input((6, 6, 3))
  a = L.Conv2D(8, 3, padding='same', activation='relu', name='a')(inputs)
  b = L.Conv2D(8, 3, padding='same', activation='relu', name='b')(a)
  x = L.Add(name='add')([a, b])
  x = L.Conv2D(4, 1, activation='relu', name='c')(x)
  x = L.GlobalAveragePooling2D()(x)
  model = keras.Model(inputs, L.Dense(2, name='logits')(x))
  method = NetworkTrimming(fraction=0.5)
  pruned = tfprune.prune(model, method)
  wrappers = tfprune.wrapper.collect_wrappers(pruned)
  assert [w.layer.name for w in wrappers] == ['a', 'b', 'c']
  x = np.random.RandomState(0).randn(16, 6, 6, 3).astype(np.float32)
  method = wrappers[0].method
  method.measure(pruned, x, wrappers)
  trimmed = method.apply_rule(wrappers)
  masks = {w.layer.name: np.asarray(w.masks[0]) for w in wrappers}
  np.testing.assert_array_equal(masks['a'], masks['b'])     # one group
  assert masks['a'].sum() == 4 and masks['c'].sum() == 2
  np.testing.assert_array_equal(trimmed['a'], np.flatnonzero(masks['a'] == 0))
  group_apoz = (method.apoz_values['a'] + method.apoz_values['b']) / 2
  assert group_apoz[masks['a'] == 0].min() >= group_apoz[masks['a'] == 1].max()
  _, plan = tfprune.shrink(pruned, return_plan=True)
  assert plan.kept_counts()['a'] == plan.kept_counts()['b'] == 4
