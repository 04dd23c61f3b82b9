"""ResNet-20 on CIFAR-10 with PSP column pruning (learned sparsity).

All convs get one alpha per column; SGD(momentum 0.9) with weight decay on
alpha, epsilon threshold with a straight-through gradient, masks frozen at
freeze_step (391 steps per epoch at batch 128 on 50,000 images), then
fine-tuning. ResNet-56 (the paper's figure): --config.model=resnet56 and its conv names
in --config.layers.
Filters: --config.method_kwargs.structure=filter (every conv here feeds a
BatchNormalization, so filter alphas get almost no data gradient: see
tfprune/methods/psp.py). Whole residual-branch
layers: structure=layer with --config.layers naming the block convs.
CIFAR-10 is read from --data_dir (python batches or a tfds folder); an
offline machine cannot download it. Epochs are a CPU-sized setting.

    python -m tfprune.train --config=configs/resnet20_psp.py \
        --data_dir=/path/to/cifar --workdir=runs/resnet20_psp
"""

from tfprune.config import default_config


def get_config():
  c = default_config()
  c.dataset = 'cifar10'
  c.image_size = 32
  c.model = 'resnet20'
  c.method = 'psp'
  c.method_kwargs.structure = 'column'
  c.method_kwargs.weight_decay = 1e-2
  c.method_kwargs.epsilon = 1e-2
  c.method_kwargs.begin_step = 0
  c.method_kwargs.freeze_step = 391 * 30
  # every Conv2D of ResNet-20 (not the Dense classifier: filters there are
  # classes); for ResNet-56 list its convs the same way (9 blocks a stage)
  convs = ['stem', 's2b1_proj', 's3b1_proj'] + [
      f's{s}b{b}_conv{i}' for s in (1, 2, 3) for b in (1, 2, 3) for i in (1, 2)]
  c.layers = ','.join(convs)
  c.schedule.kind = 'none'
  c.pretrain_epochs = 0
  c.epochs = 40
  c.batch_size = 128
  c.optimizer = 'sgd'
  c.momentum = 0.9
  c.learning_rate = 0.05
  c.validation_fraction = 0.0
  return c
