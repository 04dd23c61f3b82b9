"""LeNet-300-100 on MNIST grown by Synthesis from 2% to a 10% capacity.

Inspired by Finlinson & Moschoyiannis, "Synthesis and Pruning" (2020); the
algorithm is tfprune's reconstruction (docs/METHODS.md section 4,
tfprune/methods/synthesis.py). Every wrapped kernel (fc1, fc2 and the
classifier) starts with random edges at 2% of all edges (split over the
layers with the Erdos-Renyi rule); every 100 steps each layer grows 10% of
its capacity in new edges (strategic: from its strongest input units, to
endpoints drawn by the Gaussian rule) and prunes the weakest half as many
(as many as it grows once at capacity), until end_step (about two thirds of
the 10 epochs of 469 steps: 3126); the last third trains the final topology.
The growth/prune events are in report.json under "methods".

    python -m tfprune.train --config=configs/lenet300_mnist_synthesis.py \
        --data_dir=../shared/data --workdir=runs/lenet300_synthesis

The random control: --config.method_kwargs.strategy=random; growth only:
--config.method_kwargs.prune_weakest=False.
"""

from tfprune.config import default_config


def get_config():
  c = default_config()
  c.dataset = 'mnist'
  c.model = 'lenet_300_100'
  c.method = 'synthesis'
  c.method_kwargs.initial_density = 0.02
  c.method_kwargs.capacity = 0.1
  c.method_kwargs.grow_every = 100
  c.method_kwargs.growth = 0.1
  c.method_kwargs.strategy = 'strategic'
  c.method_kwargs.prune_weakest = True
  c.method_kwargs.prune_ratio = 0.5
  c.method_kwargs.origin_fraction = 0.2
  c.method_kwargs.seed = 0
  c.method_kwargs.end_step = 3126
  c.schedule.kind = 'none'          # the method installs its own schedule
  c.epochs = 10
  c.batch_size = 128
  c.learning_rate = 1e-3
  c.validation_fraction = 0.0
  c.shrink = 'no'                   # single weights: nothing to remove
  return c
