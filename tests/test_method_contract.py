"""The contract every registered pruning method passes.

Parametrised over the method registry: a method added to ``tfprune`` (one
module and ``@register``) is checked here without a line of new test code,
trained with the default recipe (a ``PolynomialDecay`` target schedule,
default layers) unless ``RECIPES`` says how it is driven instead.

For each method: its config survives a round trip and holds no run state;
``fit`` with ``PruningStep`` prunes; the stripped model computes what the
wrapped one does; ``report`` is JSON; ``.keras``, ``.h5`` and SavedModel
keep the masks and the method's run state (saved once, with one wrapper),
and training resumed from each ends with the masks of the uninterrupted
run; under ``MirroredStrategy`` on two CPUs every replica holds the same
masks; mixed float16 and bfloat16, XLA and eager steps train and strip.
Every check runs for both Keras generations (tf_keras: ``.keras``,
``.h5``, SavedModel; Keras 3: ``.keras``, ``.weights.h5``).
"""

import functools
import json

import numpy as np
import pytest

import tfprune
from tfprune import generations, registry
from tfprune.wrapper import cohorts, collect_wrappers

from conftest import mirrored_strategy

GENERATIONS = ('tf_keras', 'keras3')
N, BATCH, EPOCHS = 64, 16, 2          # 8 steps of training


def _schedule():
  return tfprune.schedules.PolynomialDecay(0.0, 0.5, begin_step=0,
                                           end_step=8, frequency=2)


def _trimming_callbacks(x):
  return [tfprune.TrimmingCallback(x[:32], every=1)]


# How a method is driven when the default (target schedule) does not fit it:
# class name -> (kwargs, schedule factory or None, layers, extra callbacks).
RECIPES = {
    'PSP': (dict(structure='filter'), _schedule, None, None),  # target mode
    'NetworkTrimming': (dict(fraction=0.25), None, None, _trimming_callbacks),
    'SmallWorld': (dict(density=0.4, rewire_p=0.2), None, None, None),
    'Synthesis': (dict(initial_density=0.05, capacity=0.2, grow_every=2),
                  None, ['fc1'], None),
    'SynapticStrength': (dict(l1=1e-3), _schedule, None, None),
    'Magnitude': (dict(structure='channel'), _schedule, None, None),
}
METHODS = sorted(name for name, cls in registry._CLASSES.items()  # pylint: disable=protected-access
                 if cls.__module__.startswith('tfprune.'))


def _recipe(name):
  kwargs, schedule, layers, extra = RECIPES.get(name, ({}, _schedule, None,
                                                       None))
  method = registry.get(name, **kwargs)
  return (method, schedule() if schedule else None, layers,
          extra or (lambda x: []))


def _keras(gen):
  return generations.named(gen).keras


def _model(gen):
  """conv -> BN -> ReLU -> conv -> pool -> Dense -> logits, 8x8x1 input."""
  k = _keras(gen)
  L = k.layers  # pylint: disable=invalid-name
  inputs = k.Input((8, 8, 1))
  x = L.Conv2D(8, 3, padding='same', name='conv1')(inputs)
  x = L.BatchNormalization(name='bn1')(x)
  x = L.ReLU(name='relu1')(x)
  x = L.Conv2D(8, 3, padding='same', activation='relu', name='conv2')(x)
  x = L.MaxPooling2D(2, name='pool')(x)
  x = L.Flatten(name='flatten')(x)
  x = L.Dense(16, activation='relu', name='fc1')(x)
  return k.Model(inputs, L.Dense(4, name='logits')(x), name='contract')


def _data():
  rng = np.random.RandomState(0)
  return (rng.rand(N, 8, 8, 1).astype(np.float32),
          rng.randint(0, 4, N).astype(np.int32))


def _compile(model):
  k = generations.of(model).keras
  model.compile(k.optimizers.SGD(0.05),
                k.losses.SparseCategoricalCrossentropy(from_logits=True))


def _fit(model, name, epochs, x, y):
  extra = _recipe(name)[3]
  model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0,
            callbacks=[tfprune.PruningStep()] + extra(x))


def _masks(model):
  return {w.name: [np.asarray(m) for m in w.masks]
          for w in collect_wrappers(model, followers=True)}


@functools.lru_cache(maxsize=None)
def _trained(name, gen):
  """A model pruned by method ``name`` and trained EPOCHS epochs (cached:
  several checks read the same run)."""
  _keras(gen).utils.set_random_seed(7)
  method, schedule, layers, _ = _recipe(name)
  pruned = tfprune.prune(_model(gen), method, schedule, layers=layers)
  assert tfprune.keras_generation(pruned) == gen
  _compile(pruned)
  x, y = _data()
  _fit(pruned, name, EPOCHS, x, y)
  return pruned


@pytest.mark.parametrize('gen', GENERATIONS)
@pytest.mark.parametrize('name', METHODS)
def test_config_round_trips_and_holds_no_run_state(name, gen):
  method = _recipe(name)[0]
  again = registry.deserialize(registry.serialize(method))
  assert type(again) is type(method)
  assert again.get_config() == method.get_config()
  pruned = _trained(name, gen)
  state = pruned_method(pruned).get_state()
  assert not set(state) & set(method.get_config())
  json.dumps(state)                                  # JSON-able


def pruned_method(model):
  (members,) = cohorts(collect_wrappers(model))
  assert len({id(w.method) for w in members}) == 1  # one method per cohort
  return members[0].method


@pytest.mark.parametrize('gen', GENERATIONS)
@pytest.mark.parametrize('name', METHODS)
def test_fit_prunes_and_strip_computes_the_same(name, gen):
  pruned = _trained(name, gen)
  masks = _masks(pruned)
  assert any((m == 0).any() for ms in masks.values() for m in ms), name
  for wrapper in collect_wrappers(pruned):
    assert int(wrapper.pruning_step.numpy()) == EPOCHS * N // BATCH
  x = _data()[0][:8]
  np.testing.assert_allclose(tfprune.strip(pruned).predict(x, verbose=0),
                             pruned.predict(x, verbose=0), atol=1e-5)
  text = json.dumps(tfprune.report(pruned))
  assert '"totals"' in text


def _save_and_load(model, fmt, path):
  """Save ``model`` in format ``fmt`` and load it back."""
  k = generations.of(model).keras
  if fmt == 'weights.h5':              # Keras 3: weights into the same config
    model.save_weights(path)
    loaded = k.models.model_from_json(model.to_json())
    loaded.load_weights(path)
    return loaded
  model.save(path)
  with tfprune.custom_object_scope():
    return k.models.load_model(path, compile=False)


SAVE_FORMATS = {'tf_keras': ('keras', 'h5', 'savedmodel'),
                'keras3': ('keras', 'weights.h5')}


@pytest.mark.parametrize('gen', GENERATIONS)
@pytest.mark.parametrize('name', METHODS)
def test_save_load_resume_keeps_masks_and_run_state(name, gen, tmp_path):
  pruned = _trained(name, gen)
  x, y = _data()
  state = json.dumps(pruned_method(pruned).get_state(), sort_keys=True)
  info = tfprune.report(pruned).get('methods')
  holders = [w for w in collect_wrappers(pruned) if w.holds_state]
  assert len(holders) == 1                      # run state saved once
  loaded = {}
  for fmt in SAVE_FORMATS[gen]:
    path = str(tmp_path / ('model' if fmt == 'savedmodel' else
                           f'model.{fmt}'))
    model = _save_and_load(pruned, fmt, path)
    for key, values in _masks(pruned).items():
      for a, b in zip(values, _masks(model)[key]):
        np.testing.assert_array_equal(a, b, err_msg=f'{fmt} {key}')
    assert json.dumps(pruned_method(model).get_state(),
                      sort_keys=True) == state, fmt
    assert tfprune.report(model).get('methods') == info, fmt
    loaded[fmt] = model
  # Resume: one more epoch from the saved state ends where the
  # uninterrupted run ends (plain SGD: no optimizer state to lose).
  with tfprune.custom_object_scope():
    reference = _keras(gen).models.model_from_json(pruned.to_json())
  reference.set_weights(pruned.get_weights())
  for model in [reference] + list(loaded.values()):
    _compile(model)
    _fit(model, name, 1, x, y)
  expected = _masks(reference)
  for fmt, model in loaded.items():
    for key, values in expected.items():
      for a, b in zip(values, _masks(model)[key]):
        np.testing.assert_array_equal(a, b, err_msg=f'resumed {fmt} {key}')


def _replica_values(variable):
  """The per-replica values of a mirrored variable (Keras 3 variables hold
  the TensorFlow one in ``.value``)."""
  mirrored = variable if hasattr(variable, 'values') else variable.value
  return [v.numpy() for v in mirrored.values]


@pytest.mark.parametrize('gen', GENERATIONS)
@pytest.mark.parametrize('name', METHODS)
def test_mirrored_strategy_replicas_hold_the_same_masks(name, gen):
  strategy = mirrored_strategy()
  x, y = _data()
  with strategy.scope():
    method, schedule, layers, _ = _recipe(name)
    pruned = tfprune.prune(_model(gen), method, schedule, layers=layers)
    _compile(pruned)
  _fit(pruned, name, 1, x, y)
  for wrapper in collect_wrappers(pruned, followers=True):
    for mask in wrapper.masks:
      values = _replica_values(mask)
      assert len(values) == 2
      np.testing.assert_array_equal(values[0], values[1])


MODES = ('mixed_float16', 'mixed_bfloat16', 'jit', 'eager')


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('gen', GENERATIONS)
@pytest.mark.parametrize('name', METHODS)
def test_every_training_mode_prunes_and_strips_the_same(name, gen, mode):
  """Mixed precision (float32 masks and gates, the layers computing in the
  policy's dtype), ``jit_compile=True`` and ``run_eagerly=True``: the fit
  prunes, every wrapper counts every step, and the stripped model computes
  what the wrapped one does (to the compute dtype's precision)."""
  k = _keras(gen)
  policy = mode if mode.startswith('mixed') else 'float32'
  k.mixed_precision.set_global_policy(policy)
  try:
    k.utils.set_random_seed(7)
    method, schedule, layers, _ = _recipe(name)
    pruned = tfprune.prune(_model(gen), method, schedule, layers=layers)
    pruned.compile(k.optimizers.SGD(0.05),
                   k.losses.SparseCategoricalCrossentropy(from_logits=True),
                   jit_compile=mode == 'jit', run_eagerly=mode == 'eager')
    x, y = _data()
    _fit(pruned, name, EPOCHS, x, y)
    wrappers = collect_wrappers(pruned, followers=True)
    assert {w.layer.compute_dtype for w in wrappers} == {
        policy.replace('mixed_', '')}
    for wrapper in wrappers:
      for variable in wrapper.masks + [g for g in wrapper.gates
                                       if g is not None]:
        assert generations.of(pruned).storage_dtype(
            variable) == 'float32', variable.name
    assert any((m == 0).any() for ms in _masks(pruned).values() for m in ms)
    assert {int(w.pruning_step.numpy()) for w in collect_wrappers(pruned)
           } == {EPOCHS * N // BATCH}
    np.testing.assert_allclose(
        np.asarray(tfprune.strip(pruned).predict(x[:8], verbose=0),
                   np.float32),
        np.asarray(pruned.predict(x[:8], verbose=0), np.float32),
        atol=2e-3 if policy != 'float32' else 1e-5)
  finally:
    k.mixed_precision.set_global_policy('float32')


def test_every_registered_method_is_checked():
  assert {'Magnitude', 'PSP', 'NetworkTrimming', 'SmallWorld', 'Synthesis',
          'SynapticStrength'} <= set(METHODS)
