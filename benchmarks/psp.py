"""PSP (weight decay on structure parameters) vs L1-norm structure pruning.

Accuracy against structure sparsity for column and filter pruning on
LeNet-5/MNIST and on ResNet-20 in a substitute setting (Fashion-MNIST
zero-padded to 32x32, a stated training subset), all with SGD(momentum 0.9):

* PSP: trained from scratch, one run per decay strength lambda; the
  epsilon threshold (straight-through) applies from step 0, masks freeze
  after ``epochs`` epochs, then ``finetune`` epochs with frozen masks. The
  sparsity is learned, so each run gives one point.
* L1 norm: a dense model trained ``epochs`` epochs, then per layer the
  structures with the smallest L1 norm pruned one-shot at a fixed sparsity
  (``Magnitude(structure)``), then ``finetune`` epochs.

Same epochs for every point; the dense row is the model after ``epochs``.

    python -m benchmarks.psp --data_dir=../shared/data
"""

from __future__ import annotations

import sys
import time

import numpy as np

from benchmarks import harness

PLOT = 'psp.png'
STRUCTURES = ('column', 'filter')


def get_config():
  return harness.config(
      section='psp', momentum=0.9, finetune=1, finetune_lr_divisor=10,
      sparsities=[0.25, 0.5, 0.75, 0.9], structures='column,filter',
      lenet=dict(data=harness.data_config('mnist'), layers='conv1,conv2,ip1',
                 epochs=2, batch_size=64, learning_rate=0.02,
                 decays=[3e-3, 1e-2, 3e-2, 1e-1]),
      resnet=dict(data=harness.data_config('fashion_mnist', image_size=32,
                                           train_examples=12000),
                  layers='Conv2D', epochs=3, batch_size=32,
                  learning_rate=0.02, decays=[1e-2, 3e-2, 1e-1, 3e-1]),
      smoke=dict(
          sparsities=[0.5], structures='filter',
          lenet=dict(data=dict(train_examples=64, test_examples=200),
                     epochs=1, decays=[1e-1]),
          resnet=dict(data=dict(train_examples=32, test_examples=100),
                      epochs=1, decays=[1e-1])))


class Setting:
  """One network, data and SGD recipe; runs every point."""

  def __init__(self, name, build, s, train, test, c):
    import tf_keras as keras  # pylint: disable=g-import-not-at-top
    self.name, self.build, self.s, self.c = name, build, s, c
    self.layers = (keras.layers.Conv2D if s.layers == 'Conv2D'
                   else s.layers.split(','))
    self.train, self.test = train, test
    self.rows = []
    self.alphas = {}

  def fit(self, model, epochs, lr=None):
    return harness.fit(model, self.train, epochs, harness.optimizer(
        'sgd', lr or self.s.learning_rate, self.c.momentum),
                       self.s.batch_size, harness.pruning_step())

  def row(self, method, structure, setting, model, started):
    import tfprune  # pylint: disable=g-import-not-at-top
    stripped = tfprune.strip(model)
    shrunk = tfprune.shrink(stripped)
    rep = tfprune.report(stripped)['totals']
    self.rows.append({
        'method': method, 'structure': structure, 'setting': setting,
        'sparsity': harness.structure_sparsity(model),
        'weights_kept': 1 - rep['weight_sparsity'],
        'accuracy': harness.accuracy(model, *self.test),
        'shrunk_params': tfprune.report(shrunk)['totals']['params'],
        'seconds': time.time() - started})

  def run(self):
    import tf_keras as keras  # pylint: disable=g-import-not-at-top
    import tfprune  # pylint: disable=g-import-not-at-top
    from tfprune.methods import PSP, Magnitude  # pylint: disable=g-import-not-at-top
    s, c = self.s, self.c
    finetune_lr = s.learning_rate / c.finetune_lr_divisor
    steps = s.epochs * int(np.ceil(len(self.train[0]) / s.batch_size))
    keras.utils.set_random_seed(0)
    started = time.time()
    dense = self.fit(self.build(), s.epochs)
    self.rows.append({'method': 'dense', 'structure': '-', 'setting': '-',
                      'sparsity': 0.0, 'weights_kept': 1.0,
                      'accuracy': harness.accuracy(dense, *self.test),
                      'shrunk_params': tfprune.report(dense)['totals'][
                          'params'], 'seconds': time.time() - started})
    for structure in c.structures.split(','):
      for sparsity in c.sparsities:
        keras.utils.set_random_seed(1)
        started = time.time()
        pruned = tfprune.prune(dense, Magnitude(structure.replace(
            'filter', 'channel')), schedule=sparsity, layers=self.layers)
        self.row('L1 norm', structure, f'{sparsity:g}',
                 self.fit(pruned, c.finetune, finetune_lr), started)
      for decay in s.decays:
        keras.utils.set_random_seed(0)
        started = time.time()
        pruned = tfprune.prune(
            self.build(), PSP(structure, weight_decay=decay,
                              freeze_step=steps), layers=self.layers)
        self.fit(pruned, s.epochs)
        self.alphas[(structure, decay)] = np.concatenate([
            np.abs(np.asarray(w.gates[0])).ravel()
            for w in tfprune.wrapper.collect_wrappers(pruned)])
        self.row('PSP', structure, f'lambda {decay:g}',
                 self.fit(pruned, c.finetune, finetune_lr), started)


def _table(setting) -> str:
  return harness.table(
      ['method', 'structure', 'setting', 'structures pruned', 'weights kept',
       'test acc.', 'params after shrink', 'train s'],
      [[r['method'], r['structure'], r['setting'],
        f'{100 * r["sparsity"]:.1f}%', f'{100 * r["weights_kept"]:.1f}%',
        f'{100 * r["accuracy"]:.2f}%', f'{r["shrunk_params"]:,}',
        f'{r["seconds"]:.0f}'] for r in setting.rows])


def _plot(settings):
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 3, figsize=(11.5, 3.3))
  for ax, setting in zip(axes[:2], settings):
    dense = setting.rows[0]
    ax.axhline(100 * dense['accuracy'], color='grey', ls='--', label='dense')
    for method, style in (('PSP', '-^'), ('L1 norm', '--o')):
      for structure in STRUCTURES:
        rows = sorted((r for r in setting.rows if r['method'] == method and
                       r['structure'] == structure),
                      key=lambda r: r['sparsity'])
        ax.plot([100 * r['sparsity'] for r in rows],
                [100 * r['accuracy'] for r in rows], style,
                label=f'{method} {structure}')
    harness.label(ax, 'structures pruned (%)', 'test accuracy (%)',
                  setting.name)
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
  lines = [
      f'SGD(momentum {c.momentum:g}) everywhere, {l.epochs} (LeNet-5) or '
      f'{r.epochs} (ResNet-20) epochs, then {c.finetune} fine-tuning '
      f'epoch(s) at a {c.finetune_lr_divisor:g}x lower LR for every pruned '
      'point. PSP: trained from scratch with weight decay lambda on alpha '
      f'only (weights undecayed), epsilon {PSP().epsilon:g} with a '
      'straight-through threshold from step 0, masks frozen after the first '
      'stage; the sparsity is learned (one point per lambda). With SGD '
      'momentum mu and LR eta, decay alone shrinks alpha by about '
      'eta*lambda/(1-mu) per step, so an unused structure needs about '
      '4.6(1-mu)/(eta*lambda) steps to fall under epsilon: the lambdas are '
      'scaled to these short schedules and are larger than a long CIFAR run '
      'would use. L1 norm: the dense model (the "dense" row, first-stage '
      'epochs only) pruned once per layer to the stated sparsity by the L1 '
      'norm of each structure (tfprune.methods.Magnitude), then fine-tuned. '
      '"structures pruned" counts columns ((kh, kw, cin) positions, Dense '
      'input rows) or filters (output channels, Dense units) whose weights '
      'are all zero in the stripped model, over the wrapped layers; '
      '"weights kept" is over all their weights. One seed; "train s" is wall '
      'clock on a shared machine (informational): PSP rows include their '
      'from-scratch training, L1 rows only the fine-tuning after the shared '
      'dense model.', '',
      f'### {lenet.name}', '',
      f'LeNet-5 (Caffe 20-50-500-10, no conv ReLU), '
      f'{harness.describe_data(l.data)}, layers {", ".join(lenet.layers)} '
      f'wrapped, batch {l.batch_size}, LR {l.learning_rate:g}.', '',
      _table(lenet), '',
      f'### {resnet.name} (substitute for CIFAR-10)', '',
      f'{harness.substitute(r.data)}, the first {len(rtrain[0]):,} '
      'training images, full test set; ResNet-20 (option-B projections), '
      f'every Conv2D wrapped, batch {r.batch_size}, LR {r.learning_rate:g} (a '
      'first run at batch 128 and 2 epochs, 188 steps, measured 33% dense '
      'test accuracy: the BN moving statistics had not caught up; batch 32 '
      'gives 1,125 steps). Every conv here feeds a BatchNormalization, which '
      'removes the scale of each output channel in training, so a filter '
      'alpha gets almost no gradient from the data: the PSP filter points '
      'show when the decay alone pushes alphas under epsilon, not a '
      'data-driven ranking (the column alphas are ranked against each other '
      'by the data).', '',
      _table(resnet), '',
      f'![PSP accuracy vs sparsity]({PLOT})']
  return ('PSP: column and filter pruning, LeNet-5 and ResNet-20 substitute',
          '\n'.join(lines))


if __name__ == '__main__':
  harness.main(sys.modules[__name__])
