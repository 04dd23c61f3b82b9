"""A 784-1000-1000-10 MLP on MNIST grown by Synthesis from 2% to 10%.

Inspired by Finlinson & Moschoyiannis, "Synthesis and Pruning" (2020); the
algorithm is tfprune's reconstruction (docs/METHODS.md section 4,
tfprune/methods/synthesis.py). As configs/lenet300_mnist_synthesis.py but on
the deeper net (1,796,010 params), with 5 epochs of 469 steps, an event every
50 steps and growth ending at step 1563 (about two thirds of training).

    python -m tfprune.train --config=configs/mlp1000_mnist_synthesis.py \
        --data_dir=../shared/data --workdir=runs/mlp1000_synthesis
"""

from tfprune.config import default_config


def get_config():
  c = default_config()
  c.dataset = 'mnist'
  c.model = 'mlp'
  c.model_kwargs.hidden = (1000, 1000)
  c.method = 'synthesis'
  c.method_kwargs.initial_density = 0.02
  c.method_kwargs.capacity = 0.1
  c.method_kwargs.grow_every = 50
  c.method_kwargs.growth = 0.1
  c.method_kwargs.strategy = 'strategic'
  c.method_kwargs.prune_weakest = True
  c.method_kwargs.prune_ratio = 0.5
  c.method_kwargs.origin_fraction = 0.2
  c.method_kwargs.seed = 0
  c.method_kwargs.end_step = 1563
  c.schedule.kind = 'none'          # the method installs its own schedule
  c.epochs = 5
  c.batch_size = 128
  c.learning_rate = 1e-3
  c.validation_fraction = 0.0
  c.shrink = 'no'                   # single weights: nothing to remove
  return c
