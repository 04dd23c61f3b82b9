"""The least an exact weight mask can cost per step, beside the wrappers.

The step-overhead targets (``benchmarks.training_overhead``: mask methods
<= 1.02x the plain step) meet a floor on small steps: a mask that keeps
tfmot's semantics (masked weights get no gradient, so the optimizer never
moves them) multiplies every kernel's gradient by its mask, one product per
kernel and step, even when the weights already hold zeros under their masks
and the forward product is skipped (``tfprune.zeroing``). This study times
that product alone, the row ``floor: masked gradients``: the plain model
trained by an Adam that multiplies each kernel's gradient by a fixed random
0/1 mask. Its ratio to plain is what any exact weight mask costs on that
model and mode; a wrapped row's ratio to it is the wrapper's own cost.

    python -m benchmarks.training_overhead_floor

Same measurement as ``benchmarks.training_overhead`` (interleaved rounds,
copies, medians of batch intervals), on the two models where the targets
were missed by more than the run-to-run spread: LeNet-300-100 (a 1 ms step
whose first kernel has 235K weights) and LeNet-5 eager.
"""

from __future__ import annotations

import sys

from benchmarks import harness, training_overhead


def get_config():
  config = training_overhead.get_config()
  config.section = 'training_overhead_floor'
  config.models = 'lenet300,lenet5'
  config.rounds = 20
  config.specs.lenet5.modes = 'graph,bf16,eager'
  return config


def run(ctx):
  return training_overhead.run(ctx, floor=True)


if __name__ == '__main__':
  harness.main(sys.modules[__name__])
