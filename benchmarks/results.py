"""Write one benchmark's section of docs/RESULTS.md, leaving the others.

Every section starts with the command that made it, the machine and the
date, so each number in RESULTS.md can be traced to a run.
"""

from __future__ import annotations

import os
import platform
import re
import time

RESULTS = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'docs', 'RESULTS.md')
HEADER = ('# tfprune results\n\nEvery section below was written by the '
          'benchmark command it names; rerun that command to regenerate it.\n')


def machine() -> str:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  cpu = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo') as f:
      names = [l.split(':', 1)[1].strip() for l in f if 'model name' in l]
    cpu = names[0] if names else cpu
  except OSError:
    pass
  return (f'{os.cpu_count()} CPU cores ({cpu}), no GPU, Python '
          f'{platform.python_version()}, TensorFlow {tf.__version__}')


def stamp(command: str) -> str:
  return (f'Command: `{command}`  \nMachine: {machine()}  \n'
          f'Date: {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}')


def write_section(name: str, markdown: str, path: str = RESULTS) -> None:
  """Replace (or append) the section called ``name`` and save atomically."""
  begin, end = f'<!-- BEGIN {name} -->', f'<!-- END {name} -->'
  block = f'{begin}\n{markdown.strip()}\n{end}\n'
  text = open(path).read() if os.path.exists(path) else HEADER
  pattern = re.compile(re.escape(begin) + r'.*?' + re.escape(end) + r'\n?',
                       re.S)
  text = (pattern.sub(lambda _: block, text) if pattern.search(text)
          else text.rstrip('\n') + '\n\n' + block)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    f.write(text)
  os.replace(tmp, path)
