"""Keras generations: tf_keras (Keras 2) and Keras 3, told apart here only.

tfprune's structures, methods, groups and surgery are written once. What
differs between ``import tf_keras`` and ``import keras`` (Keras 3, on the
TensorFlow backend) is looked up through this module:

* :func:`of` -- the :class:`Generation` an object belongs to (its ``keras``
  module, how it registers classes, aggregates and stores variables);
* :data:`layers` -- ``isinstance(layer, generations.layers.Dense)`` is true
  for a Dense of either generation (each attribute is a tuple of classes);
* :data:`MODEL`, :data:`SEQUENTIAL` -- the same for models;
* :func:`substitution_attr` -- the attribute holding a weight (Keras 3
  layers expose ``kernel`` as a property over ``_kernel``);
* the functional-graph internals: :func:`graph_nodes`, :func:`node_layer`,
  :func:`node_inputs`, :func:`node_arguments`.

Keras 3 support is TensorFlow-backend only: masks, gates and the step
counter use TensorFlow ops, which the other backends cannot run.
"""

from __future__ import annotations

import dataclasses
import json
import types
import zipfile
from typing import Any, List, Optional, Tuple

import keras as keras3
import tensorflow as tf
import tf_keras


@dataclasses.dataclass(frozen=True)
class Generation:
  """One Keras generation and what tfprune needs to know about it."""

  name: str                  # 'tf_keras' or 'keras3'
  keras: types.ModuleType    # the module: ``gen.keras.layers.Dense``
  first_replica: Any         # variable aggregation "read from replica 0"

  @property
  def is_keras3(self) -> bool:
    return self.name == 'keras3'

  def register(self, cls: type, name: Optional[str] = None) -> type:
    """Register ``cls`` for loading saved models, as ``tfprune>name``
    (default: the class name)."""
    if self.is_keras3:
      register = self.keras.saving.register_keras_serializable
    else:
      register = self.keras.utils.register_keras_serializable
    return register('tfprune', name)(cls)

  def stored_value(self, variable) -> tf.Tensor:
    """The variable's value in its stored dtype, even inside a mixed
    precision ``call`` (where reading it casts to the compute dtype)."""
    inner = getattr(variable, '_value' if self.is_keras3 else '_variable',
                    None)
    return tf.convert_to_tensor(variable if inner is None else inner)

  def storage_dtype(self, variable) -> tf.DType:
    """The dtype a variable is stored in (float32 under mixed precision).

    Inside ``build``/``call`` both generations report the *compute* dtype
    (float16) for autocast variables; masks and gates must be made and
    written in the stored one.
    """
    if self.is_keras3:
      return tf.as_dtype(getattr(variable, '_dtype', variable.dtype))
    return getattr(variable, 'true_dtype', variable.dtype)

  def default_training(self):
    """What ``training=None`` means inside a layer's ``call``: tf_keras
    reads its learning phase; Keras 3 passes ``training`` down explicitly,
    so None there is inference."""
    if self.is_keras3:
      return False
    return self.keras.backend.learning_phase()

  def add_penalty(self, layer, variable, penalty) -> None:
    """Add ``penalty(variable)`` to ``layer``'s losses at every step.

    tf_keras takes a loss callable; Keras 3 only a variable's regularizer
    (added to one it may already have).
    """
    if not self.is_keras3:
      layer.add_loss(lambda: penalty(variable))
      return
    previous = variable.regularizer
    variable.regularizer = (penalty if previous is None else
                            lambda value: previous(value) + penalty(value))

  def steps_per_execution(self, model) -> int:
    """``compile(steps_per_execution=k)``'s k (1 when not compiled)."""
    if self.is_keras3:
      return max(int(getattr(model, 'steps_per_execution', 1) or 1), 1)
    value = getattr(model, '_steps_per_execution', None)
    return 1 if value is None else max(int(value.numpy()), 1)


TF_KERAS = Generation('tf_keras', tf_keras,
                      tf.VariableAggregation.ONLY_FIRST_REPLICA)
KERAS3 = Generation('keras3', keras3, 'only_first_replica')
ALL = (TF_KERAS, KERAS3)


def of(obj) -> Generation:
  """The generation of a Keras layer or model (TypeError for anything else)."""
  if isinstance(obj, keras3.layers.Layer):
    if keras3.backend.backend() != 'tensorflow':
      raise RuntimeError(
          f'Keras 3 runs on the {keras3.backend.backend()!r} backend here; '
          'tfprune needs its TensorFlow backend. Fix: set KERAS_BACKEND='
          'tensorflow before Python starts (or in ~/.keras/keras.json).')
    return KERAS3
  if isinstance(obj, tf_keras.layers.Layer):
    return TF_KERAS
  raise TypeError(
      f'expected a Keras layer or model, got {type(obj).__name__}. tfprune '
      'works on tf_keras models (`import tf_keras as keras`) and on Keras 3 '
      'models (`import keras`, TensorFlow backend).')


def keras_generation(obj) -> str:
  """'tf_keras' or 'keras3': the Keras generation of a layer or model."""
  return of(obj).name


def of_saved(path: str) -> Generation:
  """The generation that wrote a saved model: a ``.keras`` file records its
  Keras version; ``.h5`` files and SavedModel folders are tf_keras'."""
  if str(path).endswith('.keras') and zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as archive:
      try:
        meta = json.loads(archive.read('metadata.json'))
      except KeyError:
        return TF_KERAS
    if str(meta.get('keras_version', '')).startswith('3.'):
      return KERAS3
  return TF_KERAS


def load_model(path: str, custom_objects=None):
  """Load a saved model with the Keras generation that wrote it
  (uncompiled)."""
  generation = of_saved(path)
  return generation.keras.models.load_model(
      path, custom_objects=custom_objects, compile=False)


def of_class(cls: type) -> Generation:
  """The generation of a Keras layer class."""
  if issubclass(cls, keras3.layers.Layer):
    return KERAS3
  if issubclass(cls, tf_keras.layers.Layer):
    return TF_KERAS
  raise TypeError(f'{cls.__name__} is not a Keras layer class')


def named(name: str) -> Generation:
  """The generation called ``name`` ('tf_keras' or 'keras3')."""
  for generation in ALL:
    if generation.name == name:
      return generation
  raise ValueError(f'unknown Keras generation {name!r}; use one of '
                   f'{[g.name for g in ALL]}')


class _Classes:
  """``layers.Dense`` -> ``(tf_keras.layers.Dense, keras.layers.Dense)``:
  one isinstance check for both generations (a class only one of them has
  gives a 1-tuple)."""

  def __getattr__(self, name: str) -> Tuple[type, ...]:
    found = tuple(getattr(g.keras.layers, name) for g in ALL
                  if hasattr(g.keras.layers, name))
    if not found:
      raise AttributeError(f'no Keras layer class {name!r}')
    self.__dict__[name] = found
    return found


layers = _Classes()
MODEL = (tf_keras.Model, keras3.Model)
SEQUENTIAL = (tf_keras.Sequential, keras3.Sequential)
LAYER = (tf_keras.layers.Layer, keras3.layers.Layer)
CALLBACK = (tf_keras.callbacks.Callback, keras3.callbacks.Callback)
# tfprune's callbacks derive from this one class: tf_keras' fit needs its
# Callback base, and Keras 3's fit takes any object with the hooks.
Callback = tf_keras.callbacks.Callback


def is_graph_network(model) -> bool:
  """A built Sequential or functional model (not subclassed)."""
  if isinstance(model, keras3.Model):
    if isinstance(model, keras3.Sequential):
      return model.built and bool(getattr(model, '_functional', None))
    return isinstance(model, keras3.src.models.functional.Functional)
  return bool(getattr(model, '_is_graph_network', False))


def depthwise_attr(layer) -> str:
  """The attribute holding a DepthwiseConv2D's kernel (Keras 3 calls it
  ``kernel``, tf_keras ``depthwise_kernel``)."""
  return ('kernel' if isinstance(layer, keras3.layers.DepthwiseConv2D)
          else 'depthwise_kernel')


def substitution_attr(layer, attr: str) -> str:
  """Where ``layer``'s code reads the weight ``attr`` from: ``attr``
  itself, or the attribute behind it where ``attr`` is a read-only
  property (Keras 3's ``kernel`` over ``_kernel``)."""
  if isinstance(getattr(type(layer), attr, None), property):
    hidden = '_' + attr
    if hidden not in vars(layer):
      raise TypeError(
          f'layer {layer.name!r} ({type(layer).__name__}) computes its {attr!r}'
          ' in a property, so tfprune cannot substitute the masked weight. '
          'Leave it out with prune(..., layers=...).')
    return hidden
  return attr


def activation_name(fn) -> Optional[str]:
  """The registered name of an activation function of either generation,
  or None (a lambda, an unregistered callable)."""
  for generation in ALL:
    try:
      name = generation.keras.activations.serialize(fn)
    except (ValueError, TypeError, AttributeError):
      continue
    if isinstance(name, str):
      return name
  return None


def optimizer_index(optimizer, variable) -> Tuple[Optional[int], int]:
  """``(position of variable in the optimizer's per-variable state lists,
  length of those lists)``; ``(None, 0)`` before the optimizer is built or
  for a variable it does not train."""
  # Both key the lists by ``_var_key`` (Keras 3 on TensorFlow: the
  # variable's unique id, not ``id()``).
  attr = ('_trainable_variables_indices'
          if isinstance(optimizer, keras3.optimizers.Optimizer)
          else '_index_dict')
  indices = getattr(optimizer, attr, None) or {}
  key = optimizer._var_key(variable) if indices else None  # pylint: disable=protected-access
  index = indices.get(key)
  return (None, 0) if index is None else (int(index), len(indices))


# --- functional-graph internals ----------------------------------------------
def is_op(layer) -> bool:
  """A TensorFlow/Keras op in a functional graph (``x + y``, ``tf.nn.relu``):
  a tf_keras ``TFOpLambda`` or a Keras 3 operation that is not a layer."""
  if isinstance(layer, keras3.layers.Layer):
    return False
  if isinstance(layer, keras3.Operation):
    return True
  return type(layer).__name__ in ('TFOpLambda', 'SlicingOpLambda')


def op_symbol(layer) -> str:
  """What an op computes: tf_keras' TF symbol (``math.add``) or
  ``ops.<Class>`` for a Keras 3 operation (``ops.Add``)."""
  if isinstance(layer, keras3.Operation):
    return f'ops.{type(layer).__name__}'
  return getattr(layer, 'symbol', '')


def graph_nodes(model) -> List:
  """The model's call nodes, inputs first (by decreasing depth)."""
  if isinstance(model, keras3.Sequential):
    model = model._functional  # pylint: disable=protected-access
  by_depth = model._nodes_by_depth  # pylint: disable=protected-access
  return [n for d in sorted(by_depth, reverse=True) for n in by_depth[d]]


def node_layer(node):
  """The layer (Keras 3: operation) a node calls."""
  return getattr(node, 'operation', None) or node.layer


def node_inputs(node) -> list:
  """The symbolic tensors a node reads, flattened."""
  if hasattr(node, 'keras_inputs'):
    return list(node.keras_inputs)
  return list(node.input_tensors)


def node_arguments(node) -> Tuple[tuple, dict]:
  """``(args, kwargs)`` a node was called with (symbolic tensors in place)."""
  if hasattr(node, 'arguments'):
    return tuple(node.arguments.args), dict(node.arguments.kwargs)
  return tuple(node.call_args), dict(node.call_kwargs)


def call_count(layer) -> int:
  """How many times ``layer`` was called in model graphs."""
  return len(layer._inbound_nodes)  # pylint: disable=protected-access


def output_shape(layer) -> Optional[Tuple]:
  """The output shape of a layer called once in a model (the first output
  where there are several), or None when it has none."""
  try:
    if isinstance(layer, keras3.layers.Layer):
      outputs = layer.output
      shape = tensor_shape(outputs[0] if isinstance(outputs, (list, tuple))
                           else outputs)
    else:
      shape = layer.output_shape
      shape = shape[0] if isinstance(shape, list) else shape
  except (AttributeError, RuntimeError, ValueError):
    return None
  return tuple(shape)


def tensor_shape(tensor) -> Tuple:
  """A symbolic tensor's shape as a tuple (None for unknown dims)."""
  shape = tensor.shape
  return tuple(shape.as_list()) if hasattr(shape, 'as_list') else tuple(shape)
