"""LeNet-5 on MNIST: the magnitude baseline at 97.7% weight sparsity.

One dense model is pre-trained, then fine-tuned twice from the same weights
with the same PolynomialDecay schedule: once with tfprune's Magnitude('weight')
and once with tfmot's prune_low_magnitude. Also measures the training-step
time of the dense, tfprune-wrapped and tfmot-wrapped model, interleaved in
one process. Settings come from configs/lenet5_mnist_magnitude.py.

    python -m benchmarks.magnitude_baseline --data_dir=../shared/data
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

_DATA_DIR = flags.DEFINE_string('data_dir', '../shared/data',
                                'Folder holding mnist/ IDX files.')
_EPOCHS = flags.DEFINE_integer(
    'epochs', None, 'Override pre-train and fine-tune epochs (smoke runs); '
    'results are only written with the config values.')
_TIMING_STEPS = flags.DEFINE_integer('timing_steps', 150,
                                     'Training steps per timing round.')


def _fine_tune(model, config, x, y, callbacks, epochs):
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  model.compile(keras.optimizers.Adam(config.finetune_learning_rate),
                'sparse_categorical_crossentropy', ['accuracy'])
  model.fit(x, y, batch_size=config.batch_size, epochs=epochs,
            callbacks=callbacks, verbose=2)
  return model


def _accuracy(model, x, y) -> float:
  return float((model.predict(x, batch_size=1000, verbose=0).argmax(-1)
                == y).mean())


class _BatchClock:
  """Keras callback recording the time between consecutive batch starts."""

  def __init__(self):
    import tf_keras as keras  # pylint: disable=g-import-not-at-top

    clock = self

    class Hook(keras.callbacks.Callback):

      def on_train_batch_begin(self, batch, logs=None):
        now = time.perf_counter()
        if clock.last is not None:
          clock.intervals.append(now - clock.last)
        clock.last = now

      def on_epoch_end(self, epoch, logs=None):
        clock.last = None

    self.hook = Hook()
    self.intervals, self.last = [], None


def _step_times(builders, x, y, batch_size, steps, rounds=5):
  """Median seconds per training step (callbacks included) of each model.

  Rounds of ``steps`` batches run interleaved across the models; the
  median is over every batch-start-to-batch-start interval of all rounds.
  """
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  models, callbacks, clocks = {}, {}, {}
  for name, (build, cbs) in builders.items():
    model = build()
    model.compile(keras.optimizers.Adam(1e-4),
                  'sparse_categorical_crossentropy')
    models[name], callbacks[name], clocks[name] = model, cbs, _BatchClock()
    model.fit(x[:batch_size * 20], y[:batch_size * 20], batch_size=batch_size,
              epochs=1, verbose=0, callbacks=cbs())  # trace + warm up
  n = batch_size * steps
  for _ in range(rounds):
    for name, model in models.items():
      model.fit(x[:n], y[:n], batch_size=batch_size, epochs=1, verbose=0,
                shuffle=False,
                callbacks=[clocks[name].hook] + callbacks[name]())
  return {name: float(np.median(c.intervals)) for name, c in clocks.items()}


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))
  import tensorflow_model_optimization as tfmot  # pylint: disable=g-import-not-at-top
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  import tfprune  # pylint: disable=g-import-not-at-top
  import tflite_export  # pylint: disable=g-import-not-at-top
  from tfprune import experiment as train  # pylint: disable=g-import-not-at-top
  from benchmarks import results  # pylint: disable=g-import-not-at-top
  from configs import lenet5_mnist_magnitude  # pylint: disable=g-import-not-at-top

  config = lenet5_mnist_magnitude.get_config()
  pre_epochs = _EPOCHS.value or config.pretrain_epochs
  epochs = _EPOCHS.value or config.epochs
  keras.utils.set_random_seed(config.seed)
  (x, y), _, (x_test, y_test) = train.load_data(config, _DATA_DIR.value)
  print(f'MNIST: {len(x)} train / {len(x_test)} test')

  dense = tfprune.models.lenet5()
  dense.compile(keras.optimizers.Adam(config.learning_rate),
                'sparse_categorical_crossentropy', ['accuracy'])
  dense.fit(x, y, batch_size=config.batch_size, epochs=pre_epochs, verbose=2)
  rows = {'dense': {'acc': _accuracy(dense, x_test, y_test),
                    'model': dense}}
  steps = epochs * math.ceil(len(x) / config.batch_size)
  schedule = train.build_schedule(config.schedule, steps)

  ours = tfprune.prune(dense, tfprune.methods.Magnitude('weight'), schedule)
  _fine_tune(ours, config, x, y, [tfprune.PruningStep()], epochs)
  rows['tfprune Magnitude(weight)'] = {
      'acc': _accuracy(ours, x_test, y_test), 'model': tfprune.strip(ours)}

  pooled = tfprune.prune(
      dense, tfprune.methods.Magnitude('weight', scope='global'), schedule)
  _fine_tune(pooled, config, x, y, [tfprune.PruningStep()], epochs)
  rows["tfprune Magnitude(weight, scope='global')"] = {
      'acc': _accuracy(pooled, x_test, y_test), 'model': tfprune.strip(pooled)}

  theirs = keras.models.clone_model(dense)
  theirs.set_weights(dense.get_weights())
  theirs = tfmot.sparsity.keras.prune_low_magnitude(
      theirs, pruning_schedule=schedule)
  _fine_tune(theirs, config, x, y,
             [tfmot.sparsity.keras.UpdatePruningStep()], epochs)
  rows['tfmot prune_low_magnitude'] = {
      'acc': _accuracy(theirs, x_test, y_test),
      'model': tfmot.sparsity.keras.strip_pruning(theirs)}

  tmp = tempfile.mkdtemp()
  for name, row in rows.items():
    rep = tfprune.report(row['model'])
    path = os.path.join(tmp, f'{len(os.listdir(tmp))}.tflite')
    row['tflite'] = tflite_export.convert(row['model'], path)['size']
    row['tflite_acc'] = tflite_export.evaluate(path, x_test, y_test)
    row['rep'] = rep

  timing = _step_times({
      'dense': (tfprune.models.lenet5, list),
      'tfprune wrapped': (lambda: tfprune.prune(
          tfprune.models.lenet5(), tfprune.methods.Magnitude('weight'),
          train.build_schedule(config.schedule, steps)),
                          lambda: [tfprune.PruningStep()]),
      'tfmot wrapped': (lambda: tfmot.sparsity.keras.prune_low_magnitude(
          tfprune.models.lenet5(),
          pruning_schedule=train.build_schedule(config.schedule, steps)),
                        lambda: [tfmot.sparsity.keras.UpdatePruningStep()]),
  }, x, y, config.batch_size, _TIMING_STEPS.value)

  if _EPOCHS.value is not None:
    print('smoke run (--epochs given): RESULTS.md not written')
    print({k: (v['acc'], v['tflite_acc']) for k, v in rows.items()}, timing)
    return

  lines = [
      '## Magnitude baseline: LeNet-5 on MNIST at 97.7% weight sparsity', '',
      results.stamp('python -m benchmarks.magnitude_baseline '
                    '--data_dir=../shared/data'), '',
      f'Setting (configs/lenet5_mnist_magnitude.py): LeNet-5 as in Caffe '
      f'(20-50-500-10, 431,080 params, no conv ReLU), official MNIST files '
      f'(60,000 train / 10,000 test). Dense pre-training {pre_epochs} epochs, '
      f'Adam {config.learning_rate}, batch {config.batch_size}. Then, from the '
      f'same dense weights, {epochs} fine-tuning epochs (Adam '
      f'{config.finetune_learning_rate}) with tfmot PolynomialDecay 0 -> '
      f'{config.schedule.final_sparsity} over the first two thirds of the '
      f'steps (frequency {config.schedule.frequency}), every Dense/Conv2D '
      'kernel pruned to the same per-layer sparsity (tfmot\'s rule); biases '
      'not pruned. The global row ranks all weights of all layers together '
      '(one threshold), so layers get different sparsities. One seed (0), so '
      'differences of ~0.1 points are noise.', '',
      '| model | test accuracy | weight sparsity of the kernels | params kept (incl. biases) '
      '| .tflite bytes (float32) | .tflite test accuracy |',
      '|---|---|---|---|---|---|']
  for name, row in rows.items():
    t = row['rep']['totals']
    lines.append(
        f'| {name} | {100 * row["acc"]:.2f}% | '
        f'{100 * t["weight_sparsity"]:.2f}% | {t["nonzero_params"]:,} / '
        f'{t["params"]:,} ({100 * t["kept_fraction"]:.2f}%) | '
        f'{row["tflite"]:,} | {100 * row["tflite_acc"]:.2f}% |')
  lines += ['', 'Per layer, tfprune Magnitude(weight) after stripping:', '',
            rows['tfprune Magnitude(weight)']['rep'].table(), '',
            "Per layer, Magnitude(weight, scope='global'):", '',
            rows["tfprune Magnitude(weight, scope='global')"]['rep'].table(),
            '',
            'The .tflite files are plain float32 (no sparse encoding), so '
            'zeros do not shrink them; sparse encoding is the tflite_export '
            'issue.', '',
            f'### Training-step time (LeNet-5, batch {config.batch_size}, '
            f'5 interleaved rounds of {_TIMING_STEPS.value} steps per model, '
            'median time from one batch start to the next, so callbacks are '
            'included; masks updated every 100 steps as in the run above)',
            '',
            '| model | ms / step | ratio to dense |', '|---|---|---|']
  for name, seconds in timing.items():
    lines.append(f'| {name} | {1000 * seconds:.2f} | '
                 f'{seconds / timing["dense"]:.3f} |')
  results.write_section('magnitude_baseline', '\n'.join(lines))
  print('\n'.join(lines))


if __name__ == '__main__':
  app.run(main)
