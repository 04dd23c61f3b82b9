"""Average Percentage of Zeros (APoZ) of units after their ReLU.

Hu et al. (Network Trimming, 2016) call a unit redundant when its output
after the ReLU is mostly exactly zero. APoZ of output channel c of a layer
= (number of zeros of channel c over N examples and its M spatial
positions) / (N * M). Zeros are counted exactly (``== 0``).

The ReLU is found from the layer itself (a fused ``activation='relu'``) or
from the layers that follow it: the first ReLU reached through channel-wise
layers (BatchNormalization, Dropout, Identity); a model without a ReLU there
is refused with an error that says so. One probe model returns every
post-ReLU tensor, and zero counts are reduced inside the graph batch by
batch, so a pass over the validation data costs one forward pass.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tfprune import generations
from tfprune import graph
from tfprune import progress
from tfprune.wrapper import WrapperCore

_PASS_THROUGH = (generations.layers.BatchNormalization, generations.layers.Dropout,
                 generations.layers.Identity)
_ZERO_ACTIVATIONS = ('relu', 'relu6')


def _is_relu(layer) -> bool:
  if isinstance(layer, generations.layers.ReLU):
    return (layer.negative_slope == 0 and layer.threshold == 0)
  if isinstance(layer, generations.layers.Activation):
    return generations.activation_name(layer.activation) in _ZERO_ACTIVATIONS
  return False


def _fused_relu(layer) -> bool:
  inner = layer.layer if isinstance(layer, WrapperCore) else layer
  activation = getattr(inner, 'activation', None)
  if activation is None:
    return False
  return generations.activation_name(activation) in _ZERO_ACTIVATIONS


def followers(layer) -> Tuple[List, Optional[object]]:
  """The channel-wise layers after ``layer`` and the first ReLU after them.

  Walks single consumers through BatchNormalization/Dropout/Identity (a
  BatchNormalization follower wrapper counts as its layer); returns
  ``(pass_through_layers, relu_or_None)``.
  """
  chain, stop = graph.consumer_chain(
      layer, lambda l: isinstance(graph.unwrapped(l), _PASS_THROUGH))
  relu = stop if stop is not None and _is_relu(graph.unwrapped(stop)) else None
  return [graph.unwrapped(l) for l in chain], relu


def has_relu(layer) -> bool:
  """Whether ``layer``'s outputs pass a ReLU (fused, or after channel-wise
  layers) in the model it was called in: what APoZ needs."""
  return _fused_relu(layer) or followers(layer)[1] is not None


def relu_output(model, name: str):
  """The symbolic post-ReLU output of layer ``name`` (or its wrapper)."""
  layer = _find(model, name)
  if _fused_relu(layer):
    return layer.output
  _, relu = followers(layer)
  if relu is not None:
    return relu.output
  raise ValueError(
      f'layer {name!r} is not followed by a ReLU (fused or through '
      'BatchNormalization/Dropout), so its outputs have no exact zeros and '
      'APoZ is meaningless; give it activation="relu" (tfprune.models.lenet5'
      '(conv_relu=True) for LeNet-5) or leave it out of the trimmed layers.')


def _find(model, name):
  for layer in model.layers:
    inner = layer.layer if isinstance(layer, WrapperCore) else layer
    if layer.name == name or inner.name == name:
      return layer
  raise ValueError(f'no layer named {name!r} in model {model.name!r}')


def measure(model, x, layers: Sequence[str],
            batch_size: int = 256) -> Dict[str, np.ndarray]:
  """APoZ of every output unit of ``layers`` over the examples ``x``.

  Args:
    model: a built Sequential or functional model (wrapped or not).
    x: validation inputs (an array or a ``tf.data`` of input batches);
      never the training batch, so the statistic is not tied to it.
    layers: names of Dense/Conv2D layers (inner names for wrapped ones).

  Returns:
    ``{name: array of shape (units,)}`` with values in [0, 1].
  """
  outputs = [relu_output(model, name) for name in layers]
  probe = generations.of(model).keras.Model(model.inputs, outputs)

  @tf.function
  def zeros(batch):
    result = probe(batch, training=False)
    if not isinstance(result, (list, tuple)):
      result = [result]
    counts = []
    for out in result:
      axes = list(range(out.shape.rank - 1))
      counts.append(tf.reduce_sum(tf.cast(tf.equal(out, 0), tf.float64),
                                  axis=axes))
    positions = [tf.cast(tf.size(o) // tf.shape(o)[-1], tf.float64)
                 for o in result]
    return counts, positions

  if isinstance(x, tf.data.Dataset):
    batches = x
  else:
    batches = tf.data.Dataset.from_tensor_slices(np.asarray(x)).batch(
        batch_size)
  count = int(batches.cardinality())   # < 0: unknown (or infinite)
  if count >= 0:   # a bar with an ETA when a pass runs over a few seconds
    batches = progress.track(batches, f'APoZ of {len(layers)} layer(s)',
                             total=count)
  totals: Optional[list] = None
  seen = None
  for batch in batches:
    counts, positions = zeros(batch)
    counts = [c.numpy() for c in counts]
    positions = np.array([float(p) for p in positions])
    totals = counts if totals is None else [t + c for t, c in
                                            zip(totals, counts)]
    seen = positions if seen is None else seen + positions
  if totals is None:
    raise ValueError('APoZ needs at least one validation example')
  return {name: (t / s).astype(np.float64)
          for name, t, s in zip(layers, totals, seen)}
