"""Small-World pruning: LeNet-5/MNIST at 2.3% and VGG-16 at 9.02% of params.

LeNet-5 (E epochs at the base LR, then F at a 10x lower one, batch 64,
official MNIST files), all rows with the same 2.3% budget and the same
number of epochs:
  * dense: the unpruned model, same schedule (the baseline);
  * Small-World, p chosen by sigma (masks fixed before training), on
    ``lenet.seeds``;
  * the same with the index-order lattice (tfprune's earlier lattice);
  * Small-World + stage-3 prune-and-regrow (when ``lenet.regrow_fraction``
    > 0: that fraction of edges every ``regrow_every`` steps of the final
    epochs);
  * random: the same per-layer edge counts, edges drawn at random (p=1),
    on ``lenet.seeds``;
  * tfmot prune_low_magnitude at the same per-layer kernel sparsity for
    the same parameter count: dense pre-training for half the epochs, then
    PolynomialDecay pruning while fine-tuning for the other half.
VGG-16 (BatchNorm) at 9.02%: CIFAR-10 is not available offline, so the
substitute is Fashion-MNIST zero-padded to 32x32 (one channel) at a stated
width and epoch count: dense vs Small-World vs random.

    python -m benchmarks.small_world --data_dir=../shared/data

With ``--config.section=small_world_rewiring`` it writes that section
instead: LeNet-5 only, stage 3 as gradient-guided rewiring from the start
(RigL's rule: every ``rewiring.every`` steps each layer drops its weakest
edges and grows the absent ones with the largest loss gradient on
``rewiring.batch`` training examples; the fraction decays by a cosine from
``rewiring.fraction`` to 0 at ``rewiring.end`` of training), on the
Small-World graph and on random masks, over ``lenet.seeds``.
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np

from benchmarks import harness

PLOT = 'small_world_sigma.png'


def get_config():
  return harness.config(
      section='small_world', seed=0,
      lenet=dict(data=harness.data_config('mnist'), density=0.023,
                 epochs=12, final_epochs=4, learning_rate=1e-3,
                 final_learning_rate=1e-4, batch_size=64,
                 seeds=[0, 1, 2], regrow_fraction=0.0, regrow_every=200,
                 tfmot_frequency=100,
                 rewiring=dict(fraction=0.3, every=100, end=0.75,
                               batch=1024)),
      vgg=dict(data=harness.data_config('fashion_mnist', image_size=32),
               density=0.0902, width=0.25, epochs=4, final_epochs=1,
               learning_rate=1e-3, final_learning_rate=1e-4,
               batch_size=128),
      smoke=dict(
          lenet=dict(data=dict(train_examples=64, test_examples=200),
                     epochs=1, final_epochs=1, seeds=[0],
                     rewiring=dict(every=1, batch=32)),
          vgg=dict(data=dict(train_examples=16, test_examples=100),
                   width=0.125, epochs=1, final_epochs=1, batch_size=16)))


def fit_stages(model, data, s, callbacks=list):
  """Train ``s.epochs`` at its LR then ``s.final_epochs`` at the lower one."""
  for n, rate in ((s.epochs, s.learning_rate),
                  (s.final_epochs, s.final_learning_rate)):
    if n:
      harness.fit(model, data, n, harness.optimizer('adam', rate),
                  s.batch_size, callbacks(), metrics=['accuracy'])
  return model


def _export(ctx, pruned, x_test, y_test):
  """Strip, shrink, convert and check; returns facts for the table."""
  import tfprune  # pylint: disable=g-import-not-at-top
  import tflite_export  # pylint: disable=g-import-not-at-top
  rep = tfprune.report(pruned)
  stripped = tfprune.strip(pruned)
  shrunk, plan = tfprune.shrink(stripped, return_plan=True)
  path = ctx.tflite(shrunk)['path']
  checked = tflite_export.check(path, rep, plan=plan)
  return {'check': 'ok' if checked.ok else 'FAILED: ' + '; '.join(
      checked.failures),
          'tflite_acc': tflite_export.evaluate(path, x_test, y_test),
          'shrunk_params': tfprune.report(shrunk)['totals']['params']}


def row(name, model, x_test, y_test, started, **extra):
  import tfprune  # pylint: disable=g-import-not-at-top
  totals = tfprune.report(model)['totals']
  return dict(name=name, acc=harness.accuracy(model, x_test, y_test),
              kept=totals['nonzero_params'], params=totals['params'],
              seconds=time.time() - started, **extra)


def _small_world_rows(ctx, build, s, data, test, seed, seeds=None,
                      regrow_steps=None, index_lattice=False):
  """Small-World (auto p) and the random control over ``seeds`` (the
  headline rows); optionally the index-order lattice and stage-3 regrow on
  ``seed`` only."""
  from tfprune import schedules  # pylint: disable=g-import-not-at-top
  seeds = list(seeds or [seed])
  variants = [('Small-World (p by max sigma)', {}, None, seeds)]
  if index_lattice:
    variants.append(('Small-World, index-order lattice (before)',
                     {'lattice': 'index'}, None, [seed]))
  if regrow_steps and s.regrow_fraction:
    begin, every = regrow_steps
    variants.append((
        'Small-World + stage-3 prune-and-regrow '
        f'({100 * s.regrow_fraction:g}%)',
        {'regrow_fraction': s.regrow_fraction},
        schedules.Periodic(begin, frequency=every), [seed]))
  variants.append(('random, same per-layer densities (p=1)',
                   {'rewire_p': 1.0}, None, seeds))
  return _run_variants(ctx, build, s, data, test, variants)


def _run_variants(ctx, build, s, data, test, variants, validation=None):
  """One merged row per ``(name, SmallWorld kwargs, schedule, seeds)``;
  with a non-empty ``validation`` split each row also has its accuracy
  there (``val_acc``, ``val_accs``)."""
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  import tfprune  # pylint: disable=g-import-not-at-top
  SmallWorld = tfprune.methods.SmallWorld  # pylint: disable=invalid-name
  rows = []
  for name, kwargs, schedule, run_seeds in variants:
    runs = []
    for run_seed in run_seeds:
      keras.utils.set_random_seed(run_seed)
      started = time.time()
      method = SmallWorld(s.density, seed=run_seed, **kwargs)
      pruned = tfprune.prune(build(), method, schedule)
      info = dict(method.topology)
      fit_stages(pruned, data, s, callbacks=harness.pruning_step)
      extra = ({'val_acc': harness.accuracy(pruned, *validation)}
               if validation is not None and len(validation[0]) else {})
      runs.append(row(name, pruned, *test, started, info=info, **extra,
                       moved=method.topology['regrown_edges'],
                       events=method.topology['regrow_events'],
                       **_export(ctx, pruned, *test)))
    rows.append(_merge(runs, run_seeds))
  return rows


def _merge(runs, seeds):
  """One row for the runs of one variant: mean accuracy, the per-seed list."""
  row = dict(runs[0])
  accs = [r['acc'] for r in runs]
  row.update(acc=float(np.mean(accs)), accs=accs, seeds=list(seeds),
             seconds=float(np.mean([r['seconds'] for r in runs])),
             tflite_acc=float(np.mean([r['tflite_acc'] for r in runs])),
             check='ok' if all(r['check'] == 'ok' for r in runs) else
             '; '.join(r['check'] for r in runs if r['check'] != 'ok'))
  if 'val_acc' in row:
    row['val_accs'] = [r['val_acc'] for r in runs]
    row['val_acc'] = float(np.mean(row['val_accs']))
  return row


def _accuracy_cell(r):
  return harness.spread(r.get('accs') or [r['acc']])


def results_table(rows, dense_acc):
  cells = []
  for r in rows:
    info = r.get('info') or {}
    sw = info.get('small_world') or {}
    sigma = (f'{sw["sigma"]:.2f} ({sw["clustering"] / sw["random_clustering"]:.2f}'
             f', {sw["path_length"] / sw["random_path_length"]:.2f})'
             if sw else '-')
    cells.append([
        r['name'] + (f' [seeds {", ".join(map(str, r["seeds"]))}]'
                     if len(r.get('seeds', [])) > 1 else ''),
        _accuracy_cell(r),
        '-' if dense_acc is None else f'{100 * (r["acc"] - dense_acc):+.2f}',
        f'{r["kept"]:,} / {r["params"]:,} '
        f'({100 * r["kept"] / r["params"]:.2f}%)',
        info.get('rewire_p', '-'), sigma,
        f'{r["shrunk_params"]:,}' if 'shrunk_params' in r else '-',
        r.get('check', '-'),
        f'{100 * r["tflite_acc"]:.2f}%' if 'tflite_acc' in r else '-',
        f'{r["seconds"]:.0f}'])
  header = ['model', 'test accuracy', 'vs dense', 'params kept', 'p',
            'sigma (C/C_rand, L/L_rand)', 'shrunk params', '.tflite check',
            '.tflite accuracy', 'train s (per run)']
  if any('val_accs' in r for r in rows):   # a validation split was held out
    header.insert(1, 'validation accuracy')
    for r, line in zip(rows, cells):
      line.insert(1, harness.spread(r['val_accs']) if 'val_accs' in r
                  else '-')
  return harness.table(header, cells)


def density_table(info):
  return harness.table(
      ['layer', 'edges kept / possible', 'density', 'params per edge'],
      [[name, f'{layer["edges"]:,} / {layer["possible"]:,}',
        f'{100 * layer["density"]:.2f}%', layer['params_per_edge']]
       for name, layer in info['layers'].items()])


def _plot(grids):
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(grids), figsize=(5 * len(grids), 3.6))
  for ax, (title, (grid, chosen)) in zip(np.atleast_1d(axes), grids.items()):
    p = np.array([max(g['p'], 3e-4) for g in grid])
    rand = grid[-1]
    ax.semilogx(p, [g['sigma'] for g in grid], 'o-', label='sigma')
    ax.semilogx(p, [g['C'] / rand['C'] for g in grid], 's--',
                label='C / C(p=1)')
    ax.semilogx(p, [g['L'] / rand['L'] for g in grid], '^--',
                label='L / L(p=1)')
    ax.axvline(max(chosen, 3e-4), color='grey', lw=0.8)
    ax.set_title(title)
    ax.set_xlabel('rewiring probability p (p=0 drawn at 3e-4)')
    ax.legend(fontsize=8)
  return fig


def _tfmot_row(s, train, test):
  """tfmot at the same parameter count: biases are not pruned by tfmot, so
  the kernels keep the budget minus the biases, at one per-layer
  sparsity."""
  import tensorflow_model_optimization as tfmot  # pylint: disable=g-import-not-at-top
  import tfprune  # pylint: disable=g-import-not-at-top
  started = time.time()
  model = tfprune.models.lenet5()
  kernels = sum(int(np.prod(l.kernel.shape)) for l in model.layers
                if hasattr(l, 'kernel'))
  budget = round(s.density * model.count_params())
  sparsity = 1 - (budget - (model.count_params() - kernels)) / kernels
  total = s.epochs + s.final_epochs
  half = total // 2
  harness.fit(model, train, half, harness.optimizer('adam', s.learning_rate),
              s.batch_size, metrics=['accuracy'])
  steps_per_epoch = math.ceil(len(train[0]) / s.batch_size)
  schedule = tfprune.schedules.PolynomialDecay(
      0.0, sparsity, 0, max(1, int((total - half) * steps_per_epoch * 2 / 3)),
      frequency=s.tfmot_frequency)
  tfmot_model = tfmot.sparsity.keras.prune_low_magnitude(
      model, pruning_schedule=schedule)
  harness.fit(tfmot_model, train, total - half,
              harness.optimizer('adam', s.learning_rate / 2), s.batch_size,
              [tfmot.sparsity.keras.UpdatePruningStep()],
              metrics=['accuracy'])
  return row(
      f'tfmot prune_low_magnitude ({100 * sparsity:.2f}% of every kernel)',
      tfmot.sparsity.keras.strip_pruning(tfmot_model), *test, started), half


def rewiring_rows(ctx, l, train, test, build=None, validation=None,
                  graphs=('small_world', 'random'), **method_kwargs):
  """One row per graph in ``graphs``, with gradient-guided rewiring, over
  ``l.seeds``: 'small_world' (p by max sigma) and 'random' (p=1). The
  ``method_kwargs`` go to every SmallWorld; ``build()``, called after
  seeding, gives the model to prune (a fresh LeNet-5 by default);
  ``validation`` as in ``_run_variants``. Returns (rows, the rewiring in
  words: a lower-case clause saying what moves when)."""
  import tfprune  # pylint: disable=g-import-not-at-top
  r = l.rewiring
  steps = (l.epochs + l.final_epochs) * math.ceil(len(train[0]) /
                                                  l.batch_size)
  end = max(int(r.end * steps), r.every + 1)
  schedule = tfprune.schedules.Periodic(r.every, end, frequency=r.every)
  kwargs = dict(regrow_fraction=r.fraction, regrow='gradient',
                regrow_anneal='cosine', regrow_data=train,
                regrow_batch=r.batch, **method_kwargs)
  known = {'small_world': ('Small-World (p by max sigma) + gradient '
                           'rewiring', kwargs),
           'random': ('random masks (p=1) + gradient rewiring',
                      dict(kwargs, rewire_p=1.0))}
  variants = [known[g] + (schedule, list(l.seeds)) for g in graphs]
  rows = _run_variants(ctx, build or tfprune.models.lenet5, l, train, test,
                       variants, validation)
  prose = (
      'the masks move during training '
      f'(SmallWorld(regrow="gradient", regrow_anneal="cosine")): every '
      f'{r.every} steps from step {r.every} to {end} (of {steps}), each '
      'layer drops its weakest edges (L1 of the edge\'s weights) and grows '
      'as many absent ones with the largest |dLoss/dw| on '
      f'{r.batch} training examples; the fraction starts at '
      f'{100 * r.fraction:g}% and decays by a cosine to 0 (RigL\'s rule, '
      'Evci et al. 2020). The budget and per-layer edge counts never '
      'change. Rows are the mean +- sample standard deviation over the '
      'seeds (per-seed accuracies in brackets).')
  return rows, prose


def lenet_setting(l, train, test) -> str:
  """The LeNet-5 schedule in words, for the rewiring sections."""
  return (f'LeNet-5 on MNIST at {100 * l.density:g}% of the parameters, '
          f'{harness.describe_data(l.data)} ({len(train[0]):,} train / '
          f'{len(test[0]):,} test), Adam, batch {l.batch_size}, {l.epochs} '
          f'epochs at {l.learning_rate:g} then {l.final_epochs} at '
          f'{l.final_learning_rate:g}')


def _rewiring(ctx, l, train, test):
  """The small_world_rewiring section: gradient-guided rewiring on the
  Small-World graph and on random masks."""
  rows, prose = rewiring_rows(ctx, l, train, test)
  pct = f'{100 * l.density:g}%'
  lines = [
      lenet_setting(l, train, test) + ': the schedule, budget and seeds of '
      'the Small-World section, whose static rows (masks fixed before '
      'training) are the comparison. Here ' + prose, '',
      results_table(rows, None), '',
      'Rewiring events per run: ' + ', '.join(
          f'{r["name"]}: {r["events"]} events, {r["moved"]:,} edge moves'
          for r in rows) + ' (seed ' + str(l.seeds[0]) + ').', '',
      'The dense row ("vs dense") is in the Small-World section: same '
      'schedule and data.']
  return (f'Small-World: gradient-guided rewiring on LeNet-5 at {pct}',
          '\n'.join(lines))


def run(ctx):
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  import tfprune  # pylint: disable=g-import-not-at-top
  c, l, v = ctx.config, ctx.config.lenet, ctx.config.vgg
  keras.utils.set_random_seed(c.seed)
  train, _, test = ctx.load(l.data)
  if c.section == 'small_world_rewiring':
    return _rewiring(ctx, l, train, test)
  steps_per_epoch = math.ceil(len(train[0]) / l.batch_size)

  started = time.time()
  dense = fit_stages(tfprune.models.lenet5(), train, l)
  lenet_rows = [row('dense (no pruning)', dense, *test, started)]
  lenet_rows += _small_world_rows(
      ctx, tfprune.models.lenet5, l, train, test, c.seed, seeds=l.seeds,
      regrow_steps=(l.epochs * steps_per_epoch + 1, l.regrow_every),
      index_lattice=True)
  tfmot_row, half = _tfmot_row(l, train, test)
  lenet_rows.append(tfmot_row)

  vtrain, _, vtest = ctx.load(v.data)
  build_vgg = lambda: tfprune.models.vgg16(vtrain[0].shape[1:], 10,
                                           width=v.width, batch_norm=True)
  started = time.time()
  vdense = fit_stages(build_vgg(), vtrain, v)
  vgg_rows = [row('dense (no pruning)', vdense, *vtest, started)]
  vgg_rows += _small_world_rows(ctx, build_vgg, v, vtrain, vtest, c.seed)

  lenet_info, vgg_info = lenet_rows[1]['info'], vgg_rows[1]['info']
  lenet_pct = f'{100 * l.density:g}%'
  vgg_pct = f'{100 * v.density:g}%'
  ctx.plot(_plot, PLOT, {f'LeNet-5 ({lenet_pct})': (lenet_info['grid'],
                                    lenet_info['rewire_p']),
         f'VGG-16 width {v.width:g} ({vgg_pct})': (vgg_info['grid'],
                                                   vgg_info['rewire_p'])})
  total = l.epochs + l.final_epochs
  lines = [
      f'### LeNet-5 on MNIST, {lenet_pct} of the parameters', '',
      f'Setting: LeNet-5 (Caffe 20-50-500-10, {lenet_rows[0]["params"]:,} '
      f'params), {harness.describe_data(l.data)} ({len(train[0]):,} train / '
      f'{len(test[0]):,} test), Adam, batch {l.batch_size}, {l.epochs} '
      f'epochs at {l.learning_rate:g} then {l.final_epochs} at '
      f'{l.final_learning_rate:g} for the dense and Small-World rows; '
      f'the tfmot row trains dense for {half} epochs at '
      f'{l.learning_rate:g}, then prunes while fine-tuning for '
      f'{total - half} at {l.learning_rate / 2:g} (PolynomialDecay '
      'over the first two thirds of those steps, frequency '
      f'{l.tfmot_frequency}). Same total epochs. '
      + (f'The regrow row prunes and regrows {100 * l.regrow_fraction:g}% '
         f'of the edges every {l.regrow_every} steps of the final epochs. '
         if l.regrow_fraction else
         'No stage-3 prune-and-regrow row (lenet.regrow_fraction=0). ')
      + f'Rows marked with seeds are the mean +- sample standard deviation '
      f'of those seeds (per-seed accuracies in brackets; the seed sets the '
      'initial weights, the data order and the masks); the other rows use '
      f'seed {c.seed}: for them differences of ~0.1-0.2 points are noise. '
      'The index-order row is the lattice tfprune built before the channel '
      'order (each ip1 unit reads several channels at one position). '
      'Small-World rows are '
      'stripped, shrunk (units with no edges removed), converted to float '
      '.tflite and checked against the report and shrink plan.', '',
      results_table(lenet_rows, lenet_rows[0]['acc']), '',
      'Per-layer budget (the same for the Small-World and random rows):', '',
      density_table(lenet_info), '',
      f'### VGG-16 (BatchNorm), {vgg_pct} of the parameters, substitute '
      'setting', '',
      f'{harness.substitute(v.data)}, VGG-16 at width {v.width:g} '
      f'({vgg_rows[0]["params"]:,} params), {v.epochs} epochs at '
      f'{v.learning_rate:g} then {v.final_epochs} at '
      f'{v.final_learning_rate:g}, Adam, batch {v.batch_size}. '
      'Not the paper\'s setting (full-width VGG-16 on CIFAR-10, schedule '
      f'unknown); it shows the method runs at the {vgg_pct} budget on a '
      '16-layer network and how it compares with a random graph of the same '
      'layer densities.', '',
      results_table(vgg_rows, vgg_rows[0]['acc']), '',
      density_table(vgg_info), '',
      f'![sigma against p]({PLOT})', '',
      'sigma = (C/C_rand)/(L/L_rand) on the layered graph (nodes: channel '
      'groups, a Flatten\'s inputs merged into their channel; C: bipartite '
      'clustering, Latapy "dot"), against two equal-density random graphs '
      '(p=1). The vertical line marks the p chosen.']
  return (f'Small-World: LeNet-5 at {lenet_pct} and VGG-16 at {vgg_pct} of '
          'the parameters', '\n'.join(lines))


if __name__ == '__main__':
  harness.main(sys.modules[__name__])
