"""Magnitude pruning on any structure kind (the baseline).

On the ``weight`` kind with a tfmot schedule it chooses exactly the masks of
tfmot's ``prune_low_magnitude``: per layer, keep every weight whose |w| is at
least the k-th largest, ``k = max(round(n * (1 - sparsity)), 1)``, and write
zeros into the pruned weights. On other kinds a unit's score is the
``reduction`` (default L1 norm) of its weights.

``scope='global'`` ranks the units of all layers of one ``prune()`` call
together (use ``reduction='mean_abs'`` when units differ in size). On the
``channel`` kind the unit is a group of coupled channels
(:mod:`tfprune.groups`) and ``scope='global'`` means
``ChannelSelection(ranking='global')``. The
``layer`` kind is always global: one unit per layer, ranked by mean |w|, and
``sparsity`` is the fraction of layers removed.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from tfprune import groups as groups_lib
from tfprune import structures
from tfprune.methods import base

_SCOPES = ('layer', 'global')


@base.register
class Magnitude(base.PruningMethod):
  """Prune the units whose weights are smallest in magnitude."""

  def __init__(self, structure: structures.StructureLike = 'weight',
               reduction: str = 'l1', scope: str = 'layer'):
    super().__init__(structure)
    base.check_choice('scope', scope, _SCOPES)
    if isinstance(self.structure, structures.Layer):
      scope, reduction = 'global', 'mean_abs'
    if scope == 'global' and isinstance(self.structure, structures.NM):
      raise ValueError('n:m keeps n of every m inputs inside each layer; '
                       "it has no global ranking: use scope='layer'")
    self.reduction = reduction
    self.scope = scope
    if scope == 'global' and self.prunes_channel_groups:
      self.selection = groups_lib.ChannelSelection(ranking='global')
    structures.Weight().reduce([1.0], structures.DENSE_LAYOUT, reduction)

  def score(self, wrapper, index):
    weight = wrapper.prunable[index]
    # Read once into numpy: the reduction is then numpy, not eager TF ops.
    value = (weight.variable.numpy() if tf.executing_eagerly() else
             weight.variable)
    return self.structure.reduce(value, weight.layout, self.reduction)

  def update_masks(self, wrappers: Sequence, sparsity: float, step: int):
    if self.scope == 'layer' or self.prunes_channel_groups:
      return super().update_masks(wrappers, sparsity, step)
    structures.check_sparsity(sparsity)
    slots = [(w, i) for w in wrappers for i in range(len(w.prunable))]
    masks = base.global_keep_top([self.score(w, i) for w, i in slots],
                                 sparsity)
    for (wrapper, index), mask in zip(slots, masks):
      wrapper.assign_mask(index, mask)

  def get_config(self):
    return {'structure': str(self.structure), 'reduction': self.reduction,
            'scope': self.scope}
