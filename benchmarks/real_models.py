"""Channel-group pruning on keras.applications nets: MACs, latency, check.

For MobileNet, MobileNetV2, MobileNetV3Small, EfficientNetB0, ResNet50,
DenseNet121, Xception and NASNetMobile (``weights=None``, 96x96x3, 10
classes): a few training steps on random images (so BatchNorm statistics
and shifts are not at their initial values), ``Magnitude('channel')`` at
50% one-shot with the default layers, a few more steps with the masks held,
then ``strip``, ``shrink``, float ``.tflite`` of dense and shrunk, the
TFLite check, and 1- and 2-thread latency interleaved in one run. A second
prune of the same trained weights with ``round_to=8`` reports its MACs and
whether every kept count is a multiple of 8. No dataset is needed.

    python -m benchmarks.real_models [--models=MobileNetV2,ResNet50] [--quick]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings

from absl import app
from absl import flags
from absl import logging
import numpy as np

MODELS = ('MobileNet', 'MobileNetV2', 'MobileNetV3Small', 'EfficientNetB0',
          'ResNet50', 'DenseNet121', 'Xception', 'NASNetMobile')
# Torch-Pruning 1.6.1 on torchvision's versions (96x96, ratio 0.5 per group,
# classifier kept, Conv/Linear MACs), as measured for issue 14.
TORCH_PRUNING = {'MobileNetV2': 3.6, 'MobileNetV3Small': 3.3,
                 'EfficientNetB0': 3.6, 'ResNet50': 3.9, 'DenseNet121': 3.8}

_MODELS = flags.DEFINE_list('models', list(MODELS), 'keras.applications '
                            'model names.')
_SPARSITY = flags.DEFINE_float('sparsity', 0.5, 'Requested channel sparsity.')
_STEPS = flags.DEFINE_integer('steps', 3, 'Training steps before and after '
                              'pruning (batch 8, random images).')
_ROUNDS = flags.DEFINE_integer('rounds', 5, 'Interleaved timing rounds.')
_QUICK = flags.DEFINE_bool('quick', False, 'MobileNetV2 only, 1 step, 2 '
                           'rounds; RESULTS.md is not written.')

SIZE, CLASSES, BATCH = 96, 10, 8
tfprune_groups = None   # imported in main() (after the path is set)


def _fit(model, keras, tfprune, steps: int, seed: int) -> None:
  rng = np.random.RandomState(seed)
  x = rng.rand(BATCH * steps, SIZE, SIZE, 3).astype(np.float32)
  y = rng.randint(0, CLASSES, BATCH * steps)
  model.compile(keras.optimizers.SGD(0.01),
                'sparse_categorical_crossentropy')
  model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0,
            callbacks=[tfprune.PruningStep()])


def _mask_vs_plan(pruned, plan, tfprune) -> tuple:
  """(masked channels, channels shrink removed) over the wrapped producers,
  and whether they agree layer by layer."""
  masked = removed = 0
  agree = True
  for wrapper in tfprune.wrapper.collect_wrappers(pruned):
    zeros = int((np.asarray(wrapper.masks[0]) == 0).sum())
    gone = plan.layers[wrapper.layer.name].removed.size
    masked, removed = masked + zeros, removed + gone
    agree &= zeros == gone
  return masked, removed, agree


def _multiples(plan, cg, round_to: int) -> bool:
  """Every coupled set keeps a multiple of its rounding unit (or all of its
  channels), judged on the kept counts of its producers."""
  kept = plan.kept_counts()
  for names, size in zip(cg.sets, cg.set_sizes()):
    unit = tfprune_groups.round_unit(int(size), round_to)
    for name in names:
      if kept[name] % unit and kept[name] != plan.layers[name].channels:
        return False
  return True


def run_model(name, keras, tfprune, tflite_export, folder, sparsity, steps):
  """Prune, shrink, convert and check one model; returns its row."""
  keras.backend.clear_session()
  keras.utils.set_random_seed(0)
  build = getattr(keras.applications, name)
  dense = build(weights=None, input_shape=(SIZE, SIZE, 3), classes=CLASSES)
  _fit(dense, keras, tfprune, steps, seed=1)
  start = time.perf_counter()
  pruned = tfprune.prune(dense, tfprune.methods.Magnitude('channel'),
                         schedule=sparsity)
  prune_s = time.perf_counter() - start
  _fit(pruned, keras, tfprune, steps, seed=2)
  stripped = tfprune.strip(pruned)
  start = time.perf_counter()
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    shrunk, plan = tfprune.shrink(stripped, return_plan=True)
  shrink_s = time.perf_counter() - start
  x = np.random.RandomState(3).rand(4, SIZE, SIZE, 3).astype(np.float32)
  gap = float(np.abs(shrunk.predict(x, verbose=0) -
                     stripped.predict(x, verbose=0)).max())
  method = tfprune.wrapper.collect_wrappers(pruned)[0].method
  cg = method.channel_groups
  masked, removed, agree = _mask_vs_plan(pruned, plan, tfprune)
  achieved = tfprune_groups.achieved_sparsity(cg)
  rounded = tfprune.prune(dense, tfprune.methods.Magnitude('channel'),
                          schedule=sparsity,
                          selection=tfprune.ChannelSelection(round_to=8))
  r_shrunk, r_plan = tfprune.shrink(rounded, return_plan=True)
  r_cg = tfprune.wrapper.collect_wrappers(rounded)[0].method.channel_groups
  paths = {}
  for key, model in (('dense', dense), ('shrunk', shrunk)):
    paths[key] = os.path.join(folder, f'{name}_{key}.tflite')
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      tflite_export.convert(model, paths[key])
  ok = tflite_export.check(paths['shrunk'], tfprune.report(stripped),
                           plan=plan).ok
  before = tfprune.report(dense)['totals']
  after = tfprune.report(shrunk)['totals']
  r_after = tfprune.report(r_shrunk)['totals']
  return {
      'name': name, 'params': (before['params'], after['params']),
      'macs': (before['macs'], after['macs']), 'gap': gap, 'check': ok,
      'prune_s': prune_s, 'shrink_s': shrink_s, 'achieved': achieved,
      'groups': cg.n_prunable, 'sets': len(cg.sets),
      'multi': sum(len(s) > 1 for s in cg.sets),
      'masked': masked, 'removed': removed, 'agree': agree,
      'warnings': [str(w.message) for w in caught],
      'round8_macs': r_after['macs'], 'round8_ok': _multiples(r_plan, r_cg, 8),
      'paths': paths}


def _table(rows, timing):
  lines = [
      '| model | params dense -> shrunk | MACs dense -> shrunk | MAC '
      'reduction | Torch-Pruning | round_to=8 MAC reduction (multiples ok) | '
      'achieved channel sparsity | channels masked / removed by shrink | '
      '1 thread dense ms | speedup | speedup / MAC red. | 2 threads dense ms '
      '| speedup | max abs diff | check | prune s | shrink s |',
      '|' + '---|' * 17]
  for r in rows:
    red = r['macs'][0] / r['macs'][1]
    t1 = timing[(r['paths']['shrunk'], 1)]
    d1 = timing[(r['paths']['dense'], 1)]
    t2 = timing[(r['paths']['shrunk'], 2)]
    d2 = timing[(r['paths']['dense'], 2)]
    tp = TORCH_PRUNING.get(r['name'])
    lines.append(
        f'| {r["name"]} | {r["params"][0]:,} -> {r["params"][1]:,} | '
        f'{r["macs"][0] / 1e6:.1f}M -> {r["macs"][1] / 1e6:.1f}M | '
        f'{red:.2f}x | {f"{tp:.1f}x" if tp else "-"} | '
        f'{r["macs"][0] / r["round8_macs"]:.2f}x '
        f'({"yes" if r["round8_ok"] else "NO"}) | '
        f'{100 * r["achieved"]:.1f}% of {r["groups"]:,} | '
        f'{r["masked"]:,} / {r["removed"]:,}'
        f'{"" if r["agree"] else " (DIFFER)"} | '
        f'{d1["median_us"] / 1e3:.2f} | {t1["ratio"]:.2f}x | '
        f'{t1["ratio"] / red:.2f} | {d2["median_us"] / 1e3:.2f} | '
        f'{t2["ratio"]:.2f}x | {r["gap"]:.1e} | '
        f'{"ok" if r["check"] else "FAILED"} | {r["prune_s"]:.1f} | '
        f'{r["shrink_s"]:.1f} |')
  return lines


def _reading(rows, timing):
  short, met = [], []
  for r in rows:
    red = r['macs'][0] / r['macs'][1]
    t1 = timing[(r['paths']['shrunk'], 1)]
    dense_ms = timing[(r['paths']['dense'], 1)]['median_us'] / 1e3
    value = t1['ratio'] / red
    label = f'{r["name"]} {value:.2f}'
    if dense_ms > 1.0:
      (met if value >= 0.8 else short).append(label)
  low = [r['name'] for r in rows if r['macs'][0] / r['macs'][1] < 3.0]
  off = [f'{r["name"]} {100 * r["achieved"]:.1f}%' for r in rows
         if abs(r['achieved'] - _SPARSITY.value) > 0.02]
  lines = ['### Reading it', '']
  lines.append('- MAC reduction >= 3.0x: ' + (
      'every model.' if not low else f'missed on {", ".join(low)}.'))
  lines.append('- 1-thread speedup / MAC reduction >= 0.8 (dense > 1 ms): '
               f'met on {", ".join(met) or "none"}' +
               (f'; short on {", ".join(short)}.' if short else '.'))
  lines.append('- Achieved channel sparsity within 2 points of the request: '
               + ('every model.' if not off else f'not on {", ".join(off)}.'))
  lines.append('- Masked channels equal the channels shrink removed, layer '
               'by layer: ' + ('every model.' if all(r['agree'] for r in rows)
                               else 'NOT on ' + ', '.join(
                                   r['name'] for r in rows
                                   if not r['agree']) + '.'))
  warned = [f'{r["name"]}: {w}' for r in rows for w in r['warnings']]
  if warned:
    lines.append('- shrink warnings: ' + ' | '.join(warned))
  return lines + ['']


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  import tfprune  # pylint: disable=g-import-not-at-top
  import tflite_export  # pylint: disable=g-import-not-at-top
  from benchmarks import results  # pylint: disable=g-import-not-at-top
  global tfprune_groups  # pylint: disable=global-statement
  from tfprune import groups as tfprune_groups  # pylint: disable=g-import-not-at-top,redefined-outer-name

  names = ['MobileNetV2'] if _QUICK.value else _MODELS.value
  steps = 1 if _QUICK.value else _STEPS.value
  rounds = 2 if _QUICK.value else _ROUNDS.value
  folder = tempfile.mkdtemp()
  rows = []
  for name in names:
    rows.append(run_model(name, keras, tfprune, tflite_export, folder,
                          _SPARSITY.value, steps))
    r = rows[-1]
    print(f'{name}: MACs {r["macs"][0]:,} -> {r["macs"][1]:,}, check '
          f'{r["check"]}, achieved {r["achieved"]:.3f}', flush=True)
  timing = {}
  for r in rows:       # each pair interleaved in one run
    result = tflite_export.bench(
        [r['paths']['dense'], r['paths']['shrunk']], threads=(1, 2),
        rounds=rounds, reference=r['paths']['dense'])
    timing.update({(t['path'], t['threads']): t for t in result['results']})
  command = 'python -m benchmarks.real_models'
  lines = ['## Channel groups on keras.applications nets', '',
           results.stamp(command), '',
           f'`Magnitude(\'channel\')` at {int(100 * _SPARSITY.value)}% with the'
           ' default `layers` (the logits are never wrapped), one-shot, uniform '
           'ranking over coupled channel groups (`tfprune.groups`). Each model:'
           f' `weights=None`, {SIZE}x{SIZE}x3, {CLASSES} classes; {steps} SGD '
           f'steps (batch {BATCH}) on random images before pruning and '
           f'{steps} with the masks held (BatchNorm statistics and shifts '
           'move, so a pruned channel is only exactly zero because its '
           'BatchNorm follower is masked too), then `strip`, `shrink`, float '
           '.tflite, `tflite_export.check` of the shrunk file against the '
           'stripped model\'s report with the shrink plan, and ai_edge_litert '
           '(XNNPACK) latency of dense vs shrunk, batch 1, each pair '
           f'interleaved in one run ({rounds} rounds). MACs are '
           '`tfprune.report` totals (Conv/Dense/Depthwise/Separable weights '
           'x output positions). "achieved channel sparsity" = removed '
           'prunable groups / prunable groups, read from the masks. '
           '"round_to=8" prunes the same trained weights again with '
           '`ChannelSelection(round_to=8)`. Torch-Pruning column: its MAC '
           'reduction on torchvision\'s version of the net at ratio 0.5, as '
           'measured for issue 14 (not rerun here).', '']
  lines += _table(rows, timing) + ['']
  lines += _reading(rows, timing)
  text = '\n'.join(lines)
  print(text)
  if _QUICK.value:
    print('quick run: RESULTS.md not written')
    return
  results.write_section('real_models', text)


if __name__ == '__main__':
  app.run(main)
