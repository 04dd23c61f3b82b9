"""prune() layer selection and strip()."""

import numpy as np
import pytest
import tf_keras as keras

import tfprune
from conftest import random_batch, small_conv_model


def _wrapped_names(model):
  return [w.layer.name for w in tfprune.wrapper.collect_wrappers(model)]


@pytest.mark.parametrize('layers,expected', [
    (None, ['conv', 'dw', 'dense']),
    (['dense'], ['dense']),
    ('conv', ['conv']),
    (keras.layers.Conv2D, ['conv']),   # DepthwiseConv2D is no Conv2D subclass
    ([keras.layers.Dense, 'dw'], ['dw', 'dense']),
    (lambda layer: layer.name.startswith('d'), ['dw', 'dense']),
])
def test_layer_selection(layers, expected):
  model = tfprune.prune(small_conv_model(), schedule=0.5, layers=layers)
  assert _wrapped_names(model) == expected


def test_unselected_layers_and_original_model_untouched():
  base = small_conv_model()
  before = [w.copy() for w in base.get_weights()]
  model = tfprune.prune(base, schedule=0.9, layers=['dense'])
  for got, want in zip(base.get_weights(), before):
    np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(model.get_layer('conv').kernel.numpy(),
                                base.get_layer('conv').kernel.numpy())
  assert model.get_layer('conv').kernel is not base.get_layer('conv').kernel
  x, _ = random_batch()
  assert model.count_params() > base.count_params()   # masks added


def test_selection_errors():
  with pytest.raises(ValueError, match=r"no layer named \['nope'\]"):
    tfprune.prune(small_conv_model(), layers=['nope'])
  with pytest.raises(tfprune.UnsupportedLayerError, match="'flat'"):
    tfprune.prune(small_conv_model(), layers=['flat'])
  with pytest.raises(ValueError, match='no layer .* was selected'):
    tfprune.prune(small_conv_model(), layers=lambda layer: False)
  with pytest.raises(TypeError, match='tfprune.methods'):
    tfprune.prune(small_conv_model(), method='magnitude')
  with pytest.raises(TypeError, match='PruningSchedule'):
    tfprune.prune(small_conv_model(), schedule='poly')


def test_model_type_errors():
  with pytest.raises(TypeError, match='expected a Keras Model'):
    tfprune.prune(keras.layers.Dense(3))

  class Sub(keras.Model):

    def call(self, x):
      return x

  with pytest.raises(TypeError, match='subclassed'):
    tfprune.prune(Sub())
  inner = small_conv_model('inner')
  inputs = keras.Input((6, 6, 2))
  outer = keras.Model(inputs, inner(inputs))
  with pytest.raises(TypeError, match="nests the model 'inner'"):
    tfprune.prune(outer)


def test_prune_twice_other_layers_then_strip():
  model = tfprune.prune(small_conv_model(),
                        tfprune.methods.Magnitude('channel'), schedule=0.5,
                        layers=['conv'])
  model = tfprune.prune(model, tfprune.methods.Magnitude('weight'),
                        schedule=0.8, layers=['dense'])
  wrappers = tfprune.wrapper.collect_wrappers(model)
  assert [w.layer.name for w in wrappers] == ['conv', 'dw', 'dense']
  assert [w.cohort for w in wrappers] == ['magnitude_0', 'magnitude_0',
                                         'magnitude_1']   # dw: coupled
  assert str(wrappers[0].structure) == 'channel'
  with pytest.raises(ValueError, match='already wrapped'):
    tfprune.prune(model, layers=[tfprune.PruningWrapper])


def test_strip_gives_plain_model_with_equal_outputs():
  x, y = random_batch()
  model = tfprune.prune(small_conv_model(),
                        tfprune.methods.Magnitude('kernel'),
                        tfprune.schedules.ConstantSparsity(0.7, 0, frequency=1))
  model.compile('adam', keras.losses.SparseCategoricalCrossentropy(
      from_logits=True))
  model.fit(x, y, batch_size=4, epochs=1, verbose=0,
            callbacks=[tfprune.PruningStep()])
  raw = [v.numpy().copy() for v in model.weights]
  stripped = tfprune.strip(model)
  assert [type(l).__name__ for l in stripped.layers] == [
      'InputLayer', 'Conv2D', 'DepthwiseConv2D', 'Flatten', 'Dense']
  assert [l.name for l in stripped.layers[1:]] == ['conv', 'dw', 'flat',
                                                   'dense']
  assert stripped.count_params() == small_conv_model().count_params()
  np.testing.assert_allclose(stripped.predict(x, verbose=0),
                             model.predict(x, verbose=0), atol=1e-6)
  kernel = stripped.get_layer('conv').kernel.numpy()
  # kernel structure: whole 3x3 kernels are zero; 70% of the 8 kernels
  # rounds to 6 of 8
  zero_kernels = (kernel == 0).all(axis=(0, 1))
  assert zero_kernels.sum() == 6 and not (kernel == 0).all()
  # strip leaves the wrapped model alone: every variable (raw kernels,
  # masks, step) as it was, and the wrappers still there
  for before, after in zip(raw, model.weights):
    np.testing.assert_array_equal(before, after.numpy())
  assert len(tfprune.wrapper.collect_wrappers(model)) == 3
