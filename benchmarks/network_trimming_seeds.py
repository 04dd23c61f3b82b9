"""Network Trimming on the VGG-16 substitute over several seeds.

The ``network_trimming`` study's VGG-16 setting (imported, not restated),
run once per seed in ``config.seeds`` (weights, data order and dropout per
seed; the train/validation split is the data config's). Each run is the
whole loop of that study: dense training, trims with retraining until the
stopping rule, and the equal-budget control (the dense model trained on for
as many epochs as the accepted trims retrained). The section gives each
seed's run and, per trim, the mean over the seeds that reached it, paired
with the dense model and the control of the same seed: whether ">= 2x fewer
parameters within 0.3 points of the dense model" holds beyond one seed.

    python -m benchmarks.network_trimming_seeds --data_dir=../shared/data
"""

from __future__ import annotations

import sys

import numpy as np

from benchmarks import harness
from benchmarks import network_trimming

TARGET = dict(compression=2.0, points=0.003)
# Settings that name a section when they differ from the study's default
# (so two sections of this study never share a heading).
_TITLED = (('threshold_std', 'APoZ >= mean + {} std'),
           ('iterations', 'at most {} trim(s)'),
           ('tolerance', 'stopping tolerance {}'),
           ('retrain_epochs', '{} retraining epoch(s) per trim'))


def get_config():
  base = network_trimming.get_config()
  return harness.config(
      section='network_trimming_seeds', seeds=[0, 1, 2],
      vgg=base.vgg.to_dict(),
      # One seed in smoke: network_trimming_lenet_seeds smokes the merging.
      smoke=dict(seeds=[0], vgg=base.smoke.vgg.to_dict()))


def _seed_rows(runs, layers):
  """One row per seed: references and the trims that meet the target."""
  cells = []
  for seed, rows in runs.items():
    dense, control, trims = rows[0], rows[-1], rows[1:-1]
    met = [r for r in trims
           if dense['params'] / r['params'] >= TARGET['compression']
           and r['test'] >= dense['test'] - TARGET['points']]
    cells.append([
        seed, f'{100 * dense["test"]:.2f}%', f'{100 * control["test"]:.2f}%',
        len(trims),
        ', '.join(f'{r["iteration"]} ({dense["params"] / r["params"]:.2f}x, '
                  f'{100 * r["test"]:.2f}%)' for r in met) or 'none',
        ', '.join(str((trims or [dense])[-1]['widths'][n]) for n in layers)])
  return harness.table(
      ['seed', 'dense (trim 0)', 'control (dense + retraining epochs)',
       'trims accepted', 'trims >= 2x within 0.3 pts of dense',
       'final widths (' + ', '.join(layers) + ')'], cells)


def _by_trim(runs):
  """Per trim index: the seeds that reached it, mean compression and test
  accuracy, and the paired differences to dense and control."""
  depth = max(len(rows) - 2 for rows in runs.values())
  cells = []
  for i in range(1, depth + 1):
    reached = [rows for rows in runs.values() if len(rows) - 2 >= i]
    acc = [rows[i]['test'] for rows in reached]
    cells.append([
        i, len(reached),
        f'{np.mean([rows[0]["params"] / rows[i]["params"] for rows in reached]):.2f}x',
        harness.spread(acc),
        harness.spread([rows[i]['test'] - rows[0]['test']
                        for rows in reached], ' pts'),
        harness.spread([rows[i]['test'] - rows[-1]['test']
                        for rows in reached], ' pts')])
  return harness.table(['trim', 'seeds', 'fewer params (mean)',
                        'test acc.', 'minus dense', 'minus control'], cells)


def run_seeds(ctx, s, seeds, build):
  """``{seed: rows}``: the whole ``trim_rows`` loop of setting ``s`` per
  seed, on ``build(input_shape)`` built after seeding (weights, data order,
  dropout); the train/validation split is the data config's."""
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  train, val, test = ctx.load(s.data)
  runs = {}
  for seed in seeds:
    keras.utils.set_random_seed(seed)
    _, runs[seed], _, _ = network_trimming.trim_rows(
        s, build(train[0].shape[1:]), train, val, test)
  return runs


def section(runs, s, seeds, setting: str) -> str:
  """The per-seed table, the per-trim means and every seed's trims;
  ``setting`` opens the prose (data, model, which study's setting)."""
  layers = s.layers.split(',')
  detail = []
  for seed, rows in runs.items():
    detail += [f'#### Seed {seed}', '',
               network_trimming.trim_table(rows, layers), '']
  lines = [
      f'{setting}, seeds {", ".join(map(str, seeds))}. Dense {s.epochs} '
      f'epochs (Adam {s.learning_rate:g}, batch {s.batch_size}); at most '
      f'{s.iterations} trims of {", ".join(layers)}, '
      + (f'the {s.layers_per_trim} layers with the highest mean APoZ'
         if s.layers_per_trim else 'every one of them') +
      f' each time (APoZ >= mean + {s.threshold_std:g} std), '
      f'{s.retrain_epochs} retraining epoch(s) (Adam '
      f'{s.finetune_learning_rate:g}), tolerance {s.tolerance:g}. The '
      'control is the dense model of the same seed trained on at the '
      'retraining LR for as many epochs as its accepted trims retrained. '
      'Differences are paired by seed; "+-" is the sample std over the '
      'seeds that reached the trim.', '',
      _seed_rows(runs, layers), '',
      '### Mean over seeds, per trim', '', _by_trim(runs), '',
      '### Every seed\'s trims', ''] + detail
  return '\n'.join(lines).rstrip()


def title(v, seeds: int) -> str:
  """The section heading: the study, then every setting of ``_TITLED``
  that differs from the ``network_trimming`` VGG default."""
  default = network_trimming.get_config().vgg
  return ', '.join(
      [f'Network Trimming: VGG-16 substitute over {seeds} seeds'] +
      [words.format(f'{v[key]:g}') for key, words in _TITLED
       if v[key] != default[key]])


def run(ctx):
  import tfprune  # pylint: disable=g-import-not-at-top
  c, v = ctx.config, ctx.config.vgg
  runs = run_seeds(ctx, v, c.seeds, lambda shape: tfprune.models.vgg16(
      shape, 10, width=v.width, batch_norm=True))
  return title(v, len(c.seeds)), section(
      runs, v, c.seeds,
      f'{harness.substitute(v.data)}, VGG-16 (BatchNorm) at width '
      f'{v.width:g}: the `network_trimming` study\'s VGG setting')


if __name__ == '__main__':
  harness.main(sys.modules[__name__])
