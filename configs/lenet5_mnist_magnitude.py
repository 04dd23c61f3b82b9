"""LeNet-5 (Caffe 20-50-500-10) on MNIST, tfmot-equivalent magnitude pruning.

The baseline every method is compared with: weight-magnitude pruning of every
layer to 97.7% sparsity (2.3% of the weights kept, the Small-World budget),
the criterion and masks of tfmot's prune_low_magnitude, reached with a
PolynomialDecay schedule while fine-tuning a dense-pretrained model.

    python -m tfprune.train --config=configs/lenet5_mnist_magnitude.py \
        --data_dir=../shared/data --workdir=runs/lenet5_magnitude
"""

from tfprune.config import default_config


def get_config():
  c = default_config()
  c.dataset = 'mnist'
  c.model = 'lenet5'
  c.method = 'magnitude'
  c.method_kwargs.structure = 'weight'
  c.schedule.kind = 'polynomial_decay'
  c.schedule.final_sparsity = 0.977
  c.schedule.frequency = 100
  c.pretrain_epochs = 8
  c.epochs = 8
  c.batch_size = 64
  c.learning_rate = 1e-3
  c.finetune_learning_rate = 5e-4
  c.validation_fraction = 0.0
  return c
