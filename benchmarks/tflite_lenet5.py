"""LeNet-5 .tflite size and latency: dense vs magnitude-pruned at 97.7%.

Trains the dense LeNet-5 of the magnitude baseline, then two pruned versions
from the same weights (tfmot's per-layer rule, 97.7%): every kernel at weight
level, and the two Dense layers in 1x4 blocks (Keras block(4,1): 4
consecutive inputs of one output, TFLite's 1x4 orientation) with the convs
at weight level. Each model is converted float32 and int8, with and without
sparse encoding, checked with tflite_export.check, scored on the MNIST test
set, and timed in one interleaved run.

    python -m benchmarks.tflite_lenet5 --data_dir=../shared/data
"""

from __future__ import annotations

import sys

from benchmarks import harness
from benchmarks import magnitude_baseline


def get_config():
  return harness.config(
      section='tflite_lenet5', **magnitude_baseline.lenet5_recipe(),
      block_layers='ip1,ip2', block='block(4,1)', calibration_images=200,
      quantize=['none', 'int8'], rounds=7,
      smoke=dict(**magnitude_baseline.lenet5_smoke(), calibration_images=8,
                 quantize=['int8'], rounds=1))


def _convert(ctx, name, model, expected, x, x_test, y_test):
  """Every quantize x sparse-encoding file of one model: the rows."""
  import tflite_export  # pylint: disable=g-import-not-at-top
  rows = []
  for quantize in ctx.config.quantize:
    for sparse in (False, True):
      row = {'model': name, 'quantize': quantize, 'sparse': sparse,
             'path': None}
      rows.append(row)
      try:
        out = ctx.tflite(model, quantize=quantize,
                         representative_data=x[:ctx.config.calibration_images],
                         sparse_encoding=sparse)
      except tflite_export.ConversionError as e:
        row['refused'] = ('int8 DENSIFY -> FULLY_CONNECTED, which '
                          'ai_edge_litert cannot load'
                          if 'DENSIFY -> FULLY_CONNECTED' in str(e)
                          else str(e)[:120])
        continue
      except tflite_export.InvalidModelError as e:
        # tflite_export's reader refuses the converter's own file.
        row['refused'] = ('tflite_export.inspect rejects the converted file: '
                          + str(e).split(': ', 1)[-1][:120])
        continue
      path = out['path']
      fc = [op.weight for op in tflite_export.inspect(path).weight_ops()
            if op.name == 'FULLY_CONNECTED']
      row.update(path=path, size=out['size'], densify=out['densify'],
                 direct_sparse_fc=sum(w.sparse and not w.via for w in fc),
                 check=tflite_export.check(path, expected).ok,
                 acc=tflite_export.evaluate(path, x_test, y_test))
  return rows


def _cells(r, by_key):
  head = [r['model'], 'float32' if r['quantize'] == 'none' else 'int8',
          'yes' if r['sparse'] else 'no']
  if not r['path']:
    return head + [f'refused: {r["refused"]}'] + [''] * 7
  t1, t2 = by_key[(r['path'], 1)], by_key[(r['path'], 2)]
  check = '' if r['check'] else ' (CHECK FAILED)'
  return head + [f'{r["size"]:,}', r['densify'], r['direct_sparse_fc'],
                 f'{100 * r["acc"]:.2f}%{check}', f'{t1["median_us"]:.1f}',
                 f'{t1["ratio"]:.2f}x', f'{t2["median_us"]:.1f}',
                 f'{t2["ratio"]:.2f}x']


def run(ctx):
  import tfprune  # pylint: disable=g-import-not-at-top
  c = ctx.config
  train, (x_test, y_test), dense, schedule = magnitude_baseline.pretrain(ctx)
  weight = magnitude_baseline.fine_tune(ctx, tfprune.prune(
      dense, tfprune.methods.Magnitude('weight'), schedule()), train,
                                        harness.pruning_step())
  blocks = c.block_layers.split(',')
  others = [l.name for l in dense.layers
            if hasattr(l, 'kernel') and l.name not in blocks]
  pruned = tfprune.prune(dense, tfprune.methods.Magnitude('weight'),
                         schedule(), layers=others)
  pruned = tfprune.prune(pruned, tfprune.methods.Magnitude(c.block),
                         schedule(), layers=blocks)
  pruned = magnitude_baseline.fine_tune(ctx, pruned, train,
                                        harness.pruning_step())
  sparsity = f'{100 * c.schedule.final_sparsity:g}%'
  block_name = f'1x4 blocks on Dense, weight on conv, {sparsity}'
  models = {'dense': dense, f'weight {sparsity}': tfprune.strip(weight),
            block_name: tfprune.strip(pruned)}
  rows = []
  for name, model in models.items():
    rows += _convert(ctx, name, model, tfprune.report(model), train[0],
                     x_test, y_test)
  measured = [r['path'] for r in rows if r['path']]
  by_key, load = ctx.bench(measured, rounds=c.rounds,
                           reference=measured[0])
  params = tfprune.report(dense)['totals']['params']
  lines = [
      f'Models: LeNet-5 (Caffe, {params:,} params) trained on '
      f'{harness.describe_data(c.data)} as in the magnitude baseline above '
      f'({c.pretrain_epochs} dense epochs, then {c.epochs} fine-tuning '
      f'epochs with PolynomialDecay to {sparsity}, per-layer tfmot rule; one '
      f'seed). "1x4 blocks" prunes {", ".join(blocks)} with Magnitude('
      f"'{c.block}') (4 consecutive inputs of one output = TFLite 1x4) and "
      f'{", ".join(others)} at weight level. int8 = full integer '
      f'quantization (float input/output, {c.calibration_images} training '
      'images for calibration). Latency: ai_edge_litert Interpreter with its '
      'default XNNPACK delegate, batch 1, median of '
      f'{c.rounds} interleaved rounds per file (each ~0.2 s of back-to-back '
      'invokes), speedup = dense float median / this median at the same '
      f'thread count; load average while timing {load:.2f}. Every converted '
      'file passed tflite_export.check against the Keras report unless '
      'marked.', '',
      harness.table(
          ['model', 'weights', 'sparse encoding', '.tflite bytes',
           'DENSIFY ops', 'direct sparse FC', 'MNIST test acc. (.tflite)',
           '1 thread us', 'speedup', '2 threads us', 'speedup'],
          [_cells(r, by_key) for r in rows]), '',
      'Reading it: sparse encoding shrinks float files about as '
      'docs/TFLITE.md predicts, but conv weights come back through DENSIFY '
      'and run at dense speed; only the 1x4-blocked float FULLY_CONNECTED '
      'weights are consumed sparse. int8 with sparse encoding is refused '
      'wherever the converter emits DENSIFY -> FULLY_CONNECTED, which '
      'ai_edge_litert cannot prepare (docs/TFLITE.md 1.4, re-measured in '
      'tests/test_convert.py). Refused in this run: ' + ('; '.join(
          f'{r["model"]} {r["quantize"]} '
          f'{"sparse" if r["sparse"] else "dense"} ({r["refused"]})'
          for r in rows if not r['path']) or 'none') + '.']
  return (f'TFLite export: LeNet-5 size and latency, dense vs {sparsity} '
          'pruned', '\n'.join(lines))


if __name__ == '__main__':
  harness.main(sys.modules[__name__])
