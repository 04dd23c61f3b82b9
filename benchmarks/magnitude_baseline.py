"""LeNet-5 on MNIST: the magnitude baseline at 97.7% weight sparsity.

One dense model is pre-trained, then fine-tuned from the same weights with
the same PolynomialDecay schedule: with tfprune's Magnitude('weight'),
Magnitude('weight', scope='global') and tfmot's prune_low_magnitude. Also
measures the training-step time of the dense, tfprune-wrapped and
tfmot-wrapped model, interleaved in one process.

    python -m benchmarks.magnitude_baseline --data_dir=../shared/data
"""

from __future__ import annotations

import math
import os
import sys
import time

import numpy as np

from benchmarks import harness


def lenet5_recipe():
  """The LeNet-5 / MNIST training of configs/lenet5_mnist_magnitude.py (also
  used by tflite_lenet5)."""
  return dict(
      seed=0, data=harness.data_config('mnist'), pretrain_epochs=8,
      epochs=8, batch_size=64, learning_rate=1e-3,
      finetune_learning_rate=5e-4,
      schedule=dict(kind='polynomial_decay', initial_sparsity=0.0,
                    final_sparsity=0.977, begin_step=0, end_step=-1,
                    frequency=100, power=3.0))


def lenet5_smoke():
  return dict(data=dict(train_examples=64, test_examples=200),
              pretrain_epochs=1, epochs=1)


def get_config():
  return harness.config(
      section='magnitude_baseline', **lenet5_recipe(), timing_steps=150,
      timing_rounds=5, timing_warmup_steps=20, timing_learning_rate=1e-4,
      smoke=dict(lenet5_smoke(), timing_steps=2, timing_rounds=1,
                 timing_warmup_steps=1,
                 data=dict(train_examples=128, test_examples=200)))


def pretrain(ctx):
  """Data, the dense LeNet-5 trained ``pretrain_epochs`` and a function
  giving a fresh pruning schedule over the fine-tuning steps."""
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  import tfprune  # pylint: disable=g-import-not-at-top
  from tfprune import experiment  # pylint: disable=g-import-not-at-top
  c = ctx.config
  keras.utils.set_random_seed(c.seed)
  train, _, test = ctx.load(c.data)
  dense = harness.fit(tfprune.models.lenet5(), train, c.pretrain_epochs,
                      harness.optimizer('adam', c.learning_rate),
                      c.batch_size, metrics=['accuracy'])
  steps = c.epochs * math.ceil(len(train[0]) / c.batch_size)
  return train, test, dense, lambda: experiment.build_schedule(c.schedule,
                                                               steps)


def fine_tune(ctx, model, train, callbacks):
  c = ctx.config
  return harness.fit(model, train, c.epochs,
                     harness.optimizer('adam', c.finetune_learning_rate),
                     c.batch_size, callbacks, metrics=['accuracy'])


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


def _step_times(c, builders, x, y):
  """Median seconds per training step (callbacks included) of each model.

  Rounds of ``timing_steps`` batches run interleaved across the models; the
  median is over every batch-start-to-batch-start interval of all rounds.
  """
  models, callbacks, clocks = {}, {}, {}
  batch = c.batch_size
  for name, (build, cbs) in builders.items():
    model = harness.fit(build(), (x[:batch * c.timing_warmup_steps],
                                  y[:batch * c.timing_warmup_steps]), 1,
                        harness.optimizer('adam', c.timing_learning_rate),
                        batch, cbs(), verbose=0)   # trace + warm up
    models[name], callbacks[name], clocks[name] = model, cbs, _BatchClock()
  n = batch * c.timing_steps
  for _ in range(c.timing_rounds):
    for name, model in models.items():
      model.fit(x[:n], y[:n], batch_size=batch, epochs=1, verbose=0,
                shuffle=False,
                callbacks=[clocks[name].hook] + callbacks[name]())
  return {name: float(np.median(c.intervals)) for name, c in clocks.items()}


def run(ctx):
  import tensorflow_model_optimization as tfmot  # pylint: disable=g-import-not-at-top
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  import tfprune  # pylint: disable=g-import-not-at-top
  import tflite_export  # pylint: disable=g-import-not-at-top
  c = ctx.config
  (x, y), (x_test, y_test), dense, schedule = pretrain(ctx)
  rows = {'dense': {'acc': harness.accuracy(dense, x_test, y_test),
                    'model': dense}}
  for name, method in (
      ('tfprune Magnitude(weight)', tfprune.methods.Magnitude('weight')),
      ("tfprune Magnitude(weight, scope='global')",
       tfprune.methods.Magnitude('weight', scope='global'))):
    ours = fine_tune(ctx, tfprune.prune(dense, method, schedule()), (x, y),
                     harness.pruning_step())
    rows[name] = {'acc': harness.accuracy(ours, x_test, y_test),
                  'model': tfprune.strip(ours)}
  theirs = keras.models.clone_model(dense)
  theirs.set_weights(dense.get_weights())
  theirs = fine_tune(ctx, tfmot.sparsity.keras.prune_low_magnitude(
      theirs, pruning_schedule=schedule()), (x, y),
                     [tfmot.sparsity.keras.UpdatePruningStep()])
  rows['tfmot prune_low_magnitude'] = {
      'acc': harness.accuracy(theirs, x_test, y_test),
      'model': tfmot.sparsity.keras.strip_pruning(theirs)}
  for row in rows.values():
    path = ctx.tflite(row['model'])['path']
    row['tflite'] = os.path.getsize(path)
    row['tflite_acc'] = tflite_export.evaluate(path, x_test, y_test)
    row['rep'] = tfprune.report(row['model'])

  timing = _step_times(c, {
      'dense': (tfprune.models.lenet5, list),
      'tfprune wrapped': (lambda: tfprune.prune(
          tfprune.models.lenet5(), tfprune.methods.Magnitude('weight'),
          schedule()), harness.pruning_step),
      'tfmot wrapped': (lambda: tfmot.sparsity.keras.prune_low_magnitude(
          tfprune.models.lenet5(), pruning_schedule=schedule()),
                        lambda: [tfmot.sparsity.keras.UpdatePruningStep()]),
  }, x, y)

  s = c.schedule
  dense_params = rows['dense']['rep']['totals']['params']
  lines = [
      f'Setting: LeNet-5 as in Caffe (20-50-500-10, {dense_params:,} params, '
      f'no conv ReLU), {harness.describe_data(c.data)} ({len(x):,} train / '
      f'{len(x_test):,} test). Dense pre-training {c.pretrain_epochs} epochs, '
      f'Adam {c.learning_rate:g}, batch {c.batch_size}. Then, from the same '
      f'dense weights, {c.epochs} fine-tuning epochs (Adam '
      f'{c.finetune_learning_rate:g}) with tfmot PolynomialDecay '
      f'{s.initial_sparsity:g} -> {s.final_sparsity:g} (power {s.power:g}) '
      'over the first two thirds of the steps (frequency '
      f'{s.frequency}), every Dense/Conv2D kernel pruned to the same '
      'per-layer sparsity (tfmot\'s rule); biases not pruned. The global row '
      'ranks all weights of all layers together (one threshold), so layers '
      f'get different sparsities. One seed ({c.seed}), so differences of '
      '~0.1 points are noise.', '',
      harness.table(
          ['model', 'test accuracy', 'weight sparsity of the kernels',
           'params kept (incl. biases)', '.tflite bytes (float32)',
           '.tflite test accuracy'],
          [[name, f'{100 * row["acc"]:.2f}%',
            f'{100 * row["rep"]["totals"]["weight_sparsity"]:.2f}%',
            f'{row["rep"]["totals"]["nonzero_params"]:,} / '
            f'{row["rep"]["totals"]["params"]:,} '
            f'({100 * row["rep"]["totals"]["kept_fraction"]:.2f}%)',
            f'{row["tflite"]:,}', f'{100 * row["tflite_acc"]:.2f}%']
           for name, row in rows.items()]), '',
      'Per layer, tfprune Magnitude(weight) after stripping:', '',
      rows['tfprune Magnitude(weight)']['rep'].table(), '',
      "Per layer, Magnitude(weight, scope='global'):", '',
      rows["tfprune Magnitude(weight, scope='global')"]['rep'].table(), '',
      'The .tflite files are plain float32 (no sparse encoding), so zeros do '
      'not shrink them; tflite_lenet5 below measures sparse encoding.', '',
      f'### Training-step time (LeNet-5, batch {c.batch_size}, '
      f'{c.timing_rounds} interleaved rounds of {c.timing_steps} steps per '
      'model, median time from one batch start to the next, so callbacks are '
      f'included; masks updated every {s.frequency} steps as in the run '
      'above)', '',
      harness.table(['model', 'ms / step', 'ratio to dense'],
                    [[name, f'{1000 * seconds:.2f}',
                      f'{seconds / timing["dense"]:.3f}']
                     for name, seconds in timing.items()])]
  return ('Magnitude baseline: LeNet-5 on MNIST at '
          f'{100 * s.final_sparsity:g}% weight sparsity', '\n'.join(lines))


if __name__ == '__main__':
  harness.main(sys.modules[__name__])
