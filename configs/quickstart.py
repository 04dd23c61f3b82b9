"""Quickstart: a small ConvNet on the embedded 8x8 digits, half its channels removed.

Needs no network and runs in about half a minute on 2 CPU cores:
    tfprune train --config=configs/quickstart.py --workdir=runs/quickstart

Dense training, then magnitude pruning of whole channels (filters and fc1
neurons, not the logits) to 50% while training, fine-tuning at 50%, then
strip, shrink (the masked channels are removed), convert, check and time.
"""

from tfprune.config import default_config


def get_config():
  c = default_config()
  c.dataset = 'digits'
  c.model = 'small_cnn'
  c.method = 'magnitude'
  c.method_kwargs.structure = 'channel'
  c.schedule.kind = 'polynomial_decay'
  c.schedule.final_sparsity = 0.5
  c.schedule.frequency = 10
  c.pretrain_epochs = 10
  c.epochs = 10
  c.batch_size = 32
  c.learning_rate = 2e-3
  c.finetune_learning_rate = 1e-3
  return c
