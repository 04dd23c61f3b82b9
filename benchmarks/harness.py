"""The benchmark harness: one ``main`` every study module runs through.

A study is a module of ``benchmarks/`` with

* ``get_config()``: an ml_collections ``ConfigDict`` holding every setting
  that produces its RESULTS section, plus ``smoke``: the overrides that
  ``--smoke`` applies (tiny data slices, one step per epoch, tiny models);
* ``run(ctx)``: trains/measures with the :class:`Context` and returns
  ``(title, markdown)``; its prose is written from ``ctx.config``.

``python -m benchmarks.<study> [--data_dir=DIR] [--smoke] [--results=FILE]
[--config.KEY=VALUE ...]`` then writes the section ``config.section`` of
``--results`` (default ``docs/RESULTS.md``) with the exact command line (from
``sys.argv``), the machine, the date and the effective config dumped, saved
atomically. ``--smoke`` never writes ``docs/RESULTS.md``: without
``--results`` it writes a RESULTS.md in a temporary folder. Without
``--data_dir`` a smoke run reads the embedded ``digits`` dataset instead of
MNIST / Fashion-MNIST and says so in the section.
"""

from __future__ import annotations

import copy
import os
import platform
import re
import shlex
import shutil
import sys
import tempfile
import time
import warnings
from typing import Dict, Optional, Sequence, Tuple

from absl import flags
from absl import logging
from ml_collections import config_dict
from ml_collections import config_flags
import numpy as np
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'docs', 'RESULTS.md')
HEADER = ('# tfprune results\n\nEvery section below was written by the '
          'benchmark command it names; rerun that command to regenerate it.\n')
# What each dataset stands in for where the paper's is not available offline.
SUBSTITUTES = {'fashion_mnist': 'CIFAR-10 is not available offline'}
SMOKE_DATA = 'digits'


def config(**values) -> config_dict.ConfigDict:
  """A ConfigDict from keyword values (nested dicts become ConfigDicts)."""
  return config_dict.ConfigDict(values)


def data_config(dataset: str, image_size: int = 0, channels: int = 0,
                validation: float = 0.0, train_examples: int = 0,
                test_examples: int = 0, seed: int = 0) -> Dict:
  """The settings of one dataset: ``image_size`` > 0 zero-pads to a square,
  ``channels`` > 0 repeats the grey channel, ``validation`` is a fraction of
  the training split (< 1) or a count (>= 1) held out (after a permutation
  by ``seed``), ``train_examples`` / ``test_examples`` > 0 keep the first
  ones."""
  return dict(dataset=dataset, image_size=image_size, channels=channels,
              validation=validation, train_examples=train_examples,
              test_examples=test_examples, seed=seed)


def describe_data(data) -> str:
  """The dataset of a ``data_config`` and how its images were changed."""
  what = {'mnist': 'MNIST', 'fashion_mnist': 'Fashion-MNIST',
          'digits': 'digits'}.get(data.dataset, data.dataset)
  if data.image_size:
    what += f' zero-padded to {data.image_size}x{data.image_size}'
  if data.channels > 1:
    what += f', grey replicated to {data.channels} channels'
  elif data.image_size:
    what += ' (one channel)'
  return what


def substitute(data) -> str:
  """``describe_data``, with the dataset it stands in for where it does."""
  if data.dataset in SUBSTITUTES:
    return f'{SUBSTITUTES[data.dataset]}. Substitute: {describe_data(data)}'
  return describe_data(data)


# --- machine and RESULTS -------------------------------------------------


def machine() -> str:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  cpu = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo') as f:
      names = [l.split(':', 1)[1].strip() for l in f if 'model name' in l]
    cpu = names[0] if names else cpu
  except OSError:
    pass
  gpus = tf.config.list_physical_devices('GPU')
  return (f'{os.cpu_count()} CPU cores ({cpu}), '
          f'{f"{len(gpus)} GPU" if gpus else "no GPU"}, Python '
          f'{platform.python_version()}, TensorFlow {tf.__version__}')


def command_line(module: str, argv: Sequence[str]) -> str:
  """The command as typed: ``python -m benchmarks.<module>`` + the flags."""
  return ' '.join([f'python -m benchmarks.{module}'] +
                  [shlex.quote(a) for a in argv[1:]])


def stamp(command: str) -> str:
  return (f'Command: `{command}`  \nMachine: {machine()}  \n'
          f'Date: {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}')


def settings_block(cfg: config_dict.ConfigDict, module: str) -> str:
  """The effective config, dumped (what the command above ran with)."""
  dump = yaml.safe_dump(cfg.to_dict(), default_flow_style=None,
                        sort_keys=False, width=78).strip()
  return (f'<details><summary>Settings: benchmarks/{module}.py '
          '<code>get_config()</code> with the flags above</summary>\n\n'
          f'```yaml\n{dump}\n```\n</details>')


def write_section(name: str, markdown: str, path: str = RESULTS) -> None:
  """Replace (or append) the section called ``name`` and save atomically."""
  begin, end = f'<!-- BEGIN {name} -->', f'<!-- END {name} -->'
  block = f'{begin}\n{markdown.strip()}\n{end}\n'
  text = open(path).read() if os.path.exists(path) else HEADER
  pattern = re.compile(re.escape(begin) + r'.*?' + re.escape(end) + r'\n?',
                       re.S)
  text = (pattern.sub(lambda _: block, text) if pattern.search(text)
          else text.rstrip('\n') + '\n\n' + block)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    f.write(text)
  os.replace(tmp, path)


# --- data, training, accuracy, TFLite ------------------------------------


class Context:
  """What a study's ``run`` gets: the config, data loading, a temporary
  folder, the output folder (plots) and helpers."""

  def __init__(self, cfg, data_dir: Optional[str], smoke: bool,
               out_dir: str):
    self.config, self.data_dir, self.smoke = cfg, data_dir, smoke
    self.out_dir = out_dir
    self.tmp = tempfile.mkdtemp(prefix='benchmark_')
    self.notes = []

  def load(self, data):
    """``(train, validation, test)`` arrays for a ``data_config``."""
    from tfprune import data as data_lib  # pylint: disable=g-import-not-at-top
    name, size = data.dataset, data.image_size or None
    if self.smoke and self.data_dir is None and name != SMOKE_DATA:
      note = (f'Smoke run without --data_dir: the embedded {SMOKE_DATA} '
              f'dataset (scikit-learn 8x8, zero-padded) stands in for {name}.')
      if note not in self.notes:
        self.notes.append(note)
      name, size = SMOKE_DATA, size or 28
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      (x, y), (x_test, y_test) = (
          data_lib.load(name, split, self.data_dir, verbose=split == 'train')
          for split in ('train', 'test'))
    x = data_lib.resize_images(x, size, data.channels or None)
    x_test = data_lib.resize_images(x_test, size, data.channels or None)
    order = np.random.RandomState(data.seed).permutation(len(x))
    n_val = (int(data.validation) if data.validation >= 1 else
             int(len(order) * data.validation))
    val, train = order[:n_val], order[n_val:]
    if data.train_examples:
      train = train[:data.train_examples]
    if data.test_examples:
      x_test, y_test = x_test[:data.test_examples], y_test[:data.test_examples]
    return (x[train], y[train]), (x[val], y[val]), (x_test, y_test)

  def tflite(self, model, name: Optional[str] = None, **kwargs) -> Dict:
    """Convert ``model`` to a .tflite file in the temporary folder; what
    ``tflite_export.convert`` returns (``path``, ``size``, ``densify``)."""
    import tflite_export  # pylint: disable=g-import-not-at-top
    path = os.path.join(self.tmp, (name or str(len(os.listdir(self.tmp))))
                        + '.tflite')
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      return tflite_export.convert(model, path, **kwargs)

  def bench(self, paths, threads=(1, 2), rounds: int = 7,
            reference=None) -> Tuple[Dict, Optional[float]]:
    """``tflite_export.bench`` (files interleaved round by round): returns
    ``{(path, threads): result}`` and the load average while timing. Each
    timed block lasts 0.2 s; a smoke run (whose numbers are not results)
    times 10 ms blocks after one warm-up invoke."""
    import tflite_export  # pylint: disable=g-import-not-at-top
    pace = (dict(block_seconds=0.01, warmup=1) if self.smoke else
            dict(block_seconds=0.2))
    timing = tflite_export.bench(list(paths), threads=threads, rounds=rounds,
                                 reference=reference, **pace)
    return ({(t['path'], t['threads']): t for t in timing['results']},
            timing['loadavg'])

  def plot(self, draw, name: str, *args) -> None:
    """Save the figure ``draw(*args)`` returns as ``name`` in the output
    folder, or note in the section that matplotlib is not installed."""
    try:
      import matplotlib  # pylint: disable=g-import-not-at-top
    except ImportError:
      self.notes.append(f'matplotlib is not installed here: {name} was not '
                        'redrawn by this run.')
      return
    matplotlib.use('Agg')
    fig = draw(*args)
    fig.tight_layout()
    fig.savefig(os.path.join(self.out_dir, name), dpi=110)


def label(ax, xlabel: str, ylabel: str, title: str, legend: int = 7):
  """Axis labels, a small title and a legend of a matplotlib panel."""
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=legend)


def optimizer(kind: str, learning_rate, momentum: float = 0.9,
              keras_generation: str = 'tf_keras'):
  """SGD (with momentum) or Adam of the given Keras generation."""
  from tfprune import generations  # pylint: disable=g-import-not-at-top
  keras = generations.named(keras_generation).keras
  if kind == 'sgd':
    return keras.optimizers.SGD(learning_rate, momentum=momentum)
  return keras.optimizers.Adam(learning_rate)


def fit(model, train, epochs: int, opt, batch_size: int, callbacks=(),
        metrics=None, **kwargs):
  """Compile with ``opt`` and fit on ``train`` (``(x, y)``); the model."""
  model.compile(opt, 'sparse_categorical_crossentropy', metrics=metrics)
  if epochs:
    kwargs.setdefault('verbose', 2)
    model.fit(*train, epochs=epochs, batch_size=batch_size,
              callbacks=list(callbacks), **kwargs)
  return model


def pruning_step():
  import tfprune  # pylint: disable=g-import-not-at-top
  return [tfprune.PruningStep()]


def accuracy(model, x, y, batch_size: int = 1000) -> float:
  """Top-1 accuracy of a Keras model on arrays: its inference call traced
  once, on batches of ``batch_size``. The logits are bit for bit
  ``model.predict``'s, without its data pipeline and callbacks (which
  cost about 30 ms a call, a twentieth of the smoke tests)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  x = np.asarray(x)
  call = tf.function(lambda batch: model(batch, training=False),
                     input_signature=[tf.TensorSpec((None,) + x.shape[1:],
                                                    x.dtype)])
  logits = np.concatenate([np.asarray(call(x[i:i + batch_size]))
                           for i in range(0, len(x), batch_size)])
  return float((logits.argmax(-1) == y).mean())


def structure_counts(model) -> Dict[str, Tuple[int, int]]:
  """``{layer name: (structures whose weights are all zero, structures)}``
  over the wrapped layers: what the stripped model really lost."""
  import tfprune  # pylint: disable=g-import-not-at-top
  counts = {}
  for wrapper in tfprune.wrapper.collect_wrappers(model):
    weight = wrapper.prunable[0]
    value = wrapper.effective_weights()[weight.attr]
    alive = np.asarray(wrapper.structure.reduce(np.abs(value), weight.layout,
                                                'sum')) > 0
    counts[wrapper.layer.name] = (int((~alive).sum()), int(alive.size))
  return counts


def structure_sparsity(model) -> float:
  """Fraction of the wrapped layers' structures whose weights are all zero,
  over all wrapped layers."""
  counts = structure_counts(model).values()
  return sum(z for z, _ in counts) / max(sum(n for _, n in counts), 1)


def with_weight_decay(model, decay: float):
  """A copy of ``model`` (fresh variables) whose kernels carry Caffe-style
  weight decay: an L2 term whose gradient is ``decay * w``, which SGD
  momentum accumulates like the data gradient (the papers' training)."""
  from tfprune import generations  # pylint: disable=g-import-not-at-top
  keras = generations.of(model).keras

  def clone(layer):
    config = layer.get_config()
    if 'kernel_regularizer' in config:
      config['kernel_regularizer'] = keras.regularizers.L2(decay / 2)
    return type(layer).from_config(config)

  return keras.models.clone_model(model, clone_function=clone)


def spread(values: Sequence[float], unit: str = '%') -> str:
  """Fractions as ``mean +- sample std (each value)`` in percent (``unit``
  '%', or ' pts' for differences), or the value alone for one."""
  if len(values) == 1:
    return f'{100 * values[0]:.2f}{unit}'
  return (f'{100 * np.mean(values):.2f}{unit} +- '
          f'{100 * np.std(values, ddof=1):.2f} '
          f'({", ".join(f"{100 * v:.2f}" for v in values)})')


def table(header: Sequence[str], rows) -> str:
  """A markdown table from a header and rows of cells."""
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
  return '\n'.join(lines)


# --- the command line ----------------------------------------------------


def _apply(cfg, overrides) -> None:
  for key, value in overrides.items():
    if isinstance(value, config_dict.ConfigDict):
      _apply(cfg[key], value)
    else:
      cfg[key] = value


def _parse(argv, base) -> flags.FlagValues:
  values = flags.FlagValues()
  flags.DEFINE_string(
      'data_dir', None, 'Folder holding mnist/ and fashion_mnist/ (IDX '
      'files); without it only --smoke runs, on the embedded digits data.',
      flag_values=values)
  flags.DEFINE_bool(
      'smoke', False, 'Start from the config with config.smoke applied '
      '(tiny data, 1 step per epoch, tiny models; --config flags still '
      'override it); never writes docs/RESULTS.md.', flag_values=values)
  flags.DEFINE_string(
      'results', None, 'RESULTS file to write (default docs/RESULTS.md; '
      'with --smoke a temporary one).', flag_values=values)
  config_flags.DEFINE_config_dict(
      'config', copy.deepcopy(base), 'Study settings; override with '
      '--config.KEY=VALUE.', flag_values=values, sys_argv=list(argv))
  values(argv)
  return values


def configure(module, argv: Optional[Sequence[str]] = None):
  """``(study name, parsed flags, effective config)`` for a command line."""
  argv = list(sys.argv if argv is None else argv)
  name = module.__name__.rsplit('.', 1)[-1]
  if name == '__main__':
    name = os.path.splitext(os.path.basename(module.__file__))[0]
  base = module.get_config()
  values = _parse(argv, base)
  if values.smoke:   # parse again over the smoke config: flags still win
    with base.unlocked():
      _apply(base, base.smoke)
    values = _parse(argv, base)
  cfg = values.config
  with cfg.unlocked():
    del cfg['smoke']
  return name, values, cfg


def main(module, argv: Optional[Sequence[str]] = None) -> str:
  """Parse the flags, run the study, write its section; the file written.

  ``module`` is the study module; ``argv`` defaults to ``sys.argv`` (tests
  pass their own, so one process can run several studies)."""
  name, values, cfg = configure(module, argv)
  path = values.results or (
      os.path.join(tempfile.mkdtemp(prefix='smoke_'), 'RESULTS.md')
      if values.smoke else RESULTS)
  if values.smoke and os.path.abspath(path) == RESULTS:
    raise flags.Error('--smoke does not write docs/RESULTS.md; pass '
                      '--results=ANOTHER_FILE')
  logging.set_verbosity(logging.WARNING)
  ctx = Context(cfg, values.data_dir, values.smoke,
                os.path.dirname(os.path.abspath(path)))
  try:
    title, body = module.run(ctx)
  finally:
    shutil.rmtree(ctx.tmp, ignore_errors=True)
  parts = [f'## {title}', '',
           stamp(command_line(name, sys.argv if argv is None else argv)),
           '']
  if values.smoke:
    parts += ['Smoke run (config.smoke applied): the numbers only show that '
              'the command runs.', '']
  parts += [n + '\n' for n in ctx.notes]
  parts += [body.strip(), '', settings_block(cfg, name)]
  text = '\n'.join(parts)
  write_section(cfg.section, text, path)
  print(text)
  print(f'wrote section {cfg.section} of {path}')
  return path
