"""shrink(): dead channels removed, outputs equal, exact channel counts."""

import warnings

import numpy as np
import pytest
import tf_keras as keras

import tfprune
from tfprune import graph, surgery

L = keras.layers


# --- helpers ----------------------------------------------------------------


def zero_filters(layer, channels, bias=0.0):
  """Zero whole output filters (depthwise: whole input channels)."""
  weights = layer.get_weights()
  if isinstance(layer, L.DepthwiseConv2D):
    weights[0][:, :, channels, :] = 0
    if layer.use_bias:
      weights[1].reshape(weights[0].shape[2], -1)[channels] = bias
  else:
    weights[0][..., channels] = 0
    if getattr(layer, 'use_bias', False):
      weights[1][channels] = bias
  layer.set_weights(weights)


def random_bn(layer, rng, dead=()):
  """Non-trivial BN statistics; ``dead`` channels map 0 to exactly 0."""
  gamma, beta, mean, var = layer.get_weights()
  n = gamma.size
  gamma = rng.uniform(0.5, 1.5, n)
  beta = rng.randn(n) * 0.5
  mean = rng.randn(n) * 0.5
  var = rng.uniform(0.5, 1.5, n)
  beta[list(dead)] = 0
  mean[list(dead)] = 0
  layer.set_weights([a.astype(np.float32) for a in (gamma, beta, mean, var)])


def bn_constant(layer):
  """The value BatchNormalization gives an all-zero channel."""
  gamma, beta, mean, var = [w.astype(np.float64) for w in layer.get_weights()]
  return beta - mean * gamma / np.sqrt(var + layer.epsilon)


def assert_same_outputs(before, after, n=3, seed=0):
  shape = before.inputs[0].shape[1:]
  x = np.random.RandomState(seed).randn(n, *shape).astype(np.float32)
  want = before(x, training=False).numpy()
  got = after(x, training=False).numpy()
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=1e-4,
                             atol=1e-5 * max(1.0, np.abs(want).max()))


def channels_of(model, name):
  return model.get_layer(name).output_shape[-1]


def removed(p, name):
  return p.layers[name].removed.tolist()


def shrink_without_warnings(model):
  with warnings.catch_warnings():
    warnings.simplefilter('error', graph.ShrinkWarning)
    return surgery.shrink(model, return_plan=True)


# --- hand-built models, exact counts ------------------------------------------


def test_sequential_conv_bn_relu_conv():
  model = keras.Sequential([
      keras.Input((8, 8, 3)),
      L.Conv2D(8, 3, name='c1'),
      L.BatchNormalization(name='bn1'),
      L.ReLU(name='relu1'),
      L.Conv2D(6, 3, name='c2'),
      L.ReLU(name='relu2'),
      L.GlobalAveragePooling2D(name='gap'),
      L.Dense(4, name='fc'),
  ], name='seq')
  rng = np.random.RandomState(0)
  zero_filters(model.get_layer('c1'), [0, 3, 5])
  random_bn(model.get_layer('bn1'), rng, dead=[0, 3, 5])
  zero_filters(model.get_layer('c2'), [1], bias=-0.5)   # relu(-0.5) == 0
  before = [w.copy() for w in model.get_weights()]

  small, p = surgery.shrink(model, return_plan=True)

  assert isinstance(small, keras.Sequential)
  assert [l.name for l in small.layers] == [l.name for l in model.layers]
  assert removed(p, 'c1') == [0, 3, 5] and removed(p, 'c2') == [1]
  assert p.kept_counts() == {'c1': 5, 'c2': 5, 'fc': 4}
  assert p.as_dict()['c2'] == {'kept': [0, 2, 3, 4, 5], 'removed': [1],
                               'kept_inputs': [1, 2, 4, 6, 7]}
  assert small.get_layer('bn1').get_weights()[0].shape == (5,)
  assert small.count_params() == (27 * 5 + 5) + 4 * 5 + (45 * 5 + 5) + 24
  assert tfprune.report(small)['totals']['macs'] == 36 * 135 + 16 * 225 + 20
  assert tfprune.report(model)['totals']['macs'] == 36 * 216 + 16 * 432 + 24
  assert p.bias_folds == {}
  assert_same_outputs(model, small)
  for got, want in zip(model.get_weights(), before):   # input untouched
    np.testing.assert_array_equal(got, want)


def _const_model(size, kernel, strides, padding, use_bias=True):
  inputs = keras.Input((size, size, 3))
  x = L.Conv2D(6, 1, name='c1')(inputs)
  x = L.BatchNormalization(name='bn1')(x)
  x = L.ReLU(name='relu1')(x)
  x = L.Conv2D(4, kernel, strides=strides, padding=padding,
               use_bias=use_bias, name='c2')(x)
  x = L.Flatten(name='flat')(x)
  outputs = L.Dense(3, name='fc')(x)
  model = keras.Model(inputs, outputs)
  zero_filters(model.get_layer('c1'), [1, 4])
  bn = model.get_layer('bn1')
  gamma, beta, mean, var = bn.get_weights()
  beta[1], beta[4] = 0.7, -0.3      # relu: channel 1 -> 0.7, channel 4 -> 0
  bn.set_weights([gamma, beta, mean, var])
  return model


@pytest.mark.parametrize('size,kernel,strides,padding,kept', [
    (6, 3, 1, 'valid', 4),   # constant folded into the bias
    (6, 1, 1, 'same', 4),    # 1x1 'same' adds no border
    (6, 3, 3, 'same', 4),    # 'same' that needs no padding at this size
    (6, 3, 1, 'same', 5),    # real zero border: the 0.7 channel must stay
    (6, 3, 2, 'same', 5),
])
def test_constant_channel_folded_or_kept(size, kernel, strides, padding,
                                         kept):
  model = _const_model(size, kernel, strides, padding)
  small, p = surgery.shrink(model, return_plan=True)
  assert p.kept_counts()['c1'] == kept
  assert ('c2' in p.bias_folds) == (kept == 4)
  if kept == 4:
    # the spec's formula: bias += v * sum over (kh, kw) of kernel[:, :, c, :]
    k = model.get_layer('c2').kernel.numpy()
    v = 0.7                        # BN(0) = beta when the mean is 0
    np.testing.assert_allclose(p.bias_folds['c2'], v * k[:, :, 1].sum((0, 1)),
                               rtol=1e-5)
  assert small.count_params() < model.count_params()
  assert_same_outputs(model, small)


def test_fold_gives_a_biasless_consumer_a_bias():
  model = _const_model(6, 3, 1, 'valid', use_bias=False)
  small = surgery.shrink(model)
  assert small.get_layer('c2').use_bias and not model.get_layer('c2').use_bias
  assert channels_of(small, 'c1') == 4
  assert_same_outputs(model, small)


@pytest.mark.parametrize('between,size,kept', [
    (lambda: L.ZeroPadding2D(1, name='mid'), 6, 5),         # border is 0
    (lambda: L.MaxPooling2D(2, name='mid'), 6, 4),
    (lambda: L.AveragePooling2D(2, padding='same', name='mid'), 7, 4),
    (lambda: L.Dropout(0.5, name='mid'), 6, 4),
    (lambda: L.PReLU(name='mid'), 6, 4),            # alpha [6, 6, C] sliced
])
def test_constants_through_padding_and_pooling(between, size, kept):
  inputs = keras.Input((size, size, 2))
  x = L.Conv2D(5, 1, name='c1')(inputs)
  x = L.BatchNormalization(name='bn1')(x)
  x = between()(x)
  x = L.Conv2D(3, 3, name='c2')(x)
  outputs = L.GlobalAveragePooling2D(name='gap')(x)
  model = keras.Model(inputs, outputs)
  zero_filters(model.get_layer('c1'), [2])
  random_bn(model.get_layer('bn1'), np.random.RandomState(1))
  assert bn_constant(model.get_layer('bn1'))[2] != 0
  small = surgery.shrink(model)
  assert channels_of(small, 'c1') == kept
  assert_same_outputs(model, small)


@pytest.mark.parametrize('flatten', [
    lambda: L.Flatten(name='flat'),
    lambda: L.Reshape((-1,), name='flat'),
])
def test_conv_flatten_dense_folds_owned_rows(flatten):
  inputs = keras.Input((5, 5, 2))
  x = L.Conv2D(4, 3, activation='relu', name='conv')(inputs)
  x = flatten()(x)
  x = L.Dense(5, activation='relu', name='fc1')(x)
  outputs = L.Dense(3, name='out')(x)
  model = keras.Model(inputs, outputs)
  zero_filters(model.get_layer('conv'), [2], bias=0.5)   # relu(0.5) = 0.5
  small, p = surgery.shrink(model, return_plan=True)
  assert p.kept_counts() == {'conv': 3, 'fc1': 5, 'out': 3}
  assert small.get_layer('fc1').kernel.shape == (27, 5)
  # channel 2 owns flat rows 2, 6, 10, ... (channels last)
  kernel = model.get_layer('fc1').kernel.numpy()
  np.testing.assert_allclose(p.bias_folds['fc1'], 0.5 * kernel[2::4].sum(0),
                             rtol=1e-5)
  assert_same_outputs(model, small)


def _mlp(hidden_activation='relu'):
  inputs = keras.Input((10,))
  x = L.Dense(6, activation='relu', name='d1')(inputs)
  x = L.Dense(5, activation=hidden_activation, name='d2')(x)
  outputs = L.Dense(3, name='d3')(x)
  model = keras.Model(inputs, outputs)
  d2 = model.get_layer('d2')
  kernel, bias = d2.get_weights()
  kernel[[0, 2], :] = 0          # kernel level: d1 units 0 and 2 reach nothing
  kernel[:, 4] = 0               # d2 unit 4 is the constant relu(0.25)
  bias[4] = 0.25
  d2.set_weights([kernel, bias])
  zero_filters(model.get_layer('d3'), [1], bias=0.0)   # the output stays
  return model


def test_dense_dense_kernel_level_and_constant():
  model = _mlp()
  small, p = surgery.shrink(model, return_plan=True)
  assert removed(p, 'd1') == [0, 2] and removed(p, 'd2') == [4]
  assert p.kept_counts() == {'d1': 4, 'd2': 4, 'd3': 3}
  np.testing.assert_allclose(
      p.bias_folds['d3'], 0.25 * model.get_layer('d3').kernel.numpy()[4],
      rtol=1e-6)
  assert_same_outputs(model, small)


def test_channel_mixing_activation_pins_its_outputs():
  model = _mlp(hidden_activation='softmax')
  small, p = surgery.shrink(model, return_plan=True)
  # softmax couples every unit of d2, so none of them goes; its inputs may
  assert p.kept_counts() == {'d1': 4, 'd2': 5, 'd3': 3}
  assert_same_outputs(model, small)


def _mobile_block_model():
  inputs = keras.Input((8, 8, 3))
  x = L.Conv2D(8, 3, padding='same', use_bias=False, name='c1')(inputs)
  x = L.BatchNormalization(name='bn1')(x)
  x = L.ReLU(6.0, name='relu1')(x)
  x = L.DepthwiseConv2D(3, padding='same', use_bias=False, name='dw1')(x)
  x = L.BatchNormalization(name='bn2')(x)
  x = L.ReLU(6.0, name='relu2')(x)
  x = L.Conv2D(6, 1, name='pw1')(x)
  x = L.BatchNormalization(name='bn3')(x)
  x = L.ReLU(name='relu3')(x)
  x = L.DepthwiseConv2D(3, depth_multiplier=2, name='dw2')(x)
  x = L.ReLU(name='relu4')(x)
  x = L.Conv2D(5, 1, name='pw2')(x)
  x = L.GlobalAveragePooling2D(name='gap')(x)
  outputs = L.Dense(3, name='fc')(x)
  return keras.Model(inputs, outputs)


def test_depthwise_chain():
  model = _mobile_block_model()
  zero_filters(model.get_layer('c1'), [2])      # BN(0) = 0: dead
  zero_filters(model.get_layer('dw1'), [5])     # depthwise channel dead
  zero_filters(model.get_layer('pw1'), [0])     # -> dw2 outputs 0 and 1
  dw2 = model.get_layer('dw2')
  kernel, bias = dw2.get_weights()
  kernel[:, :, 3, 1] = 0                         # output 7 only: 6 lives on
  dw2.set_weights([kernel, bias])
  small, p = surgery.shrink(model, return_plan=True)
  assert removed(p, 'c1') == [2, 5] and removed(p, 'dw1') == [2, 5]
  assert removed(p, 'pw1') == [0] and removed(p, 'dw2') == [0, 1]
  assert p.kept_counts() == {'c1': 6, 'dw1': 6, 'pw1': 5, 'dw2': 10,
                             'pw2': 5, 'fc': 3}
  assert small.get_layer('dw2').depthwise_kernel.shape == (3, 3, 5, 2)
  assert small.get_layer('bn2').get_weights()[0].shape == (6,)
  assert_same_outputs(model, small)


def test_depthwise_constant_folds_into_pointwise():
  model = _mobile_block_model()
  rng = np.random.RandomState(3)
  for name in ('bn1', 'bn2', 'bn3'):
    random_bn(model.get_layer(name), rng)
  bn2 = model.get_layer('bn2')
  gamma, beta, mean, var = bn2.get_weights()
  beta[5], mean[5] = 1.0, 0.0          # dw1 channel 5 -> relu6(1.0) = 1.0
  bn2.set_weights([gamma, beta, mean, var])
  zero_filters(model.get_layer('dw1'), [5])
  small, p = surgery.shrink(model, return_plan=True)
  assert 5 in removed(p, 'dw1') and 'pw1' in p.bias_folds
  assert_same_outputs(model, small)


def test_separable_conv():
  inputs = keras.Input((7, 7, 3))
  x = L.Conv2D(6, 1, name='c1')(inputs)
  x = L.BatchNormalization(name='bn1')(x)
  x = L.ReLU(name='relu1')(x)
  x = L.SeparableConv2D(5, 3, depth_multiplier=2, activation='relu',
                        name='sep')(x)
  x = L.GlobalAveragePooling2D(name='gap')(x)
  outputs = L.Dense(3, name='fc')(x)
  model = keras.Model(inputs, outputs)
  zero_filters(model.get_layer('c1'), [3])
  bn = model.get_layer('bn1')
  gamma, beta, mean, var = bn.get_weights()
  beta[3] = 0.4
  bn.set_weights([gamma, beta, mean, var])
  sep = model.get_layer('sep')
  dw, pw, bias = sep.get_weights()
  pw[..., 2] = 0
  sep.set_weights([dw, pw, bias])
  small, p = surgery.shrink(model, return_plan=True)
  assert p.kept_counts() == {'c1': 5, 'sep': 4, 'fc': 3}
  assert 'sep' in p.bias_folds
  assert small.get_layer('sep').depthwise_kernel.shape == (3, 3, 5, 2)
  assert small.get_layer('sep').pointwise_kernel.shape == (1, 1, 10, 4)
  assert_same_outputs(model, small)


def test_merges_couple_channels():
  inputs = keras.Input((6, 6, 2))
  a = L.Conv2D(4, 3, name='ca')(inputs)
  b = L.Conv2D(4, 3, name='cb')(inputs)
  product = L.Multiply(name='mul')([a, b])
  maximum = L.Maximum(name='max')([a, b])
  x = L.Concatenate(axis=1, name='cat_h')([product, maximum])   # not channels
  x = L.Subtract(name='sub')([x, L.ReLU(name='r')(x)])
  x = L.Conv2D(3, 1, name='cc')(x)
  outputs = L.GlobalAveragePooling2D(name='gap')(x)
  model = keras.Model(inputs, outputs)
  zero_filters(model.get_layer('ca'), [2, 0])
  zero_filters(model.get_layer('cb'), [2])       # channel 0 of cb lives
  small, p = surgery.shrink(model, return_plan=True)
  assert removed(p, 'ca') == [2] and removed(p, 'cb') == [2]
  assert channels_of(small, 'cat_h') == 3
  assert_same_outputs(model, small)


def test_resnet_add_couples_the_residual_stream():
  model = tfprune.models.resnet(20, input_shape=(32, 32, 3), width=0.25)
  zero_filters(model.get_layer('stem'), [1])
  zero_filters(model.get_layer('s1b2_conv1'), [0])
  p = surgery.plan(model)
  # channel 1 of the stage-1 stream lives on in the s1b*_conv2 branches
  assert removed(p, 'stem') == [] and removed(p, 's1b2_conv1') == [0]

  for name in ('s1b1_conv2', 's1b2_conv2', 's1b3_conv2'):
    zero_filters(model.get_layer(name), [1])
  small, p = surgery.shrink(model, return_plan=True)
  for name in ('stem', 's1b1_conv2', 's1b2_conv2', 's1b3_conv2'):
    assert removed(p, name) == [1], name
  assert p.kept_counts()['s1b2_conv1'] == 3
  assert p.kept_counts()['s2b1_conv1'] == 8
  assert small.get_layer('s2b1_proj').kernel.shape == (1, 1, 3, 8)
  assert small.get_layer('s1b3_add').output_shape[-1] == 3
  assert small.count_params() < model.count_params()
  assert_same_outputs(model, small, n=2)


def _densenet():
  return tfprune.models.densenet(blocks=(2, 2), growth_rate=4,
                                 input_shape=(8, 8, 3), classes=5)


def test_densenet_concatenate_offsets():
  model = _densenet()
  zero_filters(model.get_layer('stem'), [3])
  zero_filters(model.get_layer('b1l2_conv'), [1])   # concat channel 8+4+1
  zero_filters(model.get_layer('t1_conv'), [5])
  small, p = surgery.shrink(model, return_plan=True)
  assert p.kept_counts() == {'stem': 7, 'b1l1_conv': 4, 'b1l2_conv': 3,
                             't1_conv': 7, 'b2l1_conv': 4, 'b2l2_conv': 4,
                             'fc': 5}
  assert [channels_of(small, n) for n in
          ('b1l1_concat', 'b1l2_concat', 'b2l2_concat')] == [11, 14, 15]
  assert small.get_layer('t1_bn').get_weights()[0].shape == (14,)
  assert_same_outputs(model, small)


def test_densenet_with_constants_stays_exact():
  model = _densenet()
  rng = np.random.RandomState(4)
  for layer in model.layers:
    if isinstance(layer, L.BatchNormalization):
      random_bn(layer, rng)
  zero_filters(model.get_layer('stem'), [3])
  zero_filters(model.get_layer('b1l2_conv'), [1])
  zero_filters(model.get_layer('t1_conv'), [5])
  small, p = surgery.shrink(model, return_plan=True)
  # b1l2_conv channel 1 is read by a 'valid' 1x1 conv after its BN and ReLU
  # only, so its constant is folded there whatever its value
  assert removed(p, 'b1l2_conv') == [1] and 't1_conv' in p.bias_folds
  assert_same_outputs(model, small)


# --- keras.applications with random channel masks ---------------------------


def _mask_application(model, rng, names, bn_mode):
  """Zero random filters of ``names``; returns {layer: zeroed channels}."""
  zeroed = {}
  bns = {l.name: l for l in model.layers
         if isinstance(l, L.BatchNormalization)}
  for name in names:
    layer = model.get_layer(name)
    n = layer.output_shape[-1]
    channels = sorted(rng.choice(n, max(1, n // 4), replace=False).tolist())
    zero_filters(layer, channels)
    zeroed[name] = channels
  for layer in bns.values():
    random_bn(layer, rng)
  if bn_mode == 'dead':      # the BN after a zeroed filter gives exactly 0
    for name, channels in zeroed.items():
      bn = bns[_bn_after(model, name)]
      gamma, beta, mean, var = bn.get_weights()
      beta[channels], mean[channels] = 0, 0
      bn.set_weights([gamma, beta, mean, var])
  return zeroed


def _bn_after(model, name):
  layer = model.get_layer(name)
  consumer = layer._outbound_nodes[0].outbound_layer   # pylint: disable=protected-access
  assert isinstance(consumer, L.BatchNormalization), consumer.name
  return consumer.name


@pytest.mark.parametrize('bn_mode', ['dead', 'constant'])
def test_mobilenet_v2(bn_mode):
  model = keras.applications.MobileNetV2(
      weights=None, input_shape=(32, 32, 3), alpha=0.35, classes=10,
      classifier_activation=None)
  rng = np.random.RandomState(5)
  blocks = range(1, 13)          # spatial >= 2x2, so 'same' 3x3 really pads
  expand = [f'block_{i}_expand' for i in blocks if i % 2]
  depthwise = [f'block_{i}_depthwise' for i in blocks if not i % 2]
  zeroed = _mask_application(model, rng, expand + depthwise, bn_mode)
  small, p = shrink_without_warnings(model)
  for name in depthwise:   # read by a 1x1 projection: gone even if constant
    assert removed(p, name) == zeroed[name], name
  for name in expand:      # read by a padded depthwise: gone only if relu6 -> 0
    const = bn_constant(model.get_layer(f'{name}_BN'))
    want = [c for c in zeroed[name] if const[c] <= 0]
    assert removed(p, name) == want, name
  if bn_mode == 'constant':
    assert any(name.endswith('_project') for name in p.bias_folds)
  assert small.count_params() < model.count_params()
  assert (tfprune.report(small)['totals']['macs'] <
          tfprune.report(model)['totals']['macs'])
  assert_same_outputs(model, small, n=2)


@pytest.mark.parametrize('bn_mode', ['dead', 'constant'])
def test_resnet50_v2(bn_mode):
  model = keras.applications.ResNet50V2(
      weights=None, input_shape=(32, 32, 3), classes=10,
      classifier_activation=None)
  rng = np.random.RandomState(6)
  first = ['conv2_block1_1_conv', 'conv3_block2_1_conv', 'conv4_block3_1_conv',
           'conv5_block1_1_conv']
  second = ['conv2_block2_2_conv', 'conv3_block4_2_conv', 'conv4_block1_2_conv',
            'conv5_block3_2_conv']
  zeroed = _mask_application(model, rng, first + second, bn_mode)
  small, p = shrink_without_warnings(model)
  for name in second:      # read by a 1x1 'valid' conv: folded if constant
    assert removed(p, name) == zeroed[name], name
  for name in first:       # read through ZeroPadding2D: only zeros may go
    const = bn_constant(model.get_layer(name.replace('_conv', '_bn')))
    want = [c for c in zeroed[name] if const[c] <= 0]
    assert removed(p, name) == want, name
  if bn_mode == 'constant':
    assert {n.replace('_2_', '_3_') for n in second} <= set(p.bias_folds)
  assert small.count_params() < model.count_params()
  assert_same_outputs(model, small, n=2)


# --- what shrink refuses, and the knobs -------------------------------------


@pytest.mark.parametrize('make,name', [
    (lambda: L.Lambda(lambda t: t * 2.0, name='double'), 'double'),
    (lambda: L.Reshape((4, 8, 2), name='reshape'), 'reshape'),
    (lambda: L.LayerNormalization(name='norm'), 'norm'),
])
def test_unknown_layer_warns_and_stays_correct(make, name):
  inputs = keras.Input((6, 6, 3))
  x = L.Conv2D(4, 3, name='c1')(inputs)
  x = make()(x)
  x = L.ReLU(name='relu')(x)
  x = L.Conv2D(5, 1, name='c2')(x)
  x = L.Flatten(name='flat')(x)
  outputs = L.Dense(3, name='fc')(x)
  model = keras.Model(inputs, outputs)
  zero_filters(model.get_layer('c1'), [0])
  zero_filters(model.get_layer('c2'), [1])
  with pytest.warns(graph.ShrinkWarning, match=f"'{name}'"):
    small, p = surgery.shrink(model, return_plan=True)
  assert p.blocked == (name,)
  assert p.kept_counts() == {'c1': 4, 'c2': 4, 'fc': 3}
  assert_same_outputs(model, small)


def test_shared_layer_is_left_alone():
  inputs = keras.Input((4,))
  shared = L.Dense(4, activation='relu', name='shared')
  x = L.Dense(4, name='d0')(inputs)
  x = shared(shared(x))
  outputs = L.Dense(2, name='out')(x)
  model = keras.Model(inputs, outputs)
  zero_filters(model.get_layer('d0'), [1])
  zero_filters(shared, [2])
  with pytest.warns(graph.ShrinkWarning, match="'shared'.*2 times"):
    small, p = surgery.shrink(model, return_plan=True)
  assert p.kept_counts() == {'d0': 4, 'out': 2}
  assert_same_outputs(model, small)


def _dead_mlp():
  inputs = keras.Input((6,))
  x = L.Dense(10, activation='relu', name='d1')(inputs)
  outputs = L.Dense(4, name='d2')(x)
  model = keras.Model(inputs, outputs)
  zero_filters(model.get_layer('d1'), list(range(7)))
  d2 = model.get_layer('d2')
  kernel, bias = d2.get_weights()
  scale = [0.3, 0.9, 0.1, 0.5, 0.7, 0.2, 0.4]    # score of dead unit i
  kernel[:7] = np.array(scale, np.float32)[:, None]
  d2.set_weights([kernel, bias])
  return model


@pytest.mark.parametrize('round_to,min_channels,kept', [
    (1, 1, [7, 8, 9]),
    (2, 1, [1, 7, 8, 9]),
    (4, 1, [1, 7, 8, 9]),
    (8, 1, [0, 1, 3, 4, 6, 7, 8, 9]),
    (16, 1, list(range(10))),        # no multiple fits: keep all
    (1, 5, [1, 4, 7, 8, 9]),
    (2, 5, [1, 3, 4, 7, 8, 9]),
    (1, 20, list(range(10))),
])
def test_round_to_and_min_channels(round_to, min_channels, kept):
  model = _dead_mlp()
  small, p = surgery.shrink(model, round_to=round_to,
                            min_channels=min_channels, return_plan=True)
  assert p.layers['d1'].kept.tolist() == kept
  assert p.layers['d2'].kept.tolist() == [0, 1, 2, 3]
  assert channels_of(small, 'd1') == len(kept)
  assert_same_outputs(model, small)


def test_wrapped_model_is_stripped_first():
  base = tfprune.models.small_cnn(input_shape=(8, 8, 1))
  pruned = tfprune.prune(base, tfprune.methods.Magnitude('channel'),
                         schedule=0.5, layers=['conv1', 'conv2', 'fc1'])
  small, p = surgery.shrink(pruned, return_plan=True)
  assert p.kept_counts() == {'conv1': 8, 'conv2': 16, 'fc1': 32, 'logits': 10}
  assert not tfprune.wrapper.collect_wrappers(small)
  assert tfprune.wrapper.collect_wrappers(pruned)      # caller's untouched
  assert surgery.plan(pruned).kept_counts() == p.kept_counts()
  assert_same_outputs(tfprune.strip(pruned), small)
  rep_small, rep_full = tfprune.report(small), tfprune.report(base)
  assert rep_small['totals']['macs'] < rep_full['totals']['macs'] / 3


def test_inputs_and_outputs_keep_their_channels():
  inputs = keras.Input((5, 5, 3))
  x = L.DepthwiseConv2D(3, name='dw')(inputs)       # joined to the input
  outputs = L.Conv2D(4, 1, name='head')(x)          # a 4-D model output
  model = keras.Model(inputs, outputs)
  zero_filters(model.get_layer('dw'), [1])
  zero_filters(model.get_layer('head'), [0, 1, 2, 3])
  small, p = surgery.shrink(model, return_plan=True)
  assert p.kept_counts() == {'dw': 3, 'head': 4}
  assert small.input_shape == model.input_shape
  assert small.output_shape == model.output_shape
  assert_same_outputs(model, small)


def test_refusals():
  inner = keras.Sequential([keras.Input((4,)), L.Dense(3)], name='inner')
  inputs = keras.Input((4,))
  outer = keras.Model(inputs, L.Dense(2)(inner(inputs)))
  with pytest.raises(TypeError, match="nests the model 'inner'"):
    surgery.shrink(outer)
  with pytest.raises(TypeError, match='unbuilt Sequential'):
    surgery.shrink(keras.Sequential([L.Dense(3)]))
  with pytest.raises(TypeError, match='expected a Keras Model'):
    surgery.plan(L.Dense(3))
  model = _dead_mlp()
  with pytest.raises(ValueError, match='round_to'):
    surgery.shrink(model, round_to=0)
  with pytest.raises(ValueError, match='min_channels'):
    surgery.plan(model, min_channels=0)
