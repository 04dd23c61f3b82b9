"""Channel groups at 50% on a trained MobileNetV2: accuracy after fine-tuning.

MobileNetV2 (``alpha=0.35``, 32x32x3, 10 classes, ``weights=None``) trained
from scratch on Fashion-MNIST (28x28 gray zero-padded by 2 px on each side
to 32x32, the gray channel replicated to 3, scaled to [0, 1]); a validation
split is held out of the training set. Then 50% of the channel groups
(:mod:`tfprune.groups`) are pruned three ways, each followed by the same
number of fine-tuning epochs:

* ``Magnitude('channel')``: one-shot on the trained model (L1 norm).
* ``PSP('filter')`` in target mode: a tfmot ``ConstantSparsity`` schedule
  with one update a quarter of the way through the fine-tuning; the alphas
  train before it (weight decay on alpha, SGD momentum), the update keeps the
  groups with the largest ``|alpha|`` and the masks are held after it. One
  row per weight decay (``config.psp_decays``).
* ``NetworkTrimming``: APoZ measured on the held-out validation split, then
  the group ranking of ``1 - APoZ`` at 50% one-shot. APoZ needs a ReLU after
  the layer, so only the convs that have one are wrapped (not the linear
  bottleneck ``*_project`` convs).

Every pruned model is stripped and shrunk; the table gives test accuracy
(official test split), achieved channel sparsity, params/MACs, .tflite size,
1-thread latency (dense and the shrunk models interleaved in one
``tflite_export.bench`` call), the TFLite check of each shrunk file and how
far BatchNorm moving variances are from the true ones.

Dense 5 epochs, 2 fine-tuning epochs per row, batch 128, SGD momentum,
BatchNorm momentum 0.99: about 15-25 minutes on 2 CPU cores.

    python -m benchmarks.groups_accuracy --data_dir=../shared/data
"""

from __future__ import annotations

import logging as std_logging
import sys
import time
import warnings

import numpy as np

from benchmarks import harness


def get_config():
  return harness.config(
      section='groups_accuracy', alpha=0.35, classes=10,
      data=harness.data_config('fashion_mnist', image_size=32, channels=3,
                               validation=5000),
      epochs=5, finetune=2, batch_size=128, momentum=0.9, learning_rate=0.05,
      finetune_learning_rate=0.005, sparsity=0.5, psp_update=0.25,
      psp_decays=[1e-2, 1e-3, 0.0], bn_momentum=0.99, rounds=7,
      bn_images=1024, gap_images=500, blocks=0,
      smoke=dict(data=dict(validation=32, train_examples=32,
                           test_examples=32),
                 epochs=1, finetune=1, batch_size=32, psp_decays=[1e-2],
                 rounds=1, bn_images=32, gap_images=16, blocks=2))


def build_mobilenet_v2(keras, c, blocks: int = 0):
  """The study's MobileNetV2 (``c``: alpha, data, classes, bn_momentum);
  the Keras 3 study builds the same one.

  ``blocks`` > 0 keeps only the stem and the first ``blocks`` inverted
  residual blocks, then global pooling and the classifier: the smoke
  setting, a few dozen layers with the same kinds of couplings (residual
  add, depthwise, BatchNorm followers, linear bottlenecks) instead of 155.
  """
  bn_momentum = c.bn_momentum
  model = keras.applications.MobileNetV2(
      alpha=c.alpha, input_shape=(c.data.image_size, c.data.image_size,
                                  c.data.channels),
      weights=None, classes=c.classes)
  if blocks:
    names = {layer.name for layer in model.layers}
    last = next(n for n in (f'block_{blocks}_add',
                            f'block_{blocks}_project_BN') if n in names)
    x = keras.layers.GlobalAveragePooling2D()(model.get_layer(last).output)
    outputs = keras.layers.Dense(c.classes, activation='softmax',
                                 name='predictions')(x)
    model = keras.Model(model.inputs, outputs)
  if bn_momentum <= 0:
    return model

  def clone(layer):
    config = layer.get_config()
    if isinstance(layer, keras.layers.BatchNormalization):
      config['momentum'] = bn_momentum
    return layer.__class__.from_config(config)

  return keras.models.clone_model(model, clone_function=clone)


def _shrunk_sparsity(cg, plan) -> float:
  """Fraction of the prunable groups that shrink removed from every
  producer member (to compare with what the masks say)."""
  dead = np.zeros(cg.n_groups, bool)
  alive = np.zeros(cg.n_groups, bool)
  for member in cg.members:
    if member.scored:
      gone = np.zeros(member.groups.size, bool)
      gone[plan.layers[member.wrapper.layer.name].removed] = True
      np.logical_or.at(alive, member.groups, ~gone)
      np.logical_or.at(dead, member.groups, gone)
  ids = cg.prunable
  return float((dead[ids] & ~alive[ids]).sum()) / max(ids.size, 1)


def _bn_lag(model, x, keras):
  """(worst ratio, layer): per BatchNormalization layer, the median over
  its channels (gamma != 0) of moving variance / the variance its input
  really has in inference mode on ``x``; the largest over the layers."""
  bns = [l for l in model.layers
         if isinstance(l, keras.layers.BatchNormalization)]
  probe = keras.Model(model.inputs, [l.input for l in bns])
  outs = probe.predict(x, batch_size=256, verbose=0)
  worst = (0.0, '')
  for layer, out in zip(bns, outs):
    gamma, _, _, moving_var = layer.get_weights()
    var = out.reshape(-1, out.shape[-1]).var(0)
    live = (gamma != 0) & (var > 0)
    if live.any():
      ratio = float(np.median(moving_var[live] / var[live]))
      worst = max(worst, (ratio, layer.name))
  return worst


def _relu_layers(model, keras, apoz_lib):
  """Conv/depthwise layers with a ReLU after them (what APoZ can measure)."""
  names = []
  for layer in model.layers:
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
      try:
        apoz_lib.relu_output(model, layer.name)
      except ValueError:
        continue
      names.append(layer.name)
  return names


def run(ctx):
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  import tfprune  # pylint: disable=g-import-not-at-top
  import tflite_export  # pylint: disable=g-import-not-at-top
  from tfprune import apoz as apoz_lib  # pylint: disable=g-import-not-at-top
  from tfprune import groups as groups_lib  # pylint: disable=g-import-not-at-top
  from tfprune.methods import PSP, Magnitude, NetworkTrimming  # pylint: disable=g-import-not-at-top
  psp_warnings = []

  class _Keep(std_logging.Handler):
    def emit(self, record):
      if record.getMessage().startswith('PSP'):
        psp_warnings.append(record.getMessage())

  keep = _Keep()
  std_logging.getLogger('tfprune').addHandler(keep)

  started = time.time()
  c = ctx.config
  epochs, finetune, rounds = c.epochs, c.finetune, c.rounds
  batch, sparsity, seed = c.batch_size, c.sparsity, c.data.seed
  train, (x_val, y_val), (x_test, y_test) = ctx.load(c.data)
  x_train = train[0]
  n_val = len(x_val)
  steps_per_epoch = int(np.ceil(len(x_train) / batch))

  def sgd(lr):
    return harness.optimizer('sgd', lr, c.momentum)

  def fit(model, epochs, opt, **kwargs):
    return harness.fit(model, train, epochs, opt, batch,
                       harness.pruning_step(), metrics=['accuracy'],
                       **kwargs).history.history

  # --- dense --------------------------------------------------------------
  keras.utils.set_random_seed(seed)
  dense = build_mobilenet_v2(keras, c, c.blocks)
  bn_momentum = next(l.momentum for l in dense.layers
                     if isinstance(l, keras.layers.BatchNormalization))
  t0 = time.time()
  lr = keras.optimizers.schedules.CosineDecay(c.learning_rate,
                                              epochs * steps_per_epoch)
  fit(dense, epochs, sgd(lr), validation_data=(x_val, y_val))
  dense_s = time.time() - t0
  epoch_s = dense_s / epochs
  dense_acc = harness.accuracy(dense, x_test, y_test)
  print(f'dense: test accuracy {dense_acc:.4f} ({dense_s:.0f} s, '
        f'{epoch_s:.0f} s/epoch)', flush=True)

  # --- the three methods --------------------------------------------------
  finetune_steps = finetune * steps_per_epoch
  psp_step = max(1, int(c.psp_update * finetune_steps))   # one update
  relu_names = _relu_layers(dense, keras, apoz_lib)
  decays = [float(d) for d in c.psp_decays]
  keys = (['Magnitude'] + [f'PSP {d:g}' for d in decays] +
          ['NetworkTrimming'])
  psp_keys = [k for k in keys if k.startswith('PSP')]
  runs = {}
  for name in keys:
    keras.utils.set_random_seed(seed + 1)
    t0 = time.time()
    apoz_s = 0.0
    if name == 'Magnitude':
      method = Magnitude('channel')
      pruned = tfprune.prune(dense, method, schedule=sparsity)
    elif name.startswith('PSP'):
      method = PSP('filter', weight_decay=decays[psp_keys.index(name)])
      # One update: alphas train unmasked until psp_step, then the masks
      # are written once and held. (Repeated re-ranking can unmask a group
      # whose weights were already zeroed; shrink then removes it too, so
      # the model ends up sparser than the schedule.)
      schedule = tfprune.schedules.ConstantSparsity(
          sparsity, begin_step=psp_step, end_step=psp_step, frequency=1)
      pruned = tfprune.prune(dense, method, schedule=schedule)
    else:
      method = NetworkTrimming()
      pruned = tfprune.prune(dense, method, layers=relu_names)
      wrappers = tfprune.wrapper.collect_wrappers(pruned)
      a0 = time.time()
      # APoZ on the dense model: same weights as the wrapped copy, whose
      # BatchNorm followers apoz.followers() does not walk through.
      method.measure(dense, x_val, wrappers)
      apoz_s = time.time() - a0
      method.update_masks(wrappers, sparsity, 0)
    before_acc = harness.accuracy(pruned, x_test, y_test)
    ft = fit(pruned, finetune, sgd(c.finetune_learning_rate))
    wrappers = tfprune.wrapper.collect_wrappers(pruned)
    method = wrappers[0].method
    cg = method.channel_groups
    stripped = tfprune.strip(pruned)
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter('always')
      shrunk, plan = tfprune.shrink(stripped, return_plan=True)
    acc = harness.accuracy(shrunk, x_test, y_test)
    gap = float(np.abs(shrunk.predict(x_test[:c.gap_images], verbose=0) -
                       pruned.predict(x_test[:c.gap_images], verbose=0)).max())
    run = {'method': method, 'pruned': pruned, 'stripped': stripped,
           'shrunk': shrunk, 'plan': plan, 'accuracy': acc,
           'before': before_acc, 'gap': gap,
           'achieved': groups_lib.achieved_sparsity(cg),
           'removed': _shrunk_sparsity(cg, plan),
           'unmasked_removed': sum(
               int((np.asarray(w.masks[0]).reshape(-1) != 0)[
                   plan.layers[w.layer.name].removed].sum())
               for w in wrappers),
           'groups': cg.n_prunable, 'wrapped': len(wrappers),
           'seconds': time.time() - t0, 'apoz_s': apoz_s,
           'loss': ft['loss'][-1], 'bn_lag': _bn_lag(
               shrunk, x_val[:c.bn_images], keras),
           'shrink_warnings': [str(w.message) for w in caught]}
    if name.startswith('PSP'):
      alive = np.concatenate([np.asarray(w.masks[0]).ravel() != 0
                              for w in wrappers])
      alpha = np.concatenate([np.abs(np.asarray(w.gates[0])).ravel()
                              for w in wrappers])
      run['alpha'] = {'kept': np.median(alpha[alive]),
                      'pruned': np.median(alpha[~alive]),
                      'kept_p10_p90': np.percentile(alpha[alive], [10, 90])}
    if name == 'NetworkTrimming':
      values = np.concatenate(list(method.apoz_values.values()))
      run['apoz'] = {'mean': float(values.mean()),
                     'p10_p90': np.percentile(values, [10, 90])}
    runs[name] = run
    print(f'{name}: test accuracy {before_acc:.4f} after pruning, '
          f'{acc:.4f} after {finetune} fine-tuning epoch(s); achieved '
          f'{run["achieved"]:.3f} of {run["groups"]} groups (shrink removed '
          f'{run["removed"]:.3f}), max |shrunk - '
          f'pruned| {gap:.1e} ({run["seconds"]:.0f} s)', flush=True)

  # --- TFLite: convert, check, one interleaved timing run -----------------
  paths = {'dense': ctx.tflite(dense, 'dense')['path']}
  for name, run in runs.items():
    paths[name] = ctx.tflite(run['shrunk'], name.replace(' ', '_'))['path']
  checks = {'dense': tflite_export.check(paths['dense'],
                                         tfprune.report(dense)).ok}
  for name, run in runs.items():
    checks[name] = tflite_export.check(
        paths[name], tfprune.report(run['stripped']), plan=run['plan']).ok
  by_key, load = ctx.bench([paths[k] for k in ['dense'] + keys],
                           threads=(1,), rounds=rounds,
                           reference=paths['dense'])
  by_path = {path: r for (path, _), r in by_key.items()}
  wall = time.time() - started

  # --- the section --------------------------------------------------------
  totals = {'dense': tfprune.report(dense)['totals']}
  totals.update({n: tfprune.report(r['shrunk'])['totals']
                 for n, r in runs.items()})
  labels = {'dense': 'dense', 'Magnitude': "Magnitude('channel') one-shot",
            'NetworkTrimming': 'NetworkTrimming (1 - APoZ) one-shot'}
  labels.update({k: f"PSP('filter', weight_decay={d:g}) target"
                 for k, d in zip(psp_keys, decays)})
  dense_lag = _bn_lag(dense, x_val[:c.bn_images], keras)
  header = ('| model | test acc. | achieved channel sparsity (of prunable '
            'groups) | groups removed by shrink | params | MACs | .tflite '
            'bytes | 1-thread latency ms | speedup vs dense | TFLite check | '
            'fine-tune epochs | BN moving/true variance, worst layer |')
  lines = [header, '|' + '---|' * 12]
  dense_t = by_path[paths['dense']]
  for key in ['dense'] + keys:
    t = by_path[paths[key]]
    run = runs.get(key)
    acc = dense_acc if run is None else run['accuracy']
    achieved = ('-' if run is None else
                f'{100 * run["achieved"]:.1f}% of {run["groups"]:,}')
    removed = '-' if run is None else f'{100 * run["removed"]:.1f}%'
    lines.append(
        f'| {labels[key]} | {100 * acc:.2f}% | {achieved} | {removed} | '
        f'{totals[key]["params"]:,} | {totals[key]["macs"] / 1e6:.3f}M | '
        f'{t["size"]:,} | {t["median_us"] / 1e3:.3f} | '
        f'{t["ratio"]:.2f}x | {"ok" if checks[key] else "FAILED"} | '
        f'{"-" if run is None else finetune} | '
        f'{(dense_lag if run is None else run["bn_lag"])[0]:.3g} |')
  table = '\n'.join(lines)

  def mac_red(key):
    return totals['dense']['macs'] / totals[key]['macs']

  reading = ['### Reading it', '']
  best = max(keys, key=lambda k: runs[k]['accuracy'])
  drops = ', '.join(f'{k} {100 * (runs[k]["accuracy"] - dense_acc):+.2f}'
                    for k in keys)
  reading.append(f'- Test accuracy vs dense ({100 * dense_acc:.2f}%) after '
                 f'{finetune} fine-tuning epoch(s), in points: {drops}; '
                 f'best: {best}. Right after pruning, before fine-tuning: ' +
                 ', '.join(f'{k} {100 * runs[k]["before"]:.2f}%'
                           for k in keys) +
                 ' (PSP: no masks yet, its one update comes during the '
                 'fine-tune, so this is the dense accuracy).')
  collapsed = [k for k in keys if runs[k]['accuracy'] < 0.5]
  if collapsed:
    reading.append(f'- Collapsed (test accuracy below 50%): '
                   f'{", ".join(collapsed)}.')
  off = [f'{k} {100 * runs[k]["achieved"]:.1f}%' for k in keys
         if abs(runs[k]['achieved'] - sparsity) > 0.02]
  reading.append(
      '- Achieved channel sparsity within 2 points of the requested '
      f'{100 * sparsity:g}%: ' + ('every method' if not off else
                                  f'not {", ".join(off)}') +
      f'. NetworkTrimming counts {runs["NetworkTrimming"]["groups"]:,} '
      f'prunable groups against {runs["Magnitude"]["groups"]:,} for the '
      'others: the linear-bottleneck `*_project` convs have no ReLU, so APoZ '
      'cannot score them and they are not wrapped; its MAC reduction is '
      f'{mac_red("NetworkTrimming"):.2f}x against '
      f'{mac_red("Magnitude"):.2f}x for Magnitude and ' + ', '.join(
          f'{mac_red(k):.2f}x' for k in psp_keys) + ' for PSP (uniform '
      'ranking removes the same number of channels from every coupled set, '
      'so Magnitude and PSP shrink to the same shapes).')
  extra = [f'{k} {100 * runs[k]["removed"]:.1f}%' for k in keys
           if abs(runs[k]['removed'] - runs[k]['achieved']) > 1e-9]
  reading.append(
      '- Groups shrink removed vs groups the masks remove: ' +
      ('equal for every method.' if not extra else
       'shrink removed more for ' + ', '.join(extra) + ' (' + ', '.join(
           f'{k}: {runs[k]["unmasked_removed"]:,} unmasked producer channels'
           ' removed' for k in keys if runs[k]['unmasked_removed']) +
       '): channels the masks keep but whose output is zero or constant '
       'after fine-tuning go too, so that model is smaller than the mask '
       'sparsity says.'))
  reading.append(
      '- 1-thread speedup of the shrunk .tflite over dense (one interleaved '
      'run): ' + ', '.join(
          f'{k} {by_path[paths[k]]["ratio"]:.2f}x for {mac_red(k):.2f}x fewer'
          ' MACs' for k in keys) +
      f'; dense takes {dense_t["median_us"] / 1e3:.3f} ms, so fixed per-op '
      'overhead is a large share of it.')
  reading.append('- TFLite check of every shrunk file against its stripped '
                 'model\'s report and shrink plan: ' +
                 ('ok for all.' if all(checks.values()) else
                  'FAILED for ' + ', '.join(k for k, v in checks.items()
                                            if not v) + '.'))
  reading.append(
      '- PSP alphas after fine-tuning, median |alpha| of kept filters '
      '(10th-90th percentile) / of pruned ones: ' + '; '.join(
          f'lambda {d:g}: {runs[k]["alpha"]["kept"]:.4f} '
          f'({runs[k]["alpha"]["kept_p10_p90"][0]:.4f}-'
          f'{runs[k]["alpha"]["kept_p10_p90"][1]:.4f}) / '
          f'{runs[k]["alpha"]["pruned"]:.4f}'
          for k, d in zip(psp_keys, decays)) +
      '. Every conv of MobileNetV2 feeds a BatchNormalization, which '
      'removes the scale of each output channel in training, so a filter '
      'alpha gets almost no gradient from the data; the decay shrinks all '
      'alphas alike and the ranking rests on small differences, not on a '
      'learned importance' + (' (tfprune logs a warning saying so when '
                              'the fine-tune starts)' if psp_warnings
                              else '') + '.')
  lag = {k: runs[k]['bn_lag'] for k in keys}
  reading.append(
      '- BatchNorm moving variance / the variance its input really has in '
      'inference mode (median over channels, worst layer, '
      f'{min(c.bn_images, n_val):,} validation images): dense {dense_lag[0]:.3g} ({dense_lag[1]}), ' + ', '.join(
          f'{k} {v[0]:.3g} ({v[1]})' for k, v in lag.items()) + '. ' +
      ('With weight decay on alpha, every alpha shrinks a little every '
       'step; each BatchNorm\'s moving variance trails the shrinking scale '
       'of its input, so in inference mode every layer\'s output comes out '
       'slightly too small, and the error compounds through the ~50 '
       'BatchNorm layers; training mode uses batch statistics and does not '
       'see it. PSP rows whose ratio is far above dense\'s lose accuracy '
       'from these statistics, not necessarily from the channels they '
       'removed.' if any(lag[k][0] > 3 * max(dense_lag[0], 1.0) and d > 0
                         for k, d in zip(psp_keys, decays)) else
       'No row is far from the dense ratio: the moving statistics fit the '
       'fine-tuned weights.'))
  ap = runs['NetworkTrimming']['apoz']
  reading.append(
      f'- APoZ on the {n_val:,} validation images: mean '
      f'{ap["mean"]:.3f} over the wrapped channels (10th-90th percentile '
      f'{ap["p10_p90"][0]:.3f}-{ap["p10_p90"][1]:.3f}); measured in '
      f'{runs["NetworkTrimming"]["apoz_s"]:.1f} s.')
  gaps = max(r['gap'] for r in runs.values())
  reading.append(f'- Shrunk vs wrapped model, max |softmax difference| on '
                 f'{c.gap_images} test images: {gaps:.1e} (shrink removes exactly the '
                 'masked channels).')
  warned = [f'{k}: {w}' for k in keys for w in runs[k]['shrink_warnings']]
  if warned:
    reading.append('- shrink warnings: ' + ' | '.join(warned))

  prose = (
      f'MobileNetV2 (`keras.applications.MobileNetV2(alpha={c.alpha:g}, '
      f'input_shape=({c.data.image_size}, {c.data.image_size}, '
      f'{c.data.channels}), weights=None, classes={c.classes})`'
      + (f', truncated after inverted residual block {c.blocks} and given a '
         'pooled softmax classifier' if c.blocks else '')
      + (f', BatchNormalization momentum set to {bn_momentum:g}'
         if c.bn_momentum > 0 else '') +
      f') trained from scratch on {harness.describe_data(c.data)} (pixels '
      'scaled to [0, 1]). '
      f'{n_val:,} training images (seed {seed}) are held out as the '
      f'validation split; every model trains on the other {len(x_train):,}; '
      f'test accuracy is on the official test split ({len(x_test):,} '
      f'images). Dense: {epochs} epochs, batch {batch}, SGD(momentum 0.9), '
      f'LR {c.learning_rate:g} cosine-decayed to 0 (BatchNorm momentum '
      f'{bn_momentum:g}); {epoch_s:.0f} s per epoch here. Each method then '
      f'prunes {100 * sparsity:g}% of the channel groups of the trained '
      'model (uniform ranking per coupled set, `tfprune.groups`) and is '
      f'fine-tuned {finetune} epoch(s) at batch {batch} with SGD(momentum '
      f'{c.momentum:g}), constant LR {c.finetune_learning_rate:g} (PSP\'s decay matches its '
      'paper only with SGD momentum; every method gets the same recipe). '
      "(1) `Magnitude('channel')`, one-shot (`schedule=" f'{sparsity:g}`), default '
      'layers (every conv but the logits). '
      "(2) `PSP('filter', weight_decay=lambda)` in target mode, one row per "
      'lambda in {' + ', '.join(f'{d:g}' for d in decays) + '} (lambda 0: '
      'the alphas are trained by the data alone), default layers: tfmot `ConstantSparsity(' f'{sparsity:g}, '
      f'begin_step={psp_step}, end_step={psp_step})`, i.e. the alphas train '
      f'(weights and alphas, no masks) for the first {psp_step} of the '
      f'{finetune_steps} fine-tuning steps, then one update masks the groups '
      'with the smallest |alpha| (each layer\'s |alpha| divided by its mean, '
      'averaged over the group) and the rest of the fine-tune runs with the '
      'masks held. One update rather than a gradual PolynomialDecay: '
      're-ranking alphas can unmask a group whose weights and BatchNorm '
      'scale/shift were already zeroed, which shrink then removes anyway, '
      'so the model would end up sparser than 50%. The update comes early '
      'in the fine-tune because the BatchNorm moving statistics need the '
      'steps after a mask change to catch up: in trials with the update '
      'halfway through a single fine-tuning epoch, inference-mode accuracy '
      'fell far below training-mode accuracy (batch statistics), for a '
      'Magnitude mask written at the same step too. (3) `NetworkTrimming()` wrapping the '
      f'{len(relu_names)} convs that a ReLU follows (Conv1, every '
      '`*_expand`, every `*_depthwise`, Conv_1; not the linear-bottleneck '
      '`*_project` convs, which have none): APoZ measured with '
      '`method.measure` on the validation split, then '
      f'`method.update_masks(wrappers, {sparsity:g}, 0)`, the generic group '
      'ranking of 1 - APoZ, one-shot. (The measurement runs on the trained '
      'dense model, which has the same weights as the wrapped copy: on the '
      'wrapped model `apoz.relu_output` fails, because the BatchNorm between '
      'conv and ReLU is now a follower PruningWrapper that `apoz.followers` '
      'does not walk through.) Achieved channel sparsity = '
      '`tfprune.groups.achieved_sparsity(method.channel_groups)`, removed '
      'prunable groups over prunable groups, read from the masks; "groups '
      'removed by shrink" counts the same groups removed from every producer'
      ' in the shrink plan. Params and MACs are '
      '`tfprune.report(model)["totals"]` of dense and of each model after '
      '`strip` + `shrink`; test accuracy of the pruned rows is the shrunk '
      'Keras model\'s. .tflite: float32 `tflite_export.convert`; latency: '
      'ai_edge_litert (XNNPACK), batch 1, 1 thread, median of dense and the '
      f'{len(keys)} shrunk files interleaved in one `tflite_export.bench` '
      'call '
      f'({rounds} rounds; load average {load:.2f} at the end, '
      'another process may have been training); check: `tflite_export.'
      'check(shrunk_path, tfprune.report(stripped), plan=plan).ok` (dense: '
      'against its own report). One seed; '
      f'whole command {wall / 60:.1f} min wall clock.')
  std_logging.getLogger('tfprune').removeHandler(keep)
  return ('Channel groups: accuracy of three methods at '
          f'{100 * sparsity:g}% on MobileNetV2 / Fashion-MNIST',
          '\n'.join([prose, '', table, ''] + reading))



if __name__ == '__main__':
  harness.main(sys.modules[__name__])
