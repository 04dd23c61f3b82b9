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
                             SynapticStrength, Synthesis)
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
                                 lambda x: [tfprune.TrimmingCallback(x[:32], every=1)]),
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


@pytest.mark.parametrize('mixed_policy', ['mixed_float16', 'mixed_bfloat16'],
                         indirect=True)
@pytest.mark.parametrize('name', sorted(_METHODS))
def test_every_method_trains_under_mixed_precision(mixed_policy, name):
  method, schedule, layers, extra = _METHODS[name]()
  x, y = _data()
  model = tfprune.models.small_cnn(filters=(8, 8), dense=16)
  compute = mixed_policy.split('_')[1]
  assert model.get_layer('conv1').compute_dtype == compute
  pruned = tfprune.prune(model, method, schedule, layers=layers)
  pruned.compile(keras.optimizers.Adam(1e-2),
                 'sparse_categorical_crossentropy')
  # Keras scales the loss for float16 only; tfprune leaves that as it is
  assert isinstance(pruned.optimizer,
                    keras.mixed_precision.LossScaleOptimizer) == (
                        compute == 'float16')
  history = pruned.fit(x, y, batch_size=16, epochs=2, verbose=0,
                       callbacks=[tfprune.PruningStep()] + extra(x))
  assert np.isfinite(history.history['loss']).all()
  wrappers = collect_wrappers(pruned, followers=True)
  pruned_units = 0
  for wrapper in wrappers:
    # stored in float32 (read in the compute dtype inside the layer's call)
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


class _Interrupt(keras.callbacks.Callback):
  """Raises at a given global batch, as a killed job would stop there."""

  def __init__(self, at_batch):
    super().__init__()
    self.at_batch, self.seen = at_batch, 0

  def on_train_batch_end(self, batch, logs=None):
    self.seen += 1
    if self.seen == self.at_batch:
      raise RuntimeError('interrupted')


@pytest.mark.parametrize('pruning_first', [True, False])
def test_backup_and_restore_resumes_the_schedule_in_any_order(
    tmp_path, pruning_first):
  x, y = _data(n=64)
  schedule = tfprune.schedules.PolynomialDecay(0.0, 0.8, begin_step=0,
                                               end_step=24, frequency=4)

  def fit(extra):
    keras.utils.set_random_seed(0)
    model = tfprune.prune(tfprune.models.small_cnn(filters=(8, 8), dense=16),
                          Magnitude(), schedule)
    model.compile('sgd', 'sparse_categorical_crossentropy')
    backup = keras.callbacks.BackupAndRestore(str(tmp_path), save_freq=4)
    ordered = ([tfprune.PruningStep(), backup] if pruning_first else
               [backup, tfprune.PruningStep()])
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False,
              callbacks=ordered + extra)
    return model

  with pytest.raises(RuntimeError, match='interrupted'):
    fit([_Interrupt(12)])
  model = fit([])
  for wrapper in collect_wrappers(model):
    assert int(wrapper.pruning_step.numpy()) == 24
    sparsity = 1 - np.asarray(wrapper.masks[0]).mean()
    assert abs(sparsity - 0.8) < 0.01, (wrapper.name, sparsity)


def test_an_unbuilt_sequential_is_refused_with_the_fix_and_works_once_built():
  def sequential():
    return keras.Sequential([keras.layers.Dense(8, activation='relu'),
                             keras.layers.Dense(3)])

  with pytest.raises(ValueError, match=r'not built.*model\.build'):
    tfprune.prune(sequential(), Magnitude(), 0.5)
  model = sequential()
  model.build((None, 5))
  pruned = tfprune.prune(model, Magnitude(), np.float32(0.5))
  pruned.compile('adam', keras.losses.SparseCategoricalCrossentropy(
      from_logits=True))
  x = np.random.RandomState(0).rand(32, 5).astype(np.float32)
  pruned.fit(x, np.arange(32) % 3, epochs=1, verbose=0,
             callbacks=[tfprune.PruningStep()])
  assert [float(np.asarray(w.masks[0]).mean())
          for w in collect_wrappers(pruned)] == [0.5, 0.5]


def test_layers_entries_that_are_neither_names_nor_classes_are_refused():
  with pytest.raises(TypeError, match=r'\[42\] is neither a name nor a class'):
    tfprune.prune(tfprune.models.small_cnn(), Magnitude(), 0.5,
                  layers=['conv1', 42])


@pytest.mark.parametrize('optimizer', ['adam', 'momentum'])
def test_saved_weights_hold_exact_zeros_where_masks_are_zero(tmp_path,
                                                             optimizer):
  # Adam and momentum keep moving a zeroed weight unless their state at the
  # pruned positions is cleared with the mask write (tfmot #206).
  x, y = _data(n=128)
  schedule = tfprune.schedules.PolynomialDecay(0.0, 0.75, begin_step=0,
                                               end_step=12, frequency=3)
  for structure in ('weight', 'channel'):
    model = tfprune.prune(tfprune.models.small_cnn(filters=(8, 8), dense=16),
                          Magnitude(structure), schedule,
                          layers=['conv2', 'fc1'])
    opt = (keras.optimizers.Adam(1e-2) if optimizer == 'adam' else
           keras.optimizers.SGD(0.05, momentum=0.9))
    model.compile(opt, 'sparse_categorical_crossentropy')
    model.fit(x, y, batch_size=8, epochs=2, verbose=0,
              callbacks=[tfprune.PruningStep()])
    path = str(tmp_path / f'{structure}.keras')
    model.save(path)
    loaded = keras.models.load_model(path)
    for wrapper in collect_wrappers(loaded):
      for variable, keep in wrapper.masked_variables(0):
        values = np.asarray(variable)[~np.asarray(keep)]
        assert values.size > 0
        assert (values == 0).all(), (structure, variable.name,
                                     int((values != 0).sum()), values.size)


class _Subclassed(keras.Model):
  """Wrapped layers held as an attribute and in a list (tfmot #155/#965)."""

  def __init__(self):
    super().__init__(name='subclassed')
    schedule = tfprune.schedules.PolynomialDecay(0.0, 0.5, 0, 4, frequency=2)
    self.conv = tfprune.PruningWrapper(
        keras.layers.Conv2D(8, 3, activation='relu', name='conv'),
        Magnitude('channel'), schedule)
    self.flat = keras.layers.Flatten(name='flat')
    self.dense = [tfprune.PruningWrapper(
        keras.layers.Dense(16, activation='relu', name='fc'), Magnitude(),
        schedule)]
    self.out = keras.layers.Dense(3, name='logits')

  def call(self, x):
    return self.out(self.dense[0](self.flat(self.conv(x))))


def test_a_subclassed_model_with_wrapped_layers_converts_and_strips(tmp_path):
  import tflite_export  # pylint: disable=g-import-not-at-top
  x, y = np.random.RandomState(0).rand(32, 6, 6, 2).astype(np.float32), (
      np.arange(32) % 3)
  model = _Subclassed()
  model(x[:1])
  model.compile('adam', keras.losses.SparseCategoricalCrossentropy(
      from_logits=True))
  model.fit(x, y, batch_size=8, epochs=1, verbose=0,
            callbacks=[tfprune.PruningStep()])
  wrapped_out = model.predict(x, verbose=0)
  rep = tfprune.report(model)
  assert rep['layers'][0]['structure'] == 'channel'
  # convert leaves the model as it is and folds the masks into the file
  path = str(tmp_path / 'wrapped.tflite')
  tflite_export.convert(model, path)
  assert len(collect_wrappers(model)) == 2
  result = tflite_export.check(path, rep)
  assert result.ok, result
  assert [l.file_sparsity for l in result.layers[:2]] == [0.5, 0.5]
  # strip works in place, keeping layer order and outputs
  stripped = tfprune.strip(model)
  assert stripped is model and not collect_wrappers(model)
  assert [l.name for l in model.layers] == ['conv', 'flat', 'fc', 'logits']
  assert not any('mask' in v.name for v in model.weights)
  np.testing.assert_allclose(model.predict(x, verbose=0), wrapped_out,
                             atol=1e-6)
  assert (np.asarray(model.conv.kernel) == 0).all(axis=(0, 1, 2)).sum() == 4
  path = str(tmp_path / 'stripped.tflite')
  tflite_export.convert(model, path)
  assert tflite_export.check(path, tfprune.report(model)).ok


@pytest.mark.parametrize('mode', ['jit', 'eager'])
@pytest.mark.parametrize('name', sorted(_METHODS))
def test_every_method_trains_with_jit_compile_and_eagerly(name, mode):
  method, schedule, layers, extra = _METHODS[name]()
  x, y = _data()
  pruned = tfprune.prune(tfprune.models.small_cnn(filters=(8, 8), dense=16),
                         method, schedule, layers=layers)
  pruned.compile(keras.optimizers.Adam(1e-2),
                 'sparse_categorical_crossentropy', jit_compile=mode == 'jit',
                 run_eagerly=mode == 'eager')
  history = pruned.fit(x, y, batch_size=16, epochs=2, verbose=0,
                       callbacks=[tfprune.PruningStep()] + extra(x))
  assert np.isfinite(history.history['loss']).all()
  wrappers = collect_wrappers(pruned)
  assert all(int(w.pruning_step.numpy()) == 8 for w in wrappers)
  if name != 'psp_filter':
    assert sum(int((np.asarray(m) == 0).sum())
               for w in wrappers for m in w.masks) > 0


def _eager_vs_traced(name):
  return {
      'magnitude_channel': lambda: (Magnitude('channel'), _schedule()),
      # the threshold starts at step 3 and hands over to masks at step 6:
      # an eager fit decides the phase in Python, a traced one in the graph
      'psp_phases': lambda: (PSP('filter', epsilon=0.999, begin_step=3,
                                 freeze_step=6), None),
  }[name]()


@pytest.mark.parametrize('name', ['magnitude_channel', 'psp_phases'])
def test_an_eager_fit_trains_exactly_like_a_traced_one(name):
  """``run_eagerly=True`` takes its own forms of the step check and of
  PSP's phase (decided in Python, not by graph ops): the same masks,
  gates, weights and steps as the traced fit, and every phase reached."""
  x, y = _data()
  runs = []
  for eager in (False, True):
    keras.utils.set_random_seed(0)
    method, schedule = _eager_vs_traced(name)
    model = tfprune.prune(tfprune.models.small_cnn(filters=(8, 8), dense=16),
                          method, schedule)
    model.compile(keras.optimizers.SGD(0.1), 'sparse_categorical_crossentropy',
                  run_eagerly=eager)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False,
              callbacks=[tfprune.PruningStep()])
    runs.append(model)
  traced, eager = (collect_wrappers(m) for m in runs)
  for a, b in zip(traced, eager):
    assert int(a.pruning_step.numpy()) == int(b.pruning_step.numpy()) == 8
    for mask_a, mask_b in zip(a.masks, b.masks):
      np.testing.assert_array_equal(mask_a.numpy(), mask_b.numpy())
  for a, b in zip(runs[0].weights, runs[1].weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5,
                               err_msg=a.name)
  removed = sum(int((m.numpy() == 0).sum()) for w in traced for m in w.masks)
  assert removed > 0
  if name == 'psp_phases':
    assert method.info['frozen_at'] == 6
