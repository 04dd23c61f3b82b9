"""Small-World with gradient rewiring, started from a briefly trained dense
model, against random masks started the same way.

The ``small_world_rewiring`` setting (imported from ``small_world``, not
restated: LeNet-5/MNIST at 2.3% of the parameters, the Erdos-Renyi budget
split, the seeds, the rewiring rule and the 16-epoch budget), except that
the first ``warm_epochs`` of the base-LR epochs train the dense model; the
masks are then drawn (Small-World graph, or random masks with the same
per-layer edge counts), the kept weights keep their trained values
(``rescale_init=False``) and the rest of the budget trains the sparse model
with rewiring (a fresh Adam). Every row trains for the same number of
epochs as the 16-epoch rows it is compared with.

Why: every variant grown from random weights ended at 98.6-98.9%; global
magnitude pruning, which starts from a trained dense model, reaches 99.2%
at 2.43% in the same 16 epochs. This section measures whether a dense
start is what the Small-World graph lacks, and whether it then beats
random masks given the same start.

    python -m benchmarks.small_world_warm --data_dir=../shared/data
"""

from __future__ import annotations

import sys

from benchmarks import harness
from benchmarks import small_world


def get_config():
  base = small_world.get_config()
  lenet = dict(base.lenet.to_dict(), warm_epochs=4)
  smoke = dict(base.smoke.lenet.to_dict(), epochs=2, warm_epochs=1)
  return harness.config(section='small_world_warm', lenet=lenet,
                        smoke=dict(lenet=smoke))


def run(ctx):
  l = ctx.config.lenet
  if not 0 < l.warm_epochs < l.epochs:
    raise ValueError(f'warm_epochs must be in (0, epochs={l.epochs}), got '
                     f'{l.warm_epochs}')
  train, _, test = ctx.load(l.data)
  rows, prose = warm_rows(ctx, l, l.warm_epochs, train, test)
  lines = [
      small_world.lenet_setting(l, train, test) + f': the first '
      f'{l.warm_epochs} epochs train the dense model (per seed), then the '
      'masks are drawn on it, the kept weights keep their trained values '
      '(`rescale_init=False`) and the remaining epochs (a fresh Adam) train '
      'the sparse model; the budget, seeds and rewiring of the '
      '`small_world_rewiring` section, whose rows start from random weights '
      'with the same number of epochs. "train s" includes the dense '
      f'epochs. In the sparse epochs ' + prose, '',
      small_world.results_table(rows, None), '',
      'Per-layer budget (the same for both rows):', '',
      small_world.density_table(rows[0]['info'])]
  return title(l), '\n'.join(lines)


def warm_rows(ctx, l, warm_epochs: int, train, test, validation=None,
              graphs=('small_world', 'random')):
  """``small_world.rewiring_rows`` after ``warm_epochs`` of dense training
  at the base LR (taken from ``l.epochs``; 0: from random weights, the
  surviving weights rescaled as ``SmallWorld`` does by default)."""
  import tfprune  # pylint: disable=g-import-not-at-top
  if not 0 <= warm_epochs < l.epochs:
    raise ValueError(f'warm_epochs must be in [0, epochs={l.epochs}), got '
                     f'{warm_epochs}')

  def warm_dense():
    model = tfprune.models.lenet5()
    harness.fit(model, train, warm_epochs,
                harness.optimizer('adam', l.learning_rate), l.batch_size,
                metrics=['accuracy'])
    return model

  sparse = harness.config(**l.to_dict())
  with sparse.unlocked():
    sparse.epochs = l.epochs - warm_epochs
  warm = dict(build=warm_dense, rescale_init=False) if warm_epochs else {}
  return small_world.rewiring_rows(ctx, sparse, train, test,
                                   validation=validation, graphs=graphs,
                                   **warm)


def title(l) -> str:
  """The section heading; a non-default ``warm_epochs`` is named, so two
  sections of this study never share a heading."""
  words = (f'Small-World: dense start, then gradient rewiring on LeNet-5 at '
           f'{100 * l.density:g}%')
  if l.warm_epochs != get_config().lenet.warm_epochs:
    words += f', {l.warm_epochs} dense epochs'
  return words


if __name__ == '__main__':
  harness.main(sys.modules[__name__])
