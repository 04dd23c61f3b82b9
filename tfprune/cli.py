"""The ``tfprune`` command: one entry point for the main job and the tools.

    tfprune train   --config=configs/quickstart.py --workdir=runs/quickstart
    tfprune report  runs/quickstart              # its summary table again
    tfprune check   runs/quickstart/model.tflite # report.json, plan.json beside
    tfprune inspect runs/quickstart/model.tflite # ops and weight zeros
    tfprune bench   runs/quickstart/dense.tflite runs/quickstart/model.tflite

``tfprune --help`` and ``tfprune COMMAND --help`` exit 0; the top-level help
lists the models, methods, configs and config keys. ``python -m tfprune``
is the same command. ``train`` is ``tfprune.train`` (absl flags);
``check`` and ``bench`` are ``tflite_export.check`` / ``.bench``. The
command lines default ``TF_CPP_MIN_LOG_LEVEL`` to 3 and drop TensorFlow's
start-up notices (``tfprune/_tf_logs.py``); ``TF_CPP_MIN_LOG_LEVEL=0
tfprune ...`` shows every C++ line.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from typing import Callable, Dict, List, Optional

import tflite_export
import tfprune
from tfprune import generations
from tflite_export.bench import main as bench_main
from tflite_export.check import main as check_main

_SUMMARY = '## Summary'


def _train(argv: List[str]) -> int:
  from tfprune import train  # lazy: it defines absl flags
  train.run_app(['tfprune train'] + argv, prog='tfprune train')
  return 0


def _check(argv: List[str]) -> int:
  return check_main(argv, prog='tfprune check')


def _bench(argv: List[str]) -> int:
  return bench_main(argv, prog='tfprune bench')


def inspect_tflite(path: str) -> str:
  """Markdown: a .tflite file's inputs, ops, and zeros per weight."""
  info = tflite_export.inspect(path)
  counts: Dict[str, int] = {}
  for name in info.op_names:
    counts[name] = counts.get(name, 0) + 1
  lines = [f'{path}: {info.size:,} bytes, inputs {info.input_signatures}',
           'operators: ' + ', '.join(f'{n} x{c}' for n, c in
                                     sorted(counts.items())), '',
           '| # | op | weight | shape | stored as | zeros |',
           '|---|---|---|---|---|---|']
  for op in info.weight_ops():
    w = op.weight
    if w is None:
      continue
    stored = w.dtype + (' sparse' if w.sparse else '') + (
        ' via ' + '+'.join(w.via) if w.via else '')
    lines.append(f'| {op.index} | {op.name} | {w.name} | {w.shape} | '
                 f'{stored} | {100 * float(w.zeros.mean()):.2f}% |')
  return '\n'.join(lines)


def inspect_keras(path: str) -> str:
  """A saved Keras model's per-layer params, zeros and MACs."""
  generation = generations.of_saved(path).name
  model = generations.load_model(path, tfprune.custom_objects(generation))
  return f'{path}: {model.name}\n\n' + tfprune.report(model).table()


def _inspect(argv: List[str]) -> int:
  parser = argparse.ArgumentParser(
      prog='tfprune inspect',
      description='Show what a file holds: a .tflite file\'s operators and '
      'the zeros of each weight as stored, or a saved Keras model\'s '
      '(.keras, .h5, SavedModel folder) per-layer params, zeros and MACs.')
  parser.add_argument('model', help='a .tflite file or a saved Keras model')
  args = parser.parse_args(argv)
  if not os.path.exists(args.model):
    print(f'tfprune inspect: error: {args.model} does not exist',
          file=sys.stderr)
    return 2
  try:
    if args.model.endswith('.tflite'):
      print(inspect_tflite(args.model))
    else:
      print(inspect_keras(args.model))
  except (OSError, ValueError, tflite_export.InvalidModelError) as e:
    print(f'tfprune inspect: error: {e}', file=sys.stderr)
    return 2
  return 0


def run_summary(workdir: str) -> str:
  """The summary section of a finished run's report.md."""
  path = os.path.join(workdir, 'report.md')
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f'{workdir} holds no report.md: is it the --workdir of a finished '
        'tfprune train run?')
  with open(path, encoding='utf-8') as f:
    text = f.read()
  if _SUMMARY not in text:
    raise ValueError(f'{path} has no "{_SUMMARY}" section (written by an '
                     'older tfprune); rerun tfprune train')
  section = text.split(_SUMMARY, 1)[1].split('\n## ', 1)[0].strip()
  return f'{section}\n\nfull report: {path}'


def _report(argv: List[str]) -> int:
  parser = argparse.ArgumentParser(
      prog='tfprune report',
      description='Print the summary table of a finished tfprune train run '
      '(dense vs pruned vs shrunk) and where its report.md is.')
  parser.add_argument('workdir', help='the --workdir of the run')
  args = parser.parse_args(argv)
  try:
    print(run_summary(args.workdir))
  except (OSError, ValueError) as e:
    print(f'tfprune report: error: {e}', file=sys.stderr)
    return 2
  return 0


COMMANDS: Dict[str, Callable[[List[str]], int]] = {
    'train': _train, 'report': _report, 'check': _check,
    'inspect': _inspect, 'bench': _bench}
_ABOUT = {
    'train': 'train, prune, shrink, export, check and time one model '
             '(a config file)',
    'report': "print a finished run's summary table",
    'check': 'check that a .tflite file keeps the Keras sparsity',
    'inspect': 'show the ops and weight zeros of a .tflite or Keras file',
    'bench': 'time .tflite files against each other (interleaved)'}


def help_text() -> str:
  """``tfprune --help``: the commands, then the models, methods, configs."""
  lines = ['usage: tfprune COMMAND [ARGS]   (tfprune COMMAND --help for its '
           'arguments)', '', 'Structured pruning for Keras models (tf_keras '
           'and Keras 3), exported to TFLite and checked.', '', 'commands:']
  lines += [f'  {name:8s} {_ABOUT[name]}' for name in COMMANDS]
  from tfprune import train  # lazy: it defines absl flags
  lines += ['', train.catalogue(), '',
            'start with: tfprune train --config=configs/quickstart.py '
            '--workdir=runs/quickstart --overwrite',
            "TensorFlow's C++ log lines are hidden; TF_CPP_MIN_LOG_LEVEL=0 "
            'tfprune ... shows them.']
  return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
  """Run ``tfprune COMMAND ARGS``; returns the exit status."""
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] in ('-h', '--help', 'help'):
    print(help_text())
    return 0 if argv else 2
  if argv[0] == '--version':
    print(f'tfprune {tfprune.__version__}')
    return 0
  command = COMMANDS.get(argv[0])
  if command is None:
    near = difflib.get_close_matches(argv[0], list(COMMANDS), n=1)
    hint = f"; did you mean '{near[0]}'?" if near else ''
    print(f"tfprune: error: unknown command '{argv[0]}'{hint} (commands: "
          f"{', '.join(COMMANDS)})", file=sys.stderr)
    return 2
  return command(argv[1:])
