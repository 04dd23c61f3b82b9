"""Small-World with gradient rewiring at a longer schedule, dense included.

The ``small_world_rewiring`` setting (imported from ``small_world``, not
restated: LeNet-5/MNIST at 2.3% of the parameters, the Erdos-Renyi budget
split, the seeds and the rewiring rule) trained for more epochs: by default
18 at the base LR and 6 at the lower one, 1.5x the 16 epochs of the other
Small-World sections. Every row gets the same schedule: the dense model (one
seed), the rewired Small-World graph and rewired random masks (``seeds``).

Why: sparse networks trained from scratch usually need longer than the dense
schedule (RigL's runs gain from 2-5x longer training); at 16 epochs the
rewired Small-World graph is at 98.92% +- 0.06, 0.08 points short of
issue 20's 99.0% target. This section measures whether more epochs close it
and whether Small-World still beats random masks when both get them.

    python -m benchmarks.small_world_long --data_dir=../shared/data
"""

from __future__ import annotations

import sys
import time

from benchmarks import harness
from benchmarks import small_world


def get_config():
  base = small_world.get_config()
  lenet = dict(base.lenet.to_dict(), epochs=18, final_epochs=6)
  return harness.config(section='small_world_long', lenet=lenet,
                        smoke=dict(lenet=base.smoke.lenet.to_dict()))


def run(ctx):
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  import tfprune  # pylint: disable=g-import-not-at-top
  l = ctx.config.lenet
  keras.utils.set_random_seed(l.seeds[0])
  train, _, test = ctx.load(l.data)
  started = time.time()
  dense = small_world.fit_stages(tfprune.models.lenet5(), train, l)
  dense_row = small_world.row('dense (no pruning)', dense, *test, started)
  rows, prose = small_world.rewiring_rows(ctx, l, train, test)
  total = l.epochs + l.final_epochs
  lines = [
      small_world.lenet_setting(l, train, test) + f' ({total} epochs in '
      'all, for every row): the budget, seeds and rewiring of the '
      '`small_world_rewiring` section (16 epochs), trained longer. The dense '
      f'row is seed {l.seeds[0]}. In the pruned rows ' + prose, '',
      small_world.results_table([dense_row] + rows, dense_row['acc']), '',
      'Per-layer budget (the same for both pruned rows):', '',
      small_world.density_table(rows[0]['info'])]
  return (f'Small-World: gradient rewiring on LeNet-5 at '
          f'{100 * l.density:g}%, {total} epochs', '\n'.join(lines))


if __name__ == '__main__':
  harness.main(sys.modules[__name__])
