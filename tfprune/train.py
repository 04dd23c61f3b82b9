"""Command line of the main job (see tfprune/experiment.py for what it does).

    python -m tfprune.train --config=configs/quickstart.py --workdir=runs/q

Override config values with ``--config.epochs=3``; ``--data_dir`` points at
local dataset files (e.g. ../shared/data); ``--overwrite`` replaces the
workdir of an earlier run. Input errors (config file, workdir, data) end the
run with one line ``tfprune.train: error: ...`` and exit status 2.
"""

import os
import sys
import traceback
import types
from typing import NoReturn

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

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
    try:
      return self._parser.parse(path)
    except AttributeError as e:
      if _missing_get_config(e, file):
        raise _ConfigFileError(
            f'config file {file} defines no get_config(); {_CONFIG_NEEDS}'
        ) from None
      raise _ConfigFileError(
          f'config file {file}{_line_in(e, file)}: {_one_line(e)}') from None

  def flag_type(self):
    return self._parser.flag_type()


FLAGS['config'].parser = _ConfigFileParser(FLAGS['config'].parser)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output folder of the run.')
_OVERWRITE = flags.DEFINE_bool('overwrite', False,
                               'Replace an existing workdir of an earlier run.')
_DATA_DIR = flags.DEFINE_string(
    'data_dir', None, 'Folder with local dataset files (overrides '
    'config.data_dir), e.g. ../shared/data.')


def _fail(message: str) -> NoReturn:
  """End the run with one error line and exit status 2 (no traceback)."""
  print(f'tfprune.train: error: {message}', file=sys.stderr)
  sys.exit(2)


def main(argv):
  logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if _CONFIG.value is None or not _WORKDIR.value:
    raise app.UsageError('--config and --workdir are required, e.g. '
                         'python -m tfprune.train --config=configs/'
                         'quickstart.py --workdir=runs/quickstart')
  from tfprune import config as config_lib  # pylint: disable=g-import-not-at-top
  from tfprune import data  # pylint: disable=g-import-not-at-top
  from tfprune import experiment  # pylint: disable=g-import-not-at-top
  from tfprune import workdir  # pylint: disable=g-import-not-at-top
  try:
    experiment.run(_CONFIG.value, _WORKDIR.value, _OVERWRITE.value,
                   _DATA_DIR.value,
                   config_file=FLAGS['config'].config_filename)
  except (workdir.WorkdirError, data.DatasetNotFoundError,
          config_lib.ConfigError, experiment.CheckFailedError) as e:
    _fail(str(e))


def run_app():
  try:
    app.run(main)
  except _ConfigFileError as e:   # raised while absl parses --config
    _fail(str(e))
  except AttributeError as e:  # ml_collections: unknown --config.<key>
    _fail(f'unknown config key in a --config.* override: {_one_line(e)}')


if __name__ == '__main__':
  run_app()
