"""Every benchmark study in smoke mode, in this process.

Each study runs ``--smoke`` (tiny data slices, one step per epoch, tiny
models, the fewest rows that still reach every kind of row the study
writes) without ``--data_dir``, so it reads the embedded digits data, never
../shared; it writes into a temporary RESULTS file, never docs/RESULTS.md.
The section must carry the exact command line (a non-default flag
included) and the effective settings, dumped.

Every study runs here (55-57 s together for the 20 studies on 2 CPU
cores in three runs, measured 2026-12-04; small_world 7 s, psp 6 s,
real_models 5 s, groups_accuracy 5 s on MobileNetV2 cut after block 2).
Every study's smoke settings are also parsed and checked without a run,
and every section of docs/RESULTS.md is checked against its study's
config (cheap: no run).
"""

import gc
import importlib
import os
import re
import types

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
import yaml

from benchmarks import harness, training_overhead

STUDIES = ('shrink_latency', 'magnitude_baseline', 'tflite_lenet5',
           'small_world', 'small_world_budget', 'small_world_long',
           'small_world_warm', 'small_world_warm_select',
           'network_trimming', 'network_trimming_seeds',
           'network_trimming_lenet_seeds',
           'synthesis', 'synthesis_variants', 'synaptic_strength', 'psp',
           'psp_batchnorm', 'real_models', 'groups_accuracy',
           'training_overhead', 'training_overhead_floor', 'keras3')
DATA_STUDIES = set(STUDIES) - {'shrink_latency', 'real_models',
                               'training_overhead', 'training_overhead_floor'}


@pytest.fixture(scope='module', autouse=True)
def _eager():
  """One step per epoch: tracing a train function costs more than running
  it, so functions run eagerly. The objects alive at the start (the
  imported TensorFlow and Keras modules) are frozen out of the garbage
  collector's scans: full collections walking them took 7% of the smoke
  runs."""
  gc.collect()
  gc.freeze()
  tf.config.run_functions_eagerly(True)
  yield
  tf.config.run_functions_eagerly(False)
  gc.unfreeze()


def _smoke_config(module, section):
  """What the section must dump: get_config() with config.smoke applied and
  the section flag given below."""
  config = module.get_config()
  with config.unlocked():
    harness._apply(config, config.smoke)  # pylint: disable=protected-access
    del config['smoke']
  config.section = section
  return config.to_dict()


@pytest.mark.parametrize('name', STUDIES)
def test_every_study_parses_its_smoke_settings(name):
  """No run: the flags, the smoke overrides and the study's entry point."""
  module = importlib.import_module(f'benchmarks.{name}')
  assert callable(module.run)
  _, values, config = harness.configure(
      module, [f'{name}.py', '--smoke', '--config.section=x'])
  assert values.smoke and config.section == 'x'
  assert config.to_dict() == _smoke_config(module, 'x')


@pytest.mark.parametrize('name', STUDIES)
def test_smoke_writes_its_section(name, tmp_path):
  module = importlib.import_module(f'benchmarks.{name}')
  results = tmp_path / 'RESULTS.md'
  section = f'smoke_{name}'
  official = os.stat(harness.RESULTS).st_mtime_ns
  argv = [f'{name}.py', '--smoke', f'--results={results}',
          f'--config.section={section}']
  assert harness.main(module, argv) == str(results)

  text = results.read_text()
  body = re.search(rf'<!-- BEGIN {section} -->\n(.*)<!-- END {section} -->',
                   text, re.S)
  assert body, text
  body = body.group(1)
  assert body.startswith('## ')
  assert (f'Command: `python -m benchmarks.{name} --smoke --results='
          f'{results} --config.section={section}`') in body
  assert 'Machine: ' in body and 'Date: ' in body
  dumped = re.search(r'```yaml\n(.*?)\n```', body, re.S)
  assert dumped, body
  assert yaml.safe_load(dumped.group(1)) == _smoke_config(module, section)
  if name in DATA_STUDIES:
    assert 'the embedded digits dataset' in body
  assert '|---|' in body     # a table came out of the run
  assert os.stat(harness.RESULTS).st_mtime_ns == official


def test_smoke_refuses_the_official_results_file():
  module = importlib.import_module('benchmarks.shrink_latency')
  with pytest.raises(Exception, match='does not write docs/RESULTS.md'):
    harness.main(module, ['x', '--smoke', f'--results={harness.RESULTS}'])


def test_write_section_replaces_only_its_own(tmp_path):
  path = str(tmp_path / 'RESULTS.md')
  harness.write_section('a', '## A\n\none', path)
  harness.write_section('b', '## B\n\ntwo', path)
  harness.write_section('a', '## A\n\nthree', path)
  text = open(path).read()
  assert text.startswith(harness.HEADER)
  assert 'one' not in text and text.index('three') < text.index('two')
  assert text.count('<!-- BEGIN a -->') == 1
  assert not os.path.exists(path + '.tmp')


def _sections():
  with open(harness.RESULTS) as f:
    text = f.read()
  return re.findall(r'<!-- BEGIN (\w+) -->\n(.*?)<!-- END \1 -->', text, re.S)


@pytest.mark.parametrize('section,body', _sections(),
                         ids=[s for s, _ in _sections()])
def test_results_section_matches_its_command_and_config(section, body):
  """docs/RESULTS.md: each section's command parses to the config it dumps,
  so a changed setting shows up here until the section is regenerated."""
  command = re.search(r'^Command: `python -m benchmarks\.(\w+)(.*?)`',
                      body, re.M)
  assert command, section
  name, flags = command.group(1), command.group(2).split()
  module = importlib.import_module(f'benchmarks.{name}')
  _, values, config = harness.configure(module, [f'{name}.py'] + flags)
  assert config.section == section and not values.smoke
  dumped = re.search(r'```yaml\n(.*?)\n```', body, re.S)
  assert dumped, f'{section}: no settings dumped'
  assert yaml.safe_load(dumped.group(1)) == config.to_dict()


def test_training_overhead_rotates_the_order_and_splits_the_update():
  """Each variant runs first once in len(keys) rounds; a fit's batch
  intervals give the median step and the first batch's excess (where the
  mask update lands)."""
  keys = ['a', 'b', 'c']
  orders = [training_overhead.rotated(keys, r) for r in range(4)]
  assert orders[:3] == [['a', 'b', 'c'], ['b', 'c', 'a'], ['c', 'a', 'b']]
  assert orders[3] == orders[0] and training_overhead.rotated([], 2) == []
  timer = training_overhead._Timer(tf_keras)  # pylint: disable=protected-access
  timer.marks = [0.0, 0.5, 0.6, 0.7, 0.8, 0.95]   # 5 batches, first +0.4
  step, update = timer.split()
  assert step == pytest.approx(0.1) and update == pytest.approx(0.4)
  assert timer.seconds(5) == pytest.approx(0.19)


def test_training_overhead_pools_copies_and_says_how_far_apart_they_are():
  """Times are medians over every copy's rounds (ms); 'spread' compares
  the copies' own step medians; one copy has none, no copy has no times."""
  times = {0: [(0.010, 0.0050, 0.001), (0.012, 0.0052, 0.003)],
           1: [(0.011, 0.0055, 0.002), (0.013, 0.0057, 0.004),
               (0.014, 0.0056, 0.005)]}
  summary = training_overhead.summarize(times)
  assert summary['step'] == pytest.approx(5.5)     # of 5.0 5.2 5.5 5.6 5.7
  assert summary['fit'] == pytest.approx(12.0)
  assert summary['update'] == pytest.approx(3.0)
  assert summary['spread'] == pytest.approx(5.6 / 5.1 - 1)
  assert training_overhead.summarize({0: times[0]})['spread'] is None
  assert training_overhead.summarize({}) == {
      'fit': None, 'step': None, 'update': None, 'spread': None}


def test_the_floor_optimizer_masks_kernel_gradients_only():
  """The floor row's Adam: weights under a 0 in their kernel's mask never
  move, every other weight (and every bias) does."""
  tf_keras.utils.set_random_seed(0)
  model = tf_keras.Sequential([tf_keras.layers.Dense(6, input_shape=(5,))])
  before = [w.numpy() for w in model.weights]
  optimizer = training_overhead.gradient_masking_adam(tf_keras, tf, model,
                                                      0.1)
  model.compile(optimizer, 'mse')
  model.fit(np.ones((8, 5), np.float32), np.zeros((8, 6), np.float32),
            epochs=1, verbose=0)
  kernel, bias = (w.numpy() for w in model.weights)
  moved = kernel != before[0]
  assert 0 < moved.sum() < moved.size and (bias != before[1]).all()
  # exactly the kernel entries its mask (seed 0) keeps
  np.testing.assert_array_equal(moved, np.random.RandomState(0).rand(5, 6)
                                < 0.5)


@pytest.mark.parametrize('flags, native', [
    ('fpu sse2 avx2 fma', False),
    ('fpu avx512f avx512_bf16', True),
    ('fpu amx_tile amx_bf16', True),
])
def test_training_overhead_reads_native_bf16_from_the_cpu_flags(
    tmp_path, flags, native):
  """The bf16 rows say whether they measured native bfloat16 or its
  emulation; avx512f alone (no _bf16) is emulation."""
  cpuinfo = tmp_path / 'cpuinfo'
  cpuinfo.write_text(f'processor\t: 0\nmodel name\t: X\nflags\t\t: {flags}\n'
                     f'processor\t: 1\nflags\t\t: {flags}\n')
  assert training_overhead.bf16_native(str(cpuinfo)) is native
  assert training_overhead.bf16_native(str(tmp_path / 'none')) is None
  (tmp_path / 'noflags').write_text('processor\t: 0\n')
  assert training_overhead.bf16_native(str(tmp_path / 'noflags')) is None


@pytest.mark.parametrize('warm', [0, 12])
def test_small_world_warm_refuses_a_warm_start_outside_the_base_epochs(
    warm, tmp_path):
  """The dense start must leave base-LR epochs for the sparse model."""
  module = importlib.import_module('benchmarks.small_world_warm')
  with pytest.raises(ValueError, match='warm_epochs must be in'):
    harness.main(module, ['small_world_warm.py', '--smoke',
                          f'--results={tmp_path / "R.md"}',
                          '--config.lenet.epochs=12',
                          f'--config.lenet.warm_epochs={warm}'])


def test_network_trimming_seeds_heading_names_every_changed_setting():
  """Two sections of the study never share a heading: each setting that
  differs from the default is named, the defaults are not."""
  from benchmarks import network_trimming_seeds  # pylint: disable=g-import-not-at-top
  v = network_trimming_seeds.get_config().vgg
  assert (network_trimming_seeds.title(v, 3) ==
          'Network Trimming: VGG-16 substitute over 3 seeds')
  with v.unlocked():
    v.threshold_std, v.iterations, v.retrain_epochs = 0.25, 1, 2
  assert network_trimming_seeds.title(v, 3) == (
      'Network Trimming: VGG-16 substitute over 3 seeds, APoZ >= mean + '
      '0.25 std, at most 1 trim(s), 2 retraining epoch(s) per trim')


def test_psp_matched_l1_keeps_one_column_of_a_layer_psp_emptied(monkeypatch):
  """L1 at PSP's per-layer sparsities: a layer PSP emptied would ask
  tfprune for a sparsity of 1, which it refuses; it keeps one column."""
  from benchmarks import psp  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(harness, 'structure_counts',
                      lambda model: {'a': (8, 8), 'b': (2, 8), 'c': (0, 8)})
  assert psp.matched_sparsities(None) == {'a': 0.875, 'b': 0.25, 'c': 0.0}


def test_small_world_warm_heading_names_a_non_default_warm_start():
  from benchmarks import small_world_warm  # pylint: disable=g-import-not-at-top
  l = small_world_warm.get_config().lenet
  base = 'Small-World: dense start, then gradient rewiring on LeNet-5 at 2.3%'
  assert small_world_warm.title(l) == base
  with l.unlocked():
    l.warm_epochs = 8
  assert small_world_warm.title(l) == base + ', 8 dense epochs'


def test_small_world_warm_select_chooses_on_validation_not_test():
  """The highest mean validation accuracy wins whatever the test accuracy
  says; a tie goes to the shorter dense start."""
  from benchmarks import small_world_warm_select as select  # pylint: disable=g-import-not-at-top
  rows = {w: dict(val_acc=v, acc=t) for w, v, t in
          [(0, 0.980, 0.995), (1, 0.990, 0.980), (2, 0.990, 0.990),
           (4, 0.985, 0.999)]}
  assert select.choose(list(rows.items()))[0] == 1
  assert select.choose([(4, rows[4]), (0, rows[0])])[0] == 4


def test_small_world_warm_select_refuses_to_choose_without_validation(
    tmp_path):
  module = importlib.import_module('benchmarks.small_world_warm_select')
  with pytest.raises(ValueError, match='lenet.data.validation'):
    harness.main(module, ['small_world_warm_select.py', '--smoke',
                          f'--results={tmp_path / "R.md"}',
                          '--config.lenet.data.validation=0'])
  config = module.get_config()
  with config.unlocked():
    config.lenet.warm_choices = []
  with pytest.raises(ValueError, match='warm_choices is empty'):
    module.run(types.SimpleNamespace(config=config))   # before any data


@pytest.mark.parametrize('smoke, block, warmup', [(True, 0.01, 1),
                                                  (False, 0.2, None)])
def test_bench_paces_timing_blocks_by_mode(monkeypatch, smoke, block, warmup):
  """Real runs time 0.2 s blocks after tflite_export's default warm-up; a
  smoke run (numbers that are not results) 10 ms blocks after one."""
  import tflite_export  # pylint: disable=g-import-not-at-top
  seen = {}

  def bench(paths, **kwargs):
    seen.update(kwargs)
    return {'results': [{'path': p, 'threads': 1} for p in paths],
            'loadavg': 0.5}

  monkeypatch.setattr(tflite_export, 'bench', bench)
  ctx = harness.Context(None, None, smoke, '/tmp')
  by_key, load = ctx.bench(['a.tflite'], threads=(1,), rounds=3)
  assert set(by_key) == {('a.tflite', 1)} and load == 0.5
  assert seen['block_seconds'] == block and seen['rounds'] == 3
  assert seen.get('warmup') == warmup


@pytest.mark.parametrize('gen', ['tf_keras', 'keras3'])
def test_accuracy_reads_the_logits_predict_gives(gen):
  """Batched inference calls, a short last batch included: the same
  logits as ``model.predict`` (so the same accuracy), for both
  generations."""
  import tfprune  # pylint: disable=g-import-not-at-top
  model = tfprune.models.lenet5(keras_generation=gen)
  x = np.random.RandomState(0).rand(23, 28, 28, 1).astype(np.float32)
  predicted = model.predict(x, batch_size=10, verbose=0).argmax(-1)
  y = predicted.copy()
  y[::4] = (y[::4] + 1) % 10     # 6 of 23 wrong
  assert harness.accuracy(model, x, y, batch_size=10) == 17 / 23
  assert harness.accuracy(model, x, predicted, batch_size=7) == 1.0


def test_psp_matched_l1_fine_tunes_a_copy_when_psp_pruned_nothing():
  """The matched L1 row at PSP's per-layer sparsities, all 0: it must
  fine-tune a copy, not the dense model every row of the seed shares."""
  from benchmarks import psp  # pylint: disable=g-import-not-at-top
  import tfprune  # pylint: disable=g-import-not-at-top
  _, _, config = harness.configure(psp, ['psp.py', '--smoke'])
  rng = np.random.RandomState(0)
  data = (rng.rand(64, 28, 28, 1).astype(np.float32), rng.randint(0, 10, 64))
  setting = psp.Setting('LeNet-5', tfprune.models.lenet5, config.lenet,
                        data, data, config)
  dense = setting.dense_model(0)
  before = [w.copy() for w in dense.get_weights()]
  setting.l1('filter', 0, {'conv1': 0.0, 'conv2': 0.0, 'ip1': 0.0}, 'x')
  for old, new in zip(before, dense.get_weights()):
    np.testing.assert_array_equal(old, new)
  assert setting.runs[-1]['method'] == psp.MATCHED
  assert setting.runs[-1]['sparsity'] == 0.0
