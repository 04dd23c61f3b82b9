"""The tfprune command: quiet quickstart with a summary, help, tools, hints."""

import ast
import os
import re
import shutil
import subprocess
import sys

import pytest

from tfprune import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# TensorFlow's C++ log lines (absl format) and its start-up notices
CPP_LINE = re.compile(r'^[IWEF]\d{4} [\d:. ]+\s+\d+ \S+\.(cc|h):\d+\]|'
                      r'absl::InitializeLog|cuInit|oneDNN|cuda drivers|'
                      r'rebuild TensorFlow with', re.M)


def _quiet_env():
  """The environment of a new user: no TF_CPP_MIN_LOG_LEVEL (conftest sets
  one for the test process)."""
  return {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}


def _run(*args):
  return subprocess.run([sys.executable, *args], capture_output=True,
                        text=True, env=_quiet_env(), cwd=ROOT)


@pytest.fixture(scope='module', name='quickstart')
def _quickstart(tmp_path_factory):
  """The quickstart command, shortened (2 dense + 3 pruning epochs)."""
  workdir = str(tmp_path_factory.mktemp('cli') / 'quickstart')
  proc = _run('-m', 'tfprune', 'train', '--config=configs/quickstart.py',
              f'--workdir={workdir}', '--config.pretrain_epochs=2',
              '--config.epochs=3')
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc, workdir


def test_quickstart_is_quiet_labels_phases_and_ends_with_the_summary(
    quickstart):
  proc, _ = quickstart
  assert not CPP_LINE.search(proc.stdout + proc.stderr), proc.stderr
  out = proc.stdout
  phases = re.findall(r'^== (.*?)(?: \(| ==)', out, re.M)
  assert phases == ['dense training: small_cnn on digits, 2 epochs',
                    'pruning: masks follow the schedule',
                    'fine-tuning: masks fixed at the final sparsity',
                    'export: strip, shrink, convert to .tflite, check, time',
                    'summary']
  summary = out.split('== summary ==', 1)[1]
  rows = re.findall(r'^\| (dense|pruned, stripped|shrunk) \|(.*)\|$',
                    summary, re.M)
  assert [name for name, _ in rows] == ['dense', 'pruned, stripped', 'shrunk']
  cells = [c.strip() for c in rows[2][1].split('|')]
  assert cells[-1] == 'ok'   # the shrunk file passes the check
  size_gain = float(re.search(r'\(([\d.]+)x\)', cells[3]).group(1))
  assert size_gain > 2   # half the channels of every pruned layer removed
  assert re.search(r'^\d+\.\d us \([\d.]+x\)$', cells[4])


def test_report_md_embeds_its_chart(quickstart):
  pytest.importorskip('matplotlib')
  _, workdir = quickstart
  with open(os.path.join(workdir, 'report.md')) as f:
    text = f.read()
  assert '](layers.png)' in text and '| shrunk |' in text
  with open(os.path.join(workdir, 'layers.png'), 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_report_and_check_commands_find_the_run_files(quickstart, tmp_path,
                                                      capsys):
  _, workdir = quickstart
  assert cli.main(['report', workdir]) == 0
  out = capsys.readouterr().out
  assert '| shrunk |' in out and 'report.md' in out
  # the shrunk file: report.json and plan.json are found beside it
  assert cli.main(['check', os.path.join(workdir, 'model.tflite')]) == 0
  captured = capsys.readouterr()
  assert 'OK: every layer keeps its zero pattern' in captured.out
  assert 'plan.json (--plan)' in captured.err
  # without a plan beside the report, the error names --plan
  for name in ('model.tflite', 'report.json'):
    shutil.copy(os.path.join(workdir, name), tmp_path / name)
  assert cli.main(['check', str(tmp_path / 'model.tflite')]) == 2
  error = capsys.readouterr().err
  assert error.startswith('tfprune check: error: ') and '--plan' in error
  assert cli.main(['report', str(tmp_path / 'none')]) == 2
  assert 'holds no report.md' in capsys.readouterr().err


def test_inspect_shows_ops_and_layers(quickstart, capsys):
  _, workdir = quickstart
  assert cli.main(['inspect', os.path.join(workdir, 'model.tflite')]) == 0
  out = capsys.readouterr().out
  assert 'CONV_2D x2' in out and '| small_cnn/conv1/Conv2D | [8, 3, 3, 1]' in out
  assert cli.main(['inspect', os.path.join(workdir, 'shrunk.keras')]) == 0
  assert '| conv1 ' in capsys.readouterr().out


@pytest.mark.parametrize('command', [None, 'train', 'report', 'check',
                                     'inspect', 'bench'])
def test_every_help_exits_0(command, capsys):
  argv = ['--help'] if command is None else [command, '--help']
  if command is None:
    assert cli.main(argv) == 0
  else:
    with pytest.raises(SystemExit) as done:
      cli.main(argv)
    assert done.value.code == 0
  out = capsys.readouterr().out
  prog = 'tfprune' + ('' if command is None else f' {command}')
  assert out.startswith(f'usage: {prog} ')
  if command in (None, 'train'):   # the catalogue
    for listed in ('small_cnn', 'resnet20', 'small_world', 'network_trimming',
                   'quickstart.py', 'schedule.final_sparsity = 0.9',
                   'epochs = 2'):
      assert listed in out


def test_module_forms_run_without_warnings(quickstart):
  assert 'Warning' not in quickstart[0].stderr   # python -m tfprune train
  for module in ('tflite_export.check', 'tflite_export.bench'):
    proc = _run('-W', 'error::RuntimeWarning', '-m', module, '--help')
    assert proc.returncode == 0 and proc.stderr == '', proc.stderr
    assert proc.stdout.startswith(f'usage: python -m {module} ')


def test_unknown_command_suggests_the_nearest(capsys):
  assert cli.main(['trian']) == 2
  assert capsys.readouterr().err.startswith(
      "tfprune: error: unknown command 'trian'; did you mean 'train'?")
  assert cli.main([]) == 2


def test_setup_declares_the_console_script_and_matplotlib():
  with open(os.path.join(ROOT, 'setup.py')) as f:
    tree = ast.parse(f.read())
  call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and
              getattr(n.func, 'id', '') == 'setup')
  args = {k.arg: ast.literal_eval(k.value) for k in call.keywords
          if k.arg in ('entry_points', 'install_requires')}
  assert 'tfprune=tfprune.cli:main' in args['entry_points']['console_scripts']
  assert any(r.startswith('matplotlib') for r in args['install_requires'])
