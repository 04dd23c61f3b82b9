"""Synthesis: budgets, exact grow/prune counts, capacity, strategy, overlap."""

import numpy as np
import pytest
import tf_keras as keras

import tfprune
from tfprune import optimizer_state, schedules
from tfprune.methods import Synthesis
from tfprune.methods import synthesis as syn

from conftest import random_batch

NAN = None   # a Periodic point: no target


def mlp(hidden=(40, 30)):
  return tfprune.models.mlp((6, 6, 2), hidden, classes=3)


def wrappers_of(model):
  return tfprune.wrapper.collect_wrappers(model)


def masks_of(model):
  return {w.layer.name: np.asarray(w.masks[0]) > 0 for w in wrappers_of(model)}


def _jitter(model, rng):
  """Stand-in for training: random weights on the active edges."""
  for w in wrappers_of(model):
    kernel = w.layer.kernel
    mask = np.asarray(w.masks[0]) > 0
    kernel.assign(np.where(mask, rng.normal(size=mask.shape), 0).astype(
        np.float32))


# --- how many ---------------------------------------------------------------------


@pytest.mark.parametrize('active, prune, expected', [
    (10, False, (8, 0)),     # growing
    (46, False, (4, 0)),     # the last growth stops at capacity
    (50, False, (0, 0)),     # at capacity: nothing
    (10, True, (8, 4)),      # r = floor(0.5 g) < g while growing
    (46, True, (8, 4)),      # a + g - r = 50 exactly
    (48, True, (8, 6)),      # r raised so the capacity is not exceeded
    (50, True, (8, 8)),      # at capacity r = g
])
def test_event_counts(active, prune, expected):
  assert syn.event_counts(active, 50, 100, 8, prune, 0.5) == expected


def test_event_counts_invariants():
  rng = np.random.default_rng(0)
  for _ in range(2000):
    possible = int(rng.integers(1, 300))
    capacity = int(rng.integers(1, possible + 1))
    active = int(rng.integers(0, capacity + 1))
    nominal = int(rng.integers(1, 50))
    prune, ratio = bool(rng.integers(2)), float(rng.uniform(0, 0.99))
    g, r = syn.event_counts(active, capacity, possible, nominal, prune, ratio)
    assert 0 <= r <= active and 0 <= g <= possible - active
    assert active + g - r <= capacity
    if prune and active == capacity:
      assert r == g
    if prune and active < capacity and g:
      assert r < g
    if not prune:
      assert r == 0
  # no room in the layer: the absent edges limit g (and so r at capacity)
  assert syn.event_counts(95, 100, 100, 8, True, 0.5) == (5, 2)
  assert syn.event_counts(100, 100, 100, 8, True, 0.5) == (0, 0)
  with pytest.raises(ValueError, match='exceed the capacity'):
    syn.event_counts(60, 50, 100, 8, True, 0.5)


# --- the start ---------------------------------------------------------------------


def test_lenet_300_100_budgets_are_exact_and_erdos_renyi():
  method = Synthesis(initial_density=0.02, capacity=0.1, seed=0)
  pruned = tfprune.prune(tfprune.models.lenet_300_100(), method)
  masks = masks_of(pruned)
  edges = 784 * 300 + 300 * 100 + 100 * 10
  assert sum(m.sum() for m in masks.values()) == round(0.02 * edges) == 5324
  info = tfprune.report(pruned)['methods']['synthesis_0']
  assert info['capacity_edges'] == round(0.1 * edges) == 26620
  assert info['initial_edges'] == 5324 and info['events'] == 0
  for name, layer in info['layers'].items():
    assert masks[name].sum() == layer['initial'] == layer['edges']
    assert layer['growth'] == round(0.1 * layer['capacity'])
  density = {n: l['capacity'] / l['possible'] for n, l in info['layers'].items()}
  assert density['fc1'] < density['fc2'] < density['logits'] == 1.0
  # masked weights are zero and the schedule was installed
  for w in wrappers_of(pruned):
    assert (np.asarray(w.layer.kernel)[~masks[w.layer.name]] == 0).all()
    assert isinstance(w.schedule, schedules.Periodic)
    assert w.schedule.frequency == 100

  uniform = Synthesis(0.02, 0.1, layer_split='uniform')
  pruned = tfprune.prune(tfprune.models.lenet_300_100(), uniform)
  assert {n: int(m.sum()) for n, m in masks_of(pruned).items()} == {
      'fc1': 4704, 'fc2': 600, 'logits': 20}


def test_initial_masks_are_deterministic_per_seed():
  model = mlp()
  first = masks_of(tfprune.prune(model, Synthesis(0.05, 0.3, seed=3)))
  again = masks_of(tfprune.prune(model, Synthesis(0.05, 0.3, seed=3)))
  other = masks_of(tfprune.prune(model, Synthesis(0.05, 0.3, seed=4)))
  for name in first:
    np.testing.assert_array_equal(first[name], again[name])
    assert first[name].sum() == other[name].sum()
  assert any((first[n] != other[n]).any() for n in first)


# --- events --------------------------------------------------------------------------


@pytest.mark.parametrize('strategy', ['strategic', 'random'])
@pytest.mark.parametrize('prune_weakest', [True, False])
def test_every_event_has_exact_counts_and_respects_capacity(strategy,
                                                            prune_weakest):
  method = Synthesis(0.05, 0.3, growth=0.15, strategy=strategy,
                     prune_weakest=prune_weakest, prune_ratio=0.5, seed=1)
  pruned = tfprune.prune(mlp(), method)
  wrappers = wrappers_of(pruned)
  plan = method.layer_budgets(wrappers)
  rng = np.random.default_rng(0)
  swaps = 0
  for step in range(1, 21):
    _jitter(pruned, rng)
    before = masks_of(pruned)
    kernels = {w.layer.name: np.asarray(w.layer.kernel) for w in wrappers}
    method.update_masks(wrappers, NAN, step)
    after = masks_of(pruned)
    for name, p in plan.items():
      a = int(before[name].sum())
      g, r = syn.event_counts(a, p['capacity'], p['possible'], p['growth'],
                              prune_weakest, 0.5)
      grown = after[name] & ~before[name]
      dropped = before[name] & ~after[name]
      assert grown.sum() == g and dropped.sum() == r     # exact counts
      assert after[name].sum() <= p['capacity']           # never exceeded
      # pruned edges are the weakest of the old active ones
      if r:
        old = np.abs(kernels[name][before[name]])
        assert np.abs(kernels[name][dropped]).max() <= np.sort(old)[r - 1]
      # grown weights start at 0; pruned weights are 0
      kernel = np.asarray(pruned.get_layer(f'pruned_{name}').layer.kernel)
      assert (kernel[grown] == 0).all() and (kernel[~after[name]] == 0).all()
      swaps += int(prune_weakest and a == p['capacity'] and g == r > 0)
  for name, p in plan.items():          # 20 events reach every capacity
    assert after[name].sum() == p['capacity']
  assert (swaps > 0) == prune_weakest            # with pruning, edges recycle
  assert method.history['events'] == 20
  assert method.history['edges'] == sum(p['capacity'] for p in plan.values())
  log = method.history['log']
  assert sum(e['grown'] for e in log) == method.history['grown']
  assert method.history['at_capacity_step'] is not None


def test_growth_is_among_absent_edges_only_and_below_capacity_r_lt_g():
  method = Synthesis(0.05, 0.5, growth=0.2, prune_ratio=0.5, seed=0)
  pruned = tfprune.prune(mlp(), method)
  wrappers = wrappers_of(pruned)
  before = masks_of(pruned)
  method.update_masks(wrappers, NAN, 7)
  after = masks_of(pruned)
  for name in before:
    grown = after[name] & ~before[name]
    dropped = before[name] & ~after[name]
    assert not (grown & before[name]).any()
    assert not (dropped & after[name]).any()
    assert 0 < dropped.sum() < grown.sum()
  # the log says what happened
  assert method.history['log'] == [{
      'step': 7, 'grown': sum(int((after[n] & ~before[n]).sum()) for n in after),
      'pruned': sum(int((before[n] & ~after[n]).sum()) for n in after),
      'edges': sum(int(m.sum()) for m in after.values())}]


def _layer(seed=0, n_in=50, n_out=40, density=0.1):
  """A layer whose first half of outputs has large incoming weights."""
  rng = np.random.default_rng(seed)
  mask = rng.random((n_in, n_out)) < density
  sign = rng.choice([-1.0, 1.0], (n_in, n_out))
  kernel = sign * rng.uniform(0.1, 0.12, (n_in, n_out))
  kernel[:, :n_out // 2] *= 10
  return np.where(mask, kernel, 0.0), mask


def test_strategic_endpoints_follow_the_gaussian_and_random_is_uniform():
  kernel, mask = _layer()
  z = syn.endpoint_z(kernel, mask)
  assert (z[:20] > 0.3).all() and (z[20:] < -0.3).all()
  # 60 of the ~360 absent edges of the 10 origin rows; 300 random ones
  strategic = syn.grow_strategic(kernel, mask, 60, 0.2,
                                 np.random.default_rng(0))
  randomly = syn.grow_random(mask, 300, np.random.default_rng(0))
  for grown, g in ((strategic, 60), (randomly, 300)):
    assert len(np.unique(grown)) == g
    assert not mask.reshape(-1)[grown].any()        # absent edges only
  strong = lambda flat: float(np.mean(flat % 40 < 20))
  # P(strong endpoint) = Phi(z) share: ~0.8 strategic, ~0.5 random
  assert strong(strategic) > 0.7
  assert 0.4 < strong(randomly) < 0.6
  # origins: the top 20% of inputs (10 rows) by |w| of active outgoing edges
  score = np.abs(kernel).sum(axis=1)
  order = syn.origin_order(kernel, mask, np.random.default_rng(0))
  np.testing.assert_array_equal(score[order], np.sort(score)[::-1])
  rows = np.unique(strategic // 40)
  assert set(rows) <= set(order[:10]) and len(rows) >= 8
  assert len(np.unique(randomly // 40)) > 40          # random: everywhere
  # endpoint='uniform': the same origin rows, endpoints no longer favoured
  uniform = syn.grow_strategic(kernel, mask, 60, 0.2,
                               np.random.default_rng(0), endpoint='uniform')
  assert set(np.unique(uniform // 40)) <= set(order[:10])
  assert 0.3 < strong(uniform) < 0.65 < strong(strategic)
  # too few absent edges in the top rows: the next-ranked rows are added
  many = syn.grow_strategic(kernel, mask, 1200, 0.2, np.random.default_rng(0))
  assert len(np.unique(many)) == 1200 and not mask.reshape(-1)[many].any()
  assert len(np.unique(many // 40)) > 10


def test_strategic_concentrates_through_the_method():
  def grown_rows(strategy):
    method = Synthesis(0.05, 0.5, growth=0.05, strategy=strategy, seed=0,
                       origin_fraction=0.1)
    pruned = tfprune.prune(mlp(), method)
    _jitter(pruned, np.random.default_rng(1))
    before = masks_of(pruned)['fc1']
    method.update_masks(wrappers_of(pruned), NAN, 1)
    grown = masks_of(pruned)['fc1'] & ~before
    return set(np.nonzero(grown)[0])
  assert len(grown_rows('strategic')) <= 8          # ceil(0.1 * 72)
  assert len(grown_rows('random')) > 20


def test_same_seed_same_masks_through_training():
  def run(seed):
    keras.utils.set_random_seed(5)
    method = Synthesis(0.05, 0.3, grow_every=2, seed=seed)
    pruned = tfprune.prune(mlp(), method)
    x, y = random_batch(n=48, classes=3)
    pruned.compile('adam', 'sparse_categorical_crossentropy')
    pruned.fit(x, y, batch_size=8, epochs=1, verbose=0,
               callbacks=[tfprune.PruningStep()])
    return method, masks_of(pruned)
  method, first = run(1)
  _, again = run(1)
  _, other = run(2)
  assert method.history['events'] == 3             # steps 2, 4, 6
  for name in first:
    np.testing.assert_array_equal(first[name], again[name])
  assert syn.overlap(first, again) == 1.0
  assert syn.overlap(first, other) < 0.9


def test_grown_weights_get_fresh_adam_state():
  method = Synthesis(0.05, 0.5, growth=0.2, seed=0)
  pruned = tfprune.prune(mlp(), method, method.schedule(begin_step=1000))
  x, y = random_batch(n=40, classes=3)
  pruned.compile('adam', 'sparse_categorical_crossentropy')
  pruned.fit(x, y, batch_size=8, epochs=1, verbose=0,
             callbacks=[tfprune.PruningStep()])     # Adam state, no event
  assert method.history['events'] == 0
  wrapper = pruned.get_layer('pruned_fc2')
  before = np.asarray(wrapper.masks[0]) > 0
  method.update_masks([wrapper], NAN, 1000)
  after = np.asarray(wrapper.masks[0]) > 0
  changed = (after & ~before) | (before & ~after)
  slots = optimizer_state.slot_variables(pruned.optimizer,
                                         wrapper.layer.kernel)
  assert len(slots) == 2                       # m and v
  for slot in slots:
    value = np.asarray(slot)
    assert (value[changed] == 0).all()
    assert (value[after & before] != 0).mean() > 0.5
  # small random init instead of 0
  method = Synthesis(0.05, 0.5, growth=0.2, seed=0, init_std=0.01)
  pruned = tfprune.prune(mlp(), method)
  before = masks_of(pruned)['fc1']
  method.update_masks(wrappers_of(pruned), NAN, 1)
  grown = masks_of(pruned)['fc1'] & ~before
  values = np.asarray(pruned.get_layer('pruned_fc1').layer.kernel)[grown]
  assert (values != 0).all() and 0.007 < values.std() < 0.013


# --- overlap ---------------------------------------------------------------------------


def test_overlap_is_jaccard():
  a = {'x': np.array([[1, 1, 0, 0]]), 'y': np.array([1, 0, 0])}
  b = {'x': np.array([[1, 0, 1, 0]]), 'y': np.array([1, 0, 0])}
  assert syn.overlap(a, b) == pytest.approx(2 / 4)
  assert syn.overlap(a, a) == 1.0
  assert syn.overlap(list(a.values()), list(b.values())) == pytest.approx(0.5)
  assert syn.overlap(a, b, per_layer=True) == {
      'all': pytest.approx(0.5), 'x': pytest.approx(1 / 3), 'y': 1.0}
  assert syn.overlap([np.zeros(3)], [np.zeros(3)]) == 1.0
  assert syn.overlap([np.eye(3)], [1 - np.eye(3)]) == 0.0
  with pytest.raises(ValueError, match='different shapes'):
    syn.overlap({'x': np.ones(3)}, {'x': np.ones(4)})
  with pytest.raises(ValueError, match='different layers'):
    syn.overlap({'x': np.ones(3)}, {'z': np.ones(3)})
  with pytest.raises(ValueError, match='2 masks vs 1'):
    syn.overlap([np.ones(3)] * 2, [np.ones(3)])
  with pytest.raises(TypeError):
    syn.overlap(a, list(b.values()))
  # chance level of independent random sets of density d: d / (2 - d)
  rng = np.random.default_rng(0)
  m1 = [rng.random((300, 300)) < 0.1]
  m2 = [rng.random((300, 300)) < 0.1]
  assert syn.chance(m1, m2) == pytest.approx(0.1 / 1.9, rel=0.05)
  assert syn.overlap(m1, m2) == pytest.approx(syn.chance(m1, m2), rel=0.05)


# --- serialisation and refusals ----------------------------------------------------------


def test_config_round_trip_and_saved_model(tmp_path):
  method = Synthesis(0.05, 0.3, grow_every=2, growth=0.2, strategy='random',
                     prune_weakest=False, prune_ratio=0.25, origin_fraction=0.5,
                     endpoint='uniform', init_std=0.01, layer_split='uniform', seed=9,
                     start_seed=4,
                     begin_step=2, end_step=10)
  again = tfprune.methods.deserialize(tfprune.methods.serialize(method))
  assert isinstance(again, Synthesis)
  assert again.get_config() == method.get_config()
  assert tfprune.methods.get('synthesis', capacity=0.2).capacity == 0.2
  pruned = tfprune.prune(mlp(), method)
  x, y = random_batch(n=32, classes=3)
  pruned.compile('adam', 'sparse_categorical_crossentropy')
  pruned.fit(x, y, batch_size=8, epochs=1, verbose=0,
             callbacks=[tfprune.PruningStep()])
  assert method.history['events'] == 2           # steps 2 and 4
  path = str(tmp_path / 'model.keras')
  pruned.save(path)
  with tfprune.custom_object_scope():
    loaded = keras.models.load_model(path)
  for name, mask in masks_of(pruned).items():
    np.testing.assert_array_equal(masks_of(loaded)[name], mask)
  wrapper = wrappers_of(loaded)[0]
  assert wrapper.method.history['events'] == 2
  assert wrapper.schedule.get_config() == method.schedule().get_config()
  np.testing.assert_array_equal(loaded.predict(x, verbose=0),
                                pruned.predict(x, verbose=0))


def test_bad_arguments_layers_and_schedules_are_refused():
  with pytest.raises(ValueError, match='above the capacity'):
    Synthesis(initial_density=0.2, capacity=0.1)
  for kwargs in ({'capacity': 1.5}, {'capacity': 0}, {'initial_density': 0},
                 {'grow_every': 0}, {'growth': 0}, {'strategy': 'smart'},
                 {'prune_ratio': 1.0}, {'origin_fraction': 0},
                 {'endpoint': 'normal'}, {'start_seed': -1},
                 {'init_std': -1}, {'layer_split': 'even'}, {'seed': -1},
                 {'structure': 'channel'}, {'end_step': 0, 'begin_step': 5}):
    with pytest.raises(ValueError):
      Synthesis(**kwargs)
  from conftest import small_conv_model  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match="'conv'.*not Dense.*layers="):
    tfprune.prune(small_conv_model(), Synthesis())
  with pytest.raises(ValueError, match='target schedule'):
    tfprune.prune(mlp(), Synthesis(), schedules.ConstantSparsity(0.5, 0))
  with pytest.raises(ValueError, match='every 50 steps but grow_every=100'):
    tfprune.prune(mlp(), Synthesis(), schedules.Periodic(0, -1, 50))
  with pytest.raises(ValueError, match='own budget and got a target'):
    tfprune.prune(mlp(), Synthesis(), 0.5)
  with pytest.raises(ValueError, match=r"\['logits'\] start with no edge"):
    tfprune.prune(mlp(), Synthesis(0.005, 0.3, layer_split="uniform"))
  unbuilt = keras.Sequential([keras.layers.Dense(4), keras.layers.Dense(2)])
  with pytest.raises(ValueError, match='not built'):
    tfprune.prune(unbuilt, Synthesis())


def test_start_seed_shares_the_start_and_not_the_events():
  """Same start_seed, different seed: the same initial sub-network, then
  independently drawn growth."""
  def run(seed, start_seed):
    method = Synthesis(0.05, 0.3, grow_every=2, strategy='random', seed=seed,
                       start_seed=start_seed, prune_weakest=False)
    pruned = tfprune.prune(mlp(), method)
    start = masks_of(pruned)
    x, y = random_batch(n=32, classes=3)
    pruned.compile('adam', 'sparse_categorical_crossentropy')
    pruned.fit(x, y, batch_size=8, epochs=1, verbose=0,
               callbacks=[tfprune.PruningStep()])
    return start, masks_of(pruned)

  (start_a, end_a), (start_b, end_b) = run(1, 7), run(2, 7)
  (start_c, _) = run(7, None)
  for name in start_a:
    np.testing.assert_array_equal(start_a[name], start_b[name])
    np.testing.assert_array_equal(start_a[name], start_c[name])
  grown = lambda end, start: {n: end[n] & ~start[n] for n in end}
  assert syn.overlap(grown(end_a, start_a), grown(end_b, start_b)) < 0.9
