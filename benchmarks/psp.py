"""PSP (weight decay on structure parameters) vs L1-norm structure pruning.

Accuracy against structure sparsity for column and filter pruning on
LeNet-5/MNIST and on ResNet-20 in a substitute setting (Fashion-MNIST
zero-padded to 32x32, a stated training subset), all with SGD(momentum 0.9)
and Caffe-style weight decay on the kernels (the paper's training has it):

* PSP: trained from scratch, one run per decay strength lambda on alpha; the
  epsilon threshold (straight-through) applies from step 0, masks freeze
  after ``epochs`` epochs, then ``finetune`` epochs with frozen masks. The
  sparsity is learned, so each run gives one point.
* L1 norm: a dense model trained ``epochs`` epochs, then per layer the
  structures with the smallest L1 norm pruned one-shot (``Magnitude``),
  then ``finetune`` epochs: at fixed sparsities, uniform over the layers (the
  paper's baseline), and at each PSP run's own per-layer sparsities from the
  same seed's dense model (a paired control: same layer budget, L1 ranking).

Same epochs for every point; the dense row is the model after ``epochs``.
Each structure runs over its own list of seeds (the headline structure over
three); a seed fixes the initialisation and batch order of a run.

    python -m benchmarks.psp --data_dir=../shared/data
"""

from __future__ import annotations

import sys
import time
from typing import Dict

from absl import logging
import numpy as np

from benchmarks import harness

PLOT = 'psp.png'
L1 = 'L1 norm'
MATCHED = 'L1 norm, PSP per-layer sparsity'


def get_config():
  return harness.config(
      section='psp', momentum=0.9, finetune=1, finetune_lr_divisor=10,
      sparsities=[0.25, 0.5, 0.75, 0.9],
      lenet=dict(data=harness.data_config('mnist'), layers='conv1,conv2,ip1',
                 epochs=6, batch_size=64, learning_rate=0.02,
                 weight_decay=5e-4, structures='column,filter',
                 seeds=dict(column=[0, 1, 2], filter=[0]),
                 decays=[1e-2, 2e-2, 4e-2]),
      resnet=dict(data=harness.data_config('fashion_mnist', image_size=32,
                                           train_examples=12000),
                  layers='Conv2D', epochs=3, batch_size=32,
                  learning_rate=0.02, weight_decay=1e-4, structures='column',
                  seeds=dict(column=[0]), decays=[2e-2, 5e-2, 1e-1]),
      smoke=dict(
          sparsities=[0.5],
          lenet=dict(data=dict(train_examples=64, test_examples=200),
                     epochs=1, structures='filter', seeds=dict(filter=[0]),
                     decays=[1e-1]),
          resnet=dict(data=dict(train_examples=32, test_examples=100),
                      epochs=1, decays=[1e-1])))


def _aggregate(runs):
  """One row per (method, structure, setting), in first-run order: the
  mean of every number and the per-seed accuracies."""
  rows = {}
  for run in runs:
    rows.setdefault((run['method'], run['structure'], run['setting']),
                    []).append(run)
  merged = []
  for group in rows.values():
    row = dict(group[0])
    for key in ('sparsity', 'weights_kept', 'accuracy', 'shrunk_params',
                'seconds'):
      row[key] = float(np.mean([r[key] for r in group]))
    row['accuracies'] = [r['accuracy'] for r in group]
    row['sparsities'] = [r['sparsity'] for r in group]
    merged.append(row)
  return merged


class Setting:
  """One network, data and SGD recipe; runs every point for every seed."""

  def __init__(self, name, build, s, train, test, c):
    import tf_keras as keras  # pylint: disable=g-import-not-at-top
    self.name, self.s, self.c = name, s, c
    self.build = lambda: harness.with_weight_decay(build(), s.weight_decay)
    self.layers = (keras.layers.Conv2D if s.layers == 'Conv2D'
                   else s.layers.split(','))
    self.train, self.test = train, test
    self.runs = []
    self.alphas = {}
    self.dense = {}

  @property
  def rows(self):
    return _aggregate(self.runs)

  def fit(self, model, epochs, lr=None):
    return harness.fit(model, self.train, epochs, harness.optimizer(
        'sgd', lr or self.s.learning_rate, self.c.momentum),
                       self.s.batch_size, harness.pruning_step())

  def finetune(self, model):
    return self.fit(model, self.c.finetune,
                    self.s.learning_rate / self.c.finetune_lr_divisor)

  def record(self, method, structure, setting, seed, model, started):
    import tfprune  # pylint: disable=g-import-not-at-top
    stripped = tfprune.strip(model)
    shrunk = tfprune.shrink(stripped)
    rep = tfprune.report(stripped)['totals']
    run = {'method': method, 'structure': structure, 'setting': setting,
           'seed': seed, 'sparsity': harness.structure_sparsity(model),
           'weights_kept': 1 - rep['weight_sparsity'],
           'accuracy': harness.accuracy(model, *self.test),
           'shrunk_params': tfprune.report(shrunk)['totals']['params'],
           'seconds': time.time() - started}
    self.runs.append(run)
    logging.warning('psp %s: %s', self.name, run)
    return run

  def dense_model(self, seed):
    """The dense model of ``seed`` after ``epochs`` (trained once)."""
    import tf_keras as keras  # pylint: disable=g-import-not-at-top
    import tfprune  # pylint: disable=g-import-not-at-top
    if seed not in self.dense:
      keras.utils.set_random_seed(seed)
      started = time.time()
      model = self.fit(self.build(), self.s.epochs)
      self.dense[seed] = model
      self.runs.append({
          'method': 'dense', 'structure': '-', 'setting': '-', 'seed': seed,
          'sparsity': 0.0, 'weights_kept': 1.0,
          'accuracy': harness.accuracy(model, *self.test),
          'shrunk_params': tfprune.report(model)['totals']['params'],
          'seconds': time.time() - started})
    return self.dense[seed]

  def l1(self, structure, seed, sparsity, setting):
    """L1-norm pruning of the dense model of ``seed``, one-shot, then
    fine-tuning: ``sparsity`` a float (every wrapped layer) or ``{layer:
    sparsity}`` (layer by layer, so the structures must not be coupled
    across layers: columns, or the filters of a plain chain)."""
    import tf_keras as keras  # pylint: disable=g-import-not-at-top
    import tfprune  # pylint: disable=g-import-not-at-top
    from tfprune.methods import Magnitude  # pylint: disable=g-import-not-at-top
    method = lambda: Magnitude(structure.replace('filter', 'channel'))
    model = self.dense_model(seed)
    keras.utils.set_random_seed(1000 + seed)
    started = time.time()
    if isinstance(sparsity, dict):
      name = MATCHED
      # Every row fine-tunes a copy: the dense model is shared by every row
      # of its seed, so where PSP pruned nothing one layer is wrapped at 0.
      chosen = ({l: f for l, f in sparsity.items() if f > 0} or
                dict(list(sparsity.items())[:1]))
      for layer, fraction in chosen.items():
        model = tfprune.prune(model, method(), schedule=fraction,
                              layers=[layer])
    else:
      name = L1
      model = tfprune.prune(model, method(), schedule=sparsity,
                            layers=self.layers)
    return self.record(name, structure, setting, seed, self.finetune(model),
                       started)

  def run(self):
    import tf_keras as keras  # pylint: disable=g-import-not-at-top
    import tfprune  # pylint: disable=g-import-not-at-top
    from tfprune.methods import PSP  # pylint: disable=g-import-not-at-top
    s = self.s
    steps = s.epochs * int(np.ceil(len(self.train[0]) / s.batch_size))
    for structure in s.structures.split(','):
      seeds = list(s.seeds[structure])
      for seed in seeds:
        for sparsity in self.c.sparsities:
          self.l1(structure, seed, sparsity, f'{sparsity:g}')
      for decay in s.decays:
        for seed in seeds:
          keras.utils.set_random_seed(seed)
          started = time.time()
          pruned = tfprune.prune(
              self.build(), PSP(structure, weight_decay=decay,
                                freeze_step=steps), layers=self.layers)
          self.fit(pruned, s.epochs)
          if seed == seeds[0]:
            self.alphas[(structure, decay)] = np.concatenate([
                np.abs(np.asarray(w.gates[0])).ravel()
                for w in tfprune.wrapper.collect_wrappers(pruned)])
          self.record('PSP', structure, f'lambda {decay:g}', seed,
                      self.finetune(pruned), started)
          self.l1(structure, seed, matched_sparsities(pruned),
                  f'as PSP lambda {decay:g}')


def matched_sparsities(model) -> Dict[str, float]:
  """``{layer: sparsity}`` for L1 to match ``model`` layer by layer; a
  layer ``model`` emptied keeps one structure under L1, since tfprune
  refuses a sparsity of 1 (the L1 row's measured sparsity shows it)."""
  return {name: min(zero, total - 1) / total
          for name, (zero, total) in harness.structure_counts(model).items()}


def _table(setting) -> str:
  return harness.table(
      ['method', 'structure', 'setting', 'seeds', 'structures pruned',
       'weights kept', 'test acc.', 'params after shrink', 'train s'],
      [[r['method'], r['structure'], r['setting'], str(len(r['accuracies'])),
        harness.spread(r['sparsities']),
        f'{100 * r["weights_kept"]:.1f}%', harness.spread(r['accuracies']),
        f'{r["shrunk_params"]:,.0f}', f'{r["seconds"]:.0f}']
       for r in setting.rows])


def _curve_at(runs, structure, seed, sparsity):
  """The uniform L1 accuracy of ``seed`` at ``sparsity``, interpolated
  linearly between the measured sparsities (the dense model at 0)."""
  points = sorted([(0.0, r['accuracy']) for r in runs
                   if r['method'] == 'dense' and r['seed'] == seed] +
                  [(r['sparsity'], r['accuracy']) for r in runs
                   if r['method'] == L1 and r['structure'] == structure and
                   r['seed'] == seed])
  return float(np.interp(sparsity, *zip(*points)))


def comparison(setting) -> str:
  """PSP minus L1 per PSP point, paired by seed: against the uniform L1
  curve at PSP's structure sparsity, and against L1 at PSP's per-layer
  sparsities."""
  cells = []
  psp = [r for r in setting.runs if r['method'] == 'PSP']
  for row in _aggregate(psp):
    runs = [r for r in psp if r['setting'] == row['setting'] and
            r['structure'] == row['structure']]
    uniform = [r['accuracy'] - _curve_at(setting.runs, r['structure'],
                                         r['seed'], r['sparsity'])
               for r in runs]
    matched = [r['accuracy'] - next(
        m['accuracy'] for m in setting.runs if m['method'] == MATCHED and
        m['structure'] == r['structure'] and m['seed'] == r['seed'] and
        m['setting'] == 'as PSP ' + r['setting']) for r in runs]
    cells.append([row['structure'], row['setting'],
                  f'{100 * row["sparsity"]:.1f}%',
                  harness.spread(uniform, ' pts'),
                  harness.spread(matched, ' pts')])
  return harness.table(
      ['structure', 'PSP setting', 'structures pruned (mean)',
       'PSP - uniform L1 at the same sparsity',
       'PSP - L1 at PSP per-layer sparsity'], cells)


def _plot(settings):
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 3, figsize=(11.5, 3.3))
  for ax, setting in zip(axes[:2], settings):
    rows = setting.rows
    ax.axhline(100 * rows[0]['accuracy'], color='grey', ls='--',
               label='dense')
    for method, style in (('PSP', '-^'), (L1, '--o'), (MATCHED, 'x')):
      for structure in setting.s.structures.split(','):
        chosen = sorted((r for r in rows if r['method'] == method and
                         r['structure'] == structure),
                        key=lambda r: r['sparsity'])
        ax.errorbar([100 * r['sparsity'] for r in chosen],
                    [100 * r['accuracy'] for r in chosen],
                    yerr=[100 * np.std(r['accuracies']) for r in chosen],
                    fmt=style, capsize=2,
                    label=f'{method.replace(", PSP", " at PSP")} {structure}')
    harness.label(ax, 'structures pruned (%)', 'test accuracy (%)',
                  setting.name, legend=6)
  ax = axes[2]
  bins = np.linspace(-6, 1, 36)
  for setting in settings:
    for (structure, decay), alpha in setting.alphas.items():
      if structure == 'column':
        ax.hist(np.log10(alpha + 1e-7), bins=bins, histtype='step',
                label=f'{setting.name.split()[0]} lambda {decay:g}')
  ax.axvline(-2, color='grey', ls=':')
  harness.label(ax, 'log10 |alpha| at the freeze (column PSP)', 'structures',
                'alpha distribution (epsilon dotted)', legend=6)
  return fig


def run(ctx):
  import tfprune  # pylint: disable=g-import-not-at-top
  from tfprune.methods import PSP  # pylint: disable=g-import-not-at-top
  c, l, r = ctx.config, ctx.config.lenet, ctx.config.resnet
  ltrain, _, ltest = ctx.load(l.data)
  lenet = Setting('LeNet-5 / MNIST',
                  lambda: tfprune.models.lenet5(ltrain[0].shape[1:], 10),
                  l, ltrain, ltest, c)
  lenet.run()
  rtrain, _, rtest = ctx.load(r.data)
  resnet = Setting(
      'ResNet-20 / Fashion-MNIST 32x32',
      lambda: tfprune.models.resnet(20, rtrain[0].shape[1:], 10),
      r, rtrain, rtest, c)
  resnet.run()
  ctx.plot(_plot, PLOT, [lenet, resnet])
  seeds = lambda s: '; '.join(
      f'{st}: seed{"s" * (len(s.seeds[st]) > 1)} '
      f'{", ".join(map(str, s.seeds[st]))}' for st in s.structures.split(','))
  lines = [
      f'SGD(momentum {c.momentum:g}) everywhere with weight decay on the '
      f'kernels ({l.weight_decay:g} for LeNet-5, {r.weight_decay:g} for '
      'ResNet-20; an L2 term whose gradient is decay * w, as in Caffe), '
      f'{l.epochs} (LeNet-5) or {r.epochs} (ResNet-20) epochs, then '
      f'{c.finetune} fine-tuning epoch(s) at a {c.finetune_lr_divisor:g}x '
      'lower LR for every pruned point. PSP: trained from scratch with '
      'weight decay lambda on alpha, epsilon '
      f'{PSP().epsilon:g} with a straight-through threshold from step 0, '
      'masks frozen after the first stage; the sparsity is learned (one '
      'point per lambda). With SGD momentum mu and LR eta, decay alone '
      'shrinks alpha by about eta*lambda/(1-mu) per step, so an unused '
      'structure needs about 4.6(1-mu)/(eta*lambda) steps to fall under '
      'epsilon: the lambdas are chosen so that this time is a fraction of '
      'the first stage, which leaves the data gradient the rest of it to '
      'hold the useful alphas up. L1 norm: the dense model of the same seed '
      '(the "dense" row, first-stage epochs only) pruned once per layer by '
      'the L1 norm of each structure (tfprune.methods.Magnitude), then '
      f'fine-tuned: "{L1}" at the stated sparsity in every layer, '
      f'"{MATCHED}" at the per-layer sparsities that PSP run reached (same '
      'seed, same layer budget, L1 ranking). "structures pruned" counts '
      'columns ((kh, kw, cin) positions, Dense input rows) or filters (output '
      'channels, Dense units) whose weights are all zero in the stripped '
      'model, over the wrapped layers; "weights kept" is over all their '
      'weights. Accuracies and structure sparsities are mean +- sample std '
      '(per seed); the other numbers are means. "train s" is wall clock on '
      'a shared machine (informational): PSP rows include their from-scratch '
      'training, L1 rows only the fine-tuning after the shared dense model. '
      'The comparison tables pair each PSP run with L1 from the dense model '
      'of its own seed: against the uniform L1 curve interpolated at the '
      'PSP run\'s structure sparsity (between the measured sparsities, the '
      'dense model at 0), and against the per-layer-matched L1 run.', '',
      f'### {lenet.name}', '',
      f'LeNet-5 (Caffe 20-50-500-10, no conv ReLU), '
      f'{harness.describe_data(l.data)}, layers {", ".join(lenet.layers)} '
      f'wrapped, batch {l.batch_size}, LR {l.learning_rate:g}; {seeds(l)}.',
      '', _table(lenet), '', comparison(lenet), '',
      f'### {resnet.name} (substitute for CIFAR-10)', '',
      f'{harness.substitute(r.data)}, the first {len(rtrain[0]):,} '
      'training images, full test set; ResNet-20 (option-B projections), '
      f'every Conv2D wrapped, batch {r.batch_size}, LR {r.learning_rate:g}; '
      f'{seeds(r)}. Every '
      'conv here feeds a BatchNormalization, which removes the scale of '
      'each output channel in training, so a filter alpha gets almost no '
      'gradient from the data and the decay alone decides when it crosses '
      'epsilon; columns are ranked against each other by the data.', '',
      _table(resnet), '', comparison(resnet), '',
      f'![PSP accuracy vs sparsity]({PLOT})']
  return ('PSP: column and filter pruning, LeNet-5 and ResNet-20 substitute',
          '\n'.join(lines))


if __name__ == '__main__':
  harness.main(sys.modules[__name__])
