"""Network Trimming: LeNet-5/MNIST trimmed over iterations, VGG-16 substitute.

LeNet-5 (Caffe 20-50-500-10 plus ReLUs after the convs, so conv channels
have an APoZ) is trained dense, then trimmed with
``tfprune.trim_and_retrain``: per iteration, APoZ of conv2's
channels and ip1's neurons on the validation split, units at or above
mean + 1 std trimmed and physically removed (shrink), retraining from the
surviving weights; stop when no unit passes the rule or validation accuracy
falls more than the tolerance. Widths, params and test accuracy after every
iteration go to the table, APoZ histograms before and after to a plot.
VGG-16 (BatchNorm) runs the same loop on a substitute setting (Fashion-MNIST
zero-padded to 32x32, a stated width), trimming conv4_x/conv5_x, the two
layers with the highest mean APoZ per iteration.

    python -m benchmarks.network_trimming --data_dir=../shared/data
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
_ITERATIONS = flags.DEFINE_integer('iterations', 8, 'Most LeNet-5 trims.')
_RETRAIN = flags.DEFINE_integer('retrain_epochs', 2,
                                'LeNet-5 retraining epochs per trim.')
_TOLERANCE = flags.DEFINE_float('tolerance', 0.003,
                                'Largest validation-accuracy drop accepted.')
_VGG_WIDTH = flags.DEFINE_float('vgg_width', 0.25, 'VGG-16 width factor.')
_VGG_EPOCHS = flags.DEFINE_integer('vgg_epochs', 4, 'VGG-16 dense epochs.')
_VGG_ITERATIONS = flags.DEFINE_integer('vgg_iterations', 4,
                                       'Most VGG-16 trims.')
_SMOKE = flags.DEFINE_integer(
    'smoke', 0, 'If > 0: this many training examples, 1 epoch, 2 trims; '
    'RESULTS.md is not written.')

PLOT = os.path.join('docs', 'network_trimming_apoz.png')


def _accuracy(model, x, y) -> float:
  return float((model.predict(x, batch_size=1000, verbose=0).argmax(-1)
                == y).mean())


def _run(model, train, val, test, layers, compile_fn, epochs, **trim_args):
  """Dense training, then the trim loop; rows for the table."""
  import tfprune  # pylint: disable=g-import-not-at-top
  from tfprune import apoz  # pylint: disable=g-import-not-at-top
  compile_fn(model)
  started = time.time()
  model.fit(*train, epochs=epochs, batch_size=trim_args['batch_size'],
            verbose=2)
  rows = []

  def record(it, m):
    rows.append({'iteration': it.iteration, 'trimmed': it.trimmed,
                 'widths': it.widths, 'params': it.params,
                 'val': it.validation_accuracy,
                 'test': _accuracy(m, *test),
                 'seconds': time.time() - started})

  final, history = tfprune.trim_and_retrain(model, train, val, layers, compile_fn,
                           on_iteration=record, **trim_args)
  before = history[1].apoz if len(history) > 1 else apoz.measure(
      model, val[0], layers)
  after = apoz.measure(final, val[0], layers)
  return final, rows, before, after


def _table(rows, layers):
  head = ('| trim | trimmed units | ' + ' | '.join(layers) +
          ' | params | compression | validation acc. | test acc. | '
          'elapsed s |')
  lines = [head, '|' + '---|' * (len(layers) + 7)]
  base = rows[0]['params']
  for r in rows:
    trimmed = ', '.join(f'{n} {k}' for n, k in r['trimmed'].items() if k)
    lines.append(
        f'| {r["iteration"]} | {trimmed or "-"} | ' +
        ' | '.join(str(r['widths'][n]) for n in layers) +
        f' | {r["params"]:,} | {base / r["params"]:.2f}x | '
        f'{100 * r["val"]:.2f}% | {100 * r["test"]:.2f}% | '
        f'{r["seconds"]:.0f} |')
  return '\n'.join(lines)


def _plot(panels, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
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
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  sys.path.insert(0, root)
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  import tfprune  # pylint: disable=g-import-not-at-top
  import tflite_export  # pylint: disable=g-import-not-at-top
  from tfprune import experiment  # pylint: disable=g-import-not-at-top
  from tfprune.methods import NetworkTrimming  # pylint: disable=g-import-not-at-top
  from benchmarks import results  # pylint: disable=g-import-not-at-top
  from configs import lenet5_mnist_trimming, vgg16_trimming  # pylint: disable=g-import-not-at-top

  smoke = _SMOKE.value
  tmp = tempfile.mkdtemp()

  # --- LeNet-5 ---------------------------------------------------------------------
  config = lenet5_mnist_trimming.get_config()
  keras.utils.set_random_seed(config.seed)
  train, val, test = experiment.load_data(config, _DATA_DIR.value)
  if smoke:
    train = (train[0][:smoke], train[1][:smoke])
  layers = [n for n in config.layers.split(',') if n]
  epochs = 1 if smoke else config.pretrain_epochs

  def lenet_compile(m, lr=config.learning_rate):
    m.compile(keras.optimizers.Adam(lr), 'sparse_categorical_crossentropy')

  first = [True]

  def compile_fn(m):   # dense training at lr, retraining at the lower LR
    lenet_compile(m, config.learning_rate if first[0]
                  else config.finetune_learning_rate)
    first[0] = False

  method = NetworkTrimming(threshold_std=config.method_kwargs.threshold_std)
  final, lenet_rows, l_before, l_after = _run(
      tfprune.models.lenet5(conv_relu=True), train, val, test, layers,
      compile_fn, epochs, method=method,
      retrain_epochs=1 if smoke else _RETRAIN.value,
      iterations=2 if smoke else _ITERATIONS.value,
      tolerance=_TOLERANCE.value, batch_size=config.batch_size)
  path = os.path.join(tmp, 'lenet.tflite')
  size = tflite_export.convert(final, path)['size']
  lenet_tflite = (size, tflite_export.evaluate(path, *test))

  # --- VGG-16, substitute setting ---------------------------------------------------
  vconfig = vgg16_trimming.get_config()
  vconfig.dataset = 'fashion_mnist'
  vtrain, vval, vtest = experiment.load_data(vconfig, _DATA_DIR.value)
  if smoke:
    vtrain = (vtrain[0][:smoke], vtrain[1][:smoke])
  vlayers = [n for n in vconfig.layers.split(',') if n]
  width = _VGG_WIDTH.value
  vfirst = [True]

  def vgg_compile(m):
    m.compile(keras.optimizers.Adam(
        vconfig.learning_rate if vfirst[0] else vconfig.finetune_learning_rate),
              'sparse_categorical_crossentropy')
    vfirst[0] = False

  vmethod = NetworkTrimming(
      threshold_std=vconfig.method_kwargs.threshold_std,
      layers_per_trim=vconfig.method_kwargs.layers_per_trim)
  vepochs = 1 if smoke else _VGG_EPOCHS.value
  _, vgg_rows, v_before, v_after = _run(
      tfprune.models.vgg16(vtrain[0].shape[1:], 10, width=width,
                           batch_norm=True),
      vtrain, vval, vtest, vlayers, vgg_compile, vepochs, method=vmethod,
      retrain_epochs=1, iterations=2 if smoke else _VGG_ITERATIONS.value,
      tolerance=vconfig.method_kwargs.tolerance,
      batch_size=vconfig.batch_size)

  print(_table(lenet_rows, layers))
  print(_table(vgg_rows, vlayers))
  if smoke:
    print('smoke run: RESULTS.md not written')
    return

  _plot([(f'LeNet-5 {n}', l_before[n], l_after[n]) for n in layers] +
        [(f'VGG-16 {n}', v_before[n], v_after[n]) for n in vlayers[-2:]],
        os.path.join(root, PLOT))
  lines = [
      '## Network Trimming: LeNet-5 on MNIST, VGG-16 substitute', '',
      results.stamp('python -m benchmarks.network_trimming '
                    '--data_dir=../shared/data'), '',
      '### LeNet-5 (with conv ReLUs) on MNIST', '',
      f'Setting: LeNet-5 20-50-500-10 with a ReLU after each conv (Caffe\'s '
      f'has none; without it conv APoZ is 0), official MNIST, '
      f'{len(train[0]):,} train / {len(val[0]):,} validation (APoZ and the '
      f'stopping rule) / {len(test[0]):,} test. Dense training '
      f'{epochs} epochs (Adam {config.learning_rate}, batch '
      f'{config.batch_size}); then per trim: APoZ on the validation split, '
      f'units of {", ".join(layers)} with APoZ >= mean + '
      f'{config.method_kwargs.threshold_std} std trimmed and removed '
      f'(shrink), {_RETRAIN.value} retraining epochs (Adam '
      f'{config.finetune_learning_rate}); stop when no unit passes or '
      f'validation accuracy falls more than {_TOLERANCE.value} below the '
      'dense model (that trim is undone and not listed). One seed.', '',
      _table(lenet_rows, layers), '',
      f'Final model as float .tflite: {lenet_tflite[0]:,} bytes, test '
      f'accuracy {100 * lenet_tflite[1]:.2f}%. The paper reports (20, 24, '
      '252) widths, 3.85x fewer params, at the baseline accuracy '
      '(recalled, METHODS.md section 3).', '',
      '### VGG-16 (BatchNorm), substitute setting', '',
      f'CIFAR-10 is not available offline. Substitute: Fashion-MNIST '
      f'zero-padded to 32x32 (one channel), VGG-16 at width {width}, dense '
      f'{vepochs} epochs (Adam {vconfig.learning_rate}, batch '
      f'{vconfig.batch_size}); trims of {", ".join(vlayers)}, the '
      f'{vconfig.method_kwargs.layers_per_trim} layers with the highest '
      'mean APoZ each time, 1 retraining epoch (Adam '
      f'{vconfig.finetune_learning_rate}), tolerance '
      f'{vconfig.method_kwargs.tolerance}.', '',
      _table(vgg_rows, vlayers), '',
      f'![APoZ histograms]({os.path.basename(PLOT)})', '',
      'APoZ of every unit of the trimmed layers, on the validation split, '
      'of the dense model (before) and of the final trimmed model (after).']
  results.write_section('network_trimming', '\n'.join(lines))
  print('\n'.join(lines))


if __name__ == '__main__':
  app.run(main)
