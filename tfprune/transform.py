"""Model transforms: ``prune`` wraps chosen layers, ``strip`` unwraps them,
``in_float32`` rebuilds a mixed precision model to compute in float32.

All three rebuild the model with ``keras.models.clone_model`` and copy weights,
so the caller's model is never modified and the result has fresh variables.
"""

from __future__ import annotations

import itertools
import logging
import numbers
from typing import Callable, Dict, Iterable, List, Optional, Union

import numpy as np

from tfprune import generations
from tfprune import graph as graph_lib
from tfprune import groups as groups_lib
from tfprune import prunable, schedules, structures
from tfprune.methods import base as methods_base
from tfprune.methods.magnitude import Magnitude
from tfprune.wrapper import PruningWrapper, WrapperCore, collect_wrappers

LayerSelection = Union[None, str, type, Callable, Iterable]
logger = logging.getLogger('tfprune')


def is_subclassed(model) -> bool:
  """A Model written as a class with ``call``, which cannot be cloned."""
  return not (isinstance(model, generations.SEQUENTIAL) or
              generations.is_graph_network(model))


def _check_keras_model(model) -> None:
  if not isinstance(model, generations.MODEL):
    raise TypeError(f'expected a Keras Model, got {type(model).__name__}. '
                    'tfprune prunes tf_keras models (`import tf_keras as '
                    'keras`) and Keras 3 models (`import keras`).')


def _check_model(model) -> None:
  _check_keras_model(model)
  if is_subclassed(model):
    raise TypeError(f'model {model.name!r} is a subclassed Model; tfprune '
                    'rebuilds Sequential and functional models only. Wrap its'
                    ' layers with tfprune.PruningWrapper yourself instead.')
  for layer in model.layers:
    if isinstance(layer, generations.MODEL):
      raise TypeError(f'model {model.name!r} nests the model {layer.name!r};'
                      ' flatten it into one functional model first.')
  if not model.built or not model.inputs:
    raise ValueError(
        f'model {model.name!r} is not built, so its layers have no weights '
        'to prune yet (a Sequential without an input shape). Fix: start it '
        'with keras.Input(shape), or call model.build((None, *shape)), '
        'before tfprune.prune.')


def _selector(layers: LayerSelection, model, method) -> Callable:
  """A predicate over layers from names, classes, a callable or None."""
  if layers is None:
    return lambda layer: (prunable.is_supported(layer) and
                          not isinstance(layer, WrapperCore) and
                          method.refusal(layer) is None)
  if callable(layers) and not isinstance(layers, type):
    return layers
  items = [layers] if isinstance(layers, (str, type)) else list(layers)
  wrong = [i for i in items if not isinstance(i, (str, type))]
  if wrong:
    raise TypeError(f'layers= takes layer names, layer classes or one '
                    f'callable; {wrong!r} is neither a name nor a class')
  names = {i for i in items if isinstance(i, str)}
  types = tuple(i for i in items if isinstance(i, type))
  known = {layer.name for layer in model.layers}
  missing = sorted(names - known)
  if missing:
    raise ValueError(f'no layer named {missing} in model {model.name!r}; its '
                     f'layers are {sorted(known)}')
  return lambda layer: layer.name in names or (
      bool(types) and isinstance(layer, types))


def _names(layers: LayerSelection, model) -> set:
  """Names of the layers an ``ignore=`` argument means."""
  if layers is None:
    return set()
  pick = _selector(layers, model, None)
  return {l.name for l in model.layers if pick(l)}


def _channel_defaults(model, names: List[str], can_wrap: Callable):
  """For channel-group methods: the producers to wrap, the reason for each
  one left out, the coupled partners added, and the BatchNormalization
  followers of the kept ones.

  A producer all of whose output channels are pinned (the logits, a layer
  read by something the channel graph does not understand) is left out:
  masking it could only zero outputs that shrink must keep. A producer whose
  channels are coupled with a chosen one (a residual partner, the depthwise
  conv after it) is added when ``can_wrap`` allows it: a group is pruned in
  all its members or not at all.
  """
  g = graph_lib.build(model, warn=False)
  logits = np.zeros(g.n_groups, bool)     # model outputs, and what a final
  for t in model.outputs:                 # softmax-like layer reads
    key = graph_lib.tensor_key(t)
    logits[g.groups(key)] = True
    for node in g.nodes:
      if node.kind == graph_lib.OPAQUE and key in node.outputs:
        for k in node.inputs:
          logits[g.groups(k)] = True
  nodes = {n.name: n for n in g.nodes}
  kept, skipped = [], {}
  for name in names:
    node = nodes.get(name)
    if node is not None and node.kind == graph_lib.OPAQUE:
      skipped[name] = (f'the channel graph does not understand it '
                       f'({node.reason}); name it in layers= to mask it per '
                       'layer')
      continue
    if node is None or node.kind not in (graph_lib.CONV, graph_lib.DEPTHWISE):
      kept.append(name)
      continue
    out = node.outputs[0]
    if not g.pinned[g.groups(out)].all():
      kept.append(name)
    elif logits[g.groups(out)].any() or node.pin_outputs:
      skipped[name] = 'its channels are the model outputs (logits)'
    else:
      skipped[name] = 'its channels are pinned by ' + ', '.join(
          f'{n.name!r} ({type(n.role_layer).__name__}: {n.reason})'
          for n in g.opaque_touching(g.groups(out))[:3])
  producers = [n for n in g.nodes
               if n.kind in (graph_lib.CONV, graph_lib.DEPTHWISE)]
  live = np.zeros(g.n_groups, bool)
  added: List[str] = []
  chosen = set(kept)
  while True:
    for node in producers:
      if node.name in chosen:
        live[g.groups(node.outputs[0])] = True
    more = [n.name for n in producers if n.name not in chosen and
            live[g.groups(n.outputs[0])].any() and
            not g.pinned[g.groups(n.outputs[0])].all() and can_wrap(n.layer)]
    if not more:
      break
    chosen.update(more)
    added += more
  kept += added
  followers = [n.name for n in g.nodes
               if n.kind == graph_lib.CHANNELWISE and
               prunable.is_follower(n.role_layer) and
               not isinstance(n.layer, WrapperCore) and
               live[g.groups(n.outputs[0])].any()]
  return kept, skipped, added, followers


def _reader_defaults(model, names: List[str], can_wrap: Callable):
  """``_channel_defaults`` for the input-channel structure: the unit is a
  channel group on the reading side, removable only when every layer
  reading it masks it, so the readers of a chosen reader's groups come
  along. A layer reading only the model input (nothing to remove) and a
  DepthwiseConv2D (its input channels are its output channels) are left
  out."""
  g = graph_lib.build(model, warn=False)
  nodes = {n.name: n for n in g.nodes}
  kept, skipped = [], {}
  for name in names:
    node = nodes.get(name)
    if node is not None and node.kind == graph_lib.DEPTHWISE:
      skipped[name] = ('its input channels are its output channels: prune '
                       "them with the 'channel' structure on its producer")
    elif (node is not None and node.kind == graph_lib.CONV and
          g.pinned[g.groups(node.inputs[0])].all()):
      skipped[name] = ('every channel it reads is pinned (the model input, or'
                       ' a layer the channel graph does not understand)')
    else:
      kept.append(name)
  readers = [n for n in g.nodes if n.kind == graph_lib.CONV]
  chosen, added = set(kept), []
  while True:
    live = np.zeros(g.n_groups, bool)
    for node in readers:
      if node.name in chosen:
        live[g.groups(node.inputs[0])] = True
    live &= ~g.pinned
    more = [n.name for n in readers if n.name not in chosen and
            live[g.groups(n.inputs[0])].any() and can_wrap(n.layer)]
    if not more:
      break
    chosen.update(more)
    added += more
  return kept + added, skipped, added, []


def _log_skipped(model, method, skipped: Dict[str, str]) -> None:
  if not skipped:
    return
  by_reason: Dict[str, List[str]] = {}
  for name, reason in skipped.items():
    by_reason.setdefault(reason, []).append(name)
  parts = [f'{", ".join(names[:6])}{" and %d more" % (len(names) - 6) if len(names) > 6 else ""} ({reason})'
           for reason, names in by_reason.items()]
  logger.info('tfprune.prune(%s): not wrapped in model %r: %s',
              type(method).__name__, model.name, '; '.join(parts))


def _fresh(layer, **overrides):
  """A new layer from ``layer``'s config (with ``overrides`` set in it)."""
  config = layer.get_config()
  config.update(overrides)
  return layer.__class__.from_config(config)


def _rebuilt(model, make: Callable) -> tuple:
  """``(new model, [(old layer, new layer), ...])``: ``model`` cloned with
  ``make(layer)`` building each layer anew; the caller copies weights."""
  pairs = []

  def clone(layer):
    new = make(layer)
    pairs.append((layer, new))
    return new

  return generations.of(model).keras.models.clone_model(
      model, clone_function=clone), pairs


def _new_cohort_name(model, method) -> str:
  used = {w.cohort for w in collect_wrappers(model)}
  stem = type(method).__name__.lower()
  return next(f'{stem}_{i}' for i in itertools.count() if f'{stem}_{i}'
              not in used)


def prune(model, method: Optional[methods_base.PruningMethod] = None,
          schedule=None, layers: LayerSelection = None,
          cohort: Optional[str] = None,
          selection: Optional[groups_lib.ChannelSelection] = None,
          ignore: LayerSelection = None):
  """A copy of ``model`` whose selected layers are wrapped for pruning.

  Args:
    model: a Sequential or functional model, tf_keras or Keras 3 (the
      result is of the same generation).
    method: a ``tfprune.methods`` object (default ``Magnitude()``).
    schedule: a tfmot ``PruningSchedule`` (masks follow it during ``fit``
      with the ``PruningStep`` callback); a float sparsity in [0, 1) to prune
      once now; or None to leave the masks to the method.
    layers: which layers to wrap: None (every supported layer the method
      accepts, e.g. only Conv2D for SynapticStrength; for channel methods
      not the ones whose channels are the model's outputs), names,
      layer classes, or a callable ``layer -> bool``. Others stay untouched.
      What None leaves out is listed in one ``logging`` line (logger
      'tfprune', INFO) with the reason.
    cohort: name of this set of wrappers, which share one method
      (default: derived from the method, e.g. 'magnitude_0').
    selection: for channel structures, how coupled channel groups are
      chosen: ranking (uniform or global), round_to, min_channels,
      max_ratio (:class:`tfprune.ChannelSelection`; default uniform, 1, 1,
      1.0). The BatchNormalization layers after pruned channels are wrapped
      as followers, so a pruned channel is exactly 0 and shrink removes it.
    ignore: layers never wrapped (same forms as ``layers``).

  Returns:
    A new, uncompiled model with fresh variables.
  """
  _check_model(model)
  if method is None:
    method = Magnitude()
  if not isinstance(method, methods_base.PruningMethod):
    raise TypeError('method must be a tfprune.methods object such as '
                    f"tfprune.methods.Magnitude('channel'), got {method!r}")
  one_shot = None
  if isinstance(schedule, numbers.Real) and not isinstance(schedule, bool):
    structures.check_sparsity(schedule, 'the sparsity given as schedule')
    one_shot, schedule = float(schedule), None
  schedule = schedules.get(schedule)
  if selection is not None:
    if not isinstance(selection, groups_lib.ChannelSelection):
      raise TypeError('selection must be a tfprune.ChannelSelection, got '
                      f'{selection!r}')
    if not method.prunes_channel_groups:
      raise ValueError(
          f'selection= chooses coupled channel groups; {method!r} does not '
          "prune channels (use a 'channel' or 'input_channel' structure)")
    method.selection = selection
  user_selected = _selector(layers, model, method)
  ignored = _names(ignore, model)
  names = [layer.name for layer in model.layers
           if not isinstance(layer, (generations.layers.InputLayer, WrapperCore))
           and layer.name not in ignored and user_selected(layer)]
  skipped: Dict[str, str] = {}
  if layers is None:
    for layer in model.layers:
      if layer.name in ignored or isinstance(layer, (
          generations.layers.InputLayer, WrapperCore)) or not layer.weights:
        continue
      if not prunable.is_supported(layer):
        if not prunable.is_follower(layer):
          skipped[layer.name] = 'tfprune cannot prune this layer type'
      elif method.refusal(layer) is not None:
        skipped[layer.name] = f'{type(method).__name__} does not prune it'
  followers: List[str] = []
  if method.prunes_channel_groups:
    can_wrap = lambda layer: (layer.name not in ignored and
                              not isinstance(layer, WrapperCore) and
                              prunable.is_supported(layer) and
                              method.refusal(layer) is None)
    defaults = (_reader_defaults if isinstance(
        method.structure, structures.InputChannel) else _channel_defaults)
    kept, pinned, added, followers = defaults(model, names, can_wrap)
    if layers is None:
      names = kept
      skipped.update(pinned)
    else:
      names = names + added
      if added:
        logger.info('tfprune.prune(%s): also wrapped %s: their channels are '
                    'coupled with the chosen layers', type(method).__name__,
                    ', '.join(added))
    followers = [f for f in followers if f not in ignored]
  if layers is not None:
    for name in names:
      layer = model.get_layer(name)
      if prunable.is_supported(layer):
        reason = method.refusal(layer)
        if reason is not None:
          raise ValueError(f'layer {name!r} was named in layers= but '
                           f'{type(method).__name__} cannot prune it: {reason}')
  _log_skipped(model, method, skipped)
  # By name: prepare() may rebuild the model with new layer objects.
  selected = lambda layer, chosen=frozenset(names): layer.name in chosen
  model = method.prepare(model, names)
  cohort = cohort or _new_cohort_name(model, method)
  follower_names = frozenset(followers)
  state_holder = []      # the first wrapper saves the method's run state

  def make(layer):
    if isinstance(layer, WrapperCore):
      if layers is not None and user_selected(layer):
        raise ValueError(f'layer {layer.layer.name!r} is already wrapped; '
                         'strip the model first to prune it again')
      new = type(layer).from_config(layer.get_config())
    elif not isinstance(layer, generations.layers.InputLayer) and selected(layer):
      prunable.check_supported(layer)
      new = PruningWrapper(_fresh(layer), method=method, schedule=schedule,
                           cohort=cohort, holds_state=not state_holder)
      state_holder.append(new)
    elif layer.name in follower_names:
      new = PruningWrapper(_fresh(layer), method=method, schedule=schedule,
                           cohort=cohort, follower=True)
    else:
      new = _fresh(layer)
    return new

  new_model, pairs = _rebuilt(model, make)
  wrapped = []
  for old, new in pairs:
    if isinstance(new, WrapperCore) and not isinstance(old, WrapperCore):
      new.layer.set_weights(old.get_weights())
      wrapped.append(new)
    else:
      new.set_weights(old.get_weights())
  if not any(not w.follower for w in wrapped):
    why = '; '.join(f'{n}: {r}' for n, r in skipped.items())
    raise ValueError(f'no layer of model {model.name!r} was selected for '
                     'pruning; check the layers= argument' +
                     (f' (left out: {why})' if why else ''))
  wrapped = [w for w in wrapped if not w.follower]
  method.attach(new_model, wrapped)
  method.on_wrapped(wrapped, model)
  if one_shot is not None:
    method.update_masks(wrapped, one_shot, 0)
  return new_model


def strip(model):
  """A plain model of the same architecture with masks and gates folded in.

  Every wrapper becomes its inner layer (same name) whose weights equal the
  effective weights the wrapper computed with; other layers are copied.
  A subclassed model cannot be rebuilt from its layers, so it is stripped
  in place instead and returned (the caller's model changes).
  """
  _check_keras_model(model)
  if is_subclassed(model):
    return _strip_in_place(model)
  _check_model(model)
  new_model, pairs = _rebuilt(model, lambda layer: _fresh(
      layer.layer if isinstance(layer, WrapperCore) else layer))
  for old, new in pairs:
    if isinstance(old, WrapperCore):
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


_HALF = ('float16', 'bfloat16')


def _layers_below_float32(model) -> List[str]:
  """Names of the layers (nested models' included) that compute in float16
  or bfloat16 (a mixed precision policy)."""
  found = []
  for layer in model.layers:
    if isinstance(layer, generations.MODEL):
      found += _layers_below_float32(layer)
    elif str(getattr(layer, 'compute_dtype', 'float32')) in _HALF:
      found.append(layer.name)
  return found


def in_float32(model):
  """``model`` rebuilt to compute in float32, with its weights (``model``
  itself when it does already).

  A model built under a mixed precision policy keeps float32 weights but
  computes in float16 or bfloat16; TFLite has no bfloat16 kernels (the
  converter refuses every op) and converts float16 compute as float32
  anyway, so ``tflite_export.convert`` exports the float32 model. Every
  layer is rebuilt from its config with ``dtype='float32'``.
  """
  half = _layers_below_float32(model)
  if not half:
    return model
  if is_subclassed(model):
    raise ValueError(
        f'model {model.name!r} computes in half precision (layers {half[:3]}) '
        'and is subclassed, so it cannot be rebuilt in float32 for TFLite. '
        "Fix: build it under keras.mixed_precision.set_global_policy("
        "'float32'), load its weights (model.get_weights()) and convert that")
  new_model, pairs = _rebuilt(model,
                              lambda layer: _fresh(layer, dtype='float32'))
  for old, new in pairs:
    new.set_weights(old.get_weights())
  left = _layers_below_float32(new_model)
  if left:
    raise ValueError(
        f'model {model.name!r}: layers {left[:3]} still compute in half '
        'precision after rebuilding it in float32 (inside a nested model). '
        'Fix: build the model under keras.mixed_precision.set_global_policy('
        "'float32'), copy the weights (set_weights) and convert that")
  return new_model


_KERAS_INTERNALS = ('_self_', '_obj_reference_counts', '_layers',
                    '_compiled_trainable_state')


def _wrapper_slots(layer) -> List[tuple]:
  """``(container, key, wrapper)`` for each PruningWrapper held directly by
  ``layer``: as an attribute, or an item of a list or dict attribute."""
  slots = []
  for name, value in list(vars(layer).items()):
    if name.startswith(_KERAS_INTERNALS):
      continue
    if isinstance(value, WrapperCore):
      slots.append((layer, name, value))
    elif isinstance(value, (list, dict)) or type(value).__name__ in (
        'ListWrapper', 'DictWrapper', '_DictWrapper'):
      keys = value.keys() if hasattr(value, 'keys') else range(len(value))
      slots += [(value, k, value[k]) for k in list(keys)
                if isinstance(value[k], WrapperCore)]
  return slots


def _strip_in_place(model):
  """Fold every wrapper's effective weights into its inner layer and put
  that layer where the wrapper was (subclassed models only)."""
  wrappers = collect_wrappers(model, followers=True)
  owners = [l for l in model._flatten_layers(include_self=True)  # pylint: disable=protected-access
            if not isinstance(l, WrapperCore)]
  slots = [slot for owner in owners for slot in _wrapper_slots(owner)]
  found = {id(w) for _, _, w in slots}
  hidden = [w.name for w in wrappers if id(w) not in found]
  if hidden:           # refuse before anything changes
    raise TypeError(
        f'cannot strip model {model.name!r} in place: the wrappers {hidden} '
        'are not held as an attribute (or in a list or dict attribute) of '
        'the model or one of its layers. Keep each PruningWrapper as '
        'self.<name> = tfprune.PruningWrapper(...).')
  for wrapper in wrappers:
    for attr, value in wrapper.effective_weights().items():
      getattr(wrapper.layer, attr).assign(value)
  for container, key, wrapper in slots:
    if isinstance(container, generations.LAYER):
      tracked = container._self_tracked_trackables  # pylint: disable=protected-access
      at = next((i for i, l in enumerate(tracked) if l is wrapper), None)
      setattr(container, key, wrapper.layer)   # re-makes the tracked list
      tracked = container._self_tracked_trackables  # pylint: disable=protected-access
      if at is not None and tracked[-1] is wrapper.layer:  # keep layer order
        tracked.insert(at, tracked.pop())
    else:
      container[key] = wrapper.layer
  model._reset_compile_cache()  # pylint: disable=protected-access
  logger.info('tfprune.strip: %s is a subclassed model; stripped %d '
              'wrappers in place', model.name, len(wrappers))
  return model
