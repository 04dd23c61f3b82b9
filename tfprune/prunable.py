"""Which layers tfprune can prune, and the layout of their prunable weights.

Built in: Dense, Conv1D, Conv2D, DepthwiseConv2D and SeparableConv2D (its
pointwise kernel: pruning its output channels removes them from the
depthwise part's readers too). Any other layer takes part by
implementing tfmot's ``PrunableLayer`` (``get_prunable_weights``); its weights
get :func:`structures.default_layout` (last axis = outputs, the one before =
inputs) unless it also defines ``get_prunable_weight_layouts()``.

*Followers* are layers that own per-channel parameters but are never pruned
on their own: a BatchNormalization after a pruned channel. Channel-group
pruning masks their gamma and beta with the channel, so a pruned channel is
exactly 0 after them (otherwise it would carry the constant BN shift, which
a padding conv downstream cannot absorb).
"""

from __future__ import annotations

from typing import List, NamedTuple

from tensorflow_model_optimization.sparsity.keras import PrunableLayer

from tfprune import generations, structures

SUPPORTED = ('Dense', 'Conv1D', 'Conv2D', 'DepthwiseConv2D', 'SeparableConv2D',
             'tfmot PrunableLayer')


class UnsupportedLayerError(TypeError):
  """A layer that tfprune does not know how to prune was selected."""


class PrunableWeight(NamedTuple):
  attr: str        # attribute of the layer holding the variable
  variable: object
  layout: structures.WeightLayout


def _builtin(layer):
  # Order matters: Conv2DTranspose subclasses Conv2D (with [kh,kw,out,in]).
  if isinstance(layer, generations.layers.DepthwiseConv2D):
    return [(generations.depthwise_attr(layer), structures.DEPTHWISE_LAYOUT)]
  if isinstance(layer, generations.layers.SeparableConv2D):
    return [('pointwise_kernel', structures.CONV2D_LAYOUT)]
  if isinstance(layer, (generations.layers.Conv2DTranspose,
                        generations.layers.Conv1DTranspose)):
    return None
  if isinstance(layer, generations.layers.Conv1D):
    if getattr(layer, 'groups', 1) != 1:
      return None
    return [('kernel', structures.CONV1D_LAYOUT)]
  if isinstance(layer, generations.layers.Conv2D):
    return [('kernel', structures.CONV2D_LAYOUT)]
  if isinstance(layer, generations.layers.Dense):
    return [('kernel', structures.DENSE_LAYOUT)]
  return None


def is_follower(layer) -> bool:
  """A BatchNormalization on the last axis with a scale (gamma = 0 is what
  makes its output 0; without one a pruned channel stays the constant
  ``-mean / sqrt(var)``)."""
  if not isinstance(layer, generations.layers.BatchNormalization):
    return False
  axis = list(layer.axis) if isinstance(layer.axis, (list, tuple)) else [
      layer.axis]
  rank = layer.input_spec.ndim if layer.input_spec is not None else None
  last = [-1] if rank is None else [-1, rank - 1]
  return len(axis) == 1 and axis[0] in last and bool(layer.scale)


def follower_weights(layer) -> List[PrunableWeight]:
  """A follower's per-channel weights (gamma, beta), masked with its channel."""
  if not is_follower(layer):
    raise UnsupportedLayerError(
        f'layer {layer.name!r} ({type(layer).__name__}) is not a channel '
        'follower; followers are BatchNormalization layers on the last axis')
  if not layer.built:
    raise ValueError(f'layer {layer.name!r} must be built first')
  return [PrunableWeight(attr, getattr(layer, attr), structures.VECTOR_LAYOUT)
          for attr in ('gamma', 'beta') if getattr(layer, attr, None) is not None]


def is_supported(layer) -> bool:
  return isinstance(layer, PrunableLayer) or _builtin(layer) is not None


def check_supported(layer) -> None:
  if not is_supported(layer):
    raise UnsupportedLayerError(
        f'layer {layer.name!r} ({type(layer).__name__}) cannot be pruned: '
        f'tfprune prunes {", ".join(SUPPORTED)}. Leave it out with '
        'prune(..., layers=...), or make it implement '
        'tfmot.sparsity.keras.PrunableLayer.')


def prunable_weights(layer) -> List[PrunableWeight]:
  """The prunable weights of a built layer, with attribute names and layouts."""
  check_supported(layer)
  if not layer.built:
    raise ValueError(f'layer {layer.name!r} must be built first')
  builtin = _builtin(layer)
  if builtin is not None and not isinstance(layer, PrunableLayer):
    return [PrunableWeight(
        attr, getattr(layer, generations.substitution_attr(layer, attr)),
        layout) for attr, layout in builtin]
  variables = list(layer.get_prunable_weights())
  layouts = (list(layer.get_prunable_weight_layouts())
             if hasattr(layer, 'get_prunable_weight_layouts') else
             [structures.default_layout(v.shape.rank) for v in variables])
  result = []
  for variable, layout in zip(variables, layouts):
    attr = next((name for name, value in vars(layer).items()
                 if value is variable), None)
    if attr is None:
      raise UnsupportedLayerError(
          f'{layer.name!r}: prunable weight {variable.name} is not held in '
          'an attribute of the layer, so tfprune cannot substitute the masked'
          ' weight in call(); store each prunable variable as an attribute.')
    result.append(PrunableWeight(attr, variable, layout))
  return result


def bias_of(layer):
  """The layer's bias variable, or None."""
  return getattr(layer, 'bias', None) if getattr(layer, 'use_bias',
                                                  False) else None
