"""Latency and size of .tflite files, compared inside one process run.

Every (model, threads) pair gets its own ai_edge_litert Interpreter (default
delegate, i.e. XNNPACK on), built up front in the runtime child process
(``tflite_export.guard``), where all the timing happens. Rounds run in
shuffled order so drift on a shared machine hits all models alike; each
``invoke()`` is timed alone. Only ratios measured in the same run are meant
to be compared (absolute times move between runs, ../shared/TFLITE.md
section 5).

    python -m tflite_export.bench dense.tflite pruned.tflite --threads 1 2
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, Optional, Sequence

import numpy as np

from tflite_export import guard
from tflite_export import reader
from tflite_export.validation import Limits


BLOCK_SECONDS = 0.2   # default length of one timed block per model


def _check_arguments(paths, threads, rounds, block_seconds, warmup) -> None:
  """Refuse settings that would measure nothing or fail deep in the run."""
  if not paths:
    raise ValueError('bench needs at least one .tflite file')
  if not threads or any(int(t) < 1 for t in threads):
    raise ValueError(f'threads must be counts >= 1, got {list(threads)}')
  if int(rounds) < 1:
    raise ValueError(f'rounds must be at least 1, got {rounds}')
  if not block_seconds > 0:
    raise ValueError(f'block_seconds must be positive, got {block_seconds}')
  if int(warmup) < 0:
    raise ValueError(f'warmup must be 0 or more, got {warmup}')


def bench(paths: Sequence[str], threads: Sequence[int] = (1, 2),
          rounds: int = 7, block_seconds: float = BLOCK_SECONDS,
          warmup: int = 20, reference: Optional[str] = None,
          seed: int = 0, limits: Optional[Limits] = None) -> Dict:
  """Median latency (microseconds) per model and thread count.

  Returns ``{'results': [{path, threads, size, median_us, p10_us, p90_us,
  runs, ratio}], 'loadavg': ...}``; ``ratio`` is the reference model's
  median over this model's at the same thread count (>1 means faster), the
  reference being ``reference`` or the first path.

  Every file is validated first (``reader.validate``) and loaded alone, so
  a file the runtime refuses or crashes on is named; the measurement runs
  in the runtime child process (``tflite_export.guard``) under ``limits``.
  """
  paths = list(dict.fromkeys(str(p) for p in paths))
  _check_arguments(paths, threads, rounds, block_seconds, warmup)
  reference = str(reference or paths[0])
  if reference not in paths:
    paths = [reference] + paths
  threads = list(dict.fromkeys(int(t) for t in threads))
  models = [reader.validate(p, limits) for p in paths]
  for path, data in zip(paths, models):
    guard.load(data, path, limits)
  keys = [(m, t) for m in range(len(paths)) for t in threads]
  what = paths[0] if len(paths) == 1 else 'one of ' + ', '.join(paths)
  samples = guard.bench(models, keys, what, int(rounds),
                        block_seconds, int(warmup), seed, limits)
  load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else None
  medians = {key: float(np.median(values))
             for key, values in zip(keys, samples)}
  results = []
  for (m, t), values in zip(keys, samples):
    median = medians[(m, t)]
    results.append({'path': paths[m], 'threads': t,
                    'size': len(models[m]), 'median_us': median,
                    'p10_us': float(np.percentile(values, 10)),
                    'p90_us': float(np.percentile(values, 90)),
                    'runs': len(values),
                    'ratio': medians[(paths.index(reference), t)] / median})
  return {'results': results, 'reference': reference, 'loadavg': load}


def format_table(result: Dict) -> str:
  lines = ['| model | threads | bytes | median us | p10-p90 us | speedup vs '
           'reference |', '|---|---|---|---|---|---|']
  for r in result['results']:
    lines.append(f'| {os.path.basename(r["path"])} | {r["threads"]} | '
                 f'{r["size"]:,} | {r["median_us"]:.1f} | '
                 f'{r["p10_us"]:.1f}-{r["p90_us"]:.1f} | {r["ratio"]:.2f}x |')
  return '\n'.join(lines)


def expected_seconds(n_models: int, n_threads: int, rounds: int,
                     block_seconds: float) -> float:
  """About how long the timed rounds of a bench() call take."""
  return n_models * n_threads * rounds * block_seconds


def main(argv=None, prog: str = 'python -m tflite_export.bench') -> int:
  """The command line; returns the exit status (0 ok, 2 error)."""
  parser = argparse.ArgumentParser(
      prog=prog,
      description='Median latency and size of .tflite files, measured '
      'interleaved in one run; speedups are relative to the reference.')
  parser.add_argument('models', nargs='+')
  parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
  parser.add_argument('--rounds', type=int, default=7)
  parser.add_argument('--reference', default=None,
                      help='model the ratios are relative to (default: the'
                      ' first)')
  Limits.add_arguments(parser)
  args = parser.parse_args(argv)
  n_models = len(set(args.models) | ({args.reference} - {None}))
  seconds = expected_seconds(n_models, len(set(args.threads)), args.rounds,
                             BLOCK_SECONDS)
  if seconds > 3:   # the runtime child times silently: say how long
    print(f'timing {n_models} file(s) x {len(set(args.threads))} thread '
          f'count(s) x {args.rounds} rounds: about {seconds:.0f} s plus '
          'loading', file=sys.stderr, flush=True)
  try:
    result = bench(args.models, args.threads, args.rounds,
                   reference=args.reference,
                   limits=Limits.from_arguments(args))
  except (OSError, ValueError, RuntimeError) as e:
    print(f'{prog.replace("python -m ", "")}: error: {e}', file=sys.stderr)
    return 2
  print(format_table(result))
  print(f'\nload average while measuring: {result["loadavg"]}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
