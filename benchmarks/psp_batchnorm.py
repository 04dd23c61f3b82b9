"""PSP on the ResNet-20 substitute with and without re-estimated BatchNorm
statistics.

The ``psp`` study's ResNet-20 setting (imported, not restated): PSP trains
its column gates with the decay, freezes them at the end of the main
epochs, fine-tunes, and is evaluated once with the moving statistics
training left and once after ``tfprune.recalibrate_batchnorm`` on
``config.bn_images`` training images (weights unchanged), then stripped and
shrunk (the shrunk model keeps the re-estimated statistics).

    python -m benchmarks.psp_batchnorm --data_dir=../shared/data
"""

from __future__ import annotations

import sys
import time

import numpy as np

from benchmarks import harness
from benchmarks import psp as psp_study


def get_config():
  base = psp_study.get_config()
  return harness.config(
      section='psp_batchnorm', momentum=base.momentum,
      finetune=base.finetune, finetune_lr_divisor=base.finetune_lr_divisor,
      resnet=base.resnet.to_dict(), bn_images=2048,
      smoke=dict(resnet=base.smoke.resnet.to_dict(), bn_images=16))


def run(ctx):
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  import tfprune  # pylint: disable=g-import-not-at-top
  from tfprune.methods import PSP  # pylint: disable=g-import-not-at-top
  c, r = ctx.config, ctx.config.resnet
  train, _, test = ctx.load(r.data)
  setting = psp_study.Setting(
      'ResNet-20', lambda: tfprune.models.resnet(20, train[0].shape[1:], 10),
      r, train, test, c)
  steps = r.epochs * int(np.ceil(len(train[0]) / r.batch_size))
  rows = []
  for structure in r.structures.split(','):
    for decay in r.decays:
      for seed in r.seeds[structure]:
        keras.utils.set_random_seed(seed)
        started = time.time()
        pruned = tfprune.prune(setting.build(), PSP(
            structure, weight_decay=decay, freeze_step=steps),
                               layers=setting.layers)
        setting.fit(pruned, r.epochs)
        setting.finetune(pruned)
        moving = harness.accuracy(pruned, *test)
        layers = tfprune.recalibrate_batchnorm(pruned, train[0][:c.bn_images])
        shrunk = tfprune.shrink(tfprune.strip(pruned))
        rows.append([structure, f'{decay:g}', seed,
                     f'{100 * harness.structure_sparsity(pruned):.1f}%',
                     f'{100 * moving:.2f}%',
                     f'{100 * harness.accuracy(pruned, *test):.2f}%',
                     f'{100 * harness.accuracy(shrunk, *test):.2f}%',
                     layers, f'{time.time() - started:.0f}'])
  lines = [
      f'{harness.substitute(r.data)}; {len(train[0]):,} training images. '
      f'ResNet-20, the `psp` study\'s setting: SGD (momentum '
      f'{c.momentum:g}, LR {r.learning_rate:g}, batch {r.batch_size}, kernel '
      f'weight decay {r.weight_decay:g}), PSP gates on every Conv2D trained '
      f'for {r.epochs} epochs with the decay below and frozen at their end, '
      f'then {c.finetune} fine-tuning epoch(s) at LR / '
      f'{c.finetune_lr_divisor:g}. "moving statistics": the model as '
      'training left it; "re-estimated": after `tfprune.recalibrate_'
      f'batchnorm` on the first {c.bn_images:,} training images (inference '
      'mode, layer by layer; weights, masks and gates unchanged); '
      '"shrunk": that model stripped and shrunk. One seed per row.', '',
      harness.table(['structure', 'PSP decay', 'seed', 'pruned',
                     'test acc., moving statistics',
                     'test acc., re-estimated', 'shrunk, re-estimated',
                     'BN layers', 'seconds'], rows)]
  return ('PSP on ResNet-20 with re-estimated BatchNorm statistics',
          '\n'.join(lines))


if __name__ == '__main__':
  harness.main(sys.modules[__name__])
