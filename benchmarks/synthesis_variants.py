"""Synthesis variants: can any documented knob make strategic growth beat
random growth, or make the grown structure repeat across seeds?

LeNet-300-100 on MNIST at one capacity (the ``synthesis`` study's setting),
every variant over ``config.seeds``: the default strategic rule, its
ablations (origins only, endpoints only, fewer or all origins), a coarser
growth schedule, pruning below capacity, each beside the random-growth
control it should beat. Accuracy is compared with random growth paired by
seed; the overlap of the final edge sets across seeds with its chance level.
Two variants start every seed from the same initial mask (Synthesis
``start_seed`` fixed; weights, data order and the events' random draws
still per seed), so that the overlap of the *grown* edges (final minus
start) shows whether growth itself repeats.

    python -m benchmarks.synthesis_variants --data_dir=../shared/data
"""

from __future__ import annotations

import itertools
import sys
import time

from absl import logging
import numpy as np

from benchmarks import harness
from benchmarks import synthesis as synthesis_study

RANDOM = 'random growth'
# Synthesis arguments a variant may set; the rest come from the config.
KNOBS = ('strategy', 'prune_weakest', 'origin_fraction', 'endpoint', 'growth',
         'grow_every')


def get_config():
  return harness.config(
      section='synthesis_variants', data=harness.data_config('mnist'),
      models='lenet300', capacity=0.1, seeds=[0, 1, 2],
      initial_density=0.02, growth=0.1, prune_ratio=0.5,
      origin_fraction=0.2, events_until=2 / 3, batch_size=128,
      learning_rate=1e-3,
      specs=dict(lenet300=dict(title='LeNet-300-100', hidden=[300, 100],
                               epochs=10, grow_every=100)),
      variants=[
          dict(name=RANDOM, strategy='random'),
          dict(name='strategic (default: origins 20%, Gaussian endpoints)'),
          dict(name='strategic, uniform endpoints (origin rule only)',
               endpoint='uniform'),
          dict(name='strategic, all inputs are origins (endpoint rule only)',
               origin_fraction=1.0),
          dict(name='strategic, origins 5%', origin_fraction=0.05),
          dict(name='strategic, 30% of capacity every 300 steps',
               growth=0.3, grow_every=300),
          dict(name='random + pruning below capacity (SET-like)',
               strategy='random', prune_weakest=True),
          dict(name='strategic + pruning below capacity',
               prune_weakest=True),
          dict(name='random growth, same start', strategy='random',
               same_start=True),
          dict(name='strategic, same start', same_start=True),
      ],
      smoke=dict(
          data=dict(train_examples=128, test_examples=200), seeds=[0, 1],
          specs=dict(lenet300=dict(hidden=[30, 10], epochs=2, grow_every=1)),
          variants=[dict(name=RANDOM, strategy='random'),
                    dict(name='strategic, same start', same_start=True)]))


def _variant_runs(setting, c, variant):
  """The runs of one variant, one per seed."""
  knobs = {k: variant[k] for k in KNOBS if k in variant}
  strategy = knobs.pop('strategy', 'strategic')
  prune = knobs.pop('prune_weakest', False)
  if 'grow_every' in knobs:
    setting = dict(setting, grow_every=knobs.pop('grow_every'))
  runs = []
  for seed in c.seeds:
    run = synthesis_study.synthesis_run(
        setting, c.capacity, strategy, prune, seed,
        start_seed=c.seeds[0] if variant.get('same_start') else None,
        **knobs)
    logging.warning('synthesis_variants %s seed %d: %.4f', variant['name'],
                    seed, run['acc'])
    runs.append(run)
  return runs


def _grown(run):
  return {n: m & ~run['start'][n] for n, m in run['masks'].items()}


def _row(name, runs, control):
  """Accuracy, the paired difference to the random control, overlap."""
  from tfprune.methods import synthesis  # pylint: disable=g-import-not-at-top
  o = synthesis_study.overlap({name: runs})[name]
  pairs = list(itertools.combinations(runs, 2))
  grown = [synthesis.overlap(_grown(a), _grown(b)) for a, b in pairs]
  grown_chance = [synthesis.chance(_grown(a), _grown(b)) for a, b in pairs]
  return {
      'name': name, 'same_start': all(
          np.array_equal(m, runs[-1]['start'][n])
          for n, m in runs[0]['start'].items()),
      'accs': [r['acc'] for r in runs],
      'vs_random': [r['acc'] - k['acc'] for r, k in zip(runs, control)],
      'density': float(np.mean([r['density'] for r in runs])),
      'overlap': float(np.mean(o['all'])), 'chance': o['chance'],
      'layers': o['layers'], 'grown': float(np.mean(grown)),
      'grown_chance': float(np.mean(grown_chance)),
      'seconds': float(np.mean([r['seconds'] for r in runs]))}


def _table(rows) -> str:
  layers = list(rows[0]['layers'])
  return harness.table(
      ['variant', 'test accuracy', 'minus random growth (same seed)',
       'final edge density', 'Jaccard, final edges (chance)'] +
      [f'Jaccard {n}' for n in layers] +
      ['Jaccard, grown edges (chance)', 'train s'],
      [[r['name'], harness.spread(r['accs']),
        harness.spread(r['vs_random'], ' pts'),
        f'{100 * r["density"]:.2f}%',
        f'{r["overlap"]:.3f} ({r["chance"]:.3f})'] +
       [f'{r["layers"][n]:.3f}' for n in layers] +
       [f'{r["grown"]:.3f} ({r["grown_chance"]:.3f})',
        f'{r["seconds"]:.0f}'] for r in rows])


def _findings(rows) -> list:
  """Statements computed from the rows."""
  by = {r['name']: r for r in rows}
  control = by[RANDOM]
  lines = []
  beat = [r for r in rows if r['name'] != RANDOM and
          np.mean(r['vs_random']) > 0 and min(r['vs_random']) > 0]
  lines.append(
      '- Above random growth on every seed: ' +
      (', '.join(f'{r["name"]} ({np.mean(r["vs_random"]) * 100:+.2f} pts)'
                 for r in beat) or 'no variant') + '.')
  best = max(rows, key=lambda r: np.mean(r['accs']))
  lines.append(f'- Best mean accuracy: {best["name"]}, '
               f'{harness.spread(best["accs"])} (random growth '
               f'{harness.spread(control["accs"])}).')
  # a shared start is shared by construction: judge what growth added
  above = [(r['name'], r['grown'], r['grown_chance']) if r['same_start']
           else (r['name'], r['overlap'], r['chance']) for r in rows]
  above = [a for a in above if a[1] > 1.5 * a[2]]
  lines.append(
      '- Overlap above 1.5x its chance level (grown edges for the "same '
      'start" rows, final edges otherwise): ' +
      (', '.join(f'{n} ({v:.3f} vs {k:.3f})' for n, v, k in above)
       or 'no variant') + '.')
  return lines


def run(ctx):
  c = ctx.config
  (setting,) = synthesis_study.model_settings(ctx)
  started = time.time()
  runs = {v['name']: _variant_runs(setting, c, v) for v in c.variants}
  control = runs[RANDOM]
  rows = [_row(name, r, control) for name, r in runs.items()]
  minutes = (time.time() - started) / 60
  x, test = setting['train'][0], setting['test'][0]
  lines = [
      f'{setting["title"]} on {harness.describe_data(c.data)} ({len(x):,} '
      f'train / {len(test):,} test), {setting["epochs"]} epochs, Adam '
      f'{c.learning_rate:g}, batch {c.batch_size}; the synthesis study\'s '
      f'rules and budgets (start {100 * c.initial_density:g}% of the '
      f'kernel edges, capacity {100 * c.capacity:g}%, Erdos-Renyi split, '
      f'events every {setting["grow_every"]} steps growing '
      f'{100 * c.growth:g}% of each layer\'s capacity until '
      f'{c.events_until:.3g} of the steps) unless the variant says '
      'otherwise. Growth only, until capacity, except the "+ pruning" rows '
      f'(r = {c.prune_ratio:g} g below capacity, r = g at it). Seeds '
      f'{", ".join(map(str, c.seeds))}: each seed sets the weights, the data '
      'order, the events\' random draws and (except "same start", which '
      f'starts every seed from the mask of seed {c.seeds[0]}) the initial '
      'mask. '
      'Accuracy: mean +- sample std (per seed); "minus random growth" pairs '
      'each seed with the random-growth run of the same seed (the "same '
      'start" rows too, whose start differs from it). Jaccard: mean over '
      'seed pairs of |A and B| / |A or B| of the final edge sets, with the '
      'chance level of independent random sets of the same per-layer '
      'counts in parentheses; "grown edges" are the final edges absent at '
      'the start (for different starts about the same as the final edges; '
      'for "same start" the part that growth chose). Total time '
      f'{minutes:.0f} min.', '', _table(rows), '',
      '### Findings (computed from the numbers above)', ''] + _findings(rows)
  return ('Synthesis variants: strategic vs random growth on '
          f'{setting["title"]} at {100 * c.capacity:g}%', '\n'.join(lines))


if __name__ == '__main__':
  harness.main(sys.modules[__name__])
