"""Command line of the main job (see tfprune/experiment.py for what it does).

    tfprune train --config=configs/quickstart.py --workdir=runs/q
    python -m tfprune.train --config=configs/quickstart.py --workdir=runs/q

Override config values with ``--config.epochs=3``; ``--data_dir`` points at
local dataset files (e.g. ../shared/data); ``--overwrite`` replaces the
workdir of an earlier run. Input errors (config file, workdir, data) end the
run with one line ``tfprune.train: error: ...`` and exit status 2; a
misspelt config key reads ``unknown key 'epoch' in config; did you mean
'epochs'?``. ``--help`` lists the models, methods, configs and config keys.
TensorFlow's Python warnings are hidden unless ``--verbosity`` is given
(its C++ lines: ``tfprune/_tf_logs.py``).
"""

import ast
import glob
import logging as std_logging
import os
import re
import sys
import traceback
import types
from typing import List, NoReturn, Optional

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from tfprune import config as config_lib
from tfprune import data
from tfprune import experiment
from tfprune import methods
from tfprune import models
from tfprune import workdir

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file, e.g. configs/quickstart.py.')
_CONFIG_NEEDS = ('a config file defines get_config() returning '
                 'tfprune.config.default_config() with changes, as '
                 'configs/quickstart.py does')


class _ConfigFileError(Exception):
  """The --config file cannot give a config (missing, no get_config(), ...)."""


def _missing_get_config(error: AttributeError, path: str) -> bool:
  """Whether ``error`` is the config module itself lacking get_config."""
  module = getattr(error, 'obj', None)
  return (getattr(error, 'name', None) == 'get_config'
          and isinstance(module, types.ModuleType)
          and os.path.realpath(getattr(module, '__file__', '')) ==
          os.path.realpath(path))


def _line_in(error: BaseException, path: str) -> str:
  """' line N' of the last traceback frame in the file ``path``, or ''."""
  lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__)
           if os.path.realpath(frame.filename) == os.path.realpath(path)]
  return f' line {lines[-1]}' if lines else ''


def _one_line(error: BaseException) -> str:
  """The innermost message of ``error`` on one line (ConfigDict nests one)."""
  while error.args and isinstance(error.args[0], BaseException):
    error = error.args[0]
  text = str(error.args[0]) if error.args else str(error)
  return '; '.join(line for line in text.splitlines() if line.strip())


def _misspelt_key(error: BaseException, dotted: str = '') -> Optional[str]:
  """``unknown key 'x' in config; did you mean 'y'?`` for ml_collections'
  missing-field error, or None when ``error`` is something else.

  ``dotted``: the full key (``schedule.kinds``) when known; ml_collections
  names only its last part.
  """
  text = _one_line(error)
  match = re.match(r"^'([^']+)'", text)
  if not match:
    return None
  key = match.group(1)
  if dotted and dotted.rsplit('.', 1)[-1] == key:
    key = dotted
  prefix = key.rsplit('.', 1)[0] + '.' if '.' in key else ''
  near = re.search(r'Did you mean "([^"]+)" instead of', text)
  if near:
    return (f"unknown key {key!r} in config; did you mean "
            f"{prefix + near.group(1)!r}?")
  return (f'unknown key {key!r} in config (the keys are listed by '
          '--help)')


def _override_of(error: BaseException, argv: List[str]) -> str:
  """The --config.<key> argument the missing-field ``error`` came from."""
  match = re.match(r"^'([^']+)'", _one_line(error))
  for arg in argv:
    if arg.startswith('--config.') and match:
      path = arg[len('--config.'):].split('=', 1)[0]
      if match.group(1) in path.split('.'):
        return path
  return ''


class _ConfigFileParser(flags.ArgumentParser):
  """ml_collections' config file parser, with clear errors for a bad file.

  ml_collections reports a missing file as a traceback at first use, and a
  file without get_config() (or one reading a misspelt key) as an
  AttributeError that would pass for a bad --config.* override.
  """

  def __init__(self, parser: flags.ArgumentParser):
    self._parser = parser

  def parse(self, path):
    file = path.split(':', 1)[0]
    if not os.path.isfile(file):
      raise _ConfigFileError(
          f'config file {file} does not exist or is not a file; pass e.g. '
          '--config=configs/quickstart.py')
    # ml_collections loads the file as module '<flag>_config' and
    # load_module() reuses one already in sys.modules: a second run in one
    # process would keep the first file's get_config().
    sys.modules.pop(f'{self._parser.name}_config', None)
    try:
      return self._parser.parse(path)
    except AttributeError as e:
      if _missing_get_config(e, file):
        raise _ConfigFileError(
            f'config file {file} defines no get_config(); {_CONFIG_NEEDS}'
        ) from None
      raise _ConfigFileError(
          f'config file {file}{_line_in(e, file)}: '
          f'{_misspelt_key(e) or _one_line(e)}') from None

  def flag_type(self):
    return self._parser.flag_type()


FLAGS['config'].parser = _ConfigFileParser(FLAGS['config'].parser)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output folder of the run.')
_OVERWRITE = flags.DEFINE_bool('overwrite', False,
                               'Replace an existing workdir of an earlier run.')
_DATA_DIR = flags.DEFINE_string(
    'data_dir', None, 'Folder with local dataset files (overrides '
    'config.data_dir), e.g. ../shared/data.')


# the name error lines start with, and the command as typed
_PROG = ['tfprune.train', 'python -m tfprune.train']


def _fail(message: str) -> NoReturn:
  """End the run with one error line and exit status 2 (no traceback)."""
  print(f'{_PROG[0]}: error: {message}', file=sys.stderr)
  sys.exit(2)


def configs_dir() -> Optional[str]:
  """The configs/ folder: in the working directory, else beside the package."""
  here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  for folder in (os.path.join(os.getcwd(), 'configs'),
                 os.path.join(here, 'configs')):
    if os.path.isdir(folder):
      return folder
  return None


def _first_line(path: str) -> str:
  try:
    with open(path, encoding='utf-8') as f:
      doc = ast.get_docstring(ast.parse(f.read())) or ''
  except (OSError, SyntaxError, ValueError):
    return ''
  return doc.strip().splitlines()[0] if doc.strip() else ''


def catalogue() -> str:
  """The models, methods, configs and config keys, as help text."""
  lines = ['models (config.model):', '  ' + ', '.join(models.NAMES), '',
           'methods (config.method):', '  ' + ', '.join(methods.names()), '']
  folder = configs_dir()
  if folder:
    shown = os.path.relpath(folder)
    lines.append(f'configs ({folder if shown.startswith("..") else shown}/):')
    for path in sorted(glob.glob(os.path.join(folder, '*.py'))):
      lines.append(f'  {os.path.basename(path):36s} {_first_line(path)}')
    lines.append('')
  lines.append('config keys and defaults (override with --config.KEY=VALUE;'
               ' tfprune/config.py explains them):')
  for key, value in config_lib.keys():
    lines.append(f'  {key} = {value!r}')
  return '\n'.join(lines)


def help_text(prog: str) -> str:
  """``--help`` of the main job."""
  return '\n'.join([
      f'usage: {prog} --config=CONFIG.py --workdir=DIR [--overwrite] '
      '[--data_dir=DIR] [--config.KEY=VALUE ...] [--verbosity=N]', '',
      'Train, prune, strip, shrink, export to .tflite, check and time one '
      'model; prints a summary table and writes it to DIR/report.md.', '',
      'flags:',
      '  --config       experiment config file, e.g. configs/quickstart.py',
      '  --workdir      output folder of the run',
      '  --overwrite    replace the workdir of an earlier run',
      '  --data_dir     folder with local dataset files, e.g. ../shared/data',
      '  --config.KEY   override one config value, e.g. --config.epochs=3',
      '  --verbosity    absl logging level (e.g. 0); also shows TensorFlow '
      'warnings',
      '  --helpfull     every absl flag', '', catalogue(), '',
      f'example: {prog} --config=configs/quickstart.py '
      '--workdir=runs/quickstart --overwrite'])


def main(argv):
  if not FLAGS['verbosity'].present:   # else the user's level, all warnings
    logging.set_verbosity(logging.WARNING)
    # e.g. "Callback method on_train_batch_begin is slow" on the first step
    std_logging.getLogger('tensorflow').setLevel(std_logging.ERROR)
  if len(argv) > 1:
    _fail(f'unexpected arguments: {argv[1:]} (--help lists the flags)')
  if _CONFIG.value is None or not _WORKDIR.value:
    _fail(f'--config and --workdir are required, e.g. {_PROG[1]} '
          '--config=configs/quickstart.py --workdir=runs/quickstart '
          '(--help lists the models, methods, configs and keys)')
  try:
    experiment.run(_CONFIG.value, _WORKDIR.value, _OVERWRITE.value,
                   _DATA_DIR.value,
                   config_file=FLAGS['config'].config_filename)
  except (workdir.WorkdirError, data.DatasetNotFoundError,
          config_lib.ConfigError, experiment.CheckFailedError) as e:
    _fail(str(e))


def _forget_earlier_command_lines() -> None:
  """Let run_app run again in one process (a notebook, a test): flag values
  of an earlier call are dropped, and so are the ``config.KEY`` flags that
  ml_collections defined for its overrides (defining one twice fails)."""
  for name in list(FLAGS):
    if name.startswith('config.'):
      delattr(FLAGS, name)
  FLAGS.unparse_flags()


def run_app(argv: Optional[List[str]] = None,
            prog: str = 'python -m tfprune.train') -> None:
  """Run the main job's command line (``argv[0]`` is the program)."""
  argv = list(sys.argv if argv is None else argv)
  _PROG[:] = ['tfprune.train' if prog.startswith('python') else prog, prog]
  if any(a in ('-h', '--help', '-help', '--helpshort') for a in argv[1:]):
    print(help_text(prog))   # absl's own --help exits 1 and lists no model
    sys.exit(0)
  _forget_earlier_command_lines()
  # ml_collections finds the --config.KEY overrides in sys.argv, not in the
  # argv absl parses: a caller's argv (tfprune.cli.main([...])) goes there.
  saved_argv, sys.argv = sys.argv, argv
  try:
    app.run(main, argv=argv)
  except _ConfigFileError as e:   # raised while absl parses --config
    _fail(str(e))
  except AttributeError as e:  # ml_collections: unknown --config.<key>
    path = _override_of(e, argv)
    message = _misspelt_key(e, path)
    if not message:
      raise
    _fail(f'--config.{path or "..."}: {message}')
  finally:
    sys.argv = saved_argv


if __name__ == '__main__':
  run_app()
