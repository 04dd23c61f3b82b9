"""Re-estimate BatchNormalization moving statistics after pruning.

Pruning changes what a BatchNormalization layer sees: PSP's gates going to
zero, trimmed or masked channels, shrunk producers. The moving mean and
variance still describe the network before, so inference normalises with
stale numbers; measured on the ResNet-20 substitute, a PSP model scored
25.11% with its moving statistics and 84.88% once they were re-estimated,
weights unchanged (docs/METHODS.md, PSP).

:func:`recalibrate_batchnorm` sets them to the population statistics of
each layer's input over example data, computed in inference mode, layer by
layer in graph order, so each layer is measured with the already
re-estimated ones before it: afterwards inference normalises every channel
with the mean and variance it really has on that data. Inference mode also
keeps tfprune wrappers' step counters and schedules untouched (a training
call would advance them). Nothing is trained.
"""

from __future__ import annotations

from typing import List, Sequence, Union

import numpy as np

from tfprune import generations
from tfprune import graph as graph_lib

Inputs = Union[np.ndarray, Sequence[np.ndarray]]


def _batchnorm_layers(model) -> List:
  """``(outer, bn)``: top-level layers that are, or wrap, a
  BatchNormalization layer, in graph order."""
  return [(layer, graph_lib.unwrapped(layer)) for layer in model.layers
          if isinstance(graph_lib.unwrapped(layer),
                        generations.layers.BatchNormalization)]


def _moments(probe, x: List[np.ndarray], axis: int, batch_size: int):
  """Per-channel mean and variance (float64) of ``probe``'s output over
  ``x``, reduced over every axis but ``axis``."""
  n = len(x[0])
  total = count = total_sq = 0
  for start in range(0, n, batch_size):
    batch = [a[start:start + batch_size] for a in x]
    out = np.asarray(probe(batch[0] if len(batch) == 1 else batch,
                           training=False), np.float64)
    out = np.moveaxis(out, axis, -1).reshape(-1, out.shape[axis])
    total = total + out.sum(0)
    total_sq = total_sq + (out * out).sum(0)
    count += out.shape[0]
  mean = total / count
  return mean, np.maximum(total_sq / count - mean * mean, 0.0)


def recalibrate_batchnorm(model, x: Inputs, batch_size: int = 256) -> int:
  """Set every BatchNormalization layer's moving mean and variance to the
  statistics its input has on ``x`` (inference mode, graph order).

  Args:
    model: a functional or Sequential tf_keras or Keras 3 model, wrapped,
      stripped or shrunk; BatchNormalization layers inside tfprune wrappers
      count.
    x: example inputs (a few thousand training images are plenty): an
      array, or a list of arrays for a model with several inputs.
    batch_size: examples per forward pass.

  Returns:
    How many BatchNormalization layers were re-estimated.
  """
  gen = generations.of(model)
  if not generations.is_graph_network(model):
    raise ValueError(
        f'recalibrate_batchnorm needs a functional or Sequential model; '
        f'{model.name!r} is subclassed, so its layers\' inputs cannot be '
        'read. Rebuild it functionally, or re-estimate the statistics with '
        'a training-mode pass of your own.')
  arrays = [np.asarray(a) for a in (x if isinstance(x, (list, tuple))
                                    else [x])]
  if len(arrays) != len(model.inputs):
    raise ValueError(f'x gives {len(arrays)} input array(s); the model has '
                     f'{len(model.inputs)} input(s)')
  if not len(arrays[0]) or any(len(a) != len(arrays[0]) for a in arrays):
    raise ValueError('x must hold at least one example, the same number '
                     'for every input')
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}')
  layers = _batchnorm_layers(model)
  for outer, bn in layers:
    axes = list(bn.axis) if isinstance(bn.axis, (list, tuple)) else [bn.axis]
    if len(axes) != 1:
      raise ValueError(f'{bn.name}: normalising over several axes '
                       f'({bn.axis}) is not supported')
    axis = axes[0]
    probe = gen.keras.Model(model.inputs, outer.input)
    mean, var = _moments(probe, arrays, axis, batch_size)
    bn.moving_mean.assign(mean.astype(np.float32))
    bn.moving_variance.assign(var.astype(np.float32))
  return len(layers)
