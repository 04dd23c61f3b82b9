"""Network Trimming: LeNet-5/MNIST trimmed over iterations, VGG-16 substitute.

LeNet-5 (Caffe 20-50-500-10 plus ReLUs after the convs, so conv channels
have an APoZ) is trained dense, then trimmed with
``tfprune.trim_and_retrain``: per iteration, APoZ of conv2's channels and
ip1's neurons on the validation split, units at or above mean + 1 std
trimmed and physically removed (shrink), retraining from the surviving
weights; stop when no unit passes the rule or validation accuracy falls more
than the tolerance. Widths, params and test accuracy after every iteration
go to the table, APoZ histograms before and after to a plot. VGG-16
(BatchNorm) runs the same loop on a substitute setting (Fashion-MNIST
zero-padded to 32x32, a stated width), trimming conv4_x/conv5_x, the two
layers with the highest mean APoZ per iteration.

    python -m benchmarks.network_trimming --data_dir=../shared/data
"""

from __future__ import annotations

import sys
import time

import numpy as np

from benchmarks import harness

PLOT = 'network_trimming_apoz.png'
CONTROL = ('The last row is the equal-budget control: the dense model '
           'trained on at the retraining LR for as many epochs as the '
           'listed trims retrained, untrimmed (a trimmed row owes part of '
           'any gain over trim 0 to those epochs).')


def get_config():
  vgg_layers = ','.join(f'conv{b}_{i}' for b in (4, 5) for i in (1, 2, 3))
  return harness.config(
      section='network_trimming', seed=0,
      lenet=dict(data=harness.data_config('mnist', validation=0.1),
                 layers='conv2,ip1', threshold_std=1.0, layers_per_trim=0,
                 epochs=8, retrain_epochs=2, iterations=8, tolerance=0.003,
                 batch_size=64, learning_rate=1e-3,
                 finetune_learning_rate=5e-4),
      vgg=dict(data=harness.data_config('fashion_mnist', image_size=32,
                                        validation=0.1),
               width=0.25, layers=vgg_layers, threshold_std=0.5,
               layers_per_trim=0, epochs=4, retrain_epochs=1, iterations=6,
               tolerance=0.003, batch_size=128, learning_rate=1e-3,
               finetune_learning_rate=5e-4),
      smoke=dict(
          lenet=dict(data=dict(train_examples=64, test_examples=200),
                     epochs=1, retrain_epochs=1, iterations=2),
          vgg=dict(data=dict(train_examples=16, test_examples=100),
                   width=0.125, epochs=1, iterations=1, batch_size=16)))


def trim_rows(s, model, train, val, test):
  """Dense training at ``s.learning_rate``, then the trim loop retraining
  at ``s.finetune_learning_rate``; rows for the table (the last: the dense
  model retrained as many epochs as the accepted trims had, the
  equal-budget control), APoZ before/after."""
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  import tfprune  # pylint: disable=g-import-not-at-top
  from tfprune import apoz  # pylint: disable=g-import-not-at-top
  from tfprune.methods import NetworkTrimming  # pylint: disable=g-import-not-at-top
  layers = s.layers.split(',')
  rates = [s.learning_rate]

  def compile_fn(m):   # the first call: dense training; then retraining
    m.compile(harness.optimizer('adam', rates[-1]),
              'sparse_categorical_crossentropy')
    rates.append(s.finetune_learning_rate)

  compile_fn(model)
  started = time.time()
  model.fit(*train, epochs=s.epochs, batch_size=s.batch_size, verbose=2)
  control = keras.models.clone_model(model)
  control.set_weights(model.get_weights())
  rows = []

  def record(it, m):
    rows.append({'iteration': it.iteration, 'trimmed': it.trimmed,
                 'widths': it.widths, 'params': it.params,
                 'val': it.validation_accuracy,
                 'test': harness.accuracy(m, *test),
                 'seconds': time.time() - started})

  kwargs = {'threshold_std': s.threshold_std}
  if s.layers_per_trim:
    kwargs['layers_per_trim'] = s.layers_per_trim
  final, history = tfprune.trim_and_retrain(
      model, train, val, layers, compile_fn, on_iteration=record,
      method=NetworkTrimming(**kwargs), retrain_epochs=s.retrain_epochs,
      iterations=s.iterations, tolerance=s.tolerance,
      batch_size=s.batch_size)
  before = history[1].apoz if len(history) > 1 else apoz.measure(
      model, val[0], layers)
  after = apoz.measure(final, val[0], layers)
  extra = (len(rows) - 1) * s.retrain_epochs
  compile_fn(control)
  if extra:
    control.fit(*train, epochs=extra, batch_size=s.batch_size, verbose=2)
  rows.append({'iteration': f'dense + {extra} epochs', 'trimmed': {},
               'widths': rows[0]['widths'], 'params': control.count_params(),
               'val': harness.accuracy(control, *val),
               'test': harness.accuracy(control, *test),
               'seconds': time.time() - started})
  return final, rows, before, after


def trim_table(rows, layers):
  base = rows[0]['params']
  cells = [[r['iteration'],
            ', '.join(f'{n} {k}' for n, k in r['trimmed'].items() if k)
            or '-'] + [r['widths'][n] for n in layers] +
           [f'{r["params"]:,}', f'{base / r["params"]:.2f}x',
            f'{100 * r["val"]:.2f}%', f'{100 * r["test"]:.2f}%',
            f'{r["seconds"]:.0f}'] for r in rows]
  return harness.table(['trim', 'trimmed units'] + layers +
                       ['params', 'compression', 'validation acc.',
                        'test acc.', 'elapsed s'], cells)


def _plot(panels):
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3))
  for ax, (title, before, after) in zip(np.atleast_1d(axes), panels):
    bins = np.linspace(0, 1, 21)
    ax.hist(before, bins=bins, alpha=0.6, label=f'before ({before.size})')
    ax.hist(after, bins=bins, alpha=0.6, label=f'after ({after.size})')
    ax.set_title(title, fontsize=9)
    ax.set_xlabel('APoZ')
    ax.legend(fontsize=7)
  axes = np.atleast_1d(axes)
  axes[0].set_ylabel('units')
  return fig


def run(ctx):
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  import tfprune  # pylint: disable=g-import-not-at-top
  import tflite_export  # pylint: disable=g-import-not-at-top
  c, l, v = ctx.config, ctx.config.lenet, ctx.config.vgg
  keras.utils.set_random_seed(c.seed)
  train, val, test = ctx.load(l.data)
  final, lenet_rows, l_before, l_after = trim_rows(
      l, tfprune.models.lenet5(conv_relu=True), train, val, test)
  out = ctx.tflite(final)
  lenet_tflite = (out['size'], tflite_export.evaluate(out['path'], *test))

  vtrain, vval, vtest = ctx.load(v.data)
  _, vgg_rows, v_before, v_after = trim_rows(
      v, tfprune.models.vgg16(vtrain[0].shape[1:], 10, width=v.width,
                              batch_norm=True), vtrain, vval, vtest)

  layers, vlayers = l.layers.split(','), v.layers.split(',')
  ctx.plot(_plot, PLOT, [(f'LeNet-5 {n}', l_before[n], l_after[n]) for n in layers] +
        [(f'VGG-16 {n}', v_before[n], v_after[n]) for n in vlayers[-2:]])
  lines = [
      '### LeNet-5 (with conv ReLUs) on MNIST', '',
      'Setting: LeNet-5 20-50-500-10 with a ReLU after each conv (Caffe\'s '
      f'has none; without it conv APoZ is 0), {harness.describe_data(l.data)}'
      f', {len(train[0]):,} train / {len(val[0]):,} validation (APoZ and the '
      f'stopping rule) / {len(test[0]):,} test. Dense training '
      f'{l.epochs} epochs (Adam {l.learning_rate:g}, batch '
      f'{l.batch_size}); then per trim (at most {l.iterations}): APoZ on the '
      f'validation split, units of {", ".join(layers)} with APoZ >= mean + '
      f'{l.threshold_std:g} std trimmed and removed (shrink), '
      f'{l.retrain_epochs} retraining epochs (Adam '
      f'{l.finetune_learning_rate:g}); stop when no unit passes or '
      f'validation accuracy falls more than {l.tolerance:g} below the '
      'dense model (that trim is undone and not listed). One seed. ' +
      CONTROL, '',
      trim_table(lenet_rows, layers), '',
      f'Final model as float .tflite: {lenet_tflite[0]:,} bytes, test '
      f'accuracy {100 * lenet_tflite[1]:.2f}%. The paper reports (20, 24, '
      '252) widths, 3.85x fewer params, at the baseline accuracy '
      '(recalled, docs/METHODS.md, Network Trimming).', '',
      '### VGG-16 (BatchNorm), substitute setting', '',
      f'{harness.substitute(v.data)}, VGG-16 at width {v.width:g}, dense '
      f'{v.epochs} epochs (Adam {v.learning_rate:g}, batch {v.batch_size}); '
      f'at most {v.iterations} trims of {", ".join(vlayers)}, '
      + (f'the {v.layers_per_trim} layers with the highest mean APoZ'
         if v.layers_per_trim else 'every one of them') +
      f' each time (APoZ >= mean + {v.threshold_std:g} std), '
      f'{v.retrain_epochs} retraining epoch(s) (Adam '
      f'{v.finetune_learning_rate:g}), tolerance {v.tolerance:g}. ' + CONTROL,
      '',
      trim_table(vgg_rows, vlayers), '',
      f'![APoZ histograms]({PLOT})', '',
      'APoZ of every unit of the trimmed layers, on the validation split, '
      'of the dense model (before) and of the final trimmed model (after).']
  return ('Network Trimming: LeNet-5 on MNIST, VGG-16 substitute',
          '\n'.join(lines))


if __name__ == '__main__':
  harness.main(sys.modules[__name__])
