"""PruningStep semantics and SparsityLogger output."""

import csv
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import tfprune
from conftest import random_batch, small_conv_model
from tfprune import generations


class RecordSparsity(keras.callbacks.Callback):
  """Mask sparsity of the dense layer seen by each batch."""

  def __init__(self):
    super().__init__()
    self.seen = []

  def on_train_batch_begin(self, batch, logs=None):
    wrapper = self.model.get_layer('pruned_dense')
    self.seen.append(round(1 - float(wrapper.masks[0].numpy().mean()), 2))


def test_masks_follow_the_schedule_at_tfmot_steps():
  x, y = random_batch(n=24)
  # update at steps 2, 4, 6 (step 1 = first batch), sparsity 0.2 -> 0.8
  schedule = tfprune.schedules.PolynomialDecay(0.2, 0.8, 2, 6, power=1,
                                               frequency=2)
  model = tfprune.prune(small_conv_model(), schedule=schedule,
                        layers=['dense'])
  model.compile('sgd', keras.losses.SparseCategoricalCrossentropy(
      from_logits=True))
  recorder = RecordSparsity()
  step = tfprune.PruningStep()
  model.fit(x, y, batch_size=3, epochs=1, verbose=0, shuffle=False,
            callbacks=[step, recorder])   # 8 batches
  assert step.step == 8
  # PruningStep runs first, so batch k sees the mask of step k
  assert recorder.seen == [0.0, 0.2, 0.2, 0.5, 0.5, 0.8, 0.8, 0.8]


def test_callbacks_add_no_per_batch_wait(tmp_path, monkeypatch):
  """tf_keras turns a batch's logs into numpy (waiting for the step) when a
  callback with batch hooks cannot take tensors; tfprune's never need to."""
  from tf_keras.src import callbacks as keras_callbacks  # pylint: disable=g-import-not-at-top
  real = keras_callbacks.tf_utils.sync_to_numpy_or_python_type
  calls = []
  monkeypatch.setattr(keras_callbacks.tf_utils, 'sync_to_numpy_or_python_type',
                      lambda logs: calls.append(1) or real(logs))
  x, y = random_batch(n=40)
  model = _half_channels_pruned()
  model.fit(x, y, batch_size=2, epochs=2, verbose=0, callbacks=[
      tfprune.PruningStep(), tfprune.SparsityLogger(
          csv_path=str(tmp_path / 's.csv'), update_freq=5)])   # 40 batches
  assert len(calls) < 10     # per epoch and at the end, never per batch


def test_no_wrappers_is_a_no_op():
  x, y = random_batch()
  model = small_conv_model()
  model.compile('sgd', keras.losses.SparseCategoricalCrossentropy(
      from_logits=True))
  step = tfprune.PruningStep()
  model.fit(x, y, batch_size=4, verbose=0, callbacks=[step])
  assert step.step == 0


def _half_channels_pruned():
  """small_conv_model with half its channels pruned, compiled."""
  model = tfprune.prune(small_conv_model(),
                        tfprune.methods.Magnitude('channel'), schedule=0.5)
  model.compile('sgd', keras.losses.SparseCategoricalCrossentropy(
      from_logits=True))
  return model


def test_sparsity_logger_csv_and_tensorboard(tmp_path):
  x, y = random_batch()
  model = _half_channels_pruned()
  csv_path = str(tmp_path / 'logs' / 'sparsity.csv')
  logger = tfprune.SparsityLogger(log_dir=str(tmp_path / 'tb'),
                                  csv_path=csv_path)
  model.fit(x, y, batch_size=4, epochs=2, verbose=0,
            callbacks=[tfprune.PruningStep(), logger])
  with open(csv_path) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 4     # 2 layers x 2 epochs (not the logits)
  assert {r['layer'] for r in rows} == {'conv', 'dw'}
  conv = [r for r in rows if r['layer'] == 'conv']
  assert [int(r['step']) for r in conv] == [4, 8]
  assert float(conv[0]['structure_sparsity']) == 0.5
  assert float(conv[0]['weight_sparsity']) == 0.5
  events = os.listdir(tmp_path / 'tb')
  assert any(e.startswith('events.out.tfevents') for e in events)


def test_sparsity_logger_arguments():
  with pytest.raises(ValueError, match='log_dir'):
    tfprune.SparsityLogger()
  with pytest.raises(ValueError, match='update_freq'):
    tfprune.SparsityLogger(csv_path='x.csv', update_freq=0)


def test_schedule_table_matches_the_schedule():
  schedule = tfprune.schedules.PolynomialDecay(0.1, 0.9, 5, 50, frequency=5)
  table = tfprune.schedules.ScheduleTable(schedule, chunk=16)
  for step in list(range(0, 60)) + [5000]:
    update, sparsity = schedule(np.int64(step))
    assert table(step) == (bool(update), pytest.approx(float(sparsity)))
  assert tfprune.schedules.ScheduleTable.of(schedule) is \
      tfprune.schedules.ScheduleTable.of(schedule)


class _Halfway(tfprune.schedules.PruningSchedule):
  """A custom schedule that needs a scalar step (``tf.cond``)."""

  def __call__(self, step):
    sparsity = tf.cond(step < 100, lambda: tf.constant(0.25),
                       lambda: tf.constant(0.5))
    return tf.equal(tf.math.floormod(step, 10), 0), sparsity

  def get_config(self):
    return {'class_name': '_Halfway', 'config': {}}


def test_schedule_table_traces_nothing_for_built_in_schedules():
  """Built-in schedules are evaluated on a vector of steps, eagerly: no
  function is traced per table (one per table used to make TensorFlow warn
  of retracing after five pruned models), and the chunk stays full even
  when functions run eagerly."""
  for schedule in (tfprune.schedules.PolynomialDecay(0.1, 0.9, 5, 500,
                                                     frequency=5),
                   tfprune.schedules.ConstantSparsity(0.7, 3, frequency=4),
                   tfprune.schedules.Periodic(2, 40, frequency=6)):
    for eager in (False, True):
      table = tfprune.schedules.ScheduleTable(schedule, chunk=256)
      tf.config.run_functions_eagerly(eager)
      try:
        values = [table(step) for step in range(0, 300)]
      finally:
        tf.config.run_functions_eagerly(False)
      assert table._evaluate.experimental_get_tracing_count() == 0  # pylint: disable=protected-access
      assert len(table._updates) == 256  # pylint: disable=protected-access
      for step, (update, sparsity) in enumerate(values):
        want_update, want_sparsity = schedule(np.int64(step))
        assert update == bool(want_update)
        if sparsity is not None:
          assert sparsity == pytest.approx(float(want_sparsity))


def test_schedule_table_maps_a_custom_schedule_in_small_eager_chunks():
  schedule = _Halfway()
  table = tfprune.schedules.ScheduleTable(schedule)
  assert [table(s) for s in (10, 11, 120)] == [(True, 0.25), (False, 0.25),
                                               (True, 0.5)]
  assert table._evaluate.experimental_get_tracing_count() == 1  # pylint: disable=protected-access
  table = tfprune.schedules.ScheduleTable(schedule)
  tf.config.run_functions_eagerly(True)
  try:
    values = [table(step) for step in range(0, 200)]
  finally:
    tf.config.run_functions_eagerly(False)
  assert len(table._updates) == tfprune.schedules.EAGER_CHUNK  # pylint: disable=protected-access
  assert values[10] == (True, 0.25) and values[190] == (True, 0.5)
  assert values[11] == (False, 0.25)


@pytest.mark.parametrize('per_execution', [1, 3, 4])
def test_steps_per_execution_counts_batches(per_execution, monkeypatch):
  # 8 batches per epoch, 3 epochs; updates due every 4 steps up to step 24.
  x, y = random_batch(n=64)
  schedule = tfprune.schedules.PolynomialDecay(0.0, 0.8, begin_step=0,
                                               end_step=24, frequency=4)
  model = tfprune.prune(small_conv_model(), tfprune.methods.Magnitude(),
                        schedule)
  method = tfprune.wrapper.collect_wrappers(model)[0].method
  seen = []
  update = type(method).update_masks
  monkeypatch.setattr(type(method), 'update_masks',
                      lambda self, w, sparsity, step: (
                          seen.append((step, round(sparsity, 4))),
                          update(self, w, sparsity, step)))
  model.compile('sgd', keras.losses.SparseCategoricalCrossentropy(
      from_logits=True), steps_per_execution=per_execution)
  model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False,
            callbacks=[tfprune.PruningStep()])
  steps = [step for step, _ in seen]
  assert steps == [4, 8, 12, 16, 20, 24]      # every update, at its step,
  sparsities = [sparsity for _, sparsity in seen]
  assert sparsities == sorted(sparsities) and sparsities[-1] == 0.8
  for wrapper in tfprune.wrapper.collect_wrappers(model):
    assert int(wrapper.pruning_step.numpy()) == 24
    assert abs(1 - np.asarray(wrapper.masks[0]).mean() - 0.8) < 0.03


def test_periodic_schedule_says_when_only():
  schedule = tfprune.schedules.Periodic(begin_step=5, end_step=11,
                                        frequency=3)
  table = tfprune.schedules.ScheduleTable(schedule, chunk=16)
  assert [s for s in range(1, 16) if table(s)[0]] == [5, 8, 11]
  assert table(5)[1] is None                   # no target, explicitly
  assert np.isnan(float(schedule(5)[1]))       # inside tfmot's contract
  again = tfprune.schedules.get(tfprune.schedules.serialize(schedule))
  assert isinstance(again, tfprune.schedules.Periodic)
  assert again.get_config() == schedule.get_config()
  # a method that needs a target says so
  with pytest.raises(ValueError, match='gives none'):
    tfprune.methods.Magnitude().update_masks([], table(5)[1], 5)


@pytest.mark.parametrize('gen', ['tf_keras', 'keras3'])
def test_a_custom_training_loop_gets_the_masks_fit_gets(gen):
  k = generations.named(gen).keras
  x, y = random_batch(n=48)
  schedule = tfprune.schedules.PolynomialDecay(0.0, 0.75, begin_step=0,
                                               end_step=12, frequency=2)
  loss_fn = k.losses.SparseCategoricalCrossentropy(from_logits=True)

  def pruned():
    k.utils.set_random_seed(3)
    return tfprune.prune(small_conv_model(keras=k),
                         tfprune.methods.Magnitude(), schedule)

  by_fit = pruned()
  by_fit.compile(k.optimizers.SGD(0.1), loss_fn)
  by_fit.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False,
             callbacks=[tfprune.PruningStep()])

  model, optimizer = pruned(), k.optimizers.SGD(0.1)
  assert tfprune.keras_generation(model) == gen

  @tf.function
  def train_step(xb, yb):
    with tf.GradientTape() as tape:
      loss = loss_fn(yb, model(xb, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))

  step = tfprune.PruningStep(optimizer)
  step.set_model(model)
  step.on_train_begin()
  for epoch in range(2):
    for start in range(0, 48, 8):
      step.on_train_batch_begin(start // 8)
      train_step(x[start:start + 8], y[start:start + 8])
    step.on_epoch_end(epoch)
  step.on_train_end()

  for ours, theirs in zip(tfprune.wrapper.collect_wrappers(model),
                          tfprune.wrapper.collect_wrappers(by_fit)):
    assert int(ours.pruning_step.numpy()) == 12
    np.testing.assert_array_equal(np.asarray(ours.masks[0]),
                                  np.asarray(theirs.masks[0]))
    assert np.asarray(ours.masks[0]).mean() == pytest.approx(0.25, abs=0.05)
  np.testing.assert_allclose(model.predict(x, verbose=0),
                             by_fit.predict(x, verbose=0), atol=1e-4)


def test_tensorboard_reads_sparsity_scalars_and_mask_images(tmp_path):
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  x, y = random_batch()
  model = _half_channels_pruned()
  model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[
      tfprune.PruningStep(), tfprune.SparsityLogger(str(tmp_path / 'tb'))])
  events = event_accumulator.EventAccumulator(
      str(tmp_path / 'tb'), size_guidance={event_accumulator.TENSORS: 0})
  events.Reload()
  plugin = {tag: events.SummaryMetadata(tag).plugin_data.plugin_name
            for tag in events.Tags()['tensors']}
  assert plugin == {
      'sparsity/conv/structure_sparsity': 'scalars',
      'sparsity/conv/weight_sparsity': 'scalars',
      'sparsity/dw/structure_sparsity': 'scalars',
      'sparsity/dw/weight_sparsity': 'scalars',
      'masks/conv': 'images', 'masks/dw': 'images'}
  scalars = events.Tensors('sparsity/conv/structure_sparsity')
  assert [e.step for e in scalars] == [4, 8]
  assert [float(tf.make_ndarray(e.tensor_proto)) for e in scalars] == [
      0.5, 0.5]
  # an image summary holds width, height, then the PNG
  width, height, png = tf.make_ndarray(
      events.Tensors('masks/conv')[-1].tensor_proto)
  image = tf.io.decode_png(png).numpy()
  assert (int(width), int(height)) == (4, 1)   # 4 channels in one row
  assert sorted(image.reshape(-1).tolist()) == [0, 0, 255, 255]


def test_mask_images_are_2d_and_large_masks_are_averaged():
  from tfprune.callbacks import mask_image  # pylint: disable=g-import-not-at-top
  assert mask_image(np.ones((3, 3, 2, 5))).shape == (1, 18, 5, 1)
  big = np.zeros((1000, 10))
  big[:500] = 1
  image = mask_image(big, max_side=100)
  assert image.shape == (1, 100, 10, 1)
  assert image[0, :50].min() == 1 and image[0, 50:].max() == 0
  odd = mask_image(np.ones(301), max_side=100)   # 4 per block, last has 1
  assert odd.shape == (1, 1, 76, 1) and float(odd.min()) == 1.0
