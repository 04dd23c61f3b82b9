"""``python -m tfprune``: the ``tfprune`` command (tfprune/cli.py)."""

import sys

from tfprune import cli

if __name__ == '__main__':
  sys.exit(cli.main())
