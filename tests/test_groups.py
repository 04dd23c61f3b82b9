"""Channel groups: coupled channels are masked together and shrink removes
exactly what the masks promise."""

import logging
import warnings

import numpy as np
import pytest
import tf_keras as keras

import tfprune
from tfprune import groups
from tfprune.graph import ShrinkWarning
from tfprune.methods import PSP, Magnitude
from tfprune.wrapper import collect_wrappers

L = keras.layers


def _randomise_bn(model, seed=0):
  """Trained-looking BatchNorm: non-zero shift, so an unmasked follower would
  turn a pruned channel into a constant."""
  rng = np.random.RandomState(seed)
  for layer in model.layers:
    if isinstance(layer, L.BatchNormalization):
      n = layer.gamma.shape[0]
      layer.set_weights([rng.rand(n) + 0.5, rng.rand(n) + 0.2,
                         rng.randn(n) * 0.1, rng.rand(n) + 0.5])
  return model


def _conv_bn(x, filters, name, kernel=3, act='relu'):
  x = L.Conv2D(filters, kernel, padding='same', name=name)(x)
  x = L.BatchNormalization(name=f'{name}_bn')(x)
  return L.Activation(act, name=f'{name}_act')(x) if act else x


def residual_model():
  inputs = keras.Input((8, 8, 3))
  a = _conv_bn(inputs, 8, 'a')
  b = _conv_bn(a, 8, 'b', act=None)
  x = L.ReLU(name='r1')(L.Add(name='add1')([a, b]))
  c = _conv_bn(x, 8, 'c', act=None)
  x = L.ReLU(name='r2')(L.Add(name='add2')([x, c]))
  x = _conv_bn(x, 6, 'd')
  x = L.GlobalAveragePooling2D(name='gap')(x)
  return _randomise_bn(keras.Model(inputs, L.Dense(3, name='logits')(x)))


def concat_model():
  inputs = keras.Input((8, 8, 3))
  a = _conv_bn(inputs, 4, 'a')
  b = _conv_bn(inputs, 8, 'b')
  x = L.Concatenate(name='cat')([a, b])
  x = _conv_bn(x, 6, 'c')
  x = L.GlobalAveragePooling2D(name='gap')(x)
  return _randomise_bn(keras.Model(inputs, L.Dense(3, name='logits')(x)))


def separable_model():
  inputs = keras.Input((8, 8, 3))
  x = _conv_bn(inputs, 8, 'a', kernel=1)
  x = L.DepthwiseConv2D(3, padding='same', name='dw')(x)
  x = L.BatchNormalization(name='dw_bn')(x)
  x = L.ReLU(name='dw_relu')(x)
  x = L.SeparableConv2D(10, 3, padding='same', name='sep')(x)
  x = L.BatchNormalization(name='sep_bn')(x)
  x = L.ReLU(name='sep_relu')(x)
  x = _conv_bn(x, 6, 'c')
  x = L.GlobalAveragePooling2D(name='gap')(x)
  return _randomise_bn(keras.Model(inputs, L.Dense(3, name='logits')(x)))


def hard_swish(x):
  return L.Multiply()([x, L.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)])


def se_model():
  """Hard-swish, squeeze-excite (GAP -> Reshape((1,1,C)) -> conv -> conv ->
  Multiply), as in MobileNetV3 and EfficientNet."""
  inputs = keras.Input((8, 8, 3))
  x = L.Rescaling(1 / 255.0, name='rescale')(inputs)
  x = L.Conv2D(16, 3, padding='same', name='a')(x)
  x = L.BatchNormalization(name='a_bn')(x)
  x = hard_swish(x)
  se = L.GlobalAveragePooling2D(name='se_pool')(x)
  se = L.Reshape((1, 1, 16), name='se_reshape')(se)
  se = L.Conv2D(8, 1, activation='relu', name='se_reduce')(se)
  se = L.Conv2D(16, 1, activation='sigmoid', name='se_expand')(se)
  x = L.Multiply(name='se_mul')([x, se])
  x = _conv_bn(x, 8, 'c', kernel=3)
  x = L.GlobalAveragePooling2D(name='gap')(x)
  return _randomise_bn(keras.Model(inputs, L.Dense(3, name='logits')(x)))


def conv1d_model():
  inputs = keras.Input((16, 4))
  x = L.Conv1D(8, 3, padding='same', name='a')(inputs)
  x = L.BatchNormalization(name='a_bn')(x)
  x = L.ReLU()(x)
  x = L.Conv1D(6, 3, padding='same', name='b')(x)
  x = L.Flatten(name='flat')(x)
  return keras.Model(inputs, L.Dense(3, name='logits')(x))


def permute_model(dims=(2, 1, 3)):
  """A Permute between two convs (Permute((2, 1, 3)) swaps height and width:
  the channel axis stays last)."""
  inputs = keras.Input((8, 6, 3))
  x = _conv_bn(inputs, 8, 'a')
  x = L.Permute(dims, name='permute')(x)
  x = _conv_bn(x, 6, 'b')
  x = L.Flatten(name='flat')(x)
  return _randomise_bn(keras.Model(inputs, L.Dense(3, name='logits')(x)))


MODELS = {'residual': residual_model, 'concat': concat_model,
          'separable': separable_model, 'se_hard_swish': se_model,
          'conv1d': conv1d_model, 'permute': permute_model}


def _masks(pruned):
  return {w.layer.name: np.asarray(w.masks[0]).reshape(-1)
          for w in collect_wrappers(pruned, followers=True)}


def _cg(pruned):
  return collect_wrappers(pruned)[0].method.channel_groups


@pytest.mark.parametrize('name', sorted(MODELS))
def test_masks_equal_in_groups_and_shrink_removes_exactly_them(name):
  keras.utils.set_random_seed(1)
  model = MODELS[name]()
  pruned = tfprune.prune(model, Magnitude('channel'), schedule=0.5)
  cg = _cg(pruned)
  assert cg.n_prunable > 0
  for member in cg.members:                   # one decision per group
    mask = np.asarray(member.wrapper.masks[0]).reshape(-1)
    for gid in np.unique(member.groups):
      values = {float(v) for v, g in zip(mask, member.groups) if g == gid}
      assert len(values) == 1
  dead = {}
  for member in cg.members:
    mask = np.asarray(member.wrapper.masks[0]).reshape(-1)
    for g, v in zip(member.groups, mask):
      dead.setdefault(int(g), set()).add(float(v))
  assert all(len(v) == 1 for v in dead.values())   # same in every member
  assert groups.achieved_sparsity(cg) == pytest.approx(0.5, abs=0.1)
  stripped = tfprune.strip(pruned)
  shrunk, plan = tfprune.shrink(stripped, return_plan=True)
  masks = _masks(pruned)
  producers = [w.layer.name for w in collect_wrappers(pruned)]
  assert 'logits' not in producers
  for layer in producers:
    assert plan.layers[layer].removed.size == int((masks[layer] == 0).sum())
  assert sum(p.removed.size for p in plan.layers.values()) > 0
  x = np.random.RandomState(0).rand(4, *model.input_shape[1:]).astype(
      np.float32)
  np.testing.assert_allclose(shrunk.predict(x, verbose=0),
                             stripped.predict(x, verbose=0), atol=1e-5)


def test_a_permute_that_moves_the_channel_axis_pins_its_channels(caplog):
  with caplog.at_level(logging.INFO, logger='tfprune'):
    pruned = tfprune.prune(permute_model((1, 3, 2)), Magnitude('channel'),
                           schedule=0.5)
  names = [w.layer.name for w in collect_wrappers(pruned)]
  assert 'a' not in names and 'b' in names   # a's channels become widths
  assert "a (its channels are pinned by 'permute' (Permute: a Permute that " \
      'moves the channel axis))' in caplog.text
  with pytest.warns(ShrinkWarning, match="'permute' .*moves the channel"):
    tfprune.shrink(tfprune.strip(pruned))


def test_residual_partners_share_masks_and_bn_followers_are_masked():
  pruned = tfprune.prune(residual_model(), Magnitude('channel'), schedule=0.5)
  masks = _masks(pruned)
  for name in ('b', 'c', 'a_bn', 'b_bn', 'c_bn'):
    np.testing.assert_array_equal(masks[name], masks['a'])
  assert masks['a'].sum() == 4 and masks['d'].sum() == 3
  cg = _cg(pruned)
  assert ('a', 'b', 'c') in cg.sets


def test_concatenate_slices_and_separable_outputs():
  pruned = tfprune.prune(concat_model(), Magnitude('channel'), schedule=0.5)
  masks = _masks(pruned)
  assert masks['a'].sum() == 2 and masks['b'].sum() == 4
  pruned = tfprune.prune(separable_model(), Magnitude('channel'),
                         schedule=0.5)
  masks = _masks(pruned)
  np.testing.assert_array_equal(masks['dw'], masks['a'])   # depthwise in=out
  assert masks['sep'].sum() == 5 and masks['sep_bn'].sum() == 5


def test_se_and_hard_swish_are_understood():
  model = se_model()
  with warnings.catch_warnings():
    warnings.simplefilter('error', tfprune.graph.ShrinkWarning)
    g = tfprune.graph.build(model)
  assert not g.opaque
  pruned = tfprune.prune(model, Magnitude('channel'), schedule=0.5)
  masks = _masks(pruned)
  np.testing.assert_array_equal(masks['se_expand'], masks['a'])  # Multiply
  assert masks['se_reduce'].sum() == 4


def test_logits_never_wrapped_by_default_and_the_skip_is_logged(caplog):
  with caplog.at_level(logging.INFO, logger='tfprune'):
    pruned = tfprune.prune(residual_model(), Magnitude('channel'),
                           schedule=0.5)
  assert 'pruned_logits' not in [l.name for l in pruned.layers]
  lines = [r.getMessage() for r in caplog.records if 'not wrapped' in
           r.getMessage()]
  assert len(lines) == 1 and "logits (its channels are the model outputs" \
      in lines[0]
  out = tfprune.prune(residual_model(), Magnitude('channel'), schedule=0.5,
                      layers=['a'])          # partners come along, logged
  assert {w.layer.name for w in collect_wrappers(out)} == {'a', 'b', 'c'}


def test_explicit_unprunable_layer_raises_and_ignore_blocks_its_groups():
  with pytest.raises(tfprune.UnsupportedLayerError):
    tfprune.prune(residual_model(), Magnitude('channel'), schedule=0.5,
                  layers=['a_bn'])
  pruned = tfprune.prune(residual_model(), Magnitude('channel'), schedule=0.5,
                         ignore=['b'])
  masks = _masks(pruned)
  assert 'b' not in masks and masks['a'].all() and masks['c'].all()
  assert masks['d'].sum() == 3


def test_round_to_rounds_kept_counts_to_the_nearest_multiple():
  def kept(size, sparsity, round_to):
    return groups._kept_count(size, size * (1 - sparsity),  # pylint: disable=protected-access
                              groups.ChannelSelection(round_to=round_to))
  assert kept(24, 0.5, 8) == 16          # 12 -> 16 (Torch-Pruning: 8)
  assert kept(8, 0.5, 8) == 4            # small SE layer: unit halved, pruned
  assert kept(64, 0.5, 8) == 32
  assert kept(40, 0.5, 8) == 24          # 20 -> 24 (halves go up)
  assert kept(3, 0.9, 8) == 1
  inputs = keras.Input((8, 8, 3))
  x = _conv_bn(inputs, 24, 'a')
  x = _conv_bn(x, 40, 'b')
  x = L.GlobalAveragePooling2D()(x)
  model = keras.Model(inputs, L.Dense(3, name='logits')(x))
  pruned = tfprune.prune(model, Magnitude('channel'), schedule=0.5,
                         selection=tfprune.ChannelSelection(round_to=8))
  _, plan = tfprune.shrink(pruned, return_plan=True)
  assert plan.kept_counts()['a'] == 16 and plan.kept_counts()['b'] == 24


def test_requested_sparsity_is_the_achieved_structural_sparsity():
  pruned = tfprune.prune(residual_model(), Magnitude('channel'), schedule=0.5)
  cg = _cg(pruned)
  assert cg.n_prunable == 14              # 8 (a, b, c) + 6 (d)
  assert groups.achieved_sparsity(cg) == 7 / 14
  _, plan = tfprune.shrink(pruned, return_plan=True)
  assert plan.removed_counts()['a'] + plan.removed_counts()['d'] == 7


def test_global_ranking_respects_max_ratio_and_min_channels():
  imp = np.array([0.1, 0.2, 0.3, 0.4, 5, 6, 7, 8])
  coupled = np.array([0, 0, 0, 0, 1, 1, 1, 1])
  tie = np.zeros(8)
  rule = groups.ChannelSelection(ranking='global')
  remove = groups.select(imp, tie, coupled, 2, 0.5, rule)
  # 4 of 8 go; set 0 keeps its 1 minimum, so the 4th comes from set 1
  assert remove.tolist() == [True, True, True, False, True, False, False,
                             False]
  rule = groups.ChannelSelection(ranking='global', max_ratio=0.5)
  remove = groups.select(imp, tie, coupled, 2, 0.5, rule)
  assert remove.tolist() == [True, True, False, False, True, True, False,
                             False]
  rule = groups.ChannelSelection(ranking='uniform', min_channels=3)
  remove = groups.select(imp, tie, coupled, 2, 0.75, rule)
  assert remove.sum() == 2
  with pytest.raises(ValueError, match='ranking'):
    groups.ChannelSelection(ranking='local')
  with pytest.raises(ValueError, match='round_to'):
    groups.ChannelSelection(round_to=0)


def test_ties_are_broken_by_weight_norm():
  imp = np.ones(4)
  remove = groups.select(imp, np.array([3.0, 1.0, 2.0, 4.0]),
                         np.zeros(4, np.int64), 1, 0.5,
                         groups.ChannelSelection())
  assert remove.tolist() == [False, True, True, False]


def test_selection_survives_save_and_load(tmp_path):
  rule = tfprune.ChannelSelection(ranking='global', round_to=4)
  pruned = tfprune.prune(residual_model(), Magnitude('channel'), schedule=0.5,
                         selection=rule)
  path = str(tmp_path / 'm.keras')
  pruned.save(path)
  with tfprune.custom_object_scope():
    loaded = keras.models.load_model(path)
  wrappers = collect_wrappers(loaded, followers=True)
  assert wrappers[0].method.selection == rule
  assert sum(w.follower for w in wrappers) == 4
  np.testing.assert_array_equal(_masks(loaded)['a_bn'], _masks(pruned)['a'])


def test_training_with_followers_keeps_pruned_channels_zero():
  model = residual_model()
  pruned = tfprune.prune(model, Magnitude('channel'), schedule=0.5)
  pruned.compile(keras.optimizers.SGD(0.1), keras.losses.
                 SparseCategoricalCrossentropy(from_logits=True))
  rng = np.random.RandomState(0)
  x, y = rng.rand(16, 8, 8, 3).astype(np.float32), rng.randint(0, 3, 16)
  pruned.fit(x, y, batch_size=8, epochs=1, verbose=0,
             callbacks=[tfprune.PruningStep()])
  stripped = tfprune.strip(pruned)
  shrunk, plan = tfprune.shrink(stripped, return_plan=True)
  assert plan.removed_counts()['a'] == 4
  np.testing.assert_allclose(shrunk.predict(x, verbose=0),
                             stripped.predict(x, verbose=0), atol=1e-5)


def test_psp_target_mode_reaches_its_target_on_resnet50():
  keras.utils.set_random_seed(0)
  model = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3),
                                      classes=4)
  schedule = tfprune.schedules.get(
      {'class_name': 'ConstantSparsity',
       'config': {'target_sparsity': 0.5, 'begin_step': 1, 'frequency': 1}})
  pruned = tfprune.prune(model, PSP('filter', weight_decay=1e-4), schedule)
  optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
  pruned.compile(optimizer, 'sparse_categorical_crossentropy')
  # PruningStep by hand: its first batch is step 1, where the schedule
  # updates (a fit step would add 15 s of tracing and leave every alpha at
  # 1 all the same)
  step = tfprune.PruningStep(optimizer)
  step.set_model(pruned)
  step.on_train_begin()
  step.on_train_batch_begin(0)
  cg = _cg(pruned)   # all alphas are 1 at step 1: ties broken by weights
  assert cg.n_prunable > 10000
  assert groups.achieved_sparsity(cg) == pytest.approx(0.5, abs=0.005)


def test_separable_macs_count_both_parts():
  model = separable_model()
  entry = {e['name']: e for e in tfprune.report(model)['layers']}['sep']
  assert entry['macs'] == 8 * 8 * (3 * 3 * 8 + 8 * 10)   # depthwise + pointwise


def test_a_final_softmax_pins_the_logits_without_a_warning():
  inputs = keras.Input((8, 8, 3))
  x = L.GlobalAveragePooling2D()(_conv_bn(inputs, 4, 'a'))
  x = L.Dense(3, name='logits')(x)
  model = keras.Model(inputs, L.Activation('softmax', name='probs')(x))
  with warnings.catch_warnings():
    warnings.simplefilter('error', tfprune.graph.ShrinkWarning)
    g = tfprune.graph.build(model)
  assert [n.name for n in g.opaque] == ['probs']
  pruned = tfprune.prune(model, Magnitude('channel'), schedule=0.5)
  assert {w.layer.name for w in collect_wrappers(pruned)} == {'a'}


# --- edge cases found in review ----------------------------------------------


def test_subclassed_model_falls_back_to_per_layer_masks():
  class Net(keras.Model):

    def __init__(self):
      super().__init__(name='net')
      self.conv = tfprune.PruningWrapper(
          L.Conv2D(4, 3), Magnitude('channel'),
          tfprune.schedules.get({'class_name': 'ConstantSparsity', 'config': {
              'target_sparsity': 0.5, 'begin_step': 1, 'frequency': 1}}))
      self.pool = L.GlobalAveragePooling2D()
      self.out = L.Dense(2)

    def call(self, x):
      return self.out(self.pool(self.conv(x)))

  model = Net()
  model.compile('sgd', keras.losses.SparseCategoricalCrossentropy(
      from_logits=True))
  x = np.random.RandomState(0).rand(4, 6, 6, 3).astype(np.float32)
  model(x)                                      # built before fit
  with pytest.warns(UserWarning, match='not a flat functional model'):
    model.fit(x, np.array([0, 1, 0, 1]), epochs=1, verbose=0,
              callbacks=[tfprune.PruningStep()])
  assert np.asarray(model.conv.masks[0]).sum() == 2


def test_shared_and_sigmoid_producers_are_not_pruned_by_default(caplog):
  inputs = keras.Input((6, 6, 3))
  shared = L.Conv2D(3, 1, name='shared')
  x = shared(shared(inputs))
  x = L.Conv2D(4, 3, padding='same', activation='sigmoid', name='gate')(x)
  x = L.Conv2D(4, 3, padding='same', name='after')(x)
  x = L.GlobalAveragePooling2D()(x)
  model = keras.Model(inputs, L.Dense(2, name='logits')(x))
  with caplog.at_level(logging.INFO, logger='tfprune'):
    pruned = tfprune.prune(model, Magnitude('channel'), schedule=0.5)
  assert "shared (the channel graph does not understand it" in caplog.text
  masks = _masks(pruned)
  assert 'shared' not in masks
  assert masks['gate'].all()         # sigmoid(0) = 0.5: masking leaves 0.5
  assert 'its activation is not 0 at 0' in caplog.text
  assert masks['after'].sum() == 2


def test_a_follower_needs_no_step_of_its_own():
  pruned = tfprune.prune(residual_model(), Magnitude('channel'), schedule=0.5)
  for wrapper in collect_wrappers(pruned):      # a custom loop's view
    wrapper.pruning_step.assign(1)
  x = np.random.RandomState(0).rand(2, 8, 8, 3).astype(np.float32)
  assert pruned(x, training=True).shape == (2, 3)


def test_normalization_with_constants_is_left_alone():
  inputs = keras.Input((6, 6, 3))
  x = L.Conv2D(4, 3, padding='same', name='a')(inputs)
  x = L.Normalization(mean=[0.] * 4, variance=[1.] * 4, name='norm')(x)
  x = L.Conv2D(4, 3, padding='same', name='b')(x)
  model = keras.Model(inputs, L.Dense(2, name='logits')(
      L.GlobalAveragePooling2D()(x)))
  pruned = tfprune.prune(model, Magnitude('channel'), schedule=0.5)
  shrunk = tfprune.shrink(pruned)
  x = np.random.RandomState(0).rand(2, 6, 6, 3).astype(np.float32)
  np.testing.assert_allclose(shrunk.predict(x, verbose=0),
                             tfprune.strip(pruned).predict(x, verbose=0),
                             atol=1e-5)


def test_explicit_selection_is_saved_even_when_it_is_the_default(tmp_path):
  pruned = tfprune.prune(residual_model(), Magnitude('channel', scope='global'),
                         schedule=0.5, selection=tfprune.ChannelSelection())
  path = str(tmp_path / 'm.keras')
  pruned.save(path)
  with tfprune.custom_object_scope():
    loaded = keras.models.load_model(path)
  assert collect_wrappers(loaded)[0].method.selection.ranking == 'uniform'


def test_an_older_accepts_hook_still_counts():
  class DenseOnly(Magnitude):

    def accepts(self, layer):
      return isinstance(layer, L.Dense)

  inputs = keras.Input((4,))
  x = L.Dense(6, name='a')(inputs)
  model = keras.Model(inputs, L.Dense(2, name='logits')(x))
  pruned = tfprune.prune(model, DenseOnly('weight'), schedule=0.5)
  assert [w.layer.name for w in collect_wrappers(pruned)] == ['a', 'logits']
  pruned = tfprune.prune(residual_model(), DenseOnly('weight'), schedule=0.5)
  assert [w.layer.name for w in collect_wrappers(pruned)] == ['logits']


def test_round_to_keeps_all_rather_than_jump_to_a_lower_multiple():
  def kept(size, sparsity, round_to):
    return groups._kept_count(size, size * (1 - sparsity),  # pylint: disable=protected-access
                              groups.ChannelSelection(round_to=round_to))
  assert kept(10, 0.01, 4) == 10
  assert kept(10, 0.5, 4) == 4


def test_psp_learned_freeze_decides_per_group_by_the_mean_alpha():
  pruned = tfprune.prune(residual_model(), PSP('filter', weight_decay=0,
                                               freeze_step=5))
  wrappers = collect_wrappers(pruned)
  for w in wrappers:
    alpha = np.ones(w.gates[0].shape, np.float32)
    alpha[:2] = 1e-4 if w.layer.name in ('a', 'b', 'c', 'd') else 1.0
    if w.layer.name == 'c':
      alpha[1] = 1.0                    # group 1 stays alive through c
    w.gates[0].assign(alpha)
  wrappers[0].method.update_masks(wrappers, None, 5)
  masks = _masks(pruned)
  for name in ('a', 'b', 'c', 'a_bn', 'b_bn', 'c_bn'):  # channel 1: mean
    np.testing.assert_array_equal(masks[name][:3], [0, 1, 1])  # 0.33: kept
  np.testing.assert_array_equal(masks['d'][:3], [0, 0, 1])
  np.testing.assert_array_equal(masks['d_bn'][:3], [0, 0, 1])
  cg = _cg(pruned)
  assert groups.achieved_sparsity(cg) == pytest.approx(3 / 14)
  stripped = tfprune.strip(pruned)
  _, plan = tfprune.shrink(stripped, return_plan=True)
  assert plan.layers['a'].removed.tolist() == [0]
  assert plan.layers['d'].removed.tolist() == [0, 1]


def test_a_pruned_model_nested_in_another_trains_with_groups():
  pruned = tfprune.prune(residual_model(), Magnitude('channel'),
                         tfprune.schedules.get({
                             'class_name': 'ConstantSparsity', 'config': {
                                 'target_sparsity': 0.5, 'begin_step': 1,
                                 'frequency': 1}}))
  inputs = keras.Input((8, 8, 3))
  outer = keras.Model(inputs, pruned(inputs))
  outer.compile('sgd', keras.losses.SparseCategoricalCrossentropy(
      from_logits=True))
  x = np.random.RandomState(0).rand(4, 8, 8, 3).astype(np.float32)
  outer.fit(x, np.array([0, 1, 2, 0]), epochs=1, verbose=0,
            callbacks=[tfprune.PruningStep()])
  masks = _masks(pruned)
  np.testing.assert_array_equal(masks['a_bn'], masks['b'])
  assert masks['a'].sum() == 4


def _removed_groups(stripped, plan):
  """Graph group ids of every channel shrink removes."""
  g = tfprune.graph.build(stripped, warn=False)
  removed = set()
  for node in g.nodes:
    if node.name in plan.layers:
      gone = plan.layers[node.name].removed
      removed.update(g.groups(node.outputs[0])[gone].tolist())
  return removed


@pytest.mark.parametrize('name', sorted(MODELS))
def test_input_channel_groups_are_exactly_what_shrink_removes(name):
  keras.utils.set_random_seed(2)
  model = MODELS[name]()
  pruned = tfprune.prune(model, Magnitude('input_channel'), schedule=0.5)
  cg = _cg(pruned)
  assert cg.n_prunable > 0 and not cg.independent
  names = {w.layer.name for w in collect_wrappers(pruned)}
  assert 'a' not in names and 'logits' in names  # a reads the model input
  assert groups.achieved_sparsity(cg) == pytest.approx(0.5, abs=0.1)
  for member in cg.members:       # a group is masked in all its readers
    mask = np.asarray(member.wrapper.masks[0]).reshape(-1)
    dead = set(member.groups[mask == 0].tolist())
    assert not dead & set(member.groups[mask != 0].tolist())
  masked = set(cg.prunable[~groups.alive(cg)].tolist())
  stripped = tfprune.strip(pruned)
  shrunk, plan = tfprune.shrink(stripped, return_plan=True)
  assert _removed_groups(stripped, plan) == masked
  x = np.random.RandomState(0).rand(4, *model.input_shape[1:]).astype(
      np.float32)
  np.testing.assert_allclose(shrunk.predict(x, verbose=0),
                             stripped.predict(x, verbose=0), atol=1e-5)


def test_psp_input_channel_target_and_freeze_work_on_reader_groups():
  schedule = tfprune.schedules.get({
      'class_name': 'ConstantSparsity', 'config': {
          'target_sparsity': 0.5, 'begin_step': 1, 'frequency': 1}})
  pruned = tfprune.prune(residual_model(), PSP('input_channel'), schedule)
  pruned.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                 keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  x = np.random.RandomState(0).rand(8, 8, 8, 3).astype(np.float32)
  pruned.fit(x, np.arange(8) % 3, batch_size=4, epochs=1, verbose=0,
             callbacks=[tfprune.PruningStep()])
  cg = _cg(pruned)
  assert [len(s) for s in cg.sets] == [3, 1]     # (b, c, d) and (logits,)
  assert groups.achieved_sparsity(cg) == pytest.approx(7 / 14)
  masks = _masks(pruned)
  for name in ('b', 'c', 'd'):
    np.testing.assert_array_equal(masks[name], masks['b'])
  # Learned mode: a reader group goes when the mean |alpha| of its readers
  # is below epsilon.
  learned = tfprune.prune(residual_model(), PSP('input_channel',
                                                freeze_step=5))
  wrappers = collect_wrappers(learned)
  for w in wrappers:
    alpha = np.ones(w.gates[0].shape, np.float32).reshape(-1)
    alpha[0] = 1e-4
    alpha[1] = 1e-4 if w.layer.name != 'd' else 1.0
    w.gates[0].assign(alpha.reshape(w.gates[0].shape))
  wrappers[0].method.update_masks(wrappers, None, 5)
  masks = _masks(learned)
  np.testing.assert_array_equal(masks['c'][:3], [0, 1, 1])
  np.testing.assert_array_equal(masks['logits'][:3], [0, 0, 1])
