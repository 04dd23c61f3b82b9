"""LeNet-5 with BatchNorm on MNIST, Synaptic Strength on both convs.

Every 2-D kernel of conv1/conv2 gets a strength s (the BN after each conv
loses its scale, folded into s). Stage 1: train from scratch with the L1
penalty on s (the pruning epochs). Stage 2, the first step of the final
epochs: one global threshold on |s| prunes exactly ``target`` of the 1,020
conv connections; masks freeze, the penalty switches off, and the final
epochs fine-tune (fresh optimizer). docs/METHODS.md section 5 says what is
reconstructed.

    python -m tfprune.train \
        --config=configs/lenet5_bn_mnist_synaptic_strength.py \
        --data_dir=../shared/data --workdir=runs/lenet5_ss

96% of the connections: --config.method_kwargs.target=0.96
"""

from tfprune.config import default_config


def get_config():
  c = default_config()
  c.dataset = 'mnist'
  c.model = 'lenet5'
  c.model_kwargs.batch_norm = True
  c.method = 'synaptic_strength'
  c.method_kwargs.l1 = 1e-4
  c.method_kwargs.target = 0.9
  c.layers = 'conv1,conv2'
  c.schedule.kind = 'periodic'
  c.schedule.begin_step = -1        # the first step of the final epochs
  c.schedule.frequency = 1000       # later points are no-ops (pruned once)
  c.pretrain_epochs = 0
  c.epochs = 4                      # penalised training from scratch
  c.final_epochs = 2                # fine-tuning, penalty off
  c.batch_size = 64
  c.learning_rate = 1e-3
  c.final_learning_rate = 5e-4
  c.validation_fraction = 0.0
  return c
