"""How many dense epochs Small-World should start from, chosen on a
validation split, then compared with random masks started the same way.

The ``small_world_warm`` sections picked the 2-epoch dense start from 2, 4
and 8 epochs by test accuracy (MNIST has no validation split), so their
99.01% carries that choice. Here ``lenet.data.validation`` training
examples are held out; for each ``warm_choices`` entry (0: from random
weights, as ``small_world_rewiring``) the Small-World graph with gradient
rewiring trains over ``lenet.seeds`` on the rest, the entry with the
highest mean validation accuracy is chosen (a tie goes to the shorter dense
start), and random masks (p=1) then train with that start. Test accuracy is
read for every row but chooses nothing. Every row trains for the same
``epochs + final_epochs``; the dense epochs come out of ``epochs``. The
other settings are ``small_world_warm``'s (imported, not restated).

    python -m benchmarks.small_world_warm_select --data_dir=../shared/data
"""

from __future__ import annotations

import sys
from typing import List, Tuple

from benchmarks import harness
from benchmarks import small_world
from benchmarks import small_world_warm


def get_config():
  base = small_world_warm.get_config()
  lenet = base.lenet.to_dict()
  del lenet['warm_epochs']
  lenet.update(data=dict(lenet['data'], validation=5000),
               warm_choices=[0, 1, 2, 4])
  smoke = dict(base.smoke.lenet.to_dict(), warm_choices=[0, 1])
  smoke['data'] = dict(smoke['data'], validation=32)
  del smoke['warm_epochs']
  return harness.config(section='small_world_warm_select', lenet=lenet,
                        smoke=dict(lenet=smoke))


def choose(candidates: List[Tuple[int, dict]]) -> Tuple[int, dict]:
  """The ``(warm_epochs, row)`` with the highest mean validation accuracy;
  a tie goes to the fewest dense epochs."""
  return max(sorted(candidates, key=lambda c: c[0]),
             key=lambda c: c[1]['val_acc'])


def run(ctx):
  l = ctx.config.lenet
  if not l.warm_choices:
    raise ValueError('lenet.warm_choices is empty: give the numbers of dense '
                     'epochs to choose from, e.g. [0, 1, 2, 4]')
  train, validation, test = ctx.load(l.data)
  if not len(validation[0]):
    raise ValueError('small_world_warm_select chooses on a validation split:'
                     ' set --config.lenet.data.validation to a count or a '
                     'fraction of the training split')
  candidates = []
  for warm in l.warm_choices:
    rows, prose = small_world_warm.warm_rows(
        ctx, l, warm, train, test, validation, graphs=('small_world',))
    candidates.append((warm, rows[0]))
  warm, chosen = choose(candidates)
  control, _ = small_world_warm.warm_rows(ctx, l, warm, train, test,
                                          validation, graphs=('random',))
  start = (f'{warm} dense epoch(s), masks drawn on the trained model '
           '(`rescale_init=False`)' if warm else 'random weights')
  lines = [
      small_world.lenet_setting(l, train, test) + f'; {len(validation[0]):,}'
      ' training examples held out for validation (the train count is what '
      'is left). Each Small-World row first trains the dense model for the '
      'given number of epochs (taken out of the base-LR epochs; 0: the masks '
      'are drawn on random weights and rescaled, as `small_world_rewiring`),'
      ' then the sparse model (a fresh Adam) with the rewiring of '
      '`small_world_warm`: ' + prose, '',
      harness.table(
          ['dense epochs first', 'Small-World validation accuracy',
           'test accuracy', 'train s (per run)'],
          [[f'**{w}** (chosen)' if w == warm else str(w),
            harness.spread(r['val_accs']), harness.spread(r['accs']),
            f'{r["seconds"]:.0f}'] for w, r in candidates]), '',
      f'Chosen by mean validation accuracy: {start}. The random-mask control '
      'then trained with the same start:', '',
      small_world.results_table([chosen] + control, None), '',
      'Per-layer budget (the same for every row):', '',
      small_world.density_table(chosen['info'])]
  return ('Small-World: the dense start chosen on a validation split, '
          f'LeNet-5 at {100 * l.density:g}%'), '\n'.join(lines)


if __name__ == '__main__':
  harness.main(sys.modules[__name__])
