"""Synthesis and Pruning (inspired by Finlinson & Moschoyiannis) on two MLPs.

LeNet-300-100 and a 784-1000-1000-10 MLP on MNIST (the settings of
configs/lenet300_mnist_synthesis.py and configs/mlp1000_mnist_synthesis.py), from a 2%
random start, at each capacity in ``config.capacities``:
  * strategic synthesis (growth only, until capacity);
  * random synthesis (growth only, uniform over absent edges: the SET-like
    control);
  * synthesis + pruning (strategic growth, the weakest edges pruned at each
    event: r = g/2 below capacity, r = g at capacity);
  * tfmot prune_low_magnitude at the same per-layer density (dense training
    for half the epochs, then PolynomialDecay pruning while fine-tuning);
and the dense model. At ``config.overlap_capacity`` the three synthesis rows
run with ``config.seeds`` seeds (model init, data order and masks all
seeded) and the Jaccard overlap of the final edge sets is measured between
every pair of seeds. Writes the "synthesis" section of docs/RESULTS.md and
docs/synthesis_density.png.

    python -m benchmarks.synthesis --data_dir=../shared/data
"""

from __future__ import annotations

import itertools
import math
import sys
import time

import numpy as np

from benchmarks import harness

PLOT = 'synthesis_density.png'


def get_config():
  return harness.config(
      section='synthesis', data=harness.data_config('mnist'),
      capacities=[0.05, 0.1], overlap_capacity=0.1, seeds=3,
      initial_density=0.02, growth=0.1, prune_ratio=0.5,
      origin_fraction=0.2, events_until=2 / 3, batch_size=128,
      learning_rate=1e-3, models='lenet300,mlp1000',
      specs=dict(
          lenet300=dict(title='LeNet-300-100', hidden=[300, 100], epochs=10,
                        grow_every=100),
          mlp1000=dict(title='MLP 784-1000-1000-10', hidden=[1000, 1000],
                       epochs=5, grow_every=50)),
      smoke=dict(
          data=dict(train_examples=128, test_examples=200), capacities=[0.1],
          seeds=2, models='lenet300',
          specs=dict(lenet300=dict(hidden=[30, 10], epochs=2,
                                   grow_every=1))))


VARIANTS = (('strategic synthesis', 'strategic', False),
            ('random synthesis', 'random', False),
            ('synthesis + pruning', 'strategic', True))


def _fit(model, data, epochs, lr, batch, callbacks=()):
  return harness.fit(model, data, epochs, harness.optimizer('adam', lr),
                     batch, callbacks, metrics=['accuracy'])


def _kernel_density(model):
  """Non-zero kernel entries / all kernel entries (plain or stripped)."""
  kernels = [l.kernel.numpy() for l in model.layers if hasattr(l, 'kernel')]
  return (sum(int((k != 0).sum()) for k in kernels)
          / sum(k.size for k in kernels))


def synthesis_run(setting, capacity, strategy, prune, seed, **overrides):
  """One Synthesis training run of ``setting`` (see :func:`model_settings`);
  ``seed`` seeds the weights, the data order, the initial masks and the
  events; ``overrides`` are Synthesis arguments (e.g. ``start_seed``)."""
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  import tfprune  # pylint: disable=g-import-not-at-top
  from tfprune.methods import synthesis  # pylint: disable=g-import-not-at-top
  started = time.time()
  keras.utils.set_random_seed(seed)
  kwargs = dict(setting['method_kwargs'], capacity=capacity,
                grow_every=setting['grow_every'], strategy=strategy,
                prune_weakest=prune, end_step=setting['end_step'],
                seed=seed)
  kwargs.update(overrides)
  method = tfprune.methods.Synthesis(**kwargs)
  pruned = tfprune.prune(setting['build'](), method)
  start = synthesis.masks(pruned)
  _fit(pruned, setting['train'], setting['epochs'], setting['lr'],
       setting['batch'], harness.pruning_step())
  info = method.report_info()
  totals = tfprune.report(pruned)['totals']
  return dict(
      acc=harness.accuracy(pruned, *setting['test']), seed=seed,
      density=info['edges'] / info['possible_edges'],
      nonzero_density=_kernel_density(tfprune.strip(pruned)),
      kept=totals['nonzero_params'], params=totals['params'],
      events=info['events'], grown=info['grown'], pruned=info['pruned'],
      at_capacity=info['at_capacity_step'],
      layers={n: l['edges'] / l['possible'] for n, l in info['layers'].items()},
      plan=method.layer_budgets(tfprune.wrapper.collect_wrappers(pruned)),
      masks=synthesis.masks(pruned), start=start,
      seconds=time.time() - started)


def _tfmot_run(setting, plan):
  """prune_low_magnitude with each layer's synthesis capacity as density."""
  import tensorflow_model_optimization as tfmot  # pylint: disable=g-import-not-at-top
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  import tfprune  # pylint: disable=g-import-not-at-top
  started = time.time()
  keras.utils.set_random_seed(0)
  epochs = setting['epochs']
  half = epochs // 2
  model = _fit(setting['build'](), setting['train'], half, setting['lr'],
               setting['batch'])
  steps = (epochs - half) * setting['steps_per_epoch']
  sparsity = {n: 1 - p['capacity'] / p['possible'] for n, p in plan.items()}
  end = max(1, int(steps * 2 / 3))
  frequency = min(100, max(1, end // 10))

  def wrap(layer):
    if sparsity.get(layer.name, 0) > 0:
      return tfmot.sparsity.keras.prune_low_magnitude(
          layer, pruning_schedule=tfprune.schedules.PolynomialDecay(
              0.0, sparsity[layer.name], 0, end, frequency=frequency))
    return layer

  pruned = keras.models.clone_model(model, clone_function=wrap)
  _fit(pruned, setting['train'], epochs - half, setting['lr'] / 2,
       setting['batch'], [tfmot.sparsity.keras.UpdatePruningStep()])
  plain = tfmot.sparsity.keras.strip_pruning(pruned)
  totals = tfprune.report(plain)['totals']
  density = _kernel_density(plain)
  return dict(acc=harness.accuracy(plain, *setting['test']), seed=0,
              density=density, nonzero_density=density,
              kept=totals['nonzero_params'], params=totals['params'],
              seconds=time.time() - started)


def _dense_run(setting):
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  import tfprune  # pylint: disable=g-import-not-at-top
  started = time.time()
  keras.utils.set_random_seed(0)
  model = _fit(setting['build'](), setting['train'], setting['epochs'],
               setting['lr'], setting['batch'])
  params = tfprune.report(model)['totals']['params']
  return dict(acc=harness.accuracy(model, *setting['test']), seed=0, density=1.0,
              nonzero_density=_kernel_density(model), kept=params,
              params=params, seconds=time.time() - started)


def _run_model(setting, capacities, overlap_capacity, seeds):
  """Every row of one model; returns (rows, seed runs at overlap capacity)."""
  rows = [dict(name='dense (no pruning)', capacity=None,
               **_dense_run(setting))]
  seeded = {}
  for capacity in capacities:
    plan = None
    for name, strategy, prune in VARIANTS:
      runs = [synthesis_run(setting, capacity, strategy, prune, seed)
              for seed in (range(seeds) if math.isclose(
                  capacity, overlap_capacity) else [0])]
      plan = runs[0]['plan']
      row = dict(name=name, capacity=capacity, **runs[0])
      rows.append(row)
      if len(runs) > 1:
        runs[0] = dict(runs[0], row=row)
        seeded[name] = runs
      print(f'{setting["title"]} {name} capacity {capacity}: '
            + ', '.join(f'{100 * r["acc"]:.2f}%' for r in runs), flush=True)
    rows.append(dict(name='tfmot prune_low_magnitude, same per-layer density',
                     capacity=capacity, **_tfmot_run(setting, plan)))
  return rows, seeded


def _rows_table(rows, dense_acc):
  lines = ['| run | capacity | test accuracy | vs dense | final edge density '
           '(mask) | non-zero kernel weights | params kept (incl. biases) | '
           'events (grown / pruned edges) | at capacity from step | train s |',
           '|---|---|---|---|---|---|---|---|---|---|']
  for r in rows:
    cap = '-' if r['capacity'] is None else f'{100 * r["capacity"]:g}%'
    events = (f'{r["events"]} ({r["grown"]:,} / {r["pruned"]:,})'
              if 'events' in r else '-')
    lines.append(
        f'| {r["name"]} | {cap} | {100 * r["acc"]:.2f}% | '
        f'{100 * (r["acc"] - dense_acc):+.2f} | {100 * r["density"]:.2f}% | '
        f'{100 * r["nonzero_density"]:.2f}% | {r["kept"]:,} / '
        f'{r["params"]:,} ({100 * r["kept"] / r["params"]:.2f}%) | {events} | '
        f'{r.get("at_capacity") if r.get("at_capacity") is not None else "-"}'
        f' | {r["seconds"]:.0f} |')
  return '\n'.join(lines)


def overlap(seeded):
  """Pairwise Jaccard across seeds per variant, with the chance level."""
  from tfprune.methods import synthesis  # pylint: disable=g-import-not-at-top
  out = {}
  for name, runs in seeded.items():
    pairs = list(itertools.combinations(runs, 2))
    values = [synthesis.overlap(a['masks'], b['masks'], per_layer=True)
              for a, b in pairs]
    chance = [synthesis.chance(a['masks'], b['masks']) for a, b in pairs]
    layers = [k for k in values[0] if k != 'all']
    out[name] = dict(
        all=[v['all'] for v in values], chance=float(np.mean(chance)),
        layers={k: float(np.mean([v[k] for v in values])) for k in layers},
        acc=[r['acc'] for r in runs])
  return out


def _overlap_table(overlaps, seeds):
  layers = list(next(iter(overlaps.values()))['layers'])
  lines = [f'| run ({seeds} seeds) | test accuracy, mean +- std (min-max) | '
           'Jaccard of final edge sets, mean over seed pairs (min-max) | '
           'chance level | ' + ' | '.join(f'Jaccard {n}' for n in layers)
           + ' |', '|---|---|---|---|' + '---|' * len(layers)]
  for name, o in overlaps.items():
    acc = 100 * np.array(o['acc'])
    lines.append(
        f'| {name} | {acc.mean():.2f}% +- {acc.std():.2f} ({acc.min():.2f}-'
        f'{acc.max():.2f}) | {np.mean(o["all"]):.3f} ({min(o["all"]):.3f}-'
        f'{max(o["all"]):.3f}) | {o["chance"]:.3f} | '
        + ' | '.join(f'{o["layers"][n]:.3f}' for n in layers) + ' |')
  return '\n'.join(lines)


def _seed0(seeded, name):
  runs = seeded.get(name)
  return runs[0]['row'] if runs else None


def _findings(everything, overlap_capacity):
  """Plain statements computed from the numbers (no hand-written claims)."""
  lines, held, total = [], 0, 0
  for title, (rows, seeded) in everything.items():
    by = {(r['name'], r['capacity']): r for r in rows}
    parts = []
    for capacity in sorted({r['capacity'] for r in rows
                            if r['capacity'] is not None}):
      if math.isclose(capacity, overlap_capacity) and seeded:
        acc = lambda n: np.mean([r['acc'] for r in seeded[n]])
        how = f'mean of {len(seeded["strategic synthesis"])} seeds'
      else:
        acc = lambda n, c=capacity: by[(n, c)]['acc']
        how = 'seed 0'
      strategic, randomly = acc('strategic synthesis'), acc('random synthesis')
      pruning = acc('synthesis + pruning')
      tfmot = by[('tfmot prune_low_magnitude, same per-layer density',
                  capacity)]['acc']
      total += 1
      held += strategic >= randomly
      parts.append(
          f'at {100 * capacity:g}% ({how}) strategic {100 * strategic:.2f}% '
          f'vs random {100 * randomly:.2f}% '
          f'({100 * (strategic - randomly):+.2f} points), synthesis + '
          f'pruning {100 * pruning:.2f}%, tfmot {100 * tfmot:.2f}%')
    lines.append(f'- {title}: ' + '; '.join(parts) + '.')
    if seeded:
      o = overlap(seeded)
      lines.append(
          f'- {title}, overlap across seeds at {100 * overlap_capacity:g}%: '
          + ', '.join(f'{n} {np.mean(v["all"]):.3f}' for n, v in o.items())
          + f' (chance {o["random synthesis"]["chance"]:.3f}).')
  lines.insert(0, f'- Strategic >= random held in {held} of {total} '
               'model/capacity comparisons (the seed means count where '
               'there are seeds).')
  return lines


def _plot(results):
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4))
  styles = {'strategic synthesis': 'o-', 'random synthesis': 's--',
            'synthesis + pruning': '^-',
            'tfmot prune_low_magnitude, same per-layer density': 'x:'}
  for ax, (title, (rows, seeded)) in zip(np.atleast_1d(axes),
                                         results.items()):
    for name, style in styles.items():
      xs, ys, errs = [], [], []
      for row in sorted((r for r in rows if r['name'] == name),
                        key=lambda r: r['capacity']):
        runs = seeded.get(name) if row is _seed0(seeded, name) else [row]
        xs.append(100 * float(np.mean([r['density'] for r in runs])))
        accs = [100 * r['acc'] for r in runs]
        ys.append(float(np.mean(accs)))
        errs.append(float(np.std(accs)))
      ax.errorbar(xs, ys, yerr=errs, fmt=style, capsize=3, label=name)
    dense = next(r for r in rows if r['capacity'] is None)
    ax.axhline(100 * dense['acc'], color='grey', lw=0.8, ls='-.',
               label='dense')
    ax.set_title(title)
    ax.set_xlabel('final edge density of the kernels (%)')
    ax.set_ylabel('MNIST test accuracy (%)')
    ax.legend(fontsize=7)
  return fig


def model_settings(ctx):
  """One run setting per model of ``config.models`` (data, builder, budgets,
  schedule), as the rows of this study and of synthesis_variants use."""
  import tfprune  # pylint: disable=g-import-not-at-top
  c = ctx.config
  (x, y), _, test = ctx.load(c.data)
  steps = math.ceil(len(x) / c.batch_size)
  out = []
  for name in c.models.split(','):
    spec = c.specs[name]
    hidden = tuple(spec.hidden)
    out.append(dict(
        title=spec.title,
        build=lambda hidden=hidden, shape=x.shape[1:]: tfprune.models.mlp(
            shape, hidden),
        hidden=hidden, train=(x, y), test=test, epochs=spec.epochs,
        steps_per_epoch=steps, batch=c.batch_size, lr=c.learning_rate,
        method_kwargs=dict(initial_density=c.initial_density,
                           growth=c.growth, prune_ratio=c.prune_ratio,
                           origin_fraction=c.origin_fraction),
        grow_every=spec.grow_every,
        end_step=int(spec.epochs * steps * c.events_until)))
  return out


def run(ctx):
  c = ctx.config
  settings = model_settings(ctx)
  started = time.time()
  everything = {}
  for setting in settings:
    everything[setting['title']] = _run_model(
        setting, c.capacities, c.overlap_capacity, c.seeds)
  minutes = (time.time() - started) / 60
  ctx.plot(_plot, PLOT, {f'{s["title"]} ({s["epochs"]} epochs)': everything[s['title']]
         for s in settings})
  x, test = settings[0]['train'][0], settings[0]['test'][0]
  lines = [
      'Inspired by, not a reproduction of, "Synthesis and Pruning as a '
      'Dynamic Compression Strategy for Efficient Deep Neural Networks" '
      '(arXiv 2011.11358): the paper gives no datasets, rule details or '
      'numbers, so the algorithm is tfprune\'s documented reconstruction '
      '(tfprune/methods/synthesis.py, docs/METHODS.md, Synthesis). Setting: '
      f'{harness.describe_data(c.data)} ({len(x):,} train / {len(test):,} '
      f'test), Adam {c.learning_rate:g}, batch {c.batch_size}; every '
      'Dense kernel (the classifier too) is masked; the start is '
      f'{100 * c.initial_density:g}% of all '
      'kernel edges drawn at random, split over the layers with the '
      'Erdos-Renyi rule, as is the capacity. At each event every layer grows '
      f'{100 * c.growth:g}% of its capacity in edges (initialised to 0, '
      'optimizer state reset); strategic growth starts from the top '
      f'{100 * c.origin_fraction:g}% of input units by '
      '|w| of their active outgoing edges and picks endpoints with '
      'probability Phi(z) of their mean incoming |w|; random growth picks '
      'absent edges uniformly. "synthesis + pruning" also prunes the weakest '
      f'edges ({c.prune_ratio:g} times as many as it grows below capacity, '
      'as many at capacity), so it reaches the capacity later and then '
      f'recycles edges. Events stop after {c.events_until:.3g} of the steps; '
      'the rest trains the final topology. tfmot prune_low_magnitude gets '
      'each layer\'s capacity as its final density: dense training for half '
      'the epochs, then PolynomialDecay pruning (over two thirds of the '
      'remaining steps) while fine-tuning at half the learning rate. "final '
      'edge density" counts mask entries; "non-zero kernel weights" is lower '
      'where a grown edge never left 0 (e.g. from an always-black border '
      f'pixel). Total benchmark time {minutes:.0f} min.', '']
  for s in settings:
    rows, seeded = everything[s['title']]
    dense_acc = rows[0]['acc']
    lines += [
        f'### {s["title"]}, {s["epochs"]} epochs', '',
        f'{s["steps_per_epoch"]} steps per epoch; an event every '
        f'{s["grow_every"]} steps until step {s["end_step"]}. Rows are seed '
        '0; the seed runs are in the next table.', '',
        _rows_table(rows, dense_acc), '']
    if seeded:
      lines += [f'Seeds at capacity {100 * c.overlap_capacity:g}%: '
                'accuracy spread and overlap of the final edge sets '
                '(Jaccard |A and B| / |A or B| between the runs of two '
                'seeds, with different initial masks, weights and data '
                'order; the chance level is the expected Jaccard of '
                'independent random edge sets with the same per-layer '
                'counts, d/(2-d) for density d).', '',
                _overlap_table(overlap(seeded), c.seeds), '']
  lines += [f'![test accuracy against final density]({PLOT})', '',
            '(Points: seed 0, or the mean and std over the seeds where '
            'there are several.)', '', '### Findings (computed from the '
            'numbers above)', ''] + _findings(everything, c.overlap_capacity)
  return ('Synthesis and Pruning (inspired by Finlinson & Moschoyiannis '
          '2020): ' + ' and '.join(s['title'] for s in settings) + ' on '
          'MNIST', '\n'.join(lines))


if __name__ == '__main__':
  harness.main(sys.modules[__name__])
