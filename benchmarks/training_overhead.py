"""Per-step training cost of tfprune's wrappers vs the plain model and tfmot.

Every variant of one model trains the same random data (batch 64, Adam,
callbacks included) in one process; the variants take turns for several
rounds, in an order rotated by one each round, so the ratios compare
numbers measured side by side and no variant always runs first. One
measurement is one ``fit`` call; masks update once per measurement, at its
first batch (the schedule's frequency is the measurement length, and the
schedule reaches 50% at the last round, so every update changes masks).
From the time between batch starts it gives the median step (the hot
path, which the targets are about), the first batch's time above that
median (the mask update) and the whole fit per step. The table gives the
median of each over rounds.

    python -m benchmarks.training_overhead
    python -m benchmarks.training_overhead --config.models=lenet5 \\
        --config.rounds=3

Modes: ``graph`` (the default ``fit``), ``jit`` (``jit_compile=True``),
``bf16`` (``mixed_bfloat16``, native on CPUs with AVX512_BF16 or AMX and
emulated elsewhere: the section says which; ``mixed_float16`` is emulated
on CPUs and not timed here), and
``eager`` (``run_eagerly=True``, LeNet-5 only).

``benchmarks.training_overhead_floor`` adds a reference row to these
tables: the least an exact weight mask costs per step.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from benchmarks import harness


def get_config():
  return harness.config(
      section='training_overhead', models='lenet5,lenet300,vgg16,mobilenetv2',
      rounds=6, batch_size=64, learning_rate=1e-3, eager_steps=20,
      mask_target=1.02, gate_target=1.10,
      specs=dict(
          lenet5=dict(title='LeNet-5 (28x28x1)', steps=100,
                      modes='graph,jit,bf16,eager', copies=3),
          lenet300=dict(title='LeNet-300-100 (784)', steps=100,
                        modes='graph,jit,bf16', copies=3),
          vgg16=dict(title='VGG-16 width 0.5 (32x32x3, BN)', steps=20,
                     modes='graph,jit,bf16', copies=2),
          mobilenetv2=dict(title='MobileNetV2 alpha 0.35 (96x96x3)',
                           steps=20, modes='graph,jit,bf16', copies=1)),
      smoke=dict(models='lenet300', rounds=1, batch_size=8,
                 specs=dict(lenet300=dict(steps=1, modes='graph',
                                          copies=2))))


def _model_specs(keras, tfprune, c) -> Dict[str, dict]:
  """name -> builder, input shape, steps per measurement, modes, copies
  (models built per variant and mode: see :func:`time_model`)."""
  builds = {
      'lenet5': (tfprune.models.lenet5, (28, 28, 1)),
      'lenet300': (tfprune.models.lenet_300_100, (28, 28, 1)),
      'vgg16': (lambda: tfprune.models.vgg16(width=0.5), (32, 32, 3)),
      'mobilenetv2': (lambda: keras.applications.MobileNetV2(
          input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=10),
                      (96, 96, 3)),
  }
  return {name: dict(title=c.specs[name].title, build=build, shape=shape,
                     steps=c.specs[name].steps,
                     modes=tuple(c.specs[name].modes.split(',')),
                     copies=int(c.specs[name].copies))
          for name, (build, shape) in builds.items()}


class Variant(NamedTuple):
  """One row of a table: ``kind`` ('-' reference, 'mask' or 'gate': which
  target applies), ``wrap(model) -> model``, ``callbacks() -> list``, and
  ``optimizer(model, lr) -> optimizer`` (None: Adam)."""
  kind: str
  wrap: Callable
  callbacks: Callable
  optimizer: Optional[Callable] = None


def _variants(keras, tfmot, tfprune, steps: int, end: int
              ) -> Dict[str, Variant]:
  """name -> Variant; schedules update every ``steps`` steps and reach 50%
  at step ``end``."""

  def ours():
    return tfprune.schedules.PolynomialDecay(0.0, 0.5, 0, end,
                                             frequency=steps)

  def tfprune_variant(method: Callable, layers=None):
    return lambda m: tfprune.prune(m, method(), ours(), layers=layers)

  conv = keras.layers.Conv2D
  return {
      'plain': Variant('-', lambda m: m, list),
      'tfmot prune_low_magnitude': Variant(
          'mask', lambda m: tfmot.sparsity.keras.prune_low_magnitude(
              m, pruning_schedule=tfmot.sparsity.keras.PolynomialDecay(
                  0.0, 0.5, 0, end, frequency=steps)),
          lambda: [tfmot.sparsity.keras.UpdatePruningStep()]),
      'Magnitude weight': Variant('mask', tfprune_variant(
          lambda: tfprune.methods.Magnitude()),
                                  lambda: [tfprune.PruningStep()]),
      'Magnitude channel': Variant('mask', tfprune_variant(
          lambda: tfprune.methods.Magnitude('channel')),
                                   lambda: [tfprune.PruningStep()]),
      'PSP filter': Variant('gate', lambda m: tfprune.prune(
          m, tfprune.methods.PSP('filter'), None),
                            lambda: [tfprune.PruningStep()]),
      'SynapticStrength': Variant('gate', tfprune_variant(
          lambda: tfprune.methods.SynapticStrength(), layers=conv),
                                  lambda: [tfprune.PruningStep()]),
  }


FLOOR = 'floor: masked gradients'


def floor_variant(keras, tf) -> Variant:
  """The plain model trained by :func:`gradient_masking_adam`: the one
  product per kernel and step that an exact weight mask needs."""
  return Variant('-', lambda m: m, list, lambda model, lr:
                 gradient_masking_adam(keras, tf, model, lr))


def gradient_masking_adam(keras, tf, model, lr: float, seed: int = 0):
  """An Adam that multiplies the gradient of every kernel (every trainable
  weight of rank 2 or more) of ``model`` by a fixed random 0/1 mask (a
  non-trainable variable, read each step as tfprune reads its masks)
  before applying it; biases and other weights as they come."""
  rng = np.random.RandomState(seed)
  masks = {v.ref(): tf.Variable(
      (rng.rand(*v.shape) < 0.5).astype(np.float32), trainable=False)
           for v in model.trainable_weights if len(v.shape) >= 2}

  class GradientMaskingAdam(keras.optimizers.Adam):

    def apply_gradients(self, grads_and_vars, *args, **kwargs):
      return super().apply_gradients(
          [(g if v.ref() not in masks else
            g * tf.cast(masks[v.ref()], g.dtype), v)
           for g, v in grads_and_vars], *args, **kwargs)

  return GradientMaskingAdam(lr)


class _Timer:
  """Wall times of one ``fit``: the start of every batch and the end."""

  def __init__(self, keras):
    timer = self

    class Callback(keras.callbacks.Callback):

      def __init__(self):
        super().__init__()
        self._supports_tf_logs = True   # no per-batch wait for the step

      def on_train_batch_begin(self, batch, logs=None):
        timer.marks.append(time.perf_counter())

      def on_train_end(self, logs=None):
        timer.marks.append(time.perf_counter())

    self.callback = Callback()
    self.marks: List[float] = []

  def seconds(self, steps: int) -> float:
    return (self.marks[-1] - self.marks[0]) / steps

  def split(self) -> Tuple[float, float]:
    """(median seconds between batch starts, the first batch's seconds
    above it). A CPU step returns when it has run, so a batch's interval
    holds its step and its callbacks; the first batch of every measurement
    is the one that updates the masks (in a callback for tfprune, in the
    graph for tfmot), besides starting the fit."""
    intervals = np.diff(self.marks)
    step = float(np.median(intervals))
    return step, float(intervals[0] - step)


def build_variant(keras, spec, mode: str, wrap, lr: float,
                  optimizer: Optional[Callable] = None):
  """A compiled variant in ``mode``, or the error that stopped it;
  ``optimizer(model, lr)`` gives its optimizer (None: Adam)."""
  policy = 'mixed_bfloat16' if mode == 'bf16' else 'float32'
  keras.mixed_precision.set_global_policy(policy)
  try:
    keras.utils.set_random_seed(0)
    model = wrap(spec['build']())
    model.compile((optimizer or (lambda _, lr: keras.optimizers.Adam(lr)))(
        model, lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=False),
                  jit_compile=(mode == 'jit'), run_eagerly=(mode == 'eager'))
    return model, None
  except Exception as e:  # pylint: disable=broad-except
    return None, f'{type(e).__name__}: {str(e).splitlines()[0][:80]}'
  finally:
    keras.mixed_precision.set_global_policy('float32')


def measure_split(keras, model, callbacks, data, steps: int
                  ) -> Tuple[float, float, float]:
  """(seconds per step of the whole fit, median seconds per step, the first
  step's seconds above the median: the mask update plus the fit's start)
  for one ``fit`` of ``steps`` steps."""
  timer = _fit(keras, model, callbacks, data, steps)
  return (timer.seconds(steps),) + timer.split()


def warm_up(keras, model, callbacks, data, steps: int) -> None:
  """One untimed ``fit``: traces the train function, builds the optimizer
  slots, runs the first mask update."""
  _fit(keras, model, callbacks, data, steps)


def _fit(keras, model, callbacks, data, steps: int) -> _Timer:
  timer = _Timer(keras)
  model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0,
            callbacks=[timer.callback] + callbacks)
  return timer


def rotated(keys: list, round_index: int) -> list:
  """``keys`` started at position ``round_index``: over rounds every
  variant runs first, second, ... equally often, so warm caches, a
  collection pause or a neighbour's load do not always hit the same one.
  (A fixed order put MobileNetV2's tfprune rows 5-17 points above the
  rotated order's, tfmot's by 0.6.)"""
  start = round_index % len(keys) if keys else 0
  return keys[start:] + keys[:start]


def time_model(c, spec, make_variants, modes, keras, tf
               ) -> Dict[tuple, dict]:
  """(variant, mode) -> {'kind', 'error', 'steps', and medians over every
  copy's rounds in ms: 'fit' (whole fit per step), 'step' (median step),
  'update' (one mask update); 'spread': how far apart the copies' own step
  medians are (max / min - 1), or None for one copy}.

  Each variant is built ``spec['copies']`` times, and every copy is a
  variant of its own in the rotation: separately built copies of one model
  can differ by several percent in step time for as long as they live
  (six plain LeNet-5 copies in one process, 20 rounds: five within 1.5%,
  one 6% faster throughout), so one copy per variant would put that
  difference into the ratios. ``make_variants(steps, end)`` gives the
  variants whose masks update every ``steps`` steps (once per
  measurement) and reach their final sparsity at the last round's last
  step, so every update changes masks."""
  rng = np.random.RandomState(0)
  x = rng.rand(c.batch_size * 8, *spec['shape']).astype(np.float32)
  y = rng.randint(0, 10, len(x)).astype(np.int32)
  data = tf.data.Dataset.from_tensor_slices((x, y)).batch(c.batch_size).cache(
      ).repeat().prefetch(2)
  runs, out = {}, {}
  for mode in modes:
    # run_eagerly is ~10x slower per step: fewer steps
    steps = c.eager_steps if mode == 'eager' else spec['steps']
    variants = make_variants(steps, steps * (c.rounds + 1))
    for name, variant in variants.items():
      entry = out[(name, mode)] = {'kind': variant.kind, 'error': None,
                                   'steps': steps, 'times': {}}
      for copy in range(spec['copies']):
        model, error = build_variant(keras, spec, mode, variant.wrap,
                                     c.learning_rate, variant.optimizer)
        if model is not None:
          cbs = variant.callbacks()
          try:
            warm_up(keras, model, cbs, data, steps)
          except Exception as e:  # pylint: disable=broad-except
            model, error = None, (
                f'{type(e).__name__}: {str(e).splitlines()[0][:80]}')
        if model is None:        # no copy of it is timed
          entry['error'] = error
          for key in [k for k in runs if k[:2] == (name, mode)]:
            del runs[key]
          break
        runs[(name, mode, copy)] = (model, cbs)
        entry['times'][copy] = []
  for r in range(c.rounds):
    for key in rotated(list(runs), r):
      model, cbs = runs[key]
      out[key[:2]]['times'][key[2]].append(measure_split(
          keras, model, cbs, data, out[key[:2]]['steps']))
  for entry in out.values():
    entry.update(summarize(entry['times'] if entry['error'] is None
                           else {}))
  return out


def summarize(times: Dict[int, List[tuple]]) -> Dict[str, Optional[float]]:
  """Copy -> its rounds' ``(fit, step, update)`` seconds, as milliseconds:
  the median of each over all copies and rounds, and 'spread' (the
  copies' own step medians: max / min - 1; None for fewer than two)."""
  pooled = [t for runs in times.values() for t in runs]
  summary = {field: (1e3 * statistics.median(t[i] for t in pooled)
                     if pooled else None)
             for i, field in enumerate(('fit', 'step', 'update'))}
  own = [statistics.median(t[1] for t in runs)
         for runs in times.values() if runs]
  summary['spread'] = max(own) / min(own) - 1 if len(own) > 1 else None
  return summary


def bf16_native(cpuinfo: str = '/proc/cpuinfo') -> Optional[bool]:
  """Whether this CPU computes bfloat16 itself (the ``avx512_bf16`` or
  ``amx_bf16`` flag), or None where the flags cannot be read. Without it
  TensorFlow's CPU kernels emulate bfloat16 through float32 conversions, so
  the bf16 rows measure that emulation as well."""
  try:
    with open(cpuinfo) as f:
      flags = next((l.split(':', 1)[1].split() for l in f
                    if l.startswith('flags')), None)
  except OSError:
    return None
  if flags is None:
    return None
  return bool({'avx512_bf16', 'amx_bf16'} & set(flags))


def _bf16_note(native: Optional[bool]) -> str:
  if native is None:
    return ('bf16 rows: whether this CPU computes bfloat16 natively could '
            'not be read (no /proc/cpuinfo flags).')
  if native:
    return 'bf16 rows: this CPU computes bfloat16 natively (AVX512_BF16/AMX).'
  return ('bf16 rows: this CPU has neither AVX512_BF16 nor AMX, so '
          'TensorFlow\'s kernels emulate bfloat16 (through float32 '
          'conversions); the rows show what mixed precision costs here, not '
          'its speed on hardware built for it.')


def _ratio(a, b) -> str:
  return f'{a / b:.3f}' if a and b else '-'


def _percent(fraction: Optional[float]) -> str:
  return '-' if fraction is None else f'{100 * fraction:.1f}%'


def _table(title: str, modes, variants, out) -> List[str]:
  steps = ', '.join(f'{m} {out[("plain", m)]["steps"]}' for m in modes)
  copies = len(out[('plain', modes[0])]['times'])
  lines = [f'### {title}', '',
           f'Steps per measurement (one mask update in each): {steps}. '
           f'Copies per variant: {copies}.', '',
           '| mode | variant | step ms | step / plain | step / tfmot '
           '| copies apart | update ms | fit ms/step | fit / plain |',
           '|---|---|---|---|---|---|---|---|---|']
  for mode in modes:
    plain, tfmot = (out[(v, mode)] for v in (
        'plain', 'tfmot prune_low_magnitude'))
    for name in variants:
      entry = out[(name, mode)]
      if entry['step'] is None:
        lines.append(f'| {mode} | {name} | fails ({entry["error"]}) |'
                     + ' - |' * 6)
        continue
      lines.append(
          f'| {mode} | {name} | {entry["step"]:.2f} | '
          f'{_ratio(entry["step"], plain["step"])} | '
          f'{_ratio(entry["step"], tfmot["step"])} | '
          f'{_percent(entry["spread"])} | '
          f'{entry["update"]:.1f} | {entry["fit"]:.2f} | '
          f'{_ratio(entry["fit"], plain["fit"])} |')
  return lines + ['']


def _verdicts(c, results) -> List[str]:
  """Which targets this run met, on the steady step: mask methods <= 1.02x
  plain and <= tfmot, gated <= 1.10x plain."""
  met, missed = [], []
  for title, _, out in results:
    for (name, mode), entry in out.items():
      plain = out[('plain', mode)]['step']
      if entry['kind'] == '-' or entry['step'] is None or not plain or (
          name.startswith('tfmot')):
        continue
      ratio = entry['step'] / plain
      tfmot = out[('tfmot prune_low_magnitude', mode)]['step']
      ok = ratio <= (c.mask_target if entry['kind'] == 'mask' else c.gate_target)
      if entry['kind'] == 'mask' and tfmot:
        ok = ok and entry['step'] <= tfmot * 1.005   # equal within noise
      (met if ok else missed).append(f'{title} / {name} / {mode} {ratio:.3f}')
  return ['### Reading it', '',
          f'- Targets (step / plain): mask methods <= {c.mask_target}x plain '
          f'and not above tfmot; gated methods (PSP, Synaptic Strength) <= '
          f'{c.gate_target}x.',
          f'- Met ({len(met)}): ' + ('; '.join(met) or 'none') + '.',
          f'- Missed ({len(missed)}): ' + ('; '.join(missed) or 'none') + '.'
          ] + _floor_lines(results)


def _floor_lines(results) -> List[str]:
  """Where the run has a floor row: each mask row's step over the floor's
  (what the wrapper costs beyond the one product an exact mask needs)."""
  rows = []
  for title, _, out in results:
    for (name, mode), entry in out.items():
      floor = out.get((FLOOR, mode), {}).get('step')
      if entry['kind'] == 'mask' and floor and entry['step']:
        rows.append(f'{title} / {name} / {mode} '
                    f'{entry["step"] / floor:.3f}')
  if not rows:
    return []
  return ['- Mask rows / floor: what the wrapper costs beyond the one product '
          'per kernel an exact mask needs (a channel mask on a Dense layer '
          'masks its output\'s gradient instead, batch x units entries, so '
          'it can be below 1): ' + '; '.join(rows) + '.']


def run(ctx, floor: bool = False):
  """The section; ``floor`` adds the reference row :data:`FLOOR` to every
  table (``benchmarks.training_overhead_floor``)."""
  import os  # pylint: disable=g-import-not-at-top
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  import logging  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_model_optimization as tfmot  # pylint: disable=g-import-not-at-top
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  import tfprune  # pylint: disable=g-import-not-at-top
  logging.getLogger('tfprune').setLevel(logging.WARNING)
  c = ctx.config
  specs = _model_specs(keras, tfprune, c)
  names = c.models.split(',')
  unknown = sorted(set(names) - set(specs))
  if unknown:
    raise ValueError(f'unknown config.models {unknown}; known: '
                     f'{sorted(specs)}')
  results = []
  for name in names:
    spec = specs[name]

    def make_variants(steps, end, name=name):
      variants = _variants(keras, tfmot, tfprune, steps, end)
      if name == 'lenet300':
        variants.pop('SynapticStrength')   # no Conv2D to give strengths to
      if floor:
        variants[FLOOR] = floor_variant(keras, tf)
      return variants

    start = time.time()
    out = time_model(c, spec, make_variants, spec['modes'], keras, tf)
    print(f'{spec["title"]}: {time.time() - start:.0f} s', flush=True)
    results.append((spec['title'], spec['modes'], out))
  lines = [f'Batch {c.batch_size}, Adam {c.learning_rate:g}, random data, '
           f'callbacks included, {c.rounds} interleaved rounds per model in '
           'one process, the variants\' order rotated by one each round. '
           'Each variant is built several times (copies, per model below) '
           'and every copy takes its turn in the rounds: separately built '
           'copies of one model can differ by several percent in step time '
           'for as long as they live (six plain LeNet-5 copies, 20 rounds: '
           'five within 1.5%, one 6% faster throughout), which one copy per '
           'variant would put into the ratios. Times are medians over all '
           'copies and rounds; "copies apart" is how far the copies\' own '
           'step medians are from each other (max / min - 1): the plain '
           'row\'s is a floor under the differences a ratio can show. '
           'Mask methods: tfmot `prune_low_magnitude`, tfprune Magnitude '
           '(weight, channel); gated: PSP filter (learned alphas, no '
           'schedule), Synaptic Strength (Conv2D layers; none in '
           'LeNet-300-100). Schedules go from 0 to 50% sparsity over the '
           'run, so every update changes masks. Masks update once per '
           'measurement: every ' + ', '.join(
               f'{specs[n]["steps"]} ({specs[n]["title"]})' for n in names) +
           f' steps ({c.eager_steps} in eager mode). '
           + (f'"{FLOOR}" is the plain model trained by an Adam that '
              'multiplies every kernel\'s gradient by a fixed random 0/1 '
              'mask (50%), the one product per kernel and step an exact '
              'weight mask needs (tfprune\'s weights hold zeros under their '
              'masks, so in a traced step it masks only the gradient); it '
              'is a reference, not judged. ' if floor else '') +
           '"step ms" is the median time between batch starts (the step, '
           'its callbacks and the per-step wrapper work); "update ms" is '
           'the first batch of a measurement above that median: the mask '
           'update (a callback for tfprune, in the graph for tfmot) plus '
           'starting the fit, which the plain row alone shows (a tfprune '
           'update that retraces its zeroing does so in one round, which '
           'the median drops); "fit ms/step" is the whole fit divided by '
           'its steps, the update included -- at one update per 10-20 '
           'steps it charges more update cost than a typical '
           'schedule (every 100) would. "/ plain" and "/ tfmot" are ratios '
           'in the same mode and run.', '']
  if any('bf16' in modes for _, modes, _ in results):
    lines += [_bf16_note(bf16_native()), '']
  for title, modes, out in results:
    variants = [v for v, m in out if m == modes[0]]
    lines += _table(title, modes, variants, out)
  return ('Training overhead: ms/step of wrapped models vs plain and tfmot'
          + (', and the floor under an exact weight mask' if floor else ''),
          '\n'.join(lines + _verdicts(c, results)))


if __name__ == '__main__':
  harness.main(sys.modules[__name__])
