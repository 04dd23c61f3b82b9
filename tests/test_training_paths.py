"""Training paths a user takes besides plain float32 ``model.fit``.

Mixed precision (every method), callbacks in any order, resumed runs,
unbuilt models: each ends with the masks the schedule asks for, or a clear
error, never a crash deep inside TensorFlow.
"""

import numpy as np
import pytest
import tf_keras as keras

import tfprune
from tfprune.methods import (PSP, Magnitude, NetworkTrimming, SmallWorld,
                             SynapticStrength, Synthesis, Trimming)
from tfprune.wrapper import collect_wrappers


def _data(n=64, seed=0):
  rng = np.random.RandomState(seed)
  return (rng.rand(n, 8, 8, 1).astype(np.float32),
          rng.randint(0, 10, n).astype(np.int32))


def _schedule():
  return tfprune.schedules.PolynomialDecay(0.0, 0.5, begin_step=0,
                                           end_step=6, frequency=2)


# method name -> (method, schedule, layers, extra callbacks(x))
_METHODS = {
    'magnitude_channel': lambda: (Magnitude('channel'), _schedule(), None,
                                  lambda x: []),
    'psp_filter': lambda: (PSP('filter', epsilon=0.05), None, None,
                           lambda x: []),
    'synaptic_strength': lambda: (SynapticStrength(l1=1e-3), _schedule(),
                                  ['conv2'], lambda x: []),
    'network_trimming': lambda: (NetworkTrimming(fraction=0.25), None,
                                 ['conv1', 'conv2'],
                                 lambda x: [Trimming(x[:32], every=1)]),
    'small_world': lambda: (SmallWorld(0.3, rewire_p=0.2), None,
                            ['conv2', 'fc1'], lambda x: []),
    'synthesis': lambda: (Synthesis(initial_density=0.05, capacity=0.2,
                                    grow_every=2), None, ['fc1'],
                          lambda x: []),
}


@pytest.fixture
def mixed_policy(request):
  keras.mixed_precision.set_global_policy(request.param)
  yield request.param
  keras.mixed_precision.set_global_policy('float32')


@pytest.mark.parametrize('mixed_policy', ['mixed_float16'], indirect=True)
@pytest.mark.parametrize('name', sorted(_METHODS))
def test_every_method_trains_under_mixed_float16(mixed_policy, name):
  method, schedule, layers, extra = _METHODS[name]()
  x, y = _data()
  model = tfprune.models.small_cnn(filters=(8, 8), dense=16)
  assert model.get_layer('conv1').compute_dtype == 'float16'
  pruned = tfprune.prune(model, method, schedule, layers=layers)
  pruned.compile(keras.optimizers.Adam(1e-2),
                 'sparse_categorical_crossentropy')
  assert isinstance(pruned.optimizer, keras.mixed_precision.LossScaleOptimizer)
  history = pruned.fit(x, y, batch_size=16, epochs=2, verbose=0,
                       callbacks=[tfprune.PruningStep()] + extra(x))
  assert np.isfinite(history.history['loss']).all()
  wrappers = collect_wrappers(pruned, followers=True)
  pruned_units = 0
  for wrapper in wrappers:
    # stored in float32 (read as float16 inside the layer's call)
    for variable in wrapper.masks + [g for g in wrapper.gates if g is not None]:
      assert variable.true_dtype == 'float32', variable.name
    pruned_units += sum(int((np.asarray(m) == 0).sum()) for m in wrapper.masks)
  if name != 'psp_filter':  # PSP's alphas need many steps to cross epsilon
    assert pruned_units > 0
  stripped = tfprune.strip(pruned)
  np.testing.assert_allclose(stripped.predict(x[:8], verbose=0),
                             pruned.predict(x[:8], verbose=0), atol=2e-3)


@pytest.mark.parametrize('mixed_policy', ['mixed_bfloat16'], indirect=True)
def test_magnitude_trains_under_mixed_bfloat16(mixed_policy):
  x, y = _data()
  pruned = tfprune.prune(tfprune.models.small_cnn(filters=(8, 8), dense=16),
                         Magnitude('channel'), _schedule())
  pruned.compile('adam', 'sparse_categorical_crossentropy')
  pruned.fit(x, y, batch_size=16, epochs=2, verbose=0,
             callbacks=[tfprune.PruningStep()])
  masks = [np.asarray(w.masks[0]) for w in collect_wrappers(pruned)]
  assert [m.mean() for m in masks] == [0.5, 0.5, 0.5]
