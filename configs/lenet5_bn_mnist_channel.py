"""LeNet-5 with BatchNorm on MNIST, channel magnitude pruning, then shrink.

Half of the filters of conv1/conv2 and half of ip1's units are pruned by L1
norm while fine-tuning; the run then removes them physically
(config.shrink='auto' does so for channel structures; a dead filter's
BatchNorm shift is folded into the next layer's bias) and checks the shrunk
.tflite against the report of the model before shrinking, with plan.json.

    python -m tfprune.train --config=configs/lenet5_bn_mnist_channel.py \
        --data_dir=../shared/data --workdir=runs/lenet5_bn_channel
"""

from tfprune.config import default_config


def get_config():
  c = default_config()
  c.dataset = 'mnist'
  c.model = 'lenet5'
  c.model_kwargs.batch_norm = True
  c.method = 'magnitude'
  c.method_kwargs.structure = 'channel'
  c.layers = 'conv1,conv2,ip1'
  c.schedule.kind = 'polynomial_decay'
  c.schedule.final_sparsity = 0.5
  c.schedule.frequency = 100
  c.pretrain_epochs = 4
  c.epochs = 4
  c.batch_size = 64
  c.learning_rate = 1e-3
  c.finetune_learning_rate = 5e-4
  c.validation_fraction = 0.0
  return c
