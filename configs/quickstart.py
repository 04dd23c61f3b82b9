"""Quickstart: a small ConvNet on the embedded 8x8 digits, 80% weight sparsity.

Needs no network and runs in well under a minute on 2 CPU cores:
    python -m tfprune.train --config=configs/quickstart.py --workdir=runs/quickstart
"""

from tfprune.config import default_config


def get_config():
  c = default_config()
  c.dataset = 'digits'
  c.model = 'small_cnn'
  c.method = 'magnitude'
  c.method_kwargs.structure = 'weight'
  c.schedule.kind = 'polynomial_decay'
  c.schedule.final_sparsity = 0.8
  c.schedule.frequency = 10
  c.pretrain_epochs = 10
  c.epochs = 10
  c.batch_size = 32
  c.learning_rate = 2e-3
  c.finetune_learning_rate = 1e-3
  return c
