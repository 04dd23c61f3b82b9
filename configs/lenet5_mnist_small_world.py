"""LeNet-5 (Caffe 20-50-500-10) on MNIST as a Small-World network at 2.3%.

The default is the best variant that a validation split could pick
(docs/RESULTS.md, small_world_warm_select): one epoch of dense training,
then tfprune.methods.SmallWorld keeps 2.3% of the 431,080 parameters
(9,915) as a rewired bipartite ring lattice per layer, drawn on the trained
model (the kept weights keep their values: rescale_init=False), rewiring
probability chosen by the small-world coefficient sigma. Stage 3, "optimise
for accuracy": during the 11 sparse epochs, every 100 steps, each layer
drops its weakest edges and grows the absent ones with the largest loss
gradient on 1,024 training examples (30% of the edges at first, decaying by
a cosine to 0 at three quarters of the sparse steps), then 4 epochs at a 10x
lower learning rate. 16 epochs in all.

Why this variant, measured (3 seeds each): with 5,000 training examples held
out, 0 / 1 / 2 / 4 dense epochs gave 98.81 / 98.92 / 98.79 / 98.72%
validation accuracy, so 1 was chosen; its test accuracy is 98.93% +- 0.10.
Those four are within the validation split's resolution (about 0.15 points)
of each other, and random masks started the same way reach 98.96% +- 0.03:
the small-world graph does not beat random masks here. The chosen start
scored above the paper's order (masks on random weights, 0 dense epochs) on
validation (98.92 vs 98.81%) and on test (98.93 vs 98.88%). This config
itself (seed 0, all 60,000 training examples) gave 98.89% on test, 2.30%
of the parameters kept, the TFLite check ok (2026-12-04, about 4 minutes on
2 CPU cores). The chosen p, C, L and sigma are in report.json
under "methods". See docs/METHODS.md section 1 for what is reconstructed.

    python -m tfprune.train --config=configs/lenet5_mnist_small_world.py \
        --data_dir=../shared/data --workdir=runs/lenet5_small_world

The paper's order, masks drawn before any training (sparse from random
weights, the surviving weights rescaled to the sparse fan-in):
--config.pretrain_epochs=0 --config.epochs=12
--config.method_kwargs.rescale_init=True. Masks fixed from then on (no
rewiring): also --config.schedule.kind=none
--config.method_kwargs.regrow_fraction=0. Uniformly drawn instead of
gradient-chosen edges: --config.method_kwargs.regrow=random.
"""

from tfprune.config import default_config

STEPS_PER_EPOCH = 938     # 60,000 / 64


def get_config():
  c = default_config()
  c.dataset = 'mnist'
  c.model = 'lenet5'
  c.method = 'small_world'
  c.method_kwargs.density = 0.023
  c.method_kwargs.rewire_p = 'auto'
  c.method_kwargs.seed = 0
  c.method_kwargs.rescale_init = False     # drawn on the trained model
  c.method_kwargs.regrow_fraction = 0.3
  c.method_kwargs.regrow = 'gradient'      # RigL's rule; or 'random'
  c.method_kwargs.regrow_anneal = 'cosine'
  c.method_kwargs.regrow_batch = 1024
  c.schedule.kind = 'periodic'      # 'none': masks fixed from step 0
  c.schedule.begin_step = 100
  c.schedule.end_step = int(0.75 * (11 + 4) * STEPS_PER_EPOCH)
  c.schedule.frequency = 100
  c.pretrain_epochs = 1             # dense, then the masks are drawn
  c.epochs = 11
  c.final_epochs = 4
  c.batch_size = 64
  c.learning_rate = 1e-3
  c.final_learning_rate = 1e-4
  c.validation_fraction = 0.0
  return c
