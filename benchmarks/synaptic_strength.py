"""Synaptic Strength vs kernel L1-norm pruning at 90% / 96% of conv connections.

For LeNet-5 (BatchNorm) on MNIST and VGG-16 (BatchNorm) in a substitute
setting (Fashion-MNIST zero-padded to 32x32, a stated width), with the same
number of epochs for every row (``epochs`` before pruning + ``finetune``):

* dense: trained ``epochs`` epochs (BN with scale); the baseline.
* kernel L1 norm: the dense model, one-shot global pruning of whole 2-D
  kernels by L1 norm (``Magnitude('kernel', scope='global')``), fine-tuned.
* strength, no penalty: the dense model wrapped by ``SynapticStrength(l1=0)``
  (BN scale folded, so s = gamma * ||K||), one-shot global pruning of |s|,
  fine-tuned: the criterion alone.
* Synaptic Strength: trained from scratch with the L1 penalty on s for
  ``epochs`` epochs (BN scale dropped), then one global threshold at the
  percentile hitting the sparsity exactly, fine-tuned with the penalty off.
  The penalised model is trained once and pruned at each sparsity.

Every pruned model is stripped, shrunk (dead channels removed), converted to
.tflite and checked with ``tflite_export.check``.

    python -m benchmarks.synaptic_strength --data_dir=../shared/data

Floors: ``config.criteria`` names the pruned rows, each optionally with
``@MAX_RATIO`` (no layer loses more than that fraction of its connections;
``SynapticStrength(max_ratio=...)``, and for the kernel L1 norm the same
core selection over the kernels' L1 norms), ``config.models`` picks the
networks. Only the full default run may write the ``synaptic_strength``
section (and its plot); a subset writes ``config.section``, e.g.

    python -m benchmarks.synaptic_strength --data_dir=../shared/data \\
        --config.section=synaptic_strength_floors --config.models=vgg \\
        --config.sparsities=0.96 \\
        --config.criteria=synaptic_strength,synaptic_strength@0.98,kernel_l1@0.98
"""

from __future__ import annotations

import sys
import time

import numpy as np

from benchmarks import harness

PLOT = 'synaptic_strength.png'
FULL_SECTION = 'synaptic_strength'
DEFAULTS = dict(models='lenet,vgg', sparsities='0.9,0.96',
                criteria='kernel_l1,strength_no_penalty,synaptic_strength')


def get_config():
  return harness.config(
      section=FULL_SECTION, **DEFAULTS, l1=1e-4, finetune=2,
      lenet=dict(data=harness.data_config('mnist'), epochs=4, batch_size=64,
                 learning_rate=1e-3, finetune_learning_rate=5e-4),
      vgg=dict(data=harness.data_config('fashion_mnist', image_size=32),
               width=0.25, epochs=3, batch_size=128, learning_rate=1e-3,
               finetune_learning_rate=5e-4),
      smoke=dict(
          section='synaptic_strength_floors', models='lenet',
          sparsities='0.9',
          criteria='kernel_l1@0.95,strength_no_penalty,synaptic_strength@0.95',
          finetune=1,
          lenet=dict(data=dict(train_examples=64, test_examples=200),
                     epochs=1),
          vgg=dict(data=dict(train_examples=16, test_examples=100),
                   width=0.125, epochs=1, batch_size=16)))
LABELS = {'kernel_l1': 'kernel L1 norm',
          'strength_no_penalty': 'strength, no penalty',
          'synaptic_strength': 'Synaptic Strength'}


def parse_criteria(items):
  """``['kernel_l1@0.98', ...]`` -> ``[('kernel_l1', 0.98), ...]``."""
  out = []
  for item in items:
    name, _, ratio = item.strip().partition('@')
    if name not in LABELS:
      raise ValueError(f'unknown criterion {name!r}; known: {sorted(LABELS)}')
    ratio = float(ratio) if ratio else 1.0
    if not 0.0 < ratio <= 1.0:
      raise ValueError(f'max_ratio must be in (0, 1], got {item!r}')
    out.append((name, ratio))
  return out


def label(name, max_ratio):
  return LABELS[name] + ('' if max_ratio == 1.0 else
                         f', floor max_ratio={max_ratio:g}')


def floor_kernel_l1(pruned, sparsity, max_ratio):
  """Mask a model wrapped by ``Magnitude('kernel', scope='global')`` without
  a schedule (nothing pruned yet: masking zeroes weights, so the scores must
  be read first) with a per-layer floor: the same scores (kernel L1 norms)
  through the selection ``SynapticStrength(max_ratio=...)`` uses. The masks
  stay as set (no schedule updates them during fine-tuning)."""
  import tfprune  # pylint: disable=g-import-not-at-top
  from tfprune.methods.synaptic_strength import select_connections  # pylint: disable=g-import-not-at-top
  wrappers = tfprune.wrapper.collect_wrappers(pruned)
  scores = [np.asarray(w.method.score(w, 0)) for w in wrappers]
  masks = select_connections(scores, sparsity=sparsity, max_ratio=max_ratio)
  for wrapper, mask in zip(wrappers, masks):
    wrapper.assign_mask(0, mask)
  return pruned


class Setting:
  """One network + data + training recipe; runs every row."""

  def __init__(self, ctx, name, build, s, train, test):
    self.ctx, self.name, self.build = ctx, name, build
    self.train, self.test = train, test
    self.epochs, self.finetune = s.epochs, ctx.config.finetune
    self.batch_size, self.lr = s.batch_size, s.learning_rate
    self.finetune_lr = s.finetune_learning_rate
    self.rows = []
    self.strengths = {}

  def fit(self, model, epochs, lr):
    return harness.fit(model, self.train, epochs,
                       harness.optimizer('adam', lr), self.batch_size,
                       harness.pruning_step())

  def export(self, criterion, sparsity, pruned, started, max_ratio=1.0):
    """Fine-tune, strip, shrink, convert, check; one table row."""
    import tfprune  # pylint: disable=g-import-not-at-top
    import tflite_export  # pylint: disable=g-import-not-at-top
    self.fit(pruned, self.finetune, self.finetune_lr)
    rep = tfprune.report(pruned)
    wrappers = tfprune.wrapper.collect_wrappers(pruned)
    masks = [np.asarray(w.masks[0]) for w in wrappers]
    thinnest = min(range(len(masks)), key=lambda i: masks[i].mean())
    stripped = tfprune.strip(pruned)
    shrunk, plan = tfprune.shrink(stripped, return_plan=True)
    out = self.ctx.tflite(shrunk)
    path, size = out['path'], out['size']
    checked = tflite_export.check(path, rep, plan=plan)
    total = sum(m.size for m in masks)
    self.rows.append({
        'criterion': criterion, 'target': sparsity, 'max_ratio': max_ratio,
        'min_kept_fraction': float(masks[thinnest].mean()),
        'sparsity': sum(int((m == 0).sum()) for m in masks) / total,
        'connections': total,
        'thinnest': f'{wrappers[thinnest].layer.name} '
                    f'{int(masks[thinnest].sum())}/{masks[thinnest].size}',
        'accuracy': harness.accuracy(pruned, *self.test),
        'tflite_accuracy': tflite_export.evaluate(path, *self.test),
        'params': tfprune.report(stripped)['totals']['params'],
        'shrunk_params': tfprune.report(shrunk)['totals']['params'],
        'removed_channels': sum(plan.removed_counts().values()),
        'bytes': size, 'check': 'ok' if checked.ok else 'FAILED',
        'seconds': time.time() - started})
    if not checked.ok:
      print('TFLite check failed:', checked.failures)

  def run(self, l1: float, sparsities, criteria):
    """``criteria``: ``[(name, max_ratio), ...]`` as :func:`parse_criteria`."""
    import tf_keras as keras  # pylint: disable=g-import-not-at-top
    import tfprune  # pylint: disable=g-import-not-at-top
    from tfprune.methods import Magnitude, SynapticStrength  # pylint: disable=g-import-not-at-top
    conv = keras.layers.Conv2D
    keras.utils.set_random_seed(0)
    started = time.time()
    dense = self.fit(self.build(), self.epochs, self.lr)
    self.rows.append({'criterion': 'dense', 'target': 0.0, 'sparsity': 0.0,
                      'accuracy': harness.accuracy(dense, *self.test),
                      'seconds': time.time() - started})
    unpenalised = tfprune.prune(dense, SynapticStrength(l1=0), layers=conv)
    self.strengths['dense: gamma * ||K||'] = _strengths(unpenalised)
    for sparsity in sparsities:
      for name, max_ratio in criteria:
        keras.utils.set_random_seed(1)
        started = time.time()
        if name == 'kernel_l1':
          if max_ratio < 1.0:     # wrapped unpruned, masked with the floor
            pruned = floor_kernel_l1(tfprune.prune(
                dense, Magnitude('kernel', scope='global'), layers=conv),
                                     sparsity, max_ratio)
          else:
            pruned = tfprune.prune(dense, Magnitude('kernel', scope='global'),
                                   schedule=sparsity, layers=conv)
        elif name == 'strength_no_penalty':
          pruned = tfprune.prune(
              dense, SynapticStrength(l1=0, max_ratio=max_ratio),
              schedule=sparsity, layers=conv)
        else:
          continue
        self.export(label(name, max_ratio), sparsity, pruned, started,
                    max_ratio)

    floors = [r for name, r in criteria if name == 'synaptic_strength']
    if not floors:
      return
    keras.utils.set_random_seed(0)
    started = time.time()
    penalised = self.fit(tfprune.prune(self.build(), SynapticStrength(l1=l1),
                                       layers=conv), self.epochs, self.lr)
    self.strengths[f'penalised (l1={l1:g})'] = _strengths(penalised)
    self.rows.append({'criterion': 'Synaptic Strength, before pruning',
                      'target': 0.0, 'sparsity': 0.0,
                      'accuracy': harness.accuracy(penalised, *self.test),
                      'seconds': time.time() - started})
    base = tfprune.strip(penalised)   # s * V/||V|| folded: |s| = ||K||
    penalty_seconds = time.time() - started
    for sparsity in sparsities:
      for max_ratio in floors:
        keras.utils.set_random_seed(1)
        started = time.time() - penalty_seconds
        self.export(label('synaptic_strength', max_ratio), sparsity,
                    tfprune.prune(base, SynapticStrength(
                        l1=0, max_ratio=max_ratio), schedule=sparsity,
                                  layers=conv), started, max_ratio)


def _strengths(model) -> np.ndarray:
  import tfprune  # pylint: disable=g-import-not-at-top
  return np.concatenate([np.abs(np.asarray(w.gates[0])).ravel()
                         for w in tfprune.wrapper.collect_wrappers(model)])


def _table(setting) -> str:
  lines = ['| criterion | conv connections pruned | test acc. | .tflite acc. '
           '| fewest kept (layer, fraction) | params (stripped -> shrunk) | channels '
           'removed | .tflite bytes | TFLite check | train s |',
           '|' + '---|' * 10]
  for r in setting.rows:
    if 'bytes' not in r:
      lines.append(f'| {r["criterion"]} | 0 | {100 * r["accuracy"]:.2f}% | '
                   f'- | - | - | - | - | - | {r["seconds"]:.0f} |')
      continue
    lines.append(
        f'| {r["criterion"]} | {100 * r["sparsity"]:.1f}% of '
        f'{r["connections"]:,} | {100 * r["accuracy"]:.2f}% | '
        f'{100 * r["tflite_accuracy"]:.2f}% | {r["thinnest"]} '
        f'({100 * r["min_kept_fraction"]:.2f}%) | '
        f'{r["params"]:,} -> '
        f'{r["shrunk_params"]:,} | {r["removed_channels"]} | '
        f'{r["bytes"]:,} | {r["check"]} | {r["seconds"]:.0f} |')
  return '\n'.join(lines)


def _plot(settings):
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
  for ax, setting in zip(axes[:2], settings):
    dense = next(r for r in setting.rows if r['criterion'] == 'dense')
    ax.axhline(100 * dense['accuracy'], color='grey', ls='--', label='dense')
    for criterion, marker in (('kernel L1 norm', 'o'),
                              ('strength, no penalty', 's'),
                              ('Synaptic Strength', '^')):
      rows = [r for r in setting.rows if r['criterion'] == criterion]
      ax.plot([100 * r['sparsity'] for r in rows],
              [100 * r['accuracy'] for r in rows], marker=marker,
              label=criterion)
    harness.label(ax, 'conv connections pruned (%)', 'test accuracy (%)',
                  setting.name)
  ax = axes[2]
  for setting in settings:
    for label, values in setting.strengths.items():
      ranked = np.sort(values / values.max())[::-1]
      ax.semilogy(np.linspace(0, 100, ranked.size), ranked + 1e-8,
                  label=f'{setting.name.split()[0]} {label}')
  harness.label(ax, 'connections, strongest first (%)', '|s| / max |s|',
                'strengths before pruning', legend=6)
  return fig


def run(ctx):
  import tfprune  # pylint: disable=g-import-not-at-top
  c = ctx.config
  sparsities = [float(s) for s in c.sparsities.split(',')]
  models = c.models.split(',')
  if set(models) - {'lenet', 'vgg'} or not models:
    raise ValueError(f'config.models: lenet and/or vgg, got {c.models}')
  criteria = parse_criteria(c.criteria.split(','))
  full = all(c[k] == v for k, v in DEFAULTS.items())
  if c.section == FULL_SECTION and not full:
    raise ValueError(
        f'the {FULL_SECTION} section holds the full default run (both '
        'models, sparsities 0.9 and 0.96, every criterion without a floor); '
        'set config.section for a subset')
  settings = []
  lenet = vgg = None
  if 'lenet' in models:
    ltrain, _, ltest = ctx.load(c.lenet.data)
    lenet = Setting(
        ctx, 'LeNet-5 (BN) / MNIST',
        lambda: tfprune.models.lenet5(ltrain[0].shape[1:], 10,
                                      batch_norm=True),
        c.lenet, ltrain, ltest)
    lenet.run(c.l1, sparsities, criteria)
    settings.append(lenet)
  if 'vgg' in models:
    vtrain, _, vtest = ctx.load(c.vgg.data)
    vgg = Setting(
        ctx, f'VGG-16 (BN) width {c.vgg.width:g} / Fashion-MNIST 32x32',
        lambda: tfprune.models.vgg16(vtrain[0].shape[1:], 10,
                                     width=c.vgg.width, batch_norm=True),
        c.vgg, vtrain, vtest)
    vgg.run(c.l1, sparsities, criteria)
    settings.append(vgg)

  epochs = ' or '.join(f'{s.epochs} ({s.name.split()[0]})' for s in settings)
  lrs = ', '.join(f'{s.name.split()[0]} {s.lr:g} then {s.finetune_lr:g}'
                  for s in settings)
  recipe = (
      f'Every pruned row trains for the same number of epochs: {epochs} '
      f'before pruning, then {c.finetune} fine-tuning epochs at a lower LR '
      f'(Adam; {lrs}); the dense row is the model after the '
      'first stage only, so a pruned row above it owes that to its extra '
      'epochs. Pruning is global over all convs and counts whole 2-D '
      'kernels (connections); each row is pruned to exactly the stated '
      'fraction. "kernel L1 norm" and "strength, no penalty" prune the '
      'dense model once; "Synaptic Strength" trains from scratch with the '
      f'L1 penalty {c.l1:g} on |s| (BN scale dropped), is pruned once '
      'at the percentile and fine-tuned with the penalty off (one penalised '
      'model, pruned at each sparsity). "strength, no penalty" also drops '
      'the BN scale (folded into s), so its fine-tuning runs without gamma, '
      'which training-mode BN normalises away; its gap to "kernel L1 norm" '
      'mixes the ranking with that change. "train s" is wall-clock time '
      '(the machine was shared with other jobs; informational only): for '
      'the one-shot rows only fine-tuning, for Synaptic Strength rows the '
      'penalised training plus fine-tuning. "fewest kept" is the wrapped '
      'conv with the smallest fraction of its connections kept (Keras '
      'masks). Exported files are the shrunk models (channels without '
      'connections removed), float32; "TFLite check" compares every '
      'conv\'s zero 2-D kernels in the file with the Keras masks. One seed.')
  floors = (
      'A floor "max_ratio=r" means no conv loses more than the fraction r '
      'of its connections: each keeps at least ceil((1 - r) * its '
      'connections), its strongest, and the rest of the budget is ranked '
      'globally as before (tfprune.groups.select through '
      'SynapticStrength(max_ratio=r); for the kernel L1 norm the same '
      'selection over the kernels\' L1 norms). Rows without a floor keep '
      'only the strongest connection of each layer for sure.')
  vgg_note = (f'{harness.substitute(c.vgg.data)}; VGG-16 at width '
              f'{c.vgg.width:g} '
              f'({tfprune.report(vgg.build())["totals"]["params"]:,} '
              'params).' if vgg else '')
  if full:
    ctx.plot(_plot, PLOT, settings)
    lines = [recipe, '', f'### {lenet.name}', '', _table(lenet), '',
             f'### {vgg.name} (substitute for CIFAR-10)', '', vgg_note, '',
             _table(vgg), '',
             f'![accuracy vs connection sparsity]({PLOT})', '',
             'Right: all conv strengths |s| sorted, relative to the largest: '
             'of the dense model (gamma times the kernel L2 norm) and after '
             'penalised training.']
    return ('Synaptic Strength: LeNet-5 (BN) on MNIST, VGG-16 substitute',
            '\n'.join(lines))
  lines = ['A subset of the synaptic_strength benchmark: sparsities '
           f'{", ".join(f"{s:g}" for s in sparsities)}, rows '
           f'{", ".join(c.criteria.split(","))}. ' + floors, '', recipe, '']
  for setting in settings:
    lines += [f'### {setting.name}', '']
    if setting is vgg:
      lines += [vgg_note, '']
    lines += [_table(setting), '']
  return ('Synaptic Strength with per-layer floors (max_ratio)',
          '\n'.join(lines))


if __name__ == '__main__':
  harness.main(sys.modules[__name__])
