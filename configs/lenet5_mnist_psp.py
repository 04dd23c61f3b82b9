"""LeNet-5 on MNIST with PSP column pruning (learned sparsity, no target).

Every column ((kh, kw, cin) position of conv1/conv2, input row of ip1) gets
a structure parameter alpha; weight decay on alpha with SGD(momentum 0.9)
separates the columns, |alpha| < epsilon prunes them (straight-through, so
they can return) until freeze_step, when the masks are fixed; the last
epochs fine-tune. freeze_step is in steps: 938 per epoch at batch 64 on the
60,000 training images (validation_fraction 0). Filter pruning:
--config.method_kwargs.structure=filter. See docs/METHODS.md section 2.

    python -m tfprune.train --config=configs/lenet5_mnist_psp.py \
        --data_dir=../shared/data --workdir=runs/lenet5_psp
"""

from tfprune.config import default_config


def get_config():
  c = default_config()
  c.dataset = 'mnist'
  c.model = 'lenet5'
  c.method = 'psp'
  c.method_kwargs.structure = 'column'
  c.method_kwargs.weight_decay = 1e-2
  c.method_kwargs.epsilon = 1e-2
  c.method_kwargs.begin_step = 0
  c.method_kwargs.freeze_step = 938 * 6
  c.layers = 'conv1,conv2,ip1'
  c.schedule.kind = 'none'          # PSP's own begin/freeze steps
  c.pretrain_epochs = 0
  c.epochs = 8
  c.batch_size = 64
  c.optimizer = 'sgd'
  c.momentum = 0.9
  c.learning_rate = 0.02
  c.validation_fraction = 0.0
  return c
