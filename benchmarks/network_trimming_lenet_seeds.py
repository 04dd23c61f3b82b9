"""Network Trimming on LeNet-5 / MNIST over several seeds.

The ``network_trimming`` study's LeNet-5 setting (imported, not restated:
LeNet-5 with a ReLU after each conv, conv2 and ip1 trimmed), run once per
seed in ``config.seeds`` with its equal-budget control, as
``network_trimming_seeds`` does for the VGG-16 substitute: whether the
paper's LeNet-5 result (about 3.85x fewer parameters at the baseline
accuracy) holds beyond one seed.

    python -m benchmarks.network_trimming_lenet_seeds --data_dir=../shared/data
"""

from __future__ import annotations

import sys

from benchmarks import harness
from benchmarks import network_trimming
from benchmarks import network_trimming_seeds


def get_config():
  base = network_trimming.get_config()
  return harness.config(
      section='network_trimming_lenet_seeds', seeds=[0, 1, 2],
      lenet=base.lenet.to_dict(),
      smoke=dict(seeds=[0, 1], lenet=base.smoke.lenet.to_dict()))


def run(ctx):
  import tfprune  # pylint: disable=g-import-not-at-top
  c, s = ctx.config, ctx.config.lenet
  runs = network_trimming_seeds.run_seeds(
      ctx, s, c.seeds, lambda _: tfprune.models.lenet5(conv_relu=True))
  return (f'Network Trimming: LeNet-5 on MNIST over {len(c.seeds)} seeds',
          network_trimming_seeds.section(
              runs, s, c.seeds,
              f'{harness.describe_data(s.data)}, LeNet-5 20-50-500-10 with a '
              'ReLU after each conv: the `network_trimming` study\'s LeNet-5 '
              'setting'))


if __name__ == '__main__':
  harness.main(sys.modules[__name__])
