"""VGG-16 (BatchNorm, 32x32) on CIFAR-10, Network Trimming of the deep convs.

The paper trims the most redundant layers first (CONV5_3/FC6/FC7 of the
ImageNet VGG-16); this 32x32 VGG-16 has no FC6/FC7, so conv4_x and conv5_x
are trimmed, every one of them at each trim, units at APoZ >= mean + 0.5
std (docs/RESULTS.md, Network Trimming: on the VGG-16 substitute this
reached 6.77x fewer params at the equal-budget dense accuracy, where 2
layers per trim at mean + 1 std stalled at 1.20x). CIFAR-10 is read
from --data_dir (python batches or a tfds folder); there is no download on
an offline machine. Epochs are a CPU-sized setting.

    python -m tfprune.train --config=configs/vgg16_trimming.py \
        --data_dir=/path/to/cifar --workdir=runs/vgg16_trimming
"""

from tfprune.config import default_config


def get_config():
  c = default_config()
  c.dataset = 'cifar10'
  c.image_size = 32
  c.model = 'vgg16'
  c.model_kwargs.width = 1.0
  c.model_kwargs.batch_norm = True
  c.method = 'network_trimming'
  c.method_kwargs.threshold_std = 0.5
  c.method_kwargs.trim_every = 2
  c.method_kwargs.tolerance = 0.003
  c.layers = 'conv4_1,conv4_2,conv4_3,conv5_1,conv5_2,conv5_3'
  c.schedule.kind = 'none'
  c.pretrain_epochs = 20
  c.epochs = 12
  c.final_epochs = 4
  c.batch_size = 128
  c.learning_rate = 1e-3
  c.finetune_learning_rate = 5e-4
  c.final_learning_rate = 1e-4
  c.validation_fraction = 0.1
  return c
