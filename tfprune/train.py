"""Command line of the main job (see tfprune/experiment.py for what it does).

    python -m tfprune.train --config=configs/quickstart.py --workdir=runs/q

Override config values with ``--config.epochs=3``; ``--data_dir`` points at
local dataset files (e.g. ../shared/data); ``--overwrite`` replaces the
workdir of an earlier run. Input errors (workdir, data, config keys) end the
run with one line ``tfprune.train: error: ...`` and exit status 2.
"""

import sys
from typing import NoReturn

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file, e.g. configs/quickstart.py.')
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
  except AttributeError as e:  # ml_collections: unknown --config.<key>
    _fail(f'unknown config key in a --config.* override: {e}')


if __name__ == '__main__':
  run_app()
