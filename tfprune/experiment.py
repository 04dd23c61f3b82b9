"""One experiment: config -> data -> model -> prune -> fit -> strip -> export.

``run(config, workdir)`` writes into the workdir: ``model.keras`` (trained,
wrapped), ``stripped.keras``, ``model.tflite``, ``report.json``
(``tfprune.report`` of the trained model), ``metrics.json``, ``report.md``,
``sparsity.csv``, TensorBoard logs, ``dense.tflite`` (the model before
pruning, for comparison) and ``layers.png`` (kept vs removed weights and
channels per layer, embedded in report.md; needs matplotlib); when dead
channels are removed before export (``config.shrink``), also
``shrunk.keras``, ``stripped.tflite`` and ``plan.json`` (what
``tfprune.shrink`` removed; the TFLite check uses it).

The run prints which phase it is in (dense training, pruning, fine-tuning,
export) above Keras' own progress output, and ends with a summary table
(:mod:`tfprune.summary`: dense vs pruned vs shrunk, accuracy, params, MACs,
``.tflite`` bytes, 1-thread latency measured interleaved by
``tflite_export.bench``, check verdict), also at the top of report.md. The run is built in
``<workdir>.partial`` and renamed at the end, so a failed run never leaves a
half-written workdir; an existing workdir is replaced only with
``overwrite=True`` and only if an earlier run made it; a second run on a
workdir in use is refused (``tfprune.workdir`` has the rules). The command
line is ``tfprune.train``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Dict, Optional

import numpy as np

import tflite_export
import tfprune
from tfprune import config as config_lib
from tfprune import data
from tfprune import generations
from tfprune import progress
from tfprune import schedules
from tfprune import summary
from tfprune import workdir as workdir_lib
from tfprune.wrapper import collect_wrappers

# Kept here for callers that used them before tfprune.workdir existed.
MARKER = workdir_lib.MARKER
WorkdirExistsError = workdir_lib.WorkdirExistsError


class CheckFailedError(RuntimeError):
  """The exported .tflite file lost sparsity the Keras model had."""


def _optimizer(config, learning_rate: float):
  keras = generations.named(config.keras_generation).keras
  if config.optimizer == 'adam':
    return keras.optimizers.Adam(learning_rate)
  if config.optimizer == 'sgd':
    return keras.optimizers.SGD(learning_rate, momentum=config.momentum)
  raise ValueError(f"optimizer must be 'adam' or 'sgd', got "
                   f'{config.optimizer!r}')


def build_schedule(spec, total_steps: int):
  """A tfmot schedule (or a float for one-shot, or None) from the config."""
  kind = spec.kind
  end = spec.end_step if spec.end_step >= 0 else max(
      spec.begin_step + 1, int(total_steps * 2 / 3))
  if kind == 'polynomial_decay':
    return schedules.PolynomialDecay(
        spec.initial_sparsity, spec.final_sparsity, spec.begin_step, end,
        power=spec.power, frequency=spec.frequency)
  if kind == 'constant':
    return schedules.ConstantSparsity(spec.final_sparsity, spec.begin_step,
                                      frequency=spec.frequency)
  if kind == 'one_shot':
    return float(spec.final_sparsity)
  if kind == 'none':
    return None
  if kind == 'periodic':
    begin = spec.begin_step if spec.begin_step >= 0 else total_steps + 1
    return schedules.Periodic(begin, -1 if spec.end_step < 0 else
                              spec.end_step, spec.frequency)
  raise ValueError(f"schedule.kind must be 'polynomial_decay', 'constant', "
                   f"'one_shot', 'none' or 'periodic', got {kind!r}")


def load_data(config, data_dir: Optional[str]):
  """Train/validation/test arrays for the config (resized as configured)."""
  data_dir = data_dir or config.data_dir or None
  # One call site for both splits, so a warning from data.load shows once.
  (x_train, y_train), (x_test, y_test) = (
      data.load(config.dataset, split, data_dir, verbose=split == 'train')
      for split in ('train', 'test'))
  size, channels = config.image_size or None, config.channels or None
  x_train = data.resize_images(x_train, size, channels)
  x_test = data.resize_images(x_test, size, channels)
  order = np.random.RandomState(config.seed).permutation(len(x_train))
  n_val = int(len(order) * config.validation_fraction)
  val, train = order[:n_val], order[n_val:]
  return ((x_train[train], y_train[train]), (x_train[val], y_train[val]),
          (x_test, y_test))


def _markdown(config, metrics: Dict, rep, ops, checked, summary: str,
              chart: Optional[str]) -> str:
  lines = ['# tfprune run', '',
           f'config: `{metrics["config_file"]}`; finished '
           f'{time.strftime("%Y-%m-%d %H:%M:%S")}', '', '## Summary', '',
           summary, '']
  if chart:
    lines += ['## Kept vs removed per layer', '',
              f'![kept vs removed weights and channels per layer]'
              f'({os.path.basename(chart)})', '']
  else:
    lines += ['(no per-layer chart: it needs matplotlib, '
              '`pip install matplotlib`)', '']
  lines += ['## Metrics', '', '| metric | value |', '|---|---|']
  for key, value in metrics.items():
    if key != 'config_file':
      lines.append(f'| {key} | {value} |')
  lines += ['', '## Layers (trained model)', '', rep.table(), '',
            '## TFLite check (model.tflite against report.json)', '',
            checked.table(), '',
            '## TFLite ops', '', ', '.join(ops), '']
  if 'methods' in rep:
    lines += ['## Method facts (report.json "methods")', '', '```',
              json.dumps(rep['methods'], indent=1), '```', '']
  lines += ['## Config', '',
            '```', str(config), '```', '']
  return '\n'.join(lines)


def _wants_shrink(config, model) -> bool:
  """Whether to remove dead channels before export (config.shrink)."""
  if config.shrink not in ('auto', 'yes', 'no'):
    raise ValueError(f"config.shrink must be 'auto', 'yes' or 'no', got "
                     f'{config.shrink!r}')
  if config.shrink != 'auto':
    return config.shrink == 'yes'
  return any(str(w.structure) in ('channel', 'kernel', 'input_channel',
                                  'layer')
             for w in collect_wrappers(model))


def _fit_verbosity(verbose: int) -> int:
  """Keras' verbose for fit: -1 is a bar at a terminal, else a line/epoch.

  (tf_keras' own 'auto' draws bars into log files too.)
  """
  if verbose >= 0:
    return verbose
  try:
    return 1 if sys.stdout.isatty() else 2
  except (AttributeError, ValueError):
    return 2


def phase(title: str) -> None:
  """Print a phase header (dense training, pruning, ...) of the run."""
  print(f'\n== {title} ==', flush=True)


def phase_of_epoch(schedule, epoch: int, steps_per_epoch: int) -> str:
  """What the pruning fit does in ``epoch``: pruning or fine-tuning.

  Pruning while the schedule can still change masks (a tfmot schedule
  before its ``end_step``, or without one); fine-tuning after it, or after
  a one-shot float; fixed-mask training for ``schedule=None``.
  """
  if schedule is None:
    return "training with the method's fixed masks"
  if isinstance(schedule, float):
    return f'fine-tuning after one-shot pruning to {schedule:g}'
  first_step = epoch * steps_per_epoch + 1   # tfmot counts from 1
  end = getattr(schedule, 'end_step', -1)
  if isinstance(schedule, schedules.Periodic) or end < 0 or first_step <= end:
    return 'pruning: masks follow the schedule'
  return 'fine-tuning: masks fixed at the final sparsity'


def _phase_labels(keras, schedule, steps_per_epoch: int, what: str):
  """A callback printing a phase header when the pruning fit changes phase."""
  shown = []

  def begin(epoch, logs=None):
    del logs
    title = phase_of_epoch(schedule, epoch, steps_per_epoch)
    if not shown or shown[-1] != title:
      shown.append(title)
      phase(f'{title} ({what}, from epoch {epoch + 1})')
  return keras.callbacks.LambdaCallback(on_epoch_begin=begin)


def _convert(model, path: str) -> Dict:
  """Convert ``model`` to ``path`` (a phase line says so)."""
  started = time.time()
  with progress.elapsed(f'converting {os.path.basename(path)}'):
    out = tflite_export.convert(model, path)
  print(f'converted {os.path.basename(path)}: {out["size"]:,} bytes in '
        f'{time.time() - started:.1f} s', flush=True)
  return out


def _latency(paths: Dict[str, str]) -> Dict[str, float]:
  """Median 1-thread latency (us) of each file, measured interleaved."""
  result = tflite_export.bench(list(paths.values()), threads=(1,), rounds=3,
                               block_seconds=0.1, warmup=10)
  by_path = {r['path']: r['median_us'] for r in result['results']}
  return {name: by_path[path] for name, path in paths.items()}


def _sizes(totals: Dict) -> Dict:
  """The summary.Row size fields from a report's totals."""
  return {k: totals[k] for k in ('params', 'nonzero_params', 'macs',
                                 'effective_macs')}


def _summary(partial: str, metrics: Dict, dense: summary.Row, stripped,
             shrunk, rep) -> str:
  """The summary table: dense vs pruned (stripped) vs shrunk, timed.

  ``model.tflite`` (already written and checked) holds the shrunk model
  when ``shrunk`` is given, else the stripped one; with ``shrunk`` the
  stripped model is converted (``stripped.tflite``) and checked too, so the
  table shows what shrinking adds.
  """
  files = {'dense': os.path.join(partial, 'dense.tflite'),
           'model': os.path.join(partial, 'model.tflite')}
  rows = [dense, summary.Row('pruned, stripped',
                             metrics['stripped_test_accuracy'],
                             **_sizes(tfprune.report(stripped)['totals']))]
  if shrunk is not None:
    files['stripped'] = os.path.join(partial, 'stripped.tflite')
    rows[1].tflite_bytes = _convert(stripped, files['stripped'])['size']
    rows[1].check = ('ok' if tflite_export.check(files['stripped'], rep).ok
                     else 'FAILED')
    rows.append(summary.Row('shrunk', metrics['shrunk_test_accuracy'],
                            **_sizes(tfprune.report(shrunk)['totals'])))
  rows[-1].tflite_bytes = metrics['tflite_bytes']
  rows[-1].check = metrics['tflite_check']
  latency = _latency(files)
  rows[0].latency_us, rows[-1].latency_us = latency['dense'], latency['model']
  if shrunk is not None:
    rows[1].latency_us = latency['stripped']
  metrics['dense_tflite_bytes'] = dense.tflite_bytes
  metrics['dense_latency_us'] = round(latency['dense'], 2)
  metrics['latency_us'] = round(latency['model'], 2)
  return summary.table(rows)


def run(config, workdir: str, overwrite: bool = False,
        data_dir: Optional[str] = None, config_file: str = '') -> Dict:
  """Run one experiment; returns its metrics (also in metrics.json)."""

  config = config_lib.lock(config)
  if (config.schedule.kind == 'periodic' and config.schedule.begin_step < 0
      and not config.final_epochs):
    raise ValueError("schedule.kind='periodic' with begin_step=-1 starts at "
                     'the final epochs, but final_epochs is 0: set '
                     'final_epochs or a begin_step >= 0')
  method = tfprune.methods.get(config.method, **config.method_kwargs)
  if config.pretrain_epochs and getattr(method, 'rescale_init', False):
    raise ValueError(
        f'{config.method} rescales the kept weights to the sparse fan-in '
        '(rescale_init=True), which suits random weights; after '
        f'pretrain_epochs={config.pretrain_epochs} they are trained and '
        'would be scaled up: set --config.method_kwargs.rescale_init=False'
        ' (or pretrain_epochs=0)')
  with workdir_lib.building(workdir, overwrite) as partial:
    started = time.time()
    keras = generations.named(config.keras_generation).keras
    keras.utils.set_random_seed(config.seed)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = load_data(
        config, data_dir)
    classes = int(max(y_train.max(), y_test.max()) + 1)
    model = tfprune.models.get(config.model, input_shape=x_train.shape[1:],
                               classes=classes,
                               keras_generation=config.keras_generation,
                               **config.model_kwargs)
    compile_args = dict(loss='sparse_categorical_crossentropy',
                        metrics=['accuracy'])
    fit_args = dict(batch_size=config.batch_size,
                    verbose=_fit_verbosity(config.verbose),
                    validation_data=(x_val, y_val) if len(x_val) else None)
    metrics = {'config_file': config_file, 'dataset': config.dataset,
               'model': config.model, 'method': config.method,
               'train_examples': len(x_train), 'test_examples': len(x_test)}
    if config.pretrain_epochs:
      phase(f'dense training: {config.model} on {config.dataset}, '
            f'{config.pretrain_epochs} epochs')
      model.compile(_optimizer(config, config.learning_rate), **compile_args)
      model.fit(x_train, y_train, epochs=config.pretrain_epochs, **fit_args)
      metrics['dense_test_accuracy'] = float(
          model.evaluate(x_test, y_test, batch_size=512, verbose=0)[1])
    dense = summary.Row(
        'dense' + ('' if config.pretrain_epochs else ' (untrained)'),
        metrics.get('dense_test_accuracy'),
        **_sizes(tfprune.report(model)['totals']),
        tflite_bytes=_convert(model, os.path.join(partial, 'dense.tflite'))[
            'size'])

    steps = config.epochs * math.ceil(len(x_train) / config.batch_size)
    if getattr(method, 'regrow_data', False) is None:
      method.regrow_data = (x_train, y_train)  # SmallWorld(regrow='gradient')
    schedule = build_schedule(config.schedule, steps)
    selection = [s for s in config.layers.split(',') if s] or None
    rule = tfprune.ChannelSelection(**config.channel_selection.to_dict())
    if not method.prunes_channel_groups or rule == tfprune.ChannelSelection():
      rule = None     # the method's own (e.g. Magnitude(scope='global'))
    pruned = tfprune.prune(model, method, schedule, layers=selection,
                           selection=rule)
    lr = (config.finetune_learning_rate if config.finetune_learning_rate > 0
          else config.learning_rate)
    pruned.compile(_optimizer(config, lr), **compile_args)

    validation = (x_val, y_val) if len(x_val) else None

    def callbacks(extra=()):
      return [tfprune.PruningStep(), tfprune.SparsityLogger(
          log_dir=os.path.join(partial, 'logs'),
          csv_path=os.path.join(partial, 'sparsity.csv'))] + list(extra)

    labels = _phase_labels(
        keras, schedule, math.ceil(len(x_train) / config.batch_size),
        f'{config.method} on {len(collect_wrappers(pruned))} layer(s)')
    pruned.fit(x_train, y_train, epochs=config.epochs,
               callbacks=callbacks(method.fit_callbacks(validation)) +
               [labels], **fit_args)
    if config.final_epochs:   # masks as the pruning epochs left them
      metrics['before_final_test_accuracy'] = float(
          pruned.evaluate(x_test, y_test, batch_size=512, verbose=0)[1])
      final_lr = (config.final_learning_rate
                  if config.final_learning_rate > 0 else lr)
      phase(f'fine-tuning: final stage, {config.final_epochs} epochs at '
            f'learning rate {final_lr:g}')
      pruned.compile(_optimizer(config, final_lr), **compile_args)
      pruned.fit(x_train, y_train, epochs=config.final_epochs,
                 callbacks=callbacks(), **fit_args)
    metrics['pruned_test_accuracy'] = float(
        pruned.evaluate(x_test, y_test, batch_size=512, verbose=0)[1])
    pruned.save(os.path.join(partial, 'model.keras'))

    stripped = tfprune.strip(pruned)
    stripped.compile(**compile_args)
    metrics['stripped_test_accuracy'] = float(
        stripped.evaluate(x_test, y_test, batch_size=512, verbose=0)[1])
    stripped.save(os.path.join(partial, 'stripped.keras'))
    rep = tfprune.report(pruned)
    rep.to_json(os.path.join(partial, 'report.json'))
    export, plan = stripped, None
    shrinking = _wants_shrink(config, pruned)
    phase('export: strip' + (', shrink' if shrinking else '') +
          ', convert to .tflite, check, time')
    if shrinking:
      export, plan = tfprune.shrink(      # shows its own progress
          stripped, round_to=config.shrink_round_to,
          min_channels=config.shrink_min_channels, return_plan=True)
      export.compile(**compile_args)
      metrics['shrunk_test_accuracy'] = float(
          export.evaluate(x_test, y_test, batch_size=512, verbose=0)[1])
      export.save(os.path.join(partial, 'shrunk.keras'))
      with open(os.path.join(partial, 'plan.json'), 'w') as f:
        json.dump(plan.as_dict(), f)
      shrunk = tfprune.report(export)['totals']
      metrics['shrunk_params'] = shrunk['params']
      metrics['shrunk_macs'] = shrunk['macs']
    tflite_path = os.path.join(partial, 'model.tflite')
    exported = _convert(export, tflite_path)
    checked = tflite_export.check(tflite_path, rep, plan=plan)
    metrics['tflite_bytes'] = exported['size']
    metrics['tflite_check'] = 'ok' if checked.ok else 'FAILED'
    metrics['tflite_test_accuracy'] = tflite_export.evaluate(
        tflite_path, x_test, y_test)
    summary_table = _summary(partial, metrics, dense, stripped,
                             export if plan is not None else None, rep)
    chart = summary.layer_chart(rep, os.path.join(partial, 'layers.png'),
                                f'{config.model}, {config.method}: kept vs '
                                'removed per pruned layer')
    totals = rep['totals']
    metrics.update({
        'params': totals['params'], 'nonzero_params': totals['nonzero_params'],
        'kept_fraction': round(totals['kept_fraction'], 6),
        'prunable_weight_sparsity': round(totals['weight_sparsity'], 6),
        'macs': totals['macs'], 'effective_macs': totals['effective_macs'],
        'seconds': round(time.time() - started, 1)})
    with open(os.path.join(partial, 'metrics.json'), 'w') as f:
      json.dump(metrics, f, indent=2)
    with open(os.path.join(partial, 'report.md'), 'w') as f:
      f.write(_markdown(config, metrics, rep, exported['ops'], checked,
                        summary_table, chart))
    if not checked.ok:
      raise CheckFailedError(
          'the exported model.tflite does not keep the trained sparsity: '
          + '; '.join(checked.failures))
  phase('summary')
  print(summary_table)
  where = os.path.realpath(workdir)
  print(f'\n(gains vs the dense row; latency: median of interleaved runs, '
        f'1 thread)\nwrote {where}: report.md (this table, per-layer '
        f'table and chart, TFLite check), model.tflite, metrics.json, '
        f'report.json; tensorboard --logdir {os.path.join(where, "logs")}')
  return metrics
