"""PSP vs L1-norm column pruning on the ResNet-20 substitute, every pruned
model evaluated with re-estimated BatchNorm statistics.

The ``psp`` study's ResNet-20 recipe (imported, not restated) and its
runs: a dense model per seed, uniform L1 at fixed sparsities, one PSP run
per decay (gates frozen at the end of the main epochs), and L1 at each PSP
run's own per-layer sparsities; then every pruned model is evaluated once
with the moving statistics training left and once after
``tfprune.recalibrate_batchnorm`` on ``config.bn_images`` training images
(weights, masks and gates unchanged). The comparison uses the re-estimated
accuracies on both sides. The decays reach past the ``psp`` study's to put
PSP points at 50-80% of the columns, the range the paper's claim is about.

    python -m benchmarks.psp_batchnorm --data_dir=../shared/data
"""

from __future__ import annotations

import sys

from benchmarks import harness
from benchmarks import psp as psp_study


def get_config():
  base = psp_study.get_config()
  # Three seeds: this study answers the 50-80% question for ResNet.
  resnet = dict(base.resnet.to_dict(), depth=20,
                decays=[5e-2, 1e-1, 2e-1, 4e-1],
                seeds=dict(column=[0, 1, 2]))
  # Smoke: ResNet-8 (the same blocks and projections, a third of the
  # layers), one seed and no uniform L1 points (the `psp` smoke runs them).
  smoke = dict(base.smoke.resnet.to_dict(), depth=8, seeds=dict(column=[0]))
  return harness.config(
      section='psp_batchnorm', momentum=base.momentum,
      finetune=base.finetune, finetune_lr_divisor=base.finetune_lr_divisor,
      sparsities=[0.25, 0.5, 0.75], resnet=resnet, bn_images=2048,
      smoke=dict(resnet=smoke, sparsities=[], bn_images=16))


class Recalibrated(psp_study.Setting):
  """The ``psp`` setting whose pruned runs are recorded with re-estimated
  BatchNorm statistics; the moving-statistics accuracy is kept beside."""

  def __init__(self, *args, bn_images: int):
    super().__init__(*args)
    self.bn_images = bn_images

  def record(self, method, structure, setting, seed, model, started):
    import tfprune  # pylint: disable=g-import-not-at-top
    moving = harness.accuracy(model, *self.test)
    layers = tfprune.recalibrate_batchnorm(model,
                                           self.train[0][:self.bn_images])
    run = super().record(method, structure, setting, seed, model, started)
    run.update(moving=moving, bn_layers=layers)
    return run


def _table(setting) -> str:
  rows = []
  for r in setting.runs:
    moving = f'{100 * r["moving"]:.2f}%' if 'moving' in r else '-'
    rows.append([r['method'], r['setting'], r['seed'],
                 f'{100 * r["sparsity"]:.1f}%',
                 f'{100 * r["weights_kept"]:.1f}%', moving,
                 f'{100 * r["accuracy"]:.2f}%', f'{r["shrunk_params"]:,.0f}',
                 f'{r["seconds"]:.0f}'])
  return harness.table(
      ['method', 'setting', 'seed', 'columns pruned', 'weights kept',
       'test acc., moving statistics', 'test acc., re-estimated',
       'params after shrink', 'seconds'], rows)


def run(ctx):
  import tfprune  # pylint: disable=g-import-not-at-top
  c, r = ctx.config, ctx.config.resnet
  train, _, test = ctx.load(r.data)
  setting = Recalibrated(
      f'ResNet-{r.depth} / Fashion-MNIST 32x32',
      lambda: tfprune.models.resnet(r.depth, train[0].shape[1:], 10),
      r, train, test, c, bn_images=c.bn_images)
  for structure in r.structures.split(','):
    for seed in r.seeds[structure]:
      setting.dense_model(seed)    # trained once; its row first
  setting.run()
  lines = [
      f'{harness.substitute(r.data)}; {len(train[0]):,} training images, '
      f'full test set. ResNet-{r.depth} (option-B projections), every '
      'Conv2D '
      f'wrapped, the `psp` study\'s recipe: SGD (momentum {c.momentum:g}, '
      f'LR {r.learning_rate:g}, batch {r.batch_size}, kernel weight decay '
      f'{r.weight_decay:g}), {r.epochs} epochs, then {c.finetune} '
      f'fine-tuning epoch(s) at LR / {c.finetune_lr_divisor:g} for every '
      'pruned model. "dense": the model after the main epochs. "L1 norm": '
      'that model pruned once per layer by the L1 norm of each column at '
      'the stated sparsity, then fine-tuned; "PSP": trained from scratch '
      'with the decay lambda on its column gates, frozen at the end of the '
      'main epochs, then fine-tuned; "L1 norm, PSP per-layer sparsity": '
      'L1 at the per-layer column sparsities that PSP run reached (a '
      'layer PSP emptied keeps its largest column: tfprune refuses a '
      'sparsity of 1, so that row\'s sparsity is a little lower). Every '
      'pruned model is evaluated with the moving statistics training left '
      'and after `tfprune.recalibrate_batchnorm` on the first '
      f'{c.bn_images:,} training images (inference mode, layer by layer; '
      'weights, masks and gates unchanged); "params after shrink" and the '
      'comparison use the re-estimated models. Seeds: '
      f'{", ".join(map(str, r.seeds.column))}; "seconds" is wall clock on '
      'a shared machine (PSP rows include their training from scratch, L1 '
      'rows only the fine-tuning).', '',
      _table(setting), '',
      'PSP minus L1 (re-estimated statistics on both sides; the uniform '
      'curve interpolated at PSP\'s column sparsity between the measured '
      'sparsities, the dense model at 0):', '',
      psp_study.comparison(setting)]
  return (f'PSP vs L1 on ResNet-{r.depth} with re-estimated BatchNorm '
          'statistics',
          '\n'.join(lines))


if __name__ == '__main__':
  harness.main(sys.modules[__name__])
