"""LeNet-5 (Caffe 20-50-500-10) on MNIST as a Small-World network at 2.3%.

Stage 1 (before any training): tfprune.methods.SmallWorld keeps 2.3% of the
431,080 parameters (9,915) as a rewired bipartite ring lattice per layer,
rewiring probability chosen by the small-world coefficient sigma. Stage 2:
train from scratch with the masks fixed. Stage 3: fine-tune at a 10x lower
learning rate (final_epochs). The chosen p, C, L and sigma are in
report.json under "methods". See docs/METHODS.md section 1 for what is
reconstructed.

    python -m tfprune.train --config=configs/lenet5_mnist_small_world.py \
        --data_dir=../shared/data --workdir=runs/lenet5_small_world

Stage-3 prune-and-regrow (10% of each layer's edges every 200 steps of the
final epochs): add --config.method_kwargs.regrow_fraction=0.1
--config.schedule.kind=periodic. Add --config.method_kwargs.regrow=gradient
to grow the absent edges with the largest loss gradient (on the training
split) instead of uniformly drawn ones.
"""

from tfprune.config import default_config


def get_config():
  c = default_config()
  c.dataset = 'mnist'
  c.model = 'lenet5'
  c.method = 'small_world'
  c.method_kwargs.density = 0.023
  c.method_kwargs.rewire_p = 'auto'
  c.method_kwargs.seed = 0
  c.method_kwargs.regrow_fraction = 0.0
  c.method_kwargs.regrow = 'random'        # or 'gradient' (RigL's rule)
  c.schedule.kind = 'none'          # masks fixed from step 0
  c.schedule.begin_step = -1        # 'periodic': from the final epochs on
  c.schedule.frequency = 200
  c.pretrain_epochs = 0
  c.epochs = 12
  c.final_epochs = 4
  c.batch_size = 64
  c.learning_rate = 1e-3
  c.final_learning_rate = 1e-4
  c.validation_fraction = 0.0
  return c
