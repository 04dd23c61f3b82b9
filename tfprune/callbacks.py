"""Callbacks that drive pruning from ``model.fit``.

``PruningStep`` has tfmot ``UpdatePruningStep`` semantics: each wrapper's
``pruning_step`` starts at -1, is set to 0 when training first begins (kept
when a saved model resumes), and is 1 during the first training batch. Before every batch it asks each cohort's
schedule whether to update, and if so has the cohort's method write new
masks. ``SparsityLogger`` records per-layer sparsity
to TensorBoard and/or a CSV file.
"""

from __future__ import annotations

import csv
import os
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from tfprune import generations, optimizer_state, schedules, zeroing
from tfprune import wrapper as wrapper_lib
from tfprune.wrapper import cohorts, collect_wrappers


class PruningStep(generations.Callback):
  """Counts training steps and applies each schedule's mask updates.

  Before the first batch of every ``fit`` it zeroes whatever was written
  under the masks since (``set_weights``) and, with one of Keras' own
  optimizers, lets the wrappers skip the forward ``weight * mask`` product
  for the fit (only the gradient is masked; see ``tfprune.wrapper``).

  Required by ``model.fit`` on a model with PruningWrappers: training
  without it stops with an error that says so (except under
  ``jit_compile=True``, where XLA drops that check).

  Each wrapper advances its ``pruning_step`` in the graph of every training
  step (as tfmot 0.8 does), so the count is exact with
  ``compile(steps_per_execution=k)``, XLA and custom loops, and per batch
  this callback only reads one step and looks up the schedules (no TF op,
  no ``tf.function`` call; the count is kept in Python from the batch
  indices and re-read from the graph once per epoch). Keras calls batch hooks once per ``k`` batches:
  a mask update due at a step inside an execution is written before the
  execution's first batch (up to ``k - 1`` steps early), with the sparsity
  of the last update due in it.

  Custom training loops call the hooks by hand (see the README)::

      step = tfprune.PruningStep(optimizer)
      step.set_model(model)
      step.on_train_begin()
      for epoch in range(epochs):
        for x, y in dataset:
          step.on_train_batch_begin(0)
          train_step(x, y)             # model(x, training=True), tape, apply
        step.on_epoch_end(epoch)
      step.on_train_end()

  Args:
    optimizer: the optimizer whose state at pruned positions is cleared
      when masks change; default the model's (``model.fit``). Give it in a
      custom loop.
  """

  def __init__(self, optimizer=None):
    super().__init__()
    # Its hooks never read ``logs``: without this, tf_keras turns every
    # batch's logs into numpy for it, a wait for the step to finish.
    self._supports_tf_logs = True
    self._optimizer = optimizer
    self._wrappers: List = []
    self._cohorts: Dict[int, List] = {}
    self._tables: Dict[int, schedules.ScheduleTable] = {}
    self._started = False
    self._per_execution = 1
    self._done, self._open = 0, None
    self._zeroing = zeroing.Zeroing()
    self.step = 0

  def on_train_begin(self, logs=None):
    self._wrappers = collect_wrappers(self.model, followers=True)
    self._started = False
    unbuilt = [w.name for w in self._wrappers if not w.built]
    if unbuilt:
      raise ValueError(
          f'model {self.model.name!r} is not built, so PruningStep cannot '
          f'set the step of its wrappers {unbuilt}. Fix: call the model once '
          '(model(x[:1])) or model.build(input_shape) before model.fit.')

  def _start(self) -> None:
    """Sets up schedules just before the first batch.

    Not in ``on_train_begin``: a callback listed after this one (Keras'
    ``BackupAndRestore``) may restore the weights there, the step counters
    among them, and the schedule must continue from the restored step.
    """
    self._started = True
    if int(self._counter().numpy()) < 0:       # never trained: start at 0
      for wrapper in self._wrappers:
        wrapper.pruning_step.assign(0)
    self._sync()
    self._per_execution = generations.of(self.model).steps_per_execution(
        self.model)
    self._cohorts = dict(enumerate(cohorts(
        [w for w in self._wrappers if not w.follower])))
    self._tables = {}
    for name, wrappers in self._cohorts.items():
      wrappers[0].method.attach(self.model, wrappers)
      if wrappers[0].schedule is not None:
        self._tables[name] = schedules.ScheduleTable.of(wrappers[0].schedule)
        self._tables[name](self.step + 1)  # build the table before batch 1
      wrappers[0].method.on_train_begin(wrappers, self.model)
    self._keep_zeros()

  def _keep_zeros(self) -> None:
    """Make the zeros under the masks hold before the first step (a
    ``set_weights`` or a loaded checkpoint since the last fit may have
    written other values there; about 14 ms on MobileNetV2 when nothing
    needs writing) and, with an optimizer that leaves zeroed entries at 0
    (``optimizer_state.keeps_zeros``), let the wrappers' training steps
    rely on them: they skip the forward product. Set before the first
    step, so the step's trace sees it."""
    optimizer = self._current_optimizer()
    zeroing.restore(self._wrappers, optimizer)
    kept = optimizer_state.keeps_zeros(optimizer)
    for wrapper in self._wrappers:
      wrapper.zeros_kept = kept

  def _current_optimizer(self):
    return (self._optimizer if self._optimizer is not None else
            getattr(self.model, 'optimizer', None))

  def _sync(self) -> None:
    """Read the steps done from the graph's counter (once per epoch; per
    batch the count is kept in Python from the batch indices)."""
    self._done = self.step = int(self._counter().numpy())
    self._open = None

  def _counter(self) -> tf.Variable:
    """The step variable read to know the step (each wrapper advances its
    own in the graph; the first scored one stands for all)."""
    return next(w for w in self._wrappers if not w.follower).pruning_step

  def on_train_batch_begin(self, batch, logs=None):
    if not self._wrappers:
      return
    if not self._started:
      self._start()
    elif self._open is not None:       # no batch end came (a custom loop)
      self._done += 1
    first = self._done + 1
    self._open = batch
    self.step = first
    for name, table in self._tables.items():
      due = None
      for step in range(first, first + self._per_execution):
        update, sparsity = table(step)
        if update:
          due = (step, sparsity)
      if due is not None:
        wrappers = self._cohorts[name]
        with wrapper_lib.deferred_zeroing(self._wrappers):
          wrappers[0].method.update_masks(wrappers, due[1], due[0])
    self._zero_pruned()

  def on_train_batch_end(self, batch, logs=None):
    """Keras passes the last batch index of the execution that ended."""
    if self._open is not None:
      self._done += max(int(batch) - int(self._open), 0) + 1
      self._open = None

  def _zero_pruned(self) -> None:
    """Zero the weights and the optimizer state (momentum, Adam moments)
    that a mask removed since the last batch, by this callback or another
    (the ``TrimmingCallback``, a method at epoch end), in one graph call
    (:mod:`tfprune.zeroing`). Their gradient is 0, so with no state they
    stay exactly 0 and a saved model holds exact zeros where its masks are
    0."""
    self._zeroing(self._wrappers, self._current_optimizer())

  def on_epoch_end(self, epoch, logs=None):
    if self._started:
      self._sync()
    for wrappers in self._cohorts.values():
      wrappers[0].method.on_epoch_end(wrappers, epoch, self.model)

  def on_train_end(self, logs=None):
    if self._started:
      self._sync()
    for wrapper in self._wrappers:   # a later trace without PruningStep
      wrapper.zeros_kept = False


def layer_sparsity(wrapper) -> Dict[str, float]:
  """Mask sparsity (fraction of pruned units) and zero fraction of weights."""
  masks = [np.asarray(m) for m in wrapper.masks]
  units = sum(m.size for m in masks)
  pruned = sum(int((m == 0).sum()) for m in masks)
  weights = [v for k, v in wrapper.effective_weights().items() if k != 'bias']
  size = sum(w.size for w in weights)
  zeros = sum(int((w == 0).sum()) for w in weights)
  return {'structure_sparsity': pruned / max(units, 1),
          'weight_sparsity': zeros / max(size, 1)}


def mask_image(mask, max_side: int = 256) -> np.ndarray:
  """A mask as a [1, H, W, 1] grey image in [0, 1] (white = kept).

  Rows are every axis but the last (a Conv2D weight mask [kh, kw, in, out]
  becomes (kh*kw*in) x out; a channel mask one row); a side longer than
  ``max_side`` is averaged over blocks, so grey is a partly kept block.
  """
  m = np.asarray(mask, np.float32)
  m = m.reshape(1, 1) if m.ndim == 0 else (
      m.reshape(1, -1) if m.ndim == 1 else m.reshape(-1, m.shape[-1]))
  for axis in (0, 1):
    size = m.shape[axis]
    if size > max_side:
      factor = -(-size // max_side)   # ceil
      pad = [(0, 0), (0, 0)]
      pad[axis] = (0, factor * (-(-size // factor)) - size)
      count = np.pad(np.ones_like(m), pad)
      m = np.pad(m, pad)
      shape = list(m.shape)
      shape[axis:axis + 1] = [shape[axis] // factor, factor]
      m = m.reshape(shape).sum(axis + 1) / np.maximum(
          count.reshape(shape).sum(axis + 1), 1)
  return m[None, :, :, None]


class SparsityLogger(generations.Callback):
  """Writes per-layer sparsity to TensorBoard (``log_dir``) and/or CSV.

  Args:
    log_dir: TensorBoard directory: scalars ``sparsity/<layer>/
      structure_sparsity`` and ``.../weight_sparsity``, and (``images``)
      each layer's mask as an image ``masks/<layer>`` (white = kept; see
      :func:`mask_image`).
    csv_path: CSV file with one row per layer and epoch (appended to).
    update_freq: 'epoch', or an integer number of batches.
    images: also write the mask images (TensorBoard's Images tab).
  """

  FIELDS = ('epoch', 'step', 'layer', 'structure', 'structure_sparsity',
            'weight_sparsity')

  def __init__(self, log_dir: Optional[str] = None,
               csv_path: Optional[str] = None, update_freq='epoch',
               images: bool = True):
    super().__init__()
    self._supports_tf_logs = True   # reads masks, never ``logs``
    if log_dir is None and csv_path is None:
      raise ValueError('SparsityLogger needs log_dir (TensorBoard) and/or '
                       'csv_path (CSV)')
    if update_freq != 'epoch' and not (isinstance(update_freq, int)
                                       and update_freq > 0):
      raise ValueError("update_freq is 'epoch' or a positive batch count, "
                       f'got {update_freq!r}')
    self.log_dir, self.csv_path, self.update_freq = (log_dir, csv_path,
                                                     update_freq)
    self.images = bool(images)
    self._writer = None
    self._epoch = 0
    self._batches = 0

  def on_train_begin(self, logs=None):
    if self.log_dir is not None and self._writer is None:
      self._writer = tf.summary.create_file_writer(self.log_dir)
    if self.csv_path is not None:
      os.makedirs(os.path.dirname(os.path.abspath(self.csv_path)),
                  exist_ok=True)
      if not os.path.exists(self.csv_path):
        with open(self.csv_path, 'w', newline='') as f:
          csv.writer(f).writerow(self.FIELDS)

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch = epoch

  def on_train_batch_end(self, batch, logs=None):
    self._batches += 1
    if self.update_freq != 'epoch' and self._batches % self.update_freq == 0:
      self.log()

  def on_epoch_end(self, epoch, logs=None):
    if self.update_freq == 'epoch':
      self.log()

  def on_train_end(self, logs=None):
    if self._writer is not None:
      self._writer.flush()

  def log(self) -> List[dict]:
    rows = []
    wrappers = collect_wrappers(self.model)
    for wrapper in wrappers:
      step = int(wrapper.pruning_step.numpy())
      row = {'epoch': self._epoch, 'step': step, 'layer': wrapper.layer.name,
             'structure': str(wrapper.structure)}
      row.update(layer_sparsity(wrapper))
      rows.append(row)
    if self._writer is not None:
      with self._writer.as_default():
        for row, wrapper in zip(rows, wrappers):
          step = max(row['step'], 0)
          for key in ('structure_sparsity', 'weight_sparsity'):
            tf.summary.scalar(f'sparsity/{row["layer"]}/{key}', row[key],
                              step=step)
          if self.images and wrapper.masks:
            tf.summary.image(f'masks/{row["layer"]}',
                             mask_image(wrapper.masks[0]), step=step,
                             description=f'{row["structure"]} mask of '
                             f'{row["layer"]}; white = kept')
    if self.csv_path is not None:
      with open(self.csv_path, 'a', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=self.FIELDS)
        writer.writerows(rows)
    return rows
