"""Latency and size of .tflite files, compared inside one process run.

Every (model, threads) pair gets its own ai_edge_litert Interpreter (default
delegate, i.e. XNNPACK on), built up front. Rounds run in shuffled order so
drift on a shared machine hits all models alike; each ``invoke()`` is timed
alone. Only ratios measured in the same run are meant to be compared
(absolute times move between runs, ../shared/TFLITE.md section 5).

    python -m tflite_export.bench dense.tflite pruned.tflite --threads 1 2
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np


def _interpreter(path: str, threads: int):
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  interpreter = Interpreter(model_path=path, num_threads=threads)
  interpreter.allocate_tensors()
  rng = np.random.RandomState(0)
  for detail in interpreter.get_input_details():
    shape = [d if d > 0 else 1 for d in detail['shape']]
    if np.issubdtype(detail['dtype'], np.floating):
      value = rng.rand(*shape).astype(detail['dtype'])
    else:
      value = rng.randint(-20, 20, shape).astype(detail['dtype'])
    interpreter.set_tensor(detail['index'], value)
  return interpreter


def _time_block(interpreter, count: int) -> List[float]:
  times = []
  for _ in range(count):
    start = time.perf_counter_ns()
    interpreter.invoke()
    times.append((time.perf_counter_ns() - start) / 1e3)
  return times


def bench(paths: Sequence[str], threads: Sequence[int] = (1, 2),
          rounds: int = 7, block_seconds: float = 0.2,
          warmup: int = 20, reference: Optional[str] = None,
          seed: int = 0) -> Dict:
  """Median latency (microseconds) per model and thread count.

  Returns ``{'results': [{path, threads, size, median_us, p10_us, p90_us,
  runs, ratio}], 'loadavg': ...}``; ``ratio`` is the reference model's
  median over this model's at the same thread count (>1 means faster), the
  reference being ``reference`` or the first path.
  """
  paths = [str(p) for p in paths]
  if not paths:
    raise ValueError('bench needs at least one .tflite file')
  for path in paths:
    if not os.path.exists(path):
      raise FileNotFoundError(f'no such .tflite file: {path}')
  reference = reference or paths[0]
  if reference not in paths:
    paths = [reference] + paths
  runners = {(p, t): _interpreter(p, t) for p in paths for t in threads}
  counts = {}
  for key, interpreter in runners.items():
    _time_block(interpreter, warmup)
    per_call = np.median(_time_block(interpreter, 10)) / 1e6
    counts[key] = int(max(20, min(20000, block_seconds / max(per_call,
                                                             1e-7))))
  samples = {key: [] for key in runners}
  order = list(runners)
  rng = random.Random(seed)
  for _ in range(rounds):
    rng.shuffle(order)
    for key in order:
      samples[key] += _time_block(runners[key], counts[key])
  load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else None
  results = []
  for (path, t), values in samples.items():
    median = float(np.median(values))
    base = float(np.median(samples[(reference, t)]))
    results.append({'path': path, 'threads': t,
                    'size': os.path.getsize(path), 'median_us': median,
                    'p10_us': float(np.percentile(values, 10)),
                    'p90_us': float(np.percentile(values, 90)),
                    'runs': len(values), 'ratio': base / median})
  return {'results': results, 'reference': reference, 'loadavg': load}


def format_table(result: Dict) -> str:
  lines = ['| model | threads | bytes | median us | p10-p90 us | speedup vs '
           'reference |', '|---|---|---|---|---|---|']
  for r in result['results']:
    lines.append(f'| {os.path.basename(r["path"])} | {r["threads"]} | '
                 f'{r["size"]:,} | {r["median_us"]:.1f} | '
                 f'{r["p10_us"]:.1f}-{r["p90_us"]:.1f} | {r["ratio"]:.2f}x |')
  return '\n'.join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m tflite_export.bench',
      description='Median latency and size of .tflite files, measured '
      'interleaved in one run; speedups are relative to the reference.')
  parser.add_argument('models', nargs='+')
  parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
  parser.add_argument('--rounds', type=int, default=7)
  parser.add_argument('--reference', default=None,
                      help='model the ratios are relative to (default: the'
                      ' first)')
  args = parser.parse_args(argv)
  try:
    result = bench(args.models, args.threads, args.rounds,
                   reference=args.reference)
  except (FileNotFoundError, ValueError, RuntimeError) as e:
    print(f'tflite_export.bench: error: {e}', file=sys.stderr)
    return 2
  print(format_table(result))
  print(f'\nload average while measuring: {result["loadavg"]}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
