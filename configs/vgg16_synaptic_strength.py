"""VGG-16 (BatchNorm, 32x32) on CIFAR-10 with Synaptic Strength.

All 13 convs get one strength per 2-D kernel (their BNs lose the scale);
penalised training from scratch, one global prune of ``target`` of the conv
connections at the start of the final epochs, fine-tuning with the penalty
off. CIFAR-10 is read from --data_dir (python batches or a tfds folder);
an offline machine cannot download it. Epochs are a CPU-sized setting; the
paper trains far longer.

    python -m tfprune.train --config=configs/vgg16_synaptic_strength.py \
        --data_dir=/path/to/cifar --workdir=runs/vgg16_ss

96% of the connections: --config.method_kwargs.target=0.96
"""

from tfprune.config import default_config


def get_config():
  c = default_config()
  c.dataset = 'cifar10'
  c.image_size = 32
  c.model = 'vgg16'
  c.model_kwargs.width = 1.0
  c.model_kwargs.batch_norm = True
  c.method = 'synaptic_strength'
  c.method_kwargs.l1 = 1e-4
  c.method_kwargs.target = 0.9
  c.layers = ''                     # every Conv2D (Dense is not accepted)
  c.schedule.kind = 'periodic'
  c.schedule.begin_step = -1
  c.schedule.frequency = 1000
  c.pretrain_epochs = 0
  c.epochs = 30
  c.final_epochs = 10
  c.batch_size = 128
  c.learning_rate = 1e-3
  c.final_learning_rate = 1e-4
  c.validation_fraction = 0.0
  return c
