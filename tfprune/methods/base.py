"""The method contract: HOW structures are scored and masks or gates set.

A method does not decide WHEN or HOW MUCH (that is the schedule's job) and
does not apply masks (the wrapper does). It creates optional trainable gates,
scores structures, and writes new masks when the schedule says so.
"""

from __future__ import annotations

import abc
from typing import List, Optional, Sequence

import tensorflow as tf

from tfprune import groups as groups_lib
from tfprune import registry, structures

# The registry lives below the wrapper; methods register through it.
register = registry.register
get = registry.get
names = registry.names
serialize = registry.serialize
deserialize = registry.deserialize


class PruningMethod(abc.ABC):
  """Base class of pruning methods.

  Subclasses set ``gate_structure`` to get one trainable gate per unit of
  that structure (multiplied into the weight like the mask), and override
  :meth:`score` and, if their rule is not "keep the best-scored units of
  each layer", :meth:`update_masks`.
  """

  gate_structure = None           # a Structure for trainable gates, or None
  zero_pruned_weights = True      # write 0 into weights when masking them
  # How channel groups are chosen (set by ``prune(..., selection=)``).
  selection = groups_lib.ChannelSelection()

  def __init__(self, structure: structures.StructureLike = 'weight'):
    self.structure = structures.get(structure)
    self.channel_groups: Optional[groups_lib.ChannelGroups] = None

  @property
  def prunes_channel_groups(self) -> bool:
    """Whether masks come from coupled channel groups (output channels, or
    the input channels of the layers reading them)."""
    return isinstance(self.structure, (structures.Channel,
                                       structures.InputChannel))

  @property
  def reparameterizes_weight(self) -> bool:
    """Whether :meth:`effective_weight` is more than ``weight * factor``
    (the wrapper can then not skip the forward product of kept zeros)."""
    return type(self).effective_weight is not PruningMethod.effective_weight

  def attach(self, model, wrappers: Sequence) -> None:
    """Compute the channel groups of ``wrappers`` in ``model`` (called by
    ``prune`` and by ``PruningStep`` when training begins)."""
    if self.prunes_channel_groups:
      self.channel_groups = groups_lib.build(model, wrappers, self.structure)

  # --- wrapper hooks -------------------------------------------------------
  def refusal(self, layer) -> Optional[str]:
    """Why this method cannot prune ``layer`` (a supported one), or None.

    Checked when wrapping: ``prune(..., layers=None)`` leaves refused layers
    out (and logs the reason); a refused layer named in ``layers=`` raises
    a ValueError with it, before any training.
    """
    accepts = getattr(self, 'accepts', None)   # the older hook, if defined
    if accepts is not None and not accepts(layer):
      return f'{type(self).__name__}.accepts() returned False for it'
    return None

  def prepare(self, model, names: Sequence[str]):
    """A model to wrap instead of ``model`` (same layer names), or ``model``.

    Called by ``prune`` before wrapping the layers ``names``; for methods
    that change the layers around the wrapped ones (Synaptic Strength drops
    the scale of the BatchNormalization after a conv).
    """
    del names
    return model

  def build(self, wrapper) -> None:
    """Called once the wrapper's masks (and gates) exist."""

  def gate_initializer(self):
    """Initial gate values (a Keras initializer), for custom gated methods."""
    return 'ones'

  def gate_regularizer(self):
    return None

  def gate_value(self, gate: tf.Tensor, wrapper) -> tf.Tensor:
    """What a gate contributes to the effective weight (e.g. thresholded);
    ``wrapper`` gives access to its state (e.g. ``pruning_step``). Runs in
    the layer's call without autograph: branch on tensors with ``tf.where``
    or ``tf.cond``, not a Python ``if``."""
    del wrapper
    return gate

  def effective_weight(self, weight: tf.Tensor, factor: tf.Tensor,
                       layout) -> tf.Tensor:
    """The weight the layer computes with: ``weight`` times ``factor`` (its
    mask, times its gate for gated methods; broadcastable to ``weight``).
    A method that re-parameterises the weight (unit-norm 2-D kernels)
    overrides this, and can fold a per-unit divisor into ``factor`` before
    the one kernel-sized product. ``layout`` names the weight's axes. Like
    :meth:`gate_value`, it runs without autograph; the wrapper gives the
    weight as stored (float32 under mixed precision) and casts the result
    to the layer's compute dtype."""
    del layout
    return weight * factor

  def on_wrapped(self, wrappers: Sequence, model) -> None:
    """Called by ``prune`` once the layers of a group are wrapped.

    ``model`` is the unwrapped model the wrappers were made from (the one
    given to ``prune``, or what :meth:`prepare` returned for it). Methods whose
    masks are fixed before training (Small-World) set them here.
    """

  def fit_callbacks(self, validation) -> list:
    """Extra ``fit`` callbacks ``tfprune.train`` adds (``validation`` is
    ``(x, y)`` or None); for methods driven by data statistics."""
    del validation
    return []

  def report_info(self) -> Optional[dict]:
    """Method facts ``tfprune.report`` lists under ``methods`` (or None)."""
    return None

  # --- scoring and masks -----------------------------------------------------
  @abc.abstractmethod
  def score(self, wrapper, index: int) -> tf.Tensor:
    """Scores of the units of prunable weight ``index`` (mask shape)."""

  def channel_scores(self, wrapper) -> tf.Tensor:
    """Importance of each output channel of a producer (mask shape); the
    core reduces these over a channel group."""
    return self.score(wrapper, 0)

  def update_masks(self, wrappers: Sequence, sparsity: Optional[float],
                   step: int) -> None:
    """Write masks at a schedule point.

    ``sparsity`` is the schedule's target, or None when the schedule only
    says when (``tfprune.schedules.Periodic``); methods with their own
    budget or rule take None and refuse a number. The default needs a
    target: channel structures mask the least important channel groups
    (:mod:`tfprune.groups`), others keep the best-scored units per layer.
    """
    del step
    if sparsity is None:
      raise ValueError(
          f'{type(self).__name__} prunes to a target sparsity, but the '
          'schedule gives none (tfprune.schedules.Periodic only says when): '
          'use a tfmot schedule such as PolynomialDecay or ConstantSparsity, '
          'or a one-shot float.')
    structures.check_sparsity(sparsity)
    if self.prunes_channel_groups:
      if self.channel_groups is None:
        raise RuntimeError(
            f'{type(self).__name__}: channel groups were not computed; masks '
            'are written by tfprune.prune(...) and tfprune.PruningStep, which'
            ' call method.attach(model, wrappers) first.')
      groups_lib.update_masks(self, self.channel_groups, sparsity,
                              self.selection)
      return
    for wrapper in wrappers:
      for index, weight in enumerate(wrapper.prunable):
        scores = self.score(wrapper, index)
        wrapper.assign_mask(
            index, self.structure.select(scores, sparsity, weight.layout))

  # --- training hooks ------------------------------------------------------
  def on_train_begin(self, wrappers: Sequence, model) -> None:
    """Called by PruningStep before the first batch of every fit()."""

  def on_epoch_end(self, wrappers: Sequence, epoch: int, model) -> None:
    """Called by PruningStep after every epoch."""

  # --- serialisation -------------------------------------------------------
  def get_config(self) -> dict:
    """The constructor arguments (the same in every wrapper's config)."""
    return {'structure': str(self.structure)}

  def get_state(self) -> dict:
    """Run state, JSON-able: what wrapping or training decided that the
    masks alone do not say (a chosen topology, measured statistics, a
    history). Saved once per cohort, with its first wrapper."""
    return {}

  def set_state(self, state: dict) -> None:
    """Restore :meth:`get_state`'s dict (called when a model is loaded)."""
    if state:
      raise ValueError(f'{type(self).__name__} keeps no run state, got '
                       f'{sorted(state)}')

  # Config keys an older tfprune saved that are run state now.
  legacy_state_keys: tuple = ()

  @classmethod
  def from_config(cls, config: dict) -> 'PruningMethod':
    config = dict(config)
    state = {k: config.pop(k) for k in cls.legacy_state_keys if k in config}
    method = cls(**config)
    if state:
      method.set_state(state)
    return method

  def __repr__(self):
    args = ', '.join(f'{k}={v!r}' for k, v in self.get_config().items())
    return f'{type(self).__name__}({args})'


def check_choice(name: str, value, choices: Sequence) -> None:
  """Raise a ValueError naming the argument and its choices unless ``value``
  is one of them (constructor checks of the methods)."""
  if value not in choices:
    raise ValueError(f'{name} must be one of {tuple(choices)}, got {value!r}')


def global_keep_top(score_list: List[tf.Tensor],
                    sparsity: float) -> List[tf.Tensor]:
  """Masks for several score tensors ranked together (one threshold)."""
  flat = tf.concat([tf.reshape(s, [-1]) for s in score_list], axis=0)
  kept = structures.keep_top(flat, sparsity)
  sizes = [int(tf.size(s)) for s in score_list]
  return [tf.reshape(part, tf.shape(s))
          for part, s in zip(tf.split(kept, sizes), score_list)]
