"""Keras 3 models get the same tfprune as tf_keras ones.

The method contract (tests/test_method_contract.py) runs every method on
both generations. Here: the two generations give identical masks, groups
and shrink plans for the same weights; Keras 3 graphs with residual adds,
squeeze-excite and concatenation shrink exactly; the converter writes
files ``check`` accepts; a Keras 3 model loads back from ``.keras``.
"""

import numpy as np
import pytest
import tensorflow as tf

import tfprune
import tflite_export
from tfprune import generations
from tfprune.wrapper import Keras3PruningWrapper, PruningWrapper, collect_wrappers

TF_KERAS, KERAS3 = generations.TF_KERAS.keras, generations.KERAS3.keras


def _twin(build):
  """The same architecture in both generations, Keras 3 holding the tf_keras
  model's weights."""
  old, new = build(TF_KERAS), build(KERAS3)
  new.set_weights(old.get_weights())
  return old, new


def _coupled(k):
  """Residual add, squeeze-excite multiply, concatenation, depthwise conv,
  a Keras 3 op (``x * 2``) on the TF side of the generation gap."""
  L = k.layers  # pylint: disable=invalid-name
  inputs = k.Input((8, 8, 3))
  a = L.Conv2D(8, 3, padding='same', activation='relu', name='a')(inputs)
  b = L.Conv2D(8, 3, padding='same', name='b')(a)
  b = L.BatchNormalization(name='b_bn')(b)
  res = L.ReLU(name='res_relu')(L.Add(name='add')([a, b]))
  dw = L.DepthwiseConv2D(3, padding='same', name='dw')(res)
  se = L.GlobalAveragePooling2D(keepdims=True, name='se_pool')(dw)
  se = L.Conv2D(4, 1, activation='relu', name='se_reduce')(se)
  se = L.Conv2D(8, 1, activation='sigmoid', name='se_expand')(se)
  x = L.Multiply(name='se_mul')([dw, se])
  c = L.Conv2D(6, 1, activation='relu', name='c')(x)
  x = L.Concatenate(name='cat')([x, c])
  x = L.Conv2D(10, 1, activation='relu', name='d')(x)
  x = L.GlobalAveragePooling2D(name='gap')(x)
  return k.Model(inputs, L.Dense(5, name='logits')(x), name='coupled')


def _masks(model):
  return {w.layer.name: [np.asarray(m) for m in w.masks]
          for w in collect_wrappers(model, followers=True)}


def test_pruning_wrapper_follows_the_layers_generation():
  wrapper = PruningWrapper(KERAS3.layers.Dense(3))
  assert isinstance(wrapper, Keras3PruningWrapper)
  assert isinstance(wrapper, KERAS3.layers.Wrapper)
  assert isinstance(PruningWrapper(TF_KERAS.layers.Dense(3)), PruningWrapper)
  assert tfprune.keras_generation(wrapper) == 'keras3'
  with pytest.raises(tfprune.UnsupportedLayerError, match='LSTM'):
    PruningWrapper(KERAS3.layers.LSTM(3))
  with pytest.raises(TypeError, match='expected a Keras Model'):
    tfprune.prune(KERAS3.layers.Dense(3))


@pytest.mark.parametrize('structure, sparsity', [('weight', 0.7),
                                                 ('channel', 0.5),
                                                 ('input_channel', 0.5)])
def test_same_weights_give_the_same_masks_and_plan(structure, sparsity):
  old, new = _twin(_coupled)
  pruned = [tfprune.prune(m, tfprune.methods.Magnitude(structure),
                          schedule=sparsity) for m in (old, new)]
  assert tfprune.keras_generation(pruned[1]) == 'keras3'
  masks = [_masks(p) for p in pruned]
  assert masks[0].keys() == masks[1].keys() and masks[0]
  for name, values in masks[0].items():
    for a, b in zip(values, masks[1][name]):
      np.testing.assert_array_equal(a, b, err_msg=name)
  x = np.random.RandomState(0).rand(4, 8, 8, 3).astype(np.float32)
  np.testing.assert_allclose(np.asarray(pruned[1](x)),
                             np.asarray(pruned[0](x)), atol=1e-5)
  if structure == 'weight':
    return
  plans = [tfprune.shrink(p, return_plan=True)[1].as_dict() for p in pruned]
  assert plans[0] == plans[1]
  removed = sum(len(p['removed']) for p in plans[1].values())
  assert removed > 0


def test_keras3_groups_shrink_exactly_and_export_checks(tmp_path):
  model = _coupled(KERAS3)
  pruned = tfprune.prune(model, tfprune.methods.Magnitude('channel'),
                         schedule=0.5)
  names = {w.layer.name for w in collect_wrappers(pruned)}
  assert 'logits' not in names and {'a', 'b', 'se_expand'} <= names
  # a residual group is masked in both producers at once
  a, b = (np.asarray(w.masks[0]) for w in collect_wrappers(pruned)
          if w.layer.name in 'ab')
  np.testing.assert_array_equal(a, b)
  stripped = tfprune.strip(pruned)
  shrunk, plan = tfprune.shrink(stripped, return_plan=True)
  x = np.random.RandomState(1).rand(4, 8, 8, 3).astype(np.float32)
  np.testing.assert_allclose(np.asarray(shrunk(x)), np.asarray(stripped(x)),
                             atol=1e-5)
  before = tfprune.report(stripped)['totals']['macs']
  after = tfprune.report(shrunk)['totals']['macs']
  assert after < 0.6 * before
  out = tflite_export.convert(shrunk, str(tmp_path / 'shrunk.tflite'))
  assert tflite_export.check(out['path'], tfprune.report(stripped),
                             plan=plan).ok
  dense = tflite_export.convert(stripped, str(tmp_path / 'stripped.tflite'))
  assert tflite_export.check(dense['path'], tfprune.report(stripped)).ok
  assert out['size'] < dense['size']


@pytest.mark.parametrize('quantize', ['none', 'dynamic', 'float16'])
def test_converter_keeps_the_zeros_of_both_generations(quantize, tmp_path):
  """Same weights, same quantization: the two generations' files hold the
  same operators and the same zeros (``check`` reads them per weight)."""
  old, new = _twin(_coupled)
  pruned = [tfprune.strip(tfprune.prune(
      m, tfprune.methods.Magnitude('weight'), schedule=0.75))
            for m in (old, new)]
  infos = []
  for gen, model in zip(('tf_keras', 'keras3'), pruned):
    path = str(tmp_path / f'{gen}.tflite')
    tflite_export.convert(model, path, quantize=quantize)
    assert tflite_export.check(path, tfprune.report(model)).ok, gen
    infos.append(tflite_export.inspect(path))
  assert infos[0].op_names == infos[1].op_names
  zeros = [sorted(int(op.weight.zeros.sum()) for op in info.weight_ops()
                  if op.weight is not None) for info in infos]
  assert zeros[0] == zeros[1] and max(zeros[1]) > 0


def test_keras3_saved_model_loads_with_its_generation(tmp_path):
  model = tfprune.prune(_coupled(KERAS3),
                        tfprune.methods.Magnitude('channel'), schedule=0.5)
  path = str(tmp_path / 'pruned.keras')
  model.save(path)
  assert generations.of_saved(path).name == 'keras3'
  loaded = generations.load_model(path)
  assert isinstance(loaded.layers[1], Keras3PruningWrapper)
  for name, values in _masks(model).items():
    np.testing.assert_array_equal(values[0], _masks(loaded)[name][0])
  old = str(tmp_path / 'old.keras')
  TF_KERAS.Sequential([TF_KERAS.Input((3,)), TF_KERAS.layers.Dense(2)]).save(
      old)
  assert generations.of_saved(old).name == 'tf_keras'


def test_keras_applications_from_keras3_group_like_tf_keras():
  """keras.applications MobileNetV2 (Keras 3 and tf_keras builds of the same
  net): the same channel groups, 50% of them masked."""
  counts = []
  for k in (TF_KERAS, KERAS3):
    net = k.applications.MobileNetV2(alpha=0.35, input_shape=(32, 32, 3),
                                     weights=None, classes=10)
    method = tfprune.methods.Magnitude('channel')
    tfprune.prune(net, method, schedule=0.5)
    groups = method.channel_groups
    counts.append((len(groups.prunable),
                   tfprune.groups.achieved_sparsity(groups)))
  assert counts[0] == counts[1]
  assert counts[1][0] > 1000 and abs(counts[1][1] - 0.5) < 0.01


def test_fit_with_steps_per_execution(tmp_path):
  """PruningStep reads Keras 3's steps_per_execution: updates land within
  one execution of their step, and the schedule ends at its target;
  SparsityLogger writes its rows."""
  model = _coupled(KERAS3)
  pruned = tfprune.prune(model, tfprune.methods.Magnitude('weight'),
                         tfprune.schedules.PolynomialDecay(
                             0.0, 0.8, begin_step=0, end_step=12, frequency=4))
  pruned.compile(KERAS3.optimizers.SGD(0.01),
                 KERAS3.losses.SparseCategoricalCrossentropy(from_logits=True),
                 steps_per_execution=3)
  rng = np.random.RandomState(0)
  x, y = rng.rand(96, 8, 8, 3).astype(np.float32), rng.randint(0, 5, 96)
  csv_path = tmp_path / 'sparsity.csv'
  pruned.fit(x, y, batch_size=8, epochs=2, verbose=0,
             callbacks=[tfprune.PruningStep(),
                        tfprune.SparsityLogger(csv_path=str(csv_path))])
  wrappers = collect_wrappers(pruned)
  rows = csv_path.read_text().splitlines()
  assert len(rows) == 1 + 2 * len(wrappers)          # header, per epoch
  assert rows[-1].split(',')[1] == '24' and float(
      rows[-1].split(',')[4]) > 0.7
  assert int(wrappers[0].pruning_step.numpy()) == 24
  masks = np.concatenate([np.asarray(w.masks[0]).ravel() for w in wrappers])
  assert abs((masks == 0).mean() - 0.8) < 0.02
  assert tf.reduce_all(tf.math.is_finite(pruned(x[:2])))


def test_other_keras3_backends_are_refused_with_the_fix(monkeypatch):
  monkeypatch.setattr(KERAS3.backend, 'backend', lambda: 'jax')
  with pytest.raises(RuntimeError, match='KERAS_BACKEND=tensorflow'):
    generations.of(KERAS3.layers.Dense(2))


def _projection_block(k):
  """A ResNet block whose shortcut conv has the branch conv's shape; the
  converter writes the shortcut's operator after the branch's."""
  L = k.layers  # pylint: disable=invalid-name
  inputs = k.Input((8, 8, 4))
  stem = L.Conv2D(8, 3, padding='same', name='stem')(inputs)
  short = L.Conv2D(16, 1, name='short')(stem)
  branch = L.Conv2D(8, 3, padding='same', activation='relu', name='b1')(stem)
  branch = L.Conv2D(16, 1, name='b2')(branch)
  pooled = L.GlobalAveragePooling2D()(L.Add()([short, branch]))
  return k.Model(inputs, L.Dense(3, name='head')(pooled))


def test_check_pairs_same_shape_layers_by_name_in_both_generations(tmp_path):
  """Keras 3 names tensors 'functional_1/short_1/...': the check must still
  pair 'short' by name, not by the operator order (the file has b2 first)."""
  for gen, model in zip(('tf_keras', 'keras3'), _twin(_projection_block)):
    stripped = tfprune.strip(tfprune.prune(
        model, tfprune.methods.Magnitude('weight'), schedule=0.5))
    path = str(tmp_path / f'{gen}.tflite')
    tflite_export.convert(stripped, path)
    order = [op.weight.name for op in tflite_export.inspect(path).weight_ops()]
    assert order.index(next(n for n in order if '/short' in n)) > order.index(
        next(n for n in order if '/b2' in n)), gen   # the trap is there
    result = tflite_export.check(path, tfprune.report(stripped))
    assert result.ok, (gen, result.failures)
    assert {l.layer: l.keras_sparsity for l in result.layers} == {
        l.layer: l.file_sparsity for l in result.layers}


class UsersAdam(KERAS3.optimizers.Adam):
  """Adam's arithmetic in a class tfprune does not vouch for (the wrappers
  keep the forward product)."""


def test_keras3_training_without_the_forward_product_is_bit_identical():
  """A Keras 3 fit with Keras' Adam skips the forward product
  (``zeros_kept``); it ends with the same weights as the product's fit,
  on a graph of coupled channel groups."""
  rng = np.random.RandomState(0)
  x, y = rng.rand(24, 8, 8, 3).astype(np.float32), rng.randint(0, 5, 24)
  weights, kept = {}, {}
  for optimizer in (KERAS3.optimizers.Adam, UsersAdam):
    KERAS3.utils.set_random_seed(0)
    pruned = tfprune.prune(_coupled(KERAS3), tfprune.methods.Magnitude(
        'channel'), tfprune.schedules.PolynomialDecay(
            0.0, 0.5, begin_step=0, end_step=6, frequency=2))
    pruned.compile(optimizer(0.05), KERAS3.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    seen = set()
    record = KERAS3.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: (
        seen.update(w.zeros_kept for w in collect_wrappers(pruned))))
    pruned.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False,
               callbacks=[tfprune.PruningStep(), record])
    weights[optimizer], kept[optimizer] = pruned.get_weights(), seen
  assert kept == {KERAS3.optimizers.Adam: {True}, UsersAdam: {False}}
  for fast, exact in zip(*weights.values()):
    np.testing.assert_array_equal(fast, exact)


@pytest.mark.parametrize('mode', ['graph', 'eager', 'jit'])
def test_keras3_fit_without_pruning_step_is_a_clear_error(mode):
  """Keras 3's steps take the same checks: in the graph, in Python when
  eager, while tracing when XLA compiles the step (XLA drops Assert
  ops)."""
  rng = np.random.RandomState(0)
  x, y = rng.rand(8, 8, 8, 3).astype(np.float32), rng.randint(0, 5, 8)
  model = tfprune.prune(_coupled(KERAS3), schedule=0.5)
  model.compile('sgd', KERAS3.losses.SparseCategoricalCrossentropy(
      from_logits=True), run_eagerly=mode == 'eager',
                jit_compile=mode == 'jit')
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'callbacks=\[tfprune.PruningStep\(\)\]'):
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
  model.fit(x, y, batch_size=4, epochs=1, verbose=0,
            callbacks=[tfprune.PruningStep()])
  assert all(int(w.pruning_step.numpy()) == 2
             for w in collect_wrappers(model))
