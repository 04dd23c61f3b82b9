"""Model transforms: ``prune`` wraps chosen layers, ``strip`` unwraps them.

Both rebuild the model with ``keras.models.clone_model`` and copy weights,
so the caller's model is never modified and the result has fresh variables.
"""

from __future__ import annotations

import itertools
from typing import Callable, Iterable, Optional, Union

import numpy as np
import tf_keras as keras

from tfprune import prunable, schedules, structures
from tfprune.methods import base as methods_base
from tfprune.wrapper import PruningWrapper, collect_wrappers

LayerSelection = Union[None, str, type, Callable, Iterable]


def _check_model(model) -> None:
  if not isinstance(model, keras.Model):
    raise TypeError(f'expected a tf_keras Model, got {type(model).__name__}. '
                    'Build models with `import tf_keras as keras` (tf.keras is'
                    ' Keras 3 in TF 2.21 and is not supported by tfmot).')
  if not (isinstance(model, keras.Sequential) or
          getattr(model, '_is_graph_network', False)):
    raise TypeError(f'model {model.name!r} is a subclassed Model; tfprune '
                    'rebuilds Sequential and functional models only. Wrap its'
                    ' layers with tfprune.PruningWrapper yourself instead.')
  for layer in model.layers:
    if isinstance(layer, keras.Model):
      raise TypeError(f'model {model.name!r} nests the model {layer.name!r};'
                      ' flatten it into one functional model first.')


def _selector(layers: LayerSelection, model, method) -> Callable:
  """A predicate over layers from names, classes, a callable or None."""
  if layers is None:
    return lambda layer: (prunable.is_supported(layer) and
                          not isinstance(layer, PruningWrapper) and
                          method.accepts(layer))
  if callable(layers) and not isinstance(layers, type):
    return layers
  items = [layers] if isinstance(layers, (str, type)) else list(layers)
  names = {i for i in items if isinstance(i, str)}
  types = tuple(i for i in items if isinstance(i, type))
  known = {layer.name for layer in model.layers}
  missing = sorted(names - known)
  if missing:
    raise ValueError(f'no layer named {missing} in model {model.name!r}; its '
                     f'layers are {sorted(known)}')
  return lambda layer: layer.name in names or (
      bool(types) and isinstance(layer, types))


def _fresh(layer):
  return layer.__class__.from_config(layer.get_config())


def _new_group_name(model, method) -> str:
  used = {w.group for w in collect_wrappers(model)}
  stem = type(method).__name__.lower()
  return next(f'{stem}_{i}' for i in itertools.count() if f'{stem}_{i}'
              not in used)


def prune(model: keras.Model, method: Optional[methods_base.PruningMethod] = None,
          schedule=None, layers: LayerSelection = None,
          group: Optional[str] = None) -> keras.Model:
  """A copy of ``model`` whose selected layers are wrapped for pruning.

  Args:
    model: a Sequential or functional tf_keras model.
    method: a ``tfprune.methods`` object (default ``Magnitude()``).
    schedule: a tfmot ``PruningSchedule`` (masks follow it during ``fit``
      with the ``PruningStep`` callback); a float sparsity in [0, 1) to prune
      once now; or None to leave the masks to the method.
    layers: which layers to wrap: None (every supported layer the method
      accepts, e.g. only Conv2D for SynapticStrength), names,
      layer classes, or a callable ``layer -> bool``. Others stay untouched.
    group: name for this set of wrappers (default: derived from the method).

  Returns:
    A new, uncompiled model with fresh variables.
  """
  _check_model(model)
  if method is None:
    from tfprune.methods.magnitude import Magnitude  # pylint: disable=g-import-not-at-top
    method = Magnitude()
  if not isinstance(method, methods_base.PruningMethod):
    raise TypeError('method must be a tfprune.methods object such as '
                    f"tfprune.methods.Magnitude('channel'), got {method!r}")
  one_shot = None
  if isinstance(schedule, (int, float)) and not isinstance(schedule, bool):
    structures.check_sparsity(schedule, 'the sparsity given as schedule')
    one_shot, schedule = float(schedule), None
  schedule = schedules.get(schedule)
  selected = _selector(layers, model, method)
  names = [layer.name for layer in model.layers
           if not isinstance(layer, (keras.layers.InputLayer, PruningWrapper))
           and selected(layer)]
  already_wrapped_check = selected
  prepared = method.prepare(model, names)
  if prepared is not model:   # new layer objects: select them by name
    model, chosen = prepared, set(names)
    selected = lambda layer: layer.name in chosen
  group = group or _new_group_name(model, method)
  pairs = []

  def clone(layer):
    if isinstance(layer, PruningWrapper):
      if layers is not None and already_wrapped_check(layer):
        raise ValueError(f'layer {layer.layer.name!r} is already wrapped; '
                         'strip the model first to prune it again')
      new = PruningWrapper.from_config(layer.get_config())
    elif not isinstance(layer, keras.layers.InputLayer) and selected(layer):
      prunable.check_supported(layer)
      new = PruningWrapper(_fresh(layer), method=method, schedule=schedule,
                           group=group)
    else:
      new = _fresh(layer)
    pairs.append((layer, new))
    return new

  new_model = keras.models.clone_model(model, clone_function=clone)
  wrapped = []
  for old, new in pairs:
    if isinstance(new, PruningWrapper) and not isinstance(old, PruningWrapper):
      new.layer.set_weights(old.get_weights())
      wrapped.append(new)
    else:
      new.set_weights(old.get_weights())
  if not wrapped:
    raise ValueError(f'no layer of model {model.name!r} was selected for '
                     'pruning; check the layers= argument')
  method.on_wrapped(wrapped, model)
  if one_shot is not None:
    method.update_masks(wrapped, one_shot, 0)
  return new_model


def strip(model: keras.Model) -> keras.Model:
  """A plain model of the same architecture with masks and gates folded in.

  Every wrapper becomes its inner layer (same name) whose weights equal the
  effective weights the wrapper computed with; other layers are copied.
  """
  _check_model(model)
  pairs = []

  def clone(layer):
    new = _fresh(layer.layer if isinstance(layer, PruningWrapper) else layer)
    pairs.append((layer, new))
    return new

  new_model = keras.models.clone_model(model, clone_function=clone)
  for old, new in pairs:
    if isinstance(old, PruningWrapper):
      effective = old.effective_weights()
      by_var = {id(getattr(old.layer, attr)): value
                for attr, value in effective.items()}
      values = [by_var.get(id(v), None) for v in old.layer.weights]
      values = [np.asarray(v) if e is None else e
                for v, e in zip(old.layer.weights, values)]
      new.set_weights(values)
    else:
      new.set_weights(old.get_weights())
  return new_model
