"""The main job end to end on the embedded data, and its input errors."""

import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys

import pytest
import tf_keras as keras

import tfprune
from tfprune import config as config_lib
from tfprune import experiment
from tfprune import generations
from tfprune import train

from conftest import kept_params
from conftest import lock_held_by_another_process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_config():
  c = config_lib.default_config()
  c.dataset = 'digits'
  c.model = 'small_cnn'
  c.model_kwargs.filters = (4, 8)
  c.model_kwargs.dense = 16
  c.method_kwargs.structure = 'channel'
  c.schedule.kind = 'constant'
  c.schedule.final_sparsity = 0.5
  c.schedule.frequency = 5
  c.pretrain_epochs = 3
  c.epochs = 1
  c.batch_size = 32
  c.learning_rate = 0.01
  c.verbose = 0
  return c


@pytest.mark.parametrize('gen', ['tf_keras', 'keras3'])
def test_run_writes_every_output(tmp_path, gen):
  workdir = str(tmp_path / 'run')
  c = _tiny_config()
  c.keras_generation = gen
  metrics = experiment.run(c, workdir)
  for name in ('model.keras', 'stripped.keras', 'shrunk.keras'):
    assert generations.of_saved(os.path.join(workdir, name)).name == gen
  chart = ['layers.png'] if importlib.util.find_spec('matplotlib') else []
  assert sorted(os.listdir(workdir)) == sorted([
      '.tfprune_run', 'dense.tflite', 'logs', 'metrics.json', 'model.keras',
      'model.tflite', 'plan.json', 'report.json', 'report.md', 'shrunk.keras',
      'sparsity.csv', 'stripped.keras', 'stripped.tflite'] + chart)
  assert not os.path.exists(workdir + '.partial')
  with open(os.path.join(workdir, 'report.json')) as f:
    rep = json.load(f)
  conv1 = rep['layers'][0]
  assert conv1['structure'] == 'channel'
  assert conv1['weights'][0]['sparsity']['channel'] == 0.5
  # channel pruning: shrunk before export, same predictions, fewer params
  with open(os.path.join(workdir, 'plan.json')) as f:
    plan = json.load(f)
  assert len(plan['conv1']['kept']) == 2 and len(plan['fc1']['kept']) == 8
  assert metrics['shrunk_params'] < metrics['params'] / 2
  assert metrics['shrunk_test_accuracy'] == metrics['stripped_test_accuracy']
  assert metrics['tflite_test_accuracy'] == pytest.approx(
      metrics['stripped_test_accuracy'], abs=0.01)
  assert metrics['pruned_test_accuracy'] == metrics['stripped_test_accuracy']
  assert metrics['dense_test_accuracy'] > 0.6   # learns: 10 classes
  assert metrics['tflite_check'] == 'ok'
  with open(os.path.join(workdir, 'report.md')) as f:
    text = f.read()
  assert '## TFLite check' in text and '| conv1 | CONV_2D | channel |' in text


def test_existing_workdir_needs_overwrite(tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (workdir / 'notes.txt').write_text('mine')
  with pytest.raises(experiment.WorkdirExistsError, match='--overwrite'):
    experiment.run(_tiny_config(), str(workdir))
  with pytest.raises(experiment.WorkdirExistsError, match='not made by'):
    experiment.run(_tiny_config(), str(workdir), overwrite=True)
  assert (workdir / 'notes.txt').read_text() == 'mine'


def test_unknown_config_key():
  c = _tiny_config()
  c.epochz = 3
  c.schedule.kinds = 'constant'
  with pytest.raises(KeyError) as error:
    config_lib.lock(c)
  assert str(error.value) == (
      "unknown key 'epochz' in config; did you mean 'epochs'?; unknown key "
      "'schedule.kinds' in config; did you mean 'schedule.kind'?")


def test_failed_run_leaves_no_partial_workdir(tmp_path):
  c = _tiny_config()
  c.dataset = 'cifar10'
  c.data_dir = str(tmp_path)
  workdir = str(tmp_path / 'run')
  with pytest.raises(tfprune.data.DatasetNotFoundError):
    experiment.run(c, workdir)
  assert not os.path.exists(workdir) and not os.path.exists(workdir +
                                                            '.partial')


def _train_process(*flags):
  """The command line in a new process; returns the finished process."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  return subprocess.run([sys.executable, '-m', 'tfprune.train', *flags],
                        capture_output=True, text=True, env=env, cwd=ROOT)


def _train(*flags):
  """The command line in this process, as tfprune.cli.main runs it; the
  result reads like a finished process."""
  out, err = io.StringIO(), io.StringIO()
  status = 0
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
      train.run_app(['python -m tfprune.train', *flags])
    except SystemExit as e:
      status = e.code
  return subprocess.CompletedProcess(flags, status, out.getvalue(),
                                     err.getvalue())


def _error_line(proc):
  """The one error line of a refused run (exit 2, no traceback)."""
  assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr
  lines = [l for l in proc.stderr.splitlines() if 'tfprune.train:' in l]
  assert len(lines) == 1 and lines[0].startswith('tfprune.train: error: ')
  return lines[0]


_QUICKSTART = f'--config={ROOT}/configs/quickstart.py'
_EPOCHZ = ("tfprune.train: error: --config.epochz: unknown key 'epochz' in "
           "config; did you mean 'epochs'?")


def test_command_line_errors_are_plain_in_a_new_process(tmp_path):
  proc = _train_process(_QUICKSTART, f'--workdir={tmp_path}/new',
                        '--config.epochz=1')
  assert _error_line(proc) == _EPOCHZ


def test_command_line_errors_are_plain(tmp_path):
  (tmp_path / 'run').mkdir()
  (tmp_path / 'run' / 'x').write_text('')
  line = _error_line(_train(_QUICKSTART, f'--workdir={tmp_path}/run'))
  assert 'exists and is not empty; pass --overwrite' in line
  new = f'--workdir={tmp_path}/new'
  for _ in range(2):   # a second call in one process reads its own argv
    assert _error_line(_train(_QUICKSTART, new, '--config.epochz=1')
                       ) == _EPOCHZ
  line = _error_line(_train(_QUICKSTART, new, '--config.schedule.kinds=x'))
  assert line.endswith("unknown key 'schedule.kinds' in config; did you mean "
                       "'schedule.kind'?")


def test_command_line_overrides_reach_the_config(tmp_path):
  """--config.KEY given to run_app (not in sys.argv) changes the run."""
  empty = tmp_path / 'data'
  empty.mkdir()
  for _ in range(2):
    line = _error_line(_train(_QUICKSTART, f'--workdir={tmp_path}/run',
                              '--config.dataset=cifar10',
                              f'--data_dir={empty}'))
    assert 'cifar10' in line and str(empty) in line
    assert not os.path.exists(tmp_path / 'run')


def test_a_second_run_in_one_process_reads_its_own_config_file(tmp_path):
  (tmp_path / 'run').mkdir()
  (tmp_path / 'run' / 'x').write_text('')
  line = _error_line(_train(_QUICKSTART, f'--workdir={tmp_path}/run'))
  assert 'exists and is not empty' in line   # quickstart.py was loaded
  config = tmp_path / 'mine.py'
  config.write_text('x = 1\n')   # no get_config(): quickstart's is not reused
  line = _error_line(_train(f'--config={config}', f'--workdir={tmp_path}/run'))
  assert line.startswith(f'tfprune.train: error: config file {config} '
                         'defines no get_config()')


def test_command_line_help_exits_0_and_lists_the_choices():
  proc = _train('--help')
  assert proc.returncode == 0
  out = proc.stdout
  assert out.startswith('usage: python -m tfprune.train --config=')
  for listed in ('lenet5', 'small_world', 'quickstart.py', 'pretrain_epochs'):
    assert listed in out


def test_command_line_refuses_a_workdir_in_use(tmp_path):
  workdir = str(tmp_path / 'run')
  with lock_held_by_another_process(workdir) as holder:
    line = _error_line(_train(_QUICKSTART, f'--workdir={workdir}',
                              '--overwrite'))
  assert (f'workdir {workdir} is in use by another tfprune run (pid '
          f'{holder.pid}, started 2000-01-01 00:00:00;') in line
  assert line.endswith('wait for it to finish or choose another --workdir')
  assert sorted(os.listdir(tmp_path)) == ['run.lock']   # the holder's


_MISSPELT_KEY = """from tfprune.config import default_config
def get_config():
  c = default_config()
  c.schedul.kind = 'constant'
  return c
"""


@pytest.mark.parametrize('content,expected', [
    ('x = 1\n', 'defines no get_config(); a config file defines get_config() '
     'returning tfprune.config.default_config() with changes, as '
     'configs/quickstart.py does'),
    (_MISSPELT_KEY, "line 4: unknown key 'schedul' in config; did you mean "
     "'schedule'?"),
    (None, 'does not exist or is not a file; pass e.g. '
     '--config=configs/quickstart.py'),
], ids=['no_get_config', 'misspelt_key', 'missing'])
def test_command_line_config_file_errors(tmp_path, content, expected):
  config = tmp_path / 'my_config.py'
  if content is not None:
    config.write_text(content)
  line = _error_line(_train(f'--config={config}',
                            f'--workdir={tmp_path}/run'))
  assert line == f'tfprune.train: error: config file {config} {expected}'
  assert sorted(os.listdir(tmp_path)) == (['my_config.py'] if content else [])


def test_run_checks_its_export_and_fails_on_lost_sparsity(tmp_path,
                                                          monkeypatch):
  """A run whose check passes: test_run_writes_every_output."""
  import tflite_export  # pylint: disable=g-import-not-at-top
  real_check = tflite_export.check

  def losing_check(path, expected, tolerance=None, plan=None):
    result = real_check(path, expected, tolerance, plan)
    result.layers[0].problems.append('sparsity lost (simulated)')
    return result

  monkeypatch.setattr(tflite_export, 'check', losing_check)
  failed = str(tmp_path / 'failed')
  with pytest.raises(experiment.CheckFailedError,
                     match=r'conv1: sparsity lost \(simulated\)'):
    experiment.run(_tiny_config(), failed)
  assert not os.path.exists(failed) and not os.path.exists(failed + '.partial')


@pytest.mark.parametrize('method,kwargs', [
    ('small_world', {'density': 0.3}), ('synthesis', {'capacity': 0.3})])
def test_a_dense_start_with_rescaled_init_is_refused_before_training(
    tmp_path, method, kwargs):
  """rescale_init scales kept weights for random initial weights; on a
  pretrained model it would blow them up, so the run stops first."""
  c = _tiny_config()
  c.method = method
  c.method_kwargs = kwargs
  c.schedule.kind = 'none'
  workdir = str(tmp_path / 'run')
  with pytest.raises(ValueError, match=r'rescale_init=False'):
    experiment.run(c, workdir)
  assert not os.path.exists(workdir) and not os.path.exists(
      workdir + '.partial')


def test_small_world_run_with_final_stage_and_regrowth(tmp_path):
  c = _tiny_config()
  c.method = 'small_world'
  c.method_kwargs = {'density': 0.3, 'rewire_p': 'auto', 'seed': 0,
                     'regrow_fraction': 0.1, 'p_grid': [0.0, 0.1, 1.0],
                     'regrow': 'gradient', 'regrow_batch': 64}
  c.schedule.kind = 'periodic'
  c.schedule.begin_step = -1        # from the first step of the final epochs
  c.schedule.frequency = 10
  c.pretrain_epochs = 0
  c.epochs = 2
  c.final_epochs = 1
  c.final_learning_rate = 0.001
  workdir = str(tmp_path / 'sw')
  metrics = experiment.run(c, workdir)
  assert 'before_final_test_accuracy' in metrics
  assert metrics['tflite_check'] == 'ok'
  with open(os.path.join(workdir, 'report.json')) as f:
    rep = json.load(f)
  info = rep['methods']['smallworld_0']
  assert info['rewire_p'] in (0.0, 0.1, 1.0) and len(info['grid']) == 3
  # the saved model's masks keep exactly the budget
  with tfprune.custom_object_scope():
    saved = keras.models.load_model(os.path.join(workdir, 'model.keras'))
  assert kept_params(saved) == round(0.3 * info['params'])
  # regrowth every 10 steps from the first step of the final epoch only
  steps_per_epoch = -(-metrics['train_examples'] // 32)
  assert info['regrow_events'] == len(range(0, steps_per_epoch, 10)) > 1
  assert info['regrown_edges'] > 0    # gradients on the run's training split
  assert saved.get_layer('pruned_conv1').method.regrow == 'gradient'
  assert info['kept_params'] - info['fixed_params'] == sum(
      v['edges'] * v['params_per_edge'] for v in info['layers'].values())
  with open(os.path.join(workdir, 'report.md')) as f:
    assert 'Method facts' in f.read()


def test_network_trimming_run_trims_on_validation_data(tmp_path):
  c = _tiny_config()
  c.method = 'network_trimming'
  c.method_kwargs = {'threshold_std': 0.5, 'trim_every': 1}
  c.layers = 'conv2,fc1'
  c.schedule.kind = 'none'
  c.pretrain_epochs = 2
  c.epochs = 2
  workdir = str(tmp_path / 'trim')
  metrics = experiment.run(c, workdir)
  with open(os.path.join(workdir, 'report.json')) as f:
    info = json.load(f)['methods']['networktrimming_0']
  assert [t['epoch'] for t in info['trims']] == [1, 2]
  widths = info['trims'][-1]['widths']
  assert widths['fc1'] < 16 and widths['conv2'] < 8
  assert len(info['apoz']['fc1']) == 16
  with open(os.path.join(workdir, 'plan.json')) as f:
    plan = json.load(f)
  assert len(plan['fc1']['kept']) <= widths['fc1']
  assert metrics['tflite_check'] == 'ok'
  c.validation_fraction = 0.0
  with pytest.raises(ValueError, match='validation_fraction'):
    experiment.run(c, str(tmp_path / 'none'))
