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

import os
import sys
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

_DATA_DIR = flags.DEFINE_string('data_dir', '../shared/data',
                                'Folder holding mnist/ and fashion_mnist/.')
_DECAYS = flags.DEFINE_list('decays', ['3e-3', '1e-2', '3e-2', '1e-1'],
                            'LeNet-5 PSP weight decays on alpha (one run '
                            'each).')
_RESNET_DECAYS = flags.DEFINE_list(
    'resnet_decays', ['1e-2', '3e-2', '1e-1', '3e-1'],
    'ResNet-20 PSP weight decays.')
_RESNET_EPOCHS = flags.DEFINE_integer(
    'resnet_epochs', 3, 'ResNet-20 epochs before freezing/pruning (its BN '
    'moving statistics need ~1,000 steps before inference accuracy is '
    'meaningful).')
_RESNET_BATCH = flags.DEFINE_integer('resnet_batch', 32, 'ResNet-20 batch.')
_RESNET_LR = flags.DEFINE_float('resnet_lr', 0.02, 'ResNet-20 SGD LR.')
_SPARSITIES = flags.DEFINE_list('sparsities', ['0.25', '0.5', '0.75', '0.9'],
                                'L1-norm one-shot structure sparsities.')
_EPOCHS = flags.DEFINE_integer('epochs', 2, 'Epochs before freezing/pruning.')
_FINETUNE = flags.DEFINE_integer('finetune', 1, 'Fine-tuning epochs.')
_RESNET_TRAIN = flags.DEFINE_integer(
    'resnet_train', 12000, 'Fashion-MNIST training images for ResNet-20.')
_SMOKE = flags.DEFINE_integer(
    'smoke', 0, 'If > 0: this many training examples, 1 epoch per stage, '
    'two decays and sparsities; RESULTS.md is not written.')

PLOT = os.path.join('docs', 'psp.png')
STRUCTURES = ('column', 'filter')


class Setting:
  """One network, data and SGD recipe; runs every point."""

  def __init__(self, name, build, layers, train, test, batch_size, lr):
    self.name, self.build, self.layers = name, build, layers
    self.train, self.test = train, test
    self.batch_size, self.lr = batch_size, lr
    self.rows = []
    self.alphas = {}

  def sgd(self, lr=None):
    import tf_keras as keras  # pylint: disable=g-import-not-at-top
    return keras.optimizers.SGD(lr or self.lr, momentum=0.9)

  def fit(self, model, epochs, lr=None):
    from benchmarks import common  # pylint: disable=g-import-not-at-top
    return common.fit(model, self.train, epochs, self.sgd(lr),
                      self.batch_size)

  def row(self, method, structure, setting, model, started):
    import tfprune  # pylint: disable=g-import-not-at-top
    from benchmarks import common  # pylint: disable=g-import-not-at-top
    stripped = tfprune.strip(model)
    shrunk = tfprune.shrink(stripped)
    rep = tfprune.report(stripped)['totals']
    self.rows.append({
        'method': method, 'structure': structure, 'setting': setting,
        'sparsity': common.structure_sparsity(model),
        'weights_kept': 1 - rep['weight_sparsity'],
        'accuracy': common.accuracy(model, *self.test),
        'shrunk_params': tfprune.report(shrunk)['totals']['params'],
        'seconds': time.time() - started})

  def run(self, epochs, finetune, decays, sparsities):
    import tf_keras as keras  # pylint: disable=g-import-not-at-top
    import tfprune  # pylint: disable=g-import-not-at-top
    from tfprune.methods import PSP, Magnitude  # pylint: disable=g-import-not-at-top
    from benchmarks import common  # pylint: disable=g-import-not-at-top
    steps = epochs * int(np.ceil(len(self.train[0]) / self.batch_size))
    keras.utils.set_random_seed(0)
    started = time.time()
    dense = self.fit(self.build(), epochs)
    self.rows.append({'method': 'dense', 'structure': '-', 'setting': '-',
                      'sparsity': 0.0, 'weights_kept': 1.0,
                      'accuracy': common.accuracy(dense, *self.test),
                      'shrunk_params': tfprune.report(dense)['totals'][
                          'params'], 'seconds': time.time() - started})
    for structure in STRUCTURES:
      for sparsity in sparsities:
        keras.utils.set_random_seed(1)
        started = time.time()
        pruned = tfprune.prune(dense, Magnitude(structure.replace(
            'filter', 'channel')), schedule=sparsity, layers=self.layers)
        self.row('L1 norm', structure, f'{sparsity:g}',
                 self.fit(pruned, finetune, self.lr / 10), started)
      for decay in decays:
        keras.utils.set_random_seed(0)
        started = time.time()
        pruned = tfprune.prune(
            self.build(), PSP(structure, weight_decay=decay,
                              freeze_step=steps), layers=self.layers)
        self.fit(pruned, epochs)
        self.alphas[(structure, decay)] = np.concatenate([
            np.abs(np.asarray(w.gates[0])).ravel()
            for w in tfprune.wrapper.collect_wrappers(pruned)])
        self.row('PSP', structure, f'lambda {decay:g}',
                 self.fit(pruned, finetune, self.lr / 10), started)


def _table(setting) -> str:
  lines = ['| method | structure | setting | structures pruned | weights kept '
           '| test acc. | params after shrink | train s |', '|' + '---|' * 8]
  for r in setting.rows:
    lines.append(
        f'| {r["method"]} | {r["structure"]} | {r["setting"]} | '
        f'{100 * r["sparsity"]:.1f}% | {100 * r["weights_kept"]:.1f}% | '
        f'{100 * r["accuracy"]:.2f}% | {r["shrunk_params"]:,} | '
        f'{r["seconds"]:.0f} |')
  return '\n'.join(lines)


def _plot(settings, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
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
    ax.set_title(setting.name, fontsize=9)
    ax.set_xlabel('structures pruned (%)')
    ax.set_ylabel('test accuracy (%)')
    ax.legend(fontsize=7)
  ax = axes[2]
  bins = np.linspace(-6, 1, 36)
  for setting in settings:
    for (structure, decay), alpha in setting.alphas.items():
      if structure == 'column':
        ax.hist(np.log10(alpha + 1e-7), bins=bins, histtype='step',
                label=f'{setting.name.split()[0]} lambda {decay:g}')
  ax.axvline(-2, color='grey', ls=':')
  ax.set_xlabel('log10 |alpha| at the freeze (column PSP)')
  ax.set_ylabel('structures')
  ax.set_title('alpha distribution (epsilon dotted)', fontsize=9)
  ax.legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  sys.path.insert(0, root)
  import tfprune  # pylint: disable=g-import-not-at-top
  from tfprune import experiment  # pylint: disable=g-import-not-at-top
  from tfprune.methods import PSP  # pylint: disable=g-import-not-at-top
  from benchmarks import results  # pylint: disable=g-import-not-at-top
  from configs import lenet5_mnist_psp, resnet20_psp  # pylint: disable=g-import-not-at-top

  smoke = _SMOKE.value
  decays = [float(d) for d in _DECAYS.value][:2 if smoke else None]
  resnet_decays = [float(d) for d in _RESNET_DECAYS.value][
      :2 if smoke else None]
  sparsities = [float(s) for s in _SPARSITIES.value][:2 if smoke else None]
  epochs = 1 if smoke else _EPOCHS.value
  finetune = 1 if smoke else _FINETUNE.value

  def data(config, limit):
    train, _, test = experiment.load_data(config, _DATA_DIR.value)
    n = smoke or limit
    if n:
      train = (train[0][:n], train[1][:n])
    if smoke:
      test = (test[0][:2000], test[1][:2000])
    return train, test

  lc = lenet5_mnist_psp.get_config()
  ltrain, ltest = data(lc, 0)
  lenet = Setting(
      'LeNet-5 / MNIST',
      lambda: tfprune.models.lenet5(ltrain[0].shape[1:], 10),
      [n for n in lc.layers.split(',') if n], ltrain, ltest, lc.batch_size,
      lc.learning_rate)
  lenet.run(epochs, finetune, decays, sparsities)
  print(_table(lenet))

  rc = resnet20_psp.get_config()
  rc.dataset = 'fashion_mnist'
  rtrain, rtest = data(rc, _RESNET_TRAIN.value)
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  resnet = Setting(
      'ResNet-20 / Fashion-MNIST 32x32',
      lambda: tfprune.models.resnet(20, rtrain[0].shape[1:], 10),
      keras.layers.Conv2D, rtrain, rtest, _RESNET_BATCH.value, _RESNET_LR.value)
  resnet_epochs = 1 if smoke else _RESNET_EPOCHS.value
  resnet.run(resnet_epochs, finetune, resnet_decays, sparsities)
  print(_table(resnet))
  if smoke:
    _plot([lenet, resnet], os.path.join(tempfile.mkdtemp(), 'psp.png'))
    print('smoke run: RESULTS.md not written')
    return

  _plot([lenet, resnet], os.path.join(root, PLOT))
  lines = [
      '## PSP: column and filter pruning, LeNet-5 and ResNet-20 substitute',
      '', results.stamp('python -m benchmarks.psp --data_dir=../shared/data'),
      '',
      f'SGD(momentum 0.9) everywhere, {epochs} (LeNet-5) or {resnet_epochs} '
      f'(ResNet-20) epochs, then {finetune} fine-tuning epoch(s) at a 10x '
      'lower LR for every pruned point. PSP: '
      'trained from scratch with weight decay lambda on alpha only (weights '
      f'undecayed), epsilon {PSP().epsilon:g} with a straight-through '
      'threshold from '
      'step 0, masks frozen after the first stage; the sparsity is learned '
      '(one point per lambda). With SGD momentum mu and LR eta, decay alone '
      'shrinks alpha by about eta*lambda/(1-mu) per step, so an unused '
      'structure needs about 4.6(1-mu)/(eta*lambda) steps to fall under '
      'epsilon: the lambdas are scaled to these short schedules and are '
      'larger than a long CIFAR run would use. L1 norm: the dense model '
      '(the "dense" row, first-stage epochs only) '
      'pruned once per layer to the stated sparsity by '
      'the L1 norm of each structure (tfprune.methods.Magnitude), then '
      'fine-tuned. "structures pruned" counts columns ((kh, kw, cin) '
      'positions, Dense input rows) or filters (output channels, Dense '
      'units) whose weights are all zero in the stripped model, over the '
      'wrapped layers; "weights kept" is over all their weights. One seed; '
      '"train s" is wall clock on a shared machine (informational): PSP '
      'rows include their from-scratch training, L1 rows only the '
      'fine-tuning after the shared dense model.', '',
      f'### {lenet.name}', '',
      f'LeNet-5 (Caffe 20-50-500-10, no conv ReLU), layers '
      f'{", ".join(lenet.layers)} wrapped, batch {lc.batch_size}, LR '
      f'{lc.learning_rate}.', '', _table(lenet), '',
      f'### {resnet.name} (substitute for CIFAR-10)', '',
      f'CIFAR-10 is not available offline. Fashion-MNIST zero-padded to '
      f'32x32 (one channel), the first {len(rtrain[0]):,} training images, '
      f'full test set; ResNet-20 (option-B projections), every Conv2D '
      f'wrapped, batch {_RESNET_BATCH.value}, LR {_RESNET_LR.value} (a '
      'first run at batch 128 and 2 epochs, 188 steps, measured 33% dense '
      'test accuracy: the BN moving statistics had not caught up; batch 32 '
      'gives 1,125 steps). Every conv '
      'here feeds a BatchNormalization, which removes the scale of each '
      'output channel in training, so a filter alpha gets almost no '
      'gradient from the data: the PSP filter points show when the decay '
      'alone pushes alphas under epsilon, not a data-driven ranking (the '
      'column alphas are ranked against each other by the data).', '',
      _table(resnet), '',
      f'![PSP accuracy vs sparsity]({os.path.basename(PLOT)})']
  results.write_section('psp', '\n'.join(lines))
  print('\n'.join(lines))


if __name__ == '__main__':
  app.run(main)
