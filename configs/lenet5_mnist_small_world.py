"""LeNet-5 (Caffe 20-50-500-10) on MNIST as a Small-World network at 2.3%.

Stage 1 (before any training): tfprune.methods.SmallWorld keeps 2.3% of the
431,080 parameters (9,915) as a rewired bipartite ring lattice per layer,
rewiring probability chosen by the small-world coefficient sigma. Stage 2:
train from scratch. Stage 3, "optimise for accuracy": during the 12 main
epochs, every 100 steps, each layer drops its weakest edges and grows the
absent ones with the largest loss gradient on 1,024 training examples (30%
of the edges at first, decaying by a cosine to 0 at the end of epoch 12),
then 4 epochs at a 10x lower learning rate with the masks fixed. That is
the best variant measured (docs/RESULTS.md, small_world_rewiring: 98.92%
mean of 3 seeds; masks fixed from the start: 98.61%, random masks: 98.68%).
The chosen p, C, L and sigma are in report.json under "methods". See
docs/METHODS.md section 1 for what is reconstructed.

    python -m tfprune.train --config=configs/lenet5_mnist_small_world.py \
        --data_dir=../shared/data --workdir=runs/lenet5_small_world

Masks fixed before training (the paper's stages without rewiring): add
--config.schedule.kind=none --config.method_kwargs.regrow_fraction=0.
Uniformly drawn instead of gradient-chosen edges:
--config.method_kwargs.regrow=random.
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
  c.method_kwargs.regrow_fraction = 0.3
  c.method_kwargs.regrow = 'gradient'      # RigL's rule; or 'random'
  c.method_kwargs.regrow_anneal = 'cosine'
  c.method_kwargs.regrow_batch = 1024
  c.schedule.kind = 'periodic'      # 'none': masks fixed from step 0
  c.schedule.begin_step = 100
  c.schedule.end_step = 12 * 938    # the 12 main epochs of 60,000 / 64
  c.schedule.frequency = 100
  c.pretrain_epochs = 0
  c.epochs = 12
  c.final_epochs = 4
  c.batch_size = 64
  c.learning_rate = 1e-3
  c.final_learning_rate = 1e-4
  c.validation_fraction = 0.0
  return c
