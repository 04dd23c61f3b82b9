"""LeNet-5 (with conv ReLUs) on MNIST, Network Trimming of conv2 and ip1.

Dense pre-training (the baseline), then training with the TrimmingCallback
callback: after every 2nd epoch, APoZ is measured on the validation split
and the units of conv2 / ip1 with APoZ >= mean + 1 std (among the units
still alive) are masked; the last epochs retrain without trimming. The run
then removes the trimmed units (shrink) before export. Caffe's LeNet-5 has
no ReLU after its convs, so conv APoZ would be 0 there: conv_relu=True is a
documented deviation (docs/METHODS.md section 3). For physical removal after
every iteration use tfprune.trim_and_retrain (the benchmark).

    python -m tfprune.train --config=configs/lenet5_mnist_trimming.py \
        --data_dir=../shared/data --workdir=runs/lenet5_trimming
"""

from tfprune.config import default_config


def get_config():
  c = default_config()
  c.dataset = 'mnist'
  c.model = 'lenet5'
  c.model_kwargs.conv_relu = True
  c.method = 'network_trimming'
  c.method_kwargs.threshold_std = 1.0
  c.method_kwargs.trim_every = 2
  c.method_kwargs.tolerance = 0.005
  c.layers = 'conv2,ip1'
  c.schedule.kind = 'none'          # TrimmingCallback writes masks
  c.pretrain_epochs = 8
  c.epochs = 8
  c.final_epochs = 2
  c.batch_size = 64
  c.learning_rate = 1e-3
  c.finetune_learning_rate = 5e-4
  c.final_learning_rate = 1e-4
  c.validation_fraction = 0.1
  return c
