"""PruningStep semantics and SparsityLogger output."""

import csv
import os

import numpy as np
import pytest
import tf_keras as keras

import tfprune
from conftest import random_batch, small_conv_model


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


def test_no_wrappers_is_a_no_op():
  x, y = random_batch()
  model = small_conv_model()
  model.compile('sgd', keras.losses.SparseCategoricalCrossentropy(
      from_logits=True))
  step = tfprune.PruningStep()
  model.fit(x, y, batch_size=4, verbose=0, callbacks=[step])
  assert step.step == 0


def test_sparsity_logger_csv_and_tensorboard(tmp_path):
  x, y = random_batch()
  model = tfprune.prune(small_conv_model(),
                        tfprune.methods.Magnitude('channel'), schedule=0.5)
  model.compile('sgd', keras.losses.SparseCategoricalCrossentropy(
      from_logits=True))
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


def test_steps_per_execution_is_refused():
  x, y = random_batch()
  model = tfprune.prune(small_conv_model(), schedule=0.5)
  model.compile('sgd', keras.losses.SparseCategoricalCrossentropy(
      from_logits=True), steps_per_execution=2)
  with pytest.raises(ValueError, match='steps_per_execution=1'):
    model.fit(x, y, batch_size=4, verbose=0, callbacks=[tfprune.PruningStep()])


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
