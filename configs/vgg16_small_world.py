"""VGG-16 (BatchNorm, 32x32) on CIFAR-10 as a Small-World network at 9.02%.

The paper's VGG-16 budget: 9.02% of all parameters (1.33M of 14.74M), with
Conv2D connections (whole 3x3 kernels) as edges. CIFAR-10 is read from
--data_dir (the python-version batches, or a tfds folder); there is no
download on a machine without internet. The epochs here are a CPU-sized
setting, not the paper's (unknown) schedule.

    python -m tfprune.train --config=configs/vgg16_small_world.py \
        --data_dir=/path/to/cifar --workdir=runs/vgg16_small_world

The benchmark's substitute setting (Fashion-MNIST padded to 32x32, width
0.25): --config.dataset=fashion_mnist --config.model_kwargs.width=0.25
"""

from tfprune.config import default_config


def get_config():
  c = default_config()
  c.dataset = 'cifar10'
  c.image_size = 32
  c.model = 'vgg16'
  c.model_kwargs.width = 1.0
  c.model_kwargs.batch_norm = True
  c.method = 'small_world'
  c.method_kwargs.density = 0.0902
  c.method_kwargs.rewire_p = 'auto'
  c.method_kwargs.seed = 0
  c.method_kwargs.regrow_fraction = 0.0
  c.schedule.kind = 'none'
  c.schedule.begin_step = -1
  c.schedule.frequency = 200
  c.pretrain_epochs = 0
  c.epochs = 30
  c.final_epochs = 10
  c.batch_size = 128
  c.learning_rate = 1e-3
  c.final_learning_rate = 1e-4
  c.validation_fraction = 0.1
  return c
