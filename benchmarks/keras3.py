"""tf_keras and Keras 3 side by side: the same pruning, the same numbers?

Both generations run in one process from the same initial weights (the
Keras 3 model is built by the same ``tfprune.models`` / keras.applications
code and gets the tf_keras model's initial weights):

* LeNet-5 on MNIST, the magnitude baseline: dense pre-training, then
  fine-tuning with ``Magnitude('weight')`` on a PolynomialDecay schedule to
  ``final_sparsity``.
* keras.applications MobileNetV2 (alpha 0.35, 32x32x3) on Fashion-MNIST
  (zero-padded, grey replicated): dense training, ``Magnitude('channel')``
  at 50% of the channel groups one-shot, fine-tuning, strip, shrink.

Per row: test accuracy, params, MACs, .tflite bytes, 1-thread latency (all
files interleaved in one ``tflite_export.bench`` call) and the TFLite check.
"masks identical" prunes both generations' dense models (identical weights
after copying the tf_keras ones into the Keras 3 model) one-shot at the
target and compares every mask. Step times: plain and wrapped models of
both generations trained in rounds whose order rotates (``training_overhead``'s
timer: the median interval between batch starts, callbacks included, and the
first batch's excess, which holds the mask update).

    python -m benchmarks.keras3 --data_dir=../shared/data
"""

from __future__ import annotations

import contextlib
import io
import math
import statistics
import sys

import numpy as np

from benchmarks import groups_accuracy
from benchmarks import harness
from benchmarks import magnitude_baseline
from benchmarks import training_overhead

GENERATIONS = ('tf_keras', 'keras3')
TITLES = {'lenet5': 'LeNet-5', 'mobilenet': 'MobileNetV2'}


def get_config():
  return harness.config(
      section='keras3', rounds=7, step_target=1.05,
      models='lenet5,mobilenet', timing_models='lenet5,mobilenet',
      conversions='none,none+sparse,dynamic,int8,int8+sparse,float16',
      # the magnitude_baseline recipe with half its epochs
      lenet5=dict(magnitude_baseline.lenet5_recipe(), pretrain_epochs=4,
                  epochs=4, timing_steps=100),
      mobilenet=dict(data=harness.data_config(
          'fashion_mnist', image_size=32, channels=3, validation=5000),
                     alpha=0.35, classes=10, bn_momentum=0.99, epochs=2,
                     finetune=1, batch_size=128,
                     momentum=0.9, learning_rate=0.05,
                     finetune_learning_rate=0.005, sparsity=0.5,
                     timing_steps=20),
      smoke=dict(rounds=1, models='lenet5', conversions='none',
                 timing_models='lenet5',
                 lenet5=dict(data=dict(train_examples=128, test_examples=200),
                             pretrain_epochs=1, epochs=1, timing_steps=2),
                 mobilenet=dict(data=dict(validation=64, train_examples=128,
                                          test_examples=100),
                                epochs=1, finetune=1, timing_steps=2)))


def _keras(gen):
  from tfprune import generations  # pylint: disable=g-import-not-at-top
  return generations.named(gen).keras


def _twins(build):
  """``{generation: model}`` built by ``build(gen)``; the Keras 3 model
  starts from the tf_keras model's initial weights."""
  models = {gen: build(gen) for gen in GENERATIONS}
  models['keras3'].set_weights(models['tf_keras'].get_weights())
  return models


def _masks_identical(dense, method, schedule) -> str:
  """Prune both generations' dense models (same weights) at ``schedule``:
  'yes (N entries)' when every mask agrees, else what differs."""
  import tfprune  # pylint: disable=g-import-not-at-top
  from tfprune.wrapper import collect_wrappers  # pylint: disable=g-import-not-at-top
  same = _keras('keras3').models.clone_model(dense['keras3'])
  same.set_weights(dense['tf_keras'].get_weights())
  masks = {}
  for gen, model in (('tf_keras', dense['tf_keras']), ('keras3', same)):
    pruned = tfprune.prune(model, method(), schedule)
    masks[gen] = {w.layer.name: np.asarray(w.masks[0])
                  for w in collect_wrappers(pruned)}
  differ = [name for name, mask in masks['tf_keras'].items()
            if not np.array_equal(mask, masks['keras3'].get(name))]
  entries = sum(m.size for m in masks['tf_keras'].values())
  return (f'yes ({entries:,} entries)' if not differ else
          f'NO: {", ".join(differ)}')


def _export_row(ctx, name, model, shrunk_plan, test):
  """Accuracy, report totals and the .tflite file (checked) of ``model``."""
  import tfprune  # pylint: disable=g-import-not-at-top
  import tflite_export  # pylint: disable=g-import-not-at-top
  stripped, plan = model, None
  if shrunk_plan:
    stripped = tfprune.strip(model)
    model, plan = tfprune.shrink(stripped, return_plan=True)
  elif tfprune.wrapper.collect_wrappers(model):
    stripped = model = tfprune.strip(model)
  out = ctx.tflite(model, name)
  return {'acc': harness.accuracy(model, *test),
          'totals': tfprune.report(model)['totals'], 'tflite': out,
          'check': tflite_export.check(out['path'], tfprune.report(stripped),
                                       plan=plan).ok}


def _lenet5(ctx, rows, notes):
  import tfprune  # pylint: disable=g-import-not-at-top
  from tfprune import experiment  # pylint: disable=g-import-not-at-top
  c = ctx.config.lenet5
  train, _, test = ctx.load(c.data)
  steps = c.epochs * math.ceil(len(train[0]) / c.batch_size)
  schedule = lambda: experiment.build_schedule(c.schedule, steps)
  _keras('tf_keras').utils.set_random_seed(c.seed)
  dense = _twins(lambda gen: tfprune.models.lenet5(keras_generation=gen))
  for gen, model in dense.items():
    harness.fit(model, train, c.pretrain_epochs,
                harness.optimizer('adam', c.learning_rate, keras_generation=gen),
                c.batch_size,
                metrics=['accuracy'], verbose=0)
    rows.append(('LeNet-5', gen, 'dense',
                 _export_row(ctx, f'lenet_dense_{gen}', model, False, test)))
  notes.append(('LeNet-5 Magnitude(weight)', _masks_identical(
      dense, tfprune.methods.Magnitude, c.schedule.final_sparsity)))
  for gen, model in dense.items():
    pruned = harness.fit(
        tfprune.prune(model, tfprune.methods.Magnitude('weight'), schedule()),
        train, c.epochs, harness.optimizer('adam', c.finetune_learning_rate,
                                            keras_generation=gen),
        c.batch_size, harness.pruning_step(), metrics=['accuracy'],
        verbose=0)
    rows.append(('LeNet-5', gen,
                 f'Magnitude(weight) {c.schedule.final_sparsity:g}',
                 _export_row(ctx, f'lenet_pruned_{gen}', pruned, False,
                             test)))
    if gen == 'tf_keras':
      conversions = _conversion_paths(ctx, tfprune.strip(pruned), test)
  return conversions


def _mobilenet(ctx, rows, notes):
  import tfprune  # pylint: disable=g-import-not-at-top
  c = ctx.config.mobilenet
  train, _, test = ctx.load(c.data)
  _keras('tf_keras').utils.set_random_seed(ctx.config.lenet5.seed)
  dense = _twins(lambda gen: groups_accuracy.build_mobilenet_v2(_keras(gen), c))
  for gen, model in dense.items():
    harness.fit(model, train, c.epochs,
                harness.optimizer('sgd', c.learning_rate, c.momentum, gen),
                c.batch_size, metrics=['accuracy'], verbose=0)
    rows.append(('MobileNetV2', gen, 'dense',
                 _export_row(ctx, f'mnv2_dense_{gen}', model, False, test)))
  notes.append(("MobileNetV2 Magnitude('channel')", _masks_identical(
      dense, lambda: tfprune.methods.Magnitude('channel'), c.sparsity)))
  for gen, model in dense.items():
    pruned = harness.fit(
        tfprune.prune(model, tfprune.methods.Magnitude('channel'),
                      c.sparsity),
        train, c.finetune, harness.optimizer('sgd', c.finetune_learning_rate,
                                      c.momentum, gen),
        c.batch_size, harness.pruning_step(), metrics=['accuracy'],
        verbose=0)
    rows.append(('MobileNetV2', gen,
                 f"Magnitude('channel') {c.sparsity:g}, shrunk",
                 _export_row(ctx, f'mnv2_pruned_{gen}', pruned, True, test)))


def _raw_keras3_conversion(model, quantize, sparse, calibration, path):
  """``TFLiteConverter.from_keras_model`` on a Keras 3 model, with the
  settings ``tflite_export.convert`` uses but none of its checks."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  converter = tf.lite.TFLiteConverter.from_keras_model(model)
  converter.target_spec.supported_ops = [
      tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if quantize == 'int8' else
      tf.lite.OpsSet.TFLITE_BUILTINS]
  converter.optimizations = (
      ([tf.lite.Optimize.DEFAULT] if quantize != 'none' else []) +
      ([tf.lite.Optimize.EXPERIMENTAL_SPARSITY] if sparse else []))
  if quantize == 'int8':
    converter.representative_dataset = lambda: (
        [row[None]] for row in calibration)
  if quantize == 'float16':
    converter.target_spec.supported_types = [tf.float16]
  with contextlib.redirect_stdout(io.StringIO()):   # its endpoint listing
    data = converter.convert()
  with open(path, 'wb') as f:
    f.write(data)
  return path


def _failure(error: Exception) -> str:
  return f'{type(error).__name__}: {str(error).splitlines()[0][:90]}'


def _conversion_paths(ctx, stripped, test):
  """The pruned LeNet-5 (tf_keras, stripped) and a Keras 3 twin with its
  weights, converted in every mode: by tf_keras' path, Keras 3's
  ``model.export(format='litert')`` (what ``tflite_export.convert`` uses)
  and ``TFLiteConverter.from_keras_model`` on the Keras 3 model. A path
  that refuses or fails is a row saying so."""
  import tfprune  # pylint: disable=g-import-not-at-top
  import tflite_export  # pylint: disable=g-import-not-at-top
  twin = tfprune.models.lenet5(keras_generation='keras3')
  twin.set_weights(stripped.get_weights())
  x, calibration = test[0][:200], test[0][:100]
  report = tfprune.report(stripped)
  reference = None
  out = []
  for mode in ctx.config.conversions.split(','):
    quantize, sparse = mode.split('+')[0], mode.endswith('+sparse')
    kwargs = dict(quantize=quantize, sparse_encoding=sparse,
                  representative_data=calibration)
    tag = f'{quantize}{"_sparse" if sparse else ""}'
    makers = {
        'tf_keras': lambda: ctx.tflite(stripped, f'conv_tf_keras_{tag}',
                                       **kwargs)['path'],
        'keras3 export': lambda: ctx.tflite(twin, f'conv_keras3_{tag}',
                                            **kwargs)['path'],
        'keras3 from_keras_model': lambda: _raw_keras3_conversion(
            twin, quantize, sparse, calibration,
            f'{ctx.tmp}/conv_keras3_raw_{tag}.tflite')}
    for name, make in makers.items():
      row = [mode.replace('+', ' + '), name]
      try:
        path = make()
        info = tflite_export.inspect(path)
        outputs = tflite_export.predict(path, x)
      except Exception as e:  # pylint: disable=broad-except
        out.append(row + ['-', _failure(e), '-', '-', '-'])
        continue
      if reference is None:        # the first file: tf_keras, float32
        reference = outputs
      zeros = sum(int(op.weight.zeros.sum()) for op in info.weight_ops()
                  if op.weight is not None)
      out.append(row + [
          f'{len(open(path, "rb").read()):,}',
          ' '.join(sorted(set(info.op_names))), f'{zeros:,}',
          f'{np.abs(outputs - reference).max():.2g}',
          'ok' if tflite_export.check(path, report).ok else 'FAILED'])
  return out


def _step_times(ctx):
  """``{(model, generation, variant): (median step ms, mask update ms)}``:
  every variant timed in rounds whose order rotates (``training_overhead``'s
  timer and split); the wrapped models' schedules reach 50% at the last
  round's last step, so every update changes masks."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tfprune  # pylint: disable=g-import-not-at-top
  c = ctx.config
  specs = {'lenet5': (lambda gen: tfprune.models.lenet5(
      keras_generation=gen), (28, 28, 1), c.lenet5.timing_steps,
                       lambda: tfprune.methods.Magnitude('weight')),
           'mobilenet': (lambda gen: _keras(gen).applications.MobileNetV2(
               alpha=c.mobilenet.alpha, input_shape=(32, 32, 3),
               weights=None, classes=10), (32, 32, 3),
                           c.mobilenet.timing_steps,
                           lambda: tfprune.methods.Magnitude('channel'))}
  runs, times = {}, {}
  for title in c.timing_models.split(','):
    build, shape, steps, method = specs[title]
    rng = np.random.RandomState(0)
    x = rng.rand(64 * 8, *shape).astype(np.float32)
    y = rng.randint(0, 10, len(x)).astype(np.int32)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(64).cache(
        ).repeat().prefetch(2)
    end = steps * (c.rounds + 1)       # the warm-up fit is one more
    for gen in GENERATIONS:
      keras = _keras(gen)
      for variant in ('plain', 'wrapped'):
        wrap = (lambda m: m) if variant == 'plain' else (
            lambda m, steps=steps, method=method: tfprune.prune(
                m, method(), tfprune.schedules.PolynomialDecay(
                    0.0, 0.5, 0, end, frequency=steps)))
        model, error = training_overhead.build_variant(
            keras, {'build': lambda gen=gen, build=build: build(gen)},
            'graph', wrap, 1e-3)
        if error:
          raise RuntimeError(f'{title} {gen} {variant}: {error}')
        callbacks = [] if variant == 'plain' else [tfprune.PruningStep()]
        training_overhead.warm_up(keras, model, callbacks, data, steps)
        runs[(title, gen, variant)] = (keras, model, callbacks, data, steps)
  for r in range(c.rounds):
    for key in training_overhead.rotated(list(runs), r):
      times.setdefault(key, []).append(
          training_overhead.measure_split(*runs[key]))
  return {key: tuple(1e3 * statistics.median(t[i] for t in values)
                     for i in (1, 2))
          for key, values in times.items()}


def run(ctx):
  rows, notes = [], []
  conversions = _lenet5(ctx, rows, notes)
  if 'mobilenet' in ctx.config.models.split(','):
    _mobilenet(ctx, rows, notes)
  files = [r[3]['tflite']['path'] for r in rows]
  timing, load = ctx.bench(files, threads=(1,), rounds=ctx.config.rounds)
  steps = _step_times(ctx)
  c = ctx.config
  dense = {(r[0], r[1]): r[3] for r in rows if r[2] == 'dense'}
  table = harness.table(
      ['model', 'Keras', 'row', 'test accuracy', 'params (non-zero / all)',
       'MACs (dense / this)', '.tflite bytes', '1-thread latency (us)',
       'TFLite check'],
      [[model, gen, row, f'{100 * r["acc"]:.2f}%',
        f'{r["totals"]["nonzero_params"]:,} / {r["totals"]["params"]:,}',
        f'{r["totals"]["macs"]:,} '
        f'({dense[(model, gen)]["totals"]["macs"] / r["totals"]["macs"]:.2f}x)',
        f'{r["tflite"]["size"]:,}',
        f'{timing[(r["tflite"]["path"], 1)]["median_us"]:.1f}',
        'ok' if r['check'] else 'FAILED'] for model, gen, row, r in rows])
  step_rows, verdicts = [], []
  for title in c.timing_models.split(','):
    plain3, _ = steps[(title, 'keras3', 'plain')]
    wrapped3, update3 = steps[(title, 'keras3', 'wrapped')]
    wrapped2, update2 = steps[(title, 'tf_keras', 'wrapped')]
    plain2, _ = steps[(title, 'tf_keras', 'plain')]
    step_rows.append([TITLES[title], f'{plain2:.2f}', f'{wrapped2:.2f}',
                      f'{wrapped2 / plain2:.3f}', f'{plain3:.2f}',
                      f'{wrapped3:.2f}', f'{wrapped3 / plain3:.3f}',
                      f'{wrapped3 / wrapped2:.3f}',
                      f'{update2:.1f} / {update3:.1f}'])
    verdicts.append(f'{TITLES[title]}: Keras 3 wrapped / plain {wrapped3 / plain3:.3f}'
                    f' ({"meets" if wrapped3 / plain3 <= c.step_target else "misses"}'
                    f' the <= {c.step_target:g} target)')
  l, m = c.lenet5, c.mobilenet
  acc = {(model, gen, row): r['acc'] for model, gen, row, r in rows}
  gaps = {(model, row): abs(acc[(model, 'keras3', row)] - r['acc'])
          for model, gen, row, r in rows if gen == 'tf_keras'}
  far = [f'{model} {row} {100 * gap:.1f}' for (model, row), gap in
         gaps.items() if gap > 0.02]
  agreement = (
      'so accuracies are close, not equal (within 2 points)' if not far else
      'so accuracies differ; here by more than 2 points for ' +
      ', '.join(far) + ' points. These are single short runs: MobileNetV2 '
      'after a few epochs with BatchNorm momentum near 1 is far from '
      'converged, and its inference-mode accuracy depends on where the '
      'moving statistics stand when training stops, so a small difference '
      'in training (here each generation\'s kernels and optimizer, from the '
      'same initial weights) moves it by many points. These rows do not '
      'rank the generations; the masks table below is the like-for-like '
      'check')
  lines = [
      'Both Keras generations in one process, TensorFlow backend. LeNet-5 '
      f'(Caffe 20-50-500-10) on {harness.describe_data(l.data)}: '
      f'{l.pretrain_epochs} dense epochs (Adam {l.learning_rate:g}, batch '
      f'{l.batch_size}), then {l.epochs} fine-tuning epochs (Adam '
      f'{l.finetune_learning_rate:g}) with Magnitude(\'weight\') on a '
      f'PolynomialDecay schedule {l.schedule.initial_sparsity:g} -> '
      f'{l.schedule.final_sparsity:g} (power {l.schedule.power:g}, every '
      f'{l.schedule.frequency} steps, over two thirds of the steps): the '
      'magnitude_baseline recipe with half its epochs, so that both '
      f'generations fit one run. MobileNetV2 (alpha {m.alpha:g}, '
      f'weights=None, BatchNormalization momentum {m.bn_momentum:g} as in '
      f'groups_accuracy) on {harness.describe_data(m.data)}: {m.epochs} '
      'dense epochs (SGD '
      f'momentum {m.momentum:g}, LR {m.learning_rate:g}, batch '
      f'{m.batch_size}), Magnitude(\'channel\') on {100 * m.sparsity:g}% of '
      f'the channel groups one-shot, {m.finetune} fine-tuning epoch(s) at LR '
      f'{m.finetune_learning_rate:g}, strip, shrink. The Keras 3 models start '
      'from the tf_keras models\' initial weights; training itself differs '
      f'(each generation\'s own optimizer and kernels), {agreement}. One '
      f'seed ({l.seed}). .tflite: float32 '
      '`tflite_export.convert` (tf_keras: TFLiteConverter.'
      'from_concrete_functions on one traced inference call; '
      'Keras 3: `model.export(format="litert")` with the same converter '
      'settings); latency: ai_edge_litert (XNNPACK), batch 1, 1 thread, '
      f'median of {c.rounds} interleaved rounds over all files (load average '
      f'{load:.2f}).', '', table, '',
      '### Masks from the same weights', '',
      'Each generation\'s trained dense model pruned one-shot at the target '
      '(the Keras 3 model holding the tf_keras weights):', '',
      harness.table(['pruning', 'masks identical'],
                    [[name, verdict] for name, verdict in notes]), '',
      '### Conversion paths', '',
      'The pruned LeNet-5 above (tf_keras, stripped) and a Keras 3 LeNet-5 '
      'holding its weights, converted in each mode by `tflite_export.'
      'convert` on the tf_keras model, by Keras 3\'s '
      '`model.export(format="litert")` with the same converter settings '
      '(what `tflite_export.convert` uses for Keras 3) and by '
      '`TFLiteConverter.from_keras_model` on the Keras 3 model. "zeros" '
      'counts the zero entries of every stored weight as `tflite_export.'
      'inspect` reads them (sparse-encoded ones densified); "max |diff|" is '
      'against the float32 tf_keras file\'s outputs on 200 test images; '
      '"check" compares the file with the Keras model\'s report. A refused '
      'conversion names the reason.', '',
      harness.table(['mode', 'path', 'bytes', 'operators', 'zeros',
                     'max |diff|', 'check'], conversions), '',
      '### Training step time (ms/step)', '',
      f'Random data, batch 64, Adam, callbacks included, {c.rounds} '
      f'rounds of all {4 * len(c.timing_models.split(","))} variants, the '
      'order rotated by one each round; wrapped = '
      "Magnitude('weight') on LeNet-5 and Magnitude('channel') on "
      'MobileNetV2 on a PolynomialDecay 0 -> 50% reached at the last '
      'round\'s last step, masks updated once per measurement (the first '
      f'batch of each fit; {l.timing_steps} and {m.timing_steps} steps). '
      'ms/step: the median interval between batch starts (a step and its '
      'callbacks); mask update ms: the first batch\'s time above that '
      'median (the update plus the fit\'s start). Both are medians over '
      'the rounds.', '',
      harness.table(['model', 'tf_keras plain', 'tf_keras wrapped',
                     'tf_keras wrapped / plain', 'Keras 3 plain',
                     'Keras 3 wrapped', 'Keras 3 wrapped / plain',
                     'Keras 3 wrapped / tf_keras wrapped',
                     'mask update ms, tf_keras / Keras 3'], step_rows), '',
      'Target: Keras 3 wrapped <= '
      f'{c.step_target:g}x Keras 3 plain. ' + '; '.join(verdicts) + '.']
  return 'Keras 3 and tf_keras side by side', '\n'.join(lines)


if __name__ == '__main__':
  harness.main(sys.modules[__name__])
