"""LeNet-5 .tflite size and latency: dense vs magnitude-pruned at 97.7%.

Trains the dense LeNet-5 of configs/lenet5_mnist_magnitude.py, then two
pruned versions from the same weights (tfmot's per-layer rule, 97.7%): every
kernel at weight level, and the two Dense layers in 1x4 blocks (Keras
block(4,1): 4 consecutive inputs of one output, TFLite's 1x4 orientation)
with the convs at weight level. Each model is converted float32 and int8,
with and without sparse encoding, checked with tflite_export.check, scored
on the MNIST test set, and timed in one interleaved run.

    python -m benchmarks.tflite_lenet5 --data_dir=../shared/data
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import warnings

from absl import app
from absl import flags
from absl import logging

_DATA_DIR = flags.DEFINE_string('data_dir', '../shared/data',
                                'Folder holding mnist/ IDX files.')
_EPOCHS = flags.DEFINE_integer(
    'epochs', None, 'Override pre-train and fine-tune epochs (smoke runs); '
    'results are only written with the config values.')
_ROUNDS = flags.DEFINE_integer('rounds', 7, 'Interleaved timing rounds.')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  import tfprune  # pylint: disable=g-import-not-at-top
  import tflite_export  # pylint: disable=g-import-not-at-top
  from tfprune import experiment  # pylint: disable=g-import-not-at-top
  from benchmarks import results  # pylint: disable=g-import-not-at-top
  from configs import lenet5_mnist_magnitude  # pylint: disable=g-import-not-at-top

  config = lenet5_mnist_magnitude.get_config()
  pre_epochs = _EPOCHS.value or config.pretrain_epochs
  epochs = _EPOCHS.value or config.epochs
  keras.utils.set_random_seed(config.seed)
  (x, y), _, (x_test, y_test) = experiment.load_data(config, _DATA_DIR.value)

  def compile_fit(model, lr, n_epochs, callbacks):
    model.compile(keras.optimizers.Adam(lr), 'sparse_categorical_crossentropy',
                  ['accuracy'])
    model.fit(x, y, batch_size=config.batch_size, epochs=n_epochs, verbose=2,
              callbacks=callbacks)
    return model

  dense = compile_fit(tfprune.models.lenet5(), config.learning_rate,
                      pre_epochs, [])
  steps = epochs * math.ceil(len(x) / config.batch_size)
  schedule = lambda: experiment.build_schedule(config.schedule, steps)
  weight = tfprune.prune(dense, tfprune.methods.Magnitude('weight'),
                         schedule())
  compile_fit(weight, config.finetune_learning_rate, epochs,
              [tfprune.PruningStep()])
  blocks = tfprune.prune(dense, tfprune.methods.Magnitude('weight'),
                         schedule(), layers=['conv1', 'conv2'])
  blocks = tfprune.prune(blocks, tfprune.methods.Magnitude('block(4,1)'),
                         schedule(), layers=['ip1', 'ip2'])
  compile_fit(blocks, config.finetune_learning_rate, epochs,
              [tfprune.PruningStep()])
  models = {'dense': dense, 'weight 97.7%': tfprune.strip(weight),
            '1x4 blocks on Dense, weight on conv, 97.7%': tfprune.strip(blocks)}

  folder = tempfile.mkdtemp()
  rows = []
  for name, model in models.items():
    expected = tfprune.report(model)
    for quantize in ('none', 'int8'):
      for sparse in (False, True):
        path = os.path.join(folder, f'{len(rows)}.tflite')
        row = {'model': name, 'quantize': quantize, 'sparse': sparse,
               'path': None}
        rows.append(row)
        try:
          with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            out = tflite_export.convert(model, path, quantize=quantize,
                                        representative_data=x[:200],
                                        sparse_encoding=sparse)
        except tflite_export.ConversionError as e:
          row['refused'] = ('int8 DENSIFY -> FULLY_CONNECTED, which '
                            'ai_edge_litert cannot load'
                            if 'DENSIFY -> FULLY_CONNECTED' in str(e)
                            else str(e)[:120])
          continue
        info = tflite_export.inspect(path)
        fc = [op.weight for op in info.weight_ops()
              if op.name == 'FULLY_CONNECTED']
        row.update(path=path, size=out['size'], densify=out['densify'],
                   direct_sparse_fc=sum(w.sparse and not w.via for w in fc),
                   check=tflite_export.check(path, expected).ok,
                   acc=tflite_export.evaluate(path, x_test, y_test))
  measured = [r['path'] for r in rows if r['path']]
  timing = tflite_export.bench(measured, threads=(1, 2),
                               rounds=_ROUNDS.value, reference=measured[0])
  by_key = {(t['path'], t['threads']): t for t in timing['results']}

  if _EPOCHS.value is not None:
    print('smoke run (--epochs given): RESULTS.md not written')
    for r in rows:
      print(r.get('model'), r['quantize'], r['sparse'], r.get('size'),
            r.get('acc'), r.get('refused'))
    return

  lines = [
      '## TFLite export: LeNet-5 size and latency, dense vs 97.7% pruned', '',
      results.stamp('python -m benchmarks.tflite_lenet5 '
                    '--data_dir=../shared/data'), '',
      f'Models: LeNet-5 (Caffe, 431,080 params) trained on MNIST as in the '
      f'magnitude baseline above ({pre_epochs} dense epochs, then {epochs} '
      f'fine-tuning epochs with PolynomialDecay to 97.7%, per-layer tfmot '
      f'rule; one seed). "1x4 blocks" prunes ip1/ip2 with Magnitude('
      f"'block(4,1)') (4 consecutive inputs of one output = TFLite 1x4) and "
      'the convs at weight level. int8 = full integer quantization '
      '(float input/output, 200 training images for calibration). Latency: '
      'ai_edge_litert Interpreter with its default XNNPACK delegate, batch 1, '
      f'median of {_ROUNDS.value} interleaved rounds per file (each ~0.2 s of '
      'back-to-back invokes), speedup = dense float median / this median at '
      f'the same thread count; load average while timing '
      f'{timing["loadavg"]:.2f}. Every converted file passed '
      'tflite_export.check against the Keras report unless marked.', '',
      '| model | weights | sparse encoding | .tflite bytes | DENSIFY ops | '
      'direct sparse FC | MNIST test acc. (.tflite) | 1 thread us | speedup | '
      '2 threads us | speedup |', '|---|---|---|---|---|---|---|---|---|---|---|']
  for r in rows:
    head = (f'| {r["model"]} | {"float32" if r["quantize"] == "none" else "int8"}'
            f' | {"yes" if r["sparse"] else "no"} |')
    if not r['path']:
      lines.append(f'{head} refused: {r["refused"]} | | | | | | | |')
      continue
    t1, t2 = by_key[(r['path'], 1)], by_key[(r['path'], 2)]
    check = '' if r['check'] else ' (CHECK FAILED)'
    lines.append(
        f'{head} {r["size"]:,} | {r["densify"]} | {r["direct_sparse_fc"]} | '
        f'{100 * r["acc"]:.2f}%{check} | {t1["median_us"]:.1f} | '
        f'{t1["ratio"]:.2f}x | {t2["median_us"]:.1f} | {t2["ratio"]:.2f}x |')
  lines += [
      '', 'Reading it: sparse encoding shrinks float files about as '
      'TFLITE.md predicts, but conv weights come back through DENSIFY and run '
      'at dense speed; only the 1x4-blocked float FULLY_CONNECTED weights are '
      'consumed sparse. int8 with sparse encoding is refused wherever the '
      'converter emits DENSIFY -> FULLY_CONNECTED, which ai_edge_litert '
      'cannot prepare (TFLITE.md 1.4, re-measured in tests/test_convert.py).']
  results.write_section('tflite_lenet5', '\n'.join(lines))
  print('\n'.join(lines))


if __name__ == '__main__':
  app.run(main)
