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

Floors: ``--criteria`` names the pruned rows, each optionally with
``@MAX_RATIO`` (no layer loses more than that fraction of its connections;
``SynapticStrength(max_ratio=...)``, and for the kernel L1 norm the same
core selection over the kernels' L1 norms), ``--models`` picks the
networks. Only the full default run writes the ``synaptic_strength``
section of docs/RESULTS.md (and its plot); any other run writes its own
section (``--section``, default ``synaptic_strength_floors``), e.g.

    python -m benchmarks.synaptic_strength --data_dir=../shared/data \\
        --models=vgg --sparsities=0.96 \\
        --criteria=synaptic_strength,synaptic_strength@0.98,kernel_l1@0.98
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

from benchmarks import common

_DATA_DIR = flags.DEFINE_string('data_dir', '../shared/data',
                                'Folder holding mnist/ and fashion_mnist/.')
_L1 = flags.DEFINE_float('l1', 1e-4, 'Penalty weight on sum |s|.')
_SPARSITIES = flags.DEFINE_list('sparsities', ['0.9', '0.96'],
                                'Connection sparsities.')
_LENET_EPOCHS = flags.DEFINE_integer('lenet_epochs', 4,
                                     'LeNet-5 epochs before pruning.')
_VGG_EPOCHS = flags.DEFINE_integer('vgg_epochs', 3,
                                   'VGG-16 epochs before pruning.')
_FINETUNE = flags.DEFINE_integer('finetune', 2, 'Fine-tuning epochs.')
_VGG_WIDTH = flags.DEFINE_float('vgg_width', 0.25, 'VGG-16 width factor.')
_MODELS = flags.DEFINE_list('models', ['lenet', 'vgg'],
                            'Networks to run: lenet, vgg.')
_CRITERIA = flags.DEFINE_list(
    'criteria', ['kernel_l1', 'strength_no_penalty', 'synaptic_strength'],
    'Pruned rows, each NAME or NAME@MAX_RATIO (a per-layer floor: no layer '
    'loses more than MAX_RATIO of its connections; default 1.0, none). '
    'NAME: kernel_l1, strength_no_penalty, synaptic_strength.')
_SECTION = flags.DEFINE_string(
    'section', None, 'RESULTS.md section to write; default: '
    'synaptic_strength for the full default run, else '
    'synaptic_strength_floors (the full section is never overwritten by a '
    'subset).')
_SMOKE = flags.DEFINE_integer(
    'smoke', 0, 'If > 0: this many training examples, 1 epoch per stage; '
    'RESULTS.md is not written.')

PLOT = os.path.join('docs', 'synaptic_strength.png')
FULL_SECTION = 'synaptic_strength'
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

  def __init__(self, name, build, train, test, epochs, finetune, batch_size,
               lr, finetune_lr, tmp):
    self.name, self.build, self.train, self.test = name, build, train, test
    self.epochs, self.finetune, self.batch_size = epochs, finetune, batch_size
    self.lr, self.finetune_lr, self.tmp = lr, finetune_lr, tmp
    self.rows = []
    self.strengths = {}

  def fit(self, model, epochs, lr):
    import tf_keras as keras  # pylint: disable=g-import-not-at-top
    return common.fit(model, self.train, epochs, keras.optimizers.Adam(lr),
                      self.batch_size)

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
    path = os.path.join(self.tmp, f'{self.name}_{criterion}_{sparsity}.tflite')
    size = tflite_export.convert(shrunk, path)['size']
    checked = tflite_export.check(path, rep, plan=plan)
    total = sum(m.size for m in masks)
    self.rows.append({
        'criterion': criterion, 'target': sparsity, 'max_ratio': max_ratio,
        'min_kept_fraction': float(masks[thinnest].mean()),
        'sparsity': sum(int((m == 0).sum()) for m in masks) / total,
        'connections': total,
        'thinnest': f'{wrappers[thinnest].layer.name} '
                    f'{int(masks[thinnest].sum())}/{masks[thinnest].size}',
        'accuracy': common.accuracy(pruned, *self.test),
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
                      'accuracy': common.accuracy(dense, *self.test),
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
                      'accuracy': common.accuracy(penalised, *self.test),
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


def _plot(settings, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
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
    ax.set_title(setting.name, fontsize=9)
    ax.set_xlabel('conv connections pruned (%)')
    ax.set_ylabel('test accuracy (%)')
    ax.legend(fontsize=7)
  ax = axes[2]
  for setting in settings:
    for label, values in setting.strengths.items():
      ranked = np.sort(values / values.max())[::-1]
      ax.semilogy(np.linspace(0, 100, ranked.size), ranked + 1e-8,
                  label=f'{setting.name.split()[0]} {label}')
  ax.set_xlabel('connections, strongest first (%)')
  ax.set_ylabel('|s| / max |s|')
  ax.set_title('strengths before pruning', fontsize=9)
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
  from benchmarks import results  # pylint: disable=g-import-not-at-top
  from configs import lenet5_bn_mnist_synaptic_strength as lenet_cfg  # pylint: disable=g-import-not-at-top
  from configs import vgg16_synaptic_strength as vgg_cfg  # pylint: disable=g-import-not-at-top

  command = ' '.join(['python -m benchmarks.synaptic_strength'] +
                     [shlex.quote(a) for a in sys.argv[1:]])
  smoke = _SMOKE.value
  tmp = tempfile.mkdtemp()
  sparsities = [float(s) for s in _SPARSITIES.value]
  finetune = 1 if smoke else _FINETUNE.value
  models = [m.strip() for m in _MODELS.value]
  unknown = set(models) - {'lenet', 'vgg'}
  if unknown or not models:
    raise app.UsageError(f'--models: lenet and/or vgg, got {models}')
  criteria = parse_criteria(_CRITERIA.value)
  full = (set(models) == {'lenet', 'vgg'} and sparsities == [
      float(s) for s in _SPARSITIES.default] and criteria == parse_criteria(
          _CRITERIA.default))
  section = _SECTION.value or (FULL_SECTION if full else
                               'synaptic_strength_floors')
  if section == FULL_SECTION and not full:
    raise app.UsageError(
        f'the {FULL_SECTION} section holds the full default run (both '
        'models, sparsities 0.9 and 0.96, every criterion without a floor); '
        'choose another --section for a subset')

  def data(config):
    train, _, test = experiment.load_data(config, _DATA_DIR.value)
    if smoke:
      train, test = (train[0][:smoke], train[1][:smoke]), (test[0][:2000],
                                                          test[1][:2000])
    return train, test

  settings = []
  lenet = vgg = None
  width = _VGG_WIDTH.value
  if 'lenet' in models:
    lc = lenet_cfg.get_config()
    ltrain, ltest = data(lc)
    lenet = Setting(
        'LeNet-5 (BN) / MNIST',
        lambda: tfprune.models.lenet5(ltrain[0].shape[1:], 10,
                                      batch_norm=True),
        ltrain, ltest, 1 if smoke else _LENET_EPOCHS.value, finetune,
        lc.batch_size, lc.learning_rate, lc.final_learning_rate, tmp)
    lenet.run(_L1.value, sparsities, criteria)
    print(_table(lenet))
    settings.append(lenet)

  if 'vgg' in models:
    vc = vgg_cfg.get_config()
    vc.dataset = 'fashion_mnist'
    vtrain, vtest = data(vc)
    vgg = Setting(
        f'VGG-16 (BN) width {width} / Fashion-MNIST 32x32',
        lambda: tfprune.models.vgg16(vtrain[0].shape[1:], 10, width=width,
                                     batch_norm=True),
        vtrain, vtest, 1 if smoke else _VGG_EPOCHS.value, finetune,
        vc.batch_size, vc.learning_rate, 5e-4, tmp)
    vgg.run(_L1.value, sparsities, criteria)
    print(_table(vgg))
    settings.append(vgg)
  if smoke:
    if full:
      _plot(settings, os.path.join(tmp, 'plot.png'))
    print('smoke run: RESULTS.md not written; files in', tmp)
    return

  epochs = ' or '.join(f'{s.epochs} ({s.name.split()[0]})' for s in settings)
  recipe = (
      f'Every pruned row trains for the same number of epochs: {epochs} '
      f'before pruning, then {finetune} fine-tuning epochs at a lower LR '
      '(Adam; LRs from the configs); the dense row is the model after the '
      'first stage only, so a pruned row above it owes that to its extra '
      'epochs. Pruning is global over all convs and counts whole 2-D '
      'kernels (connections); each row is pruned to exactly the stated '
      'fraction. "kernel L1 norm" and "strength, no penalty" prune the '
      'dense model once; "Synaptic Strength" trains from scratch with the '
      f'L1 penalty {_L1.value:g} on |s| (BN scale dropped), is pruned once '
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
  vgg_note = (f'CIFAR-10 is not available offline. Fashion-MNIST '
              f'zero-padded to 32x32, one channel; VGG-16 at width {width} '
              f'({tfprune.report(vgg.build())["totals"]["params"]:,} '
              'params).' if vgg else '')
  if full:
    _plot(settings, os.path.join(root, PLOT))
    lines = [
        '## Synaptic Strength: LeNet-5 (BN) on MNIST, VGG-16 substitute', '',
        results.stamp(command), '', recipe, '',
        f'### {lenet.name}', '', _table(lenet), '',
        f'### {vgg.name} (substitute for CIFAR-10)', '', vgg_note, '',
        _table(vgg), '',
        f'![accuracy vs connection sparsity]({os.path.basename(PLOT)})', '',
        'Right: all conv strengths |s| sorted, relative to the largest: of '
        'the dense model (gamma times the kernel L2 norm) and after '
        'penalised training.']
  else:
    lines = ['## Synaptic Strength with per-layer floors (max_ratio)', '',
             results.stamp(command), '',
             'A subset of the synaptic_strength benchmark: sparsities '
             f'{", ".join(f"{s:g}" for s in sparsities)}, rows '
             f'{", ".join(_CRITERIA.value)}. ' + floors, '', recipe, '']
    for setting in settings:
      lines += [f'### {setting.name}', '']
      if setting is vgg:
        lines += [vgg_note, '']
      lines += [_table(setting), '']
  results.write_section(section, '\n'.join(lines))
  print('\n'.join(lines))


if __name__ == '__main__':
  app.run(main)
