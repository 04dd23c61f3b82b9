"""Channel groups: coupled channels are ranked and masked as one unit.

A channel that a residual ``Add`` joins to its partner, a ``Concatenate``
slice, a depthwise conv's input and output, a squeeze-excite ``Multiply``
and the BatchNormalization after a conv are one *channel group* of the
channel graph (:mod:`tfprune.graph`). Removing the channel in one layer and
keeping it in its partner removes nothing, so channel pruning decides per
group: a group is pruned in every member or in none, and what the masks
promise is exactly what ``shrink`` removes.

Terms (Torch-Pruning's, mapped onto the graph):

* *member*: a wrapped producer (Conv1D/Conv2D/Dense/SeparableConv2D output
  channel, DepthwiseConv2D output ``c*M+m``) or a BatchNormalization
  *follower* whose channel lies in the group. For the ``'input_channel'``
  structure the *scored* members are the wrapped readers instead (the
  Conv1D/Conv2D/Dense/SeparableConv2D that take the channel as an input;
  a Dense after Flatten reads it at every position): a channel that none
  of its readers uses is removed by ``shrink`` from its producers too, so a
  group is prunable when every reader of it is wrapped in this call.
* *prunable group*: not pinned (model inputs and outputs, layers the graph
  does not understand) and every producer of it is wrapped in this
  ``prune`` call. Only these count: a requested sparsity ``s`` removes
  ``round(s * n)`` of the ``n`` prunable groups.
* *coupled set*: the prunable groups made by the same set of producers (one
  conv; a residual stage's convs together; ...). ``round_to``, the floors
  and uniform ranking work per coupled set.

Importance of a group (the method says how important each of its own
channels is; this module reduces): each producer member's channel scores are
divided by their mean over that member's channels (so layers of different
size and weight scale are comparable, Torch-Pruning's ``normalizer='mean'``),
and a group's importance is the mean over its producer members
(``group_reduction='mean'``). Ties, e.g. PSP alphas that all sit at 1, are
broken by the group's L1 weight norm, then by position.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tfprune import generations
from tfprune import graph as graph_lib
from tfprune import structures

RANKINGS = ('uniform', 'global')
logger = logging.getLogger('tfprune')


@dataclasses.dataclass(frozen=True)
class ChannelSelection:
  """Which channel groups to mask, given their importance (the core policy).

  Args:
    ranking: 'uniform' removes the requested fraction from every coupled
      set; 'global' ranks all groups of the ``prune`` call together.
    round_to: every coupled set keeps a multiple of this many channels; the
      kept count is rounded to the nearest multiple (halves up, never 0). A
      set smaller than ``2 * round_to`` uses the largest halving of
      ``round_to`` that fits twice (8 -> 4 for an 8-channel squeeze-excite
      conv), so small layers are still pruned.
    min_channels: every coupled set keeps at least this many channels.
    max_ratio: no coupled set loses more than this fraction of its channels
      (with global ranking, the floor that stops a layer collapsing).
  """

  ranking: str = 'uniform'
  round_to: int = 1
  min_channels: int = 1
  max_ratio: float = 1.0

  def __post_init__(self):
    if self.ranking not in RANKINGS:
      raise ValueError(f'ranking must be one of {RANKINGS}, got '
                       f'{self.ranking!r}')
    for name in ('round_to', 'min_channels'):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
          or value < 1:
        raise ValueError(f'{name} must be an integer >= 1, got {value!r}')
    if not 0.0 < float(self.max_ratio) <= 1.0:
      raise ValueError(f'max_ratio must be in (0, 1], got {self.max_ratio}: '
                       'it is the largest fraction of a coupled set removed')

  def get_config(self) -> dict:
    return dataclasses.asdict(self)


@dataclasses.dataclass
class _Member:
  wrapper: object
  groups: np.ndarray        # graph group id of every mask entry (flat)
  scored: bool              # a producer (or reader); False: a follower


@dataclasses.dataclass
class ChannelGroups:
  """The prunable groups of one ``prune`` call and the members masking them."""

  members: List[_Member]
  independent: List[object]   # wrappers masked per layer (see build)
  prunable: np.ndarray      # ids of the prunable graph groups
  coupled: np.ndarray       # coupled-set index of each prunable group
  sets: List[Tuple[str, ...]]   # scored layer names of each coupled set
  n_groups: int
  structure: structures.Structure = dataclasses.field(
      default_factory=structures.Channel)   # what a mask entry is

  @property
  def n_prunable(self) -> int:
    return int(self.prunable.size)

  def set_sizes(self) -> np.ndarray:
    return np.bincount(self.coupled, minlength=len(self.sets))


def _flat_holder(model, wrappers: Sequence):
  """The flat functional model that calls ``wrappers``: ``model`` itself, a
  model nested in it, or None (a subclassed model)."""
  candidates = [model] + [l for l in model.layers
                          if isinstance(l, generations.MODEL)]
  for candidate in candidates:
    try:
      graph_lib.check_flat(candidate)
    except TypeError:
      continue
    layers = {id(l) for l in candidate.layers}
    if all(id(w) in layers for w in wrappers):
      return candidate
  return None


def _zero_not_kept(layer) -> bool:
  """True when a producer's activation maps a zero pre-activation to a
  non-zero constant (sigmoid: 0.5): masking its channel leaves a constant."""
  activation = getattr(graph_lib.unwrapped(layer), 'activation', None)
  if activation is None:
    return False
  try:
    value = np.asarray(activation(tf.zeros([1, 1], tf.float32)))
  except Exception:  # pylint: disable=broad-except
    return True                    # unknown: not safe to call it zero
  return bool(np.any(value != 0))


def build(model, wrappers: Sequence,
          structure: Optional[structures.Structure] = None) -> ChannelGroups:
  """The channel groups that ``wrappers`` (one ``prune`` call) can remove;
  the BatchNormalization followers of their group are found in ``model``.
  ``structure`` is ``Channel`` (output channels, the default) or
  ``InputChannel`` (the readers' input channels).

  A model the channel graph cannot read (subclassed) gets per-layer masks
  for every wrapper, with a warning.
  """
  structure = structure or structures.Channel()
  holder = _flat_holder(model, wrappers)
  if holder is None:
    warnings.warn(
        f'tfprune: model {model.name!r} is not a flat functional model, so '
        'coupled channels cannot be grouped; channel masks are chosen per '
        'layer and shrink may not remove them.', UserWarning, stacklevel=3)
    return ChannelGroups([], list(wrappers), np.zeros(0, np.int64),
                         np.zeros(0, np.int64), [], 0)
  g = graph_lib.build(holder, warn=False)
  if isinstance(structure, structures.InputChannel):
    return _build_readers(g, wrappers)
  ours = {id(w) for w in wrappers}
  cohort = wrappers[0].cohort if wrappers else None
  ours.update(id(node.layer) for node in g.nodes
              if getattr(node.layer, 'follower', False) and
              node.layer.cohort == cohort)
  members: List[_Member] = []
  producers_of: Dict[int, set] = {}
  blocked = np.zeros(g.n_groups, bool)     # a masked channel would not be 0
  blockers: Dict[str, str] = {}
  gated = np.zeros(g.n_groups, bool)       # multiplied with its partners
  for node in g.nodes:
    if node.kind == graph_lib.MERGE and (
        isinstance(node.role_layer, generations.layers.Multiply) or
        getattr(node.role_layer, 'symbol', '') == 'math.multiply'):
      gated[g.groups(node.outputs[0])] = True
  for node in g.nodes:
    is_bn = (node.kind == graph_lib.CHANNELWISE and
             isinstance(node.role_layer, generations.layers.BatchNormalization))
    if node.kind not in (graph_lib.CONV, graph_lib.DEPTHWISE) and not is_bn:
      continue
    out_groups = g.groups(node.outputs[0])
    mine = id(node.layer) in ours
    if is_bn:
      if mine:                                      # a follower
        members.append(_Member(node.layer, out_groups, scored=False))
      else:
        blocked[out_groups] = True
        blockers[node.name] = 'a BatchNormalization that is not masked with it'
      continue
    if not mine:
      blocked[out_groups] = True
      blockers[node.name] = 'a producer not wrapped in this prune() call'
      continue
    if _zero_not_kept(node.layer):   # sigmoid(0) = 0.5 unless a Multiply
      stuck = out_groups[~gated[out_groups]]  # with a pruned partner zeroes
      blocked[stuck] = True                   # it (squeeze-excite)
      if stuck.size:
        blockers[node.name] = 'its activation is not 0 at 0'
    members.append(_Member(node.layer, out_groups, scored=True))
    for group in np.unique(out_groups):
      producers_of.setdefault(int(group), set()).add(node.role_layer.name)
  return _assemble(g, wrappers, members, producers_of, blocked, blockers,
                   lambda node: node.outputs[0], structures.Channel())


def _build_readers(g, wrappers: Sequence) -> ChannelGroups:
  """``build`` for input channels: the readers (sinks) are the members."""
  ours = {id(w) for w in wrappers}
  members: List[_Member] = []
  readers_of: Dict[int, set] = {}
  blocked = np.zeros(g.n_groups, bool)
  blockers: Dict[str, str] = {}
  for node in g.nodes:
    if node.kind != graph_lib.CONV:
      continue
    in_groups = g.groups(node.inputs[0])
    if id(node.layer) not in ours:
      blocked[in_groups] = True
      blockers[node.name] = 'a reader not wrapped in this prune() call'
      continue
    # A SeparableConv2D's pointwise kernel reads depthwise output c*M+m.
    mult = getattr(node.role_layer, 'depth_multiplier', 1)
    members.append(_Member(node.layer, np.repeat(in_groups, mult),
                           scored=True))
    for group in np.unique(in_groups):
      readers_of.setdefault(int(group), set()).add(node.role_layer.name)
  return _assemble(g, wrappers, members, readers_of, blocked, blockers,
                   lambda node: node.inputs[0], structures.InputChannel())


def _assemble(g, wrappers, members, scorers_of, blocked, blockers, tensor_of,
              structure) -> ChannelGroups:
  """The prunable groups (scored by someone, neither pinned nor blocked),
  their coupled sets, and the wrappers left to per-layer masks."""
  ok = ~g.pinned & ~blocked
  prunable = np.array(sorted(gid for gid in scorers_of if ok[gid]),
                      dtype=np.int64)
  touched = np.zeros(g.n_groups, bool)
  touched[list(scorers_of)] = True
  lost = touched & ~g.pinned & blocked
  if lost.any():
    nodes = {n.name: n for n in g.nodes}
    names = [f'{n} ({why})' for n, why in blockers.items()
             if lost[g.groups(tensor_of(nodes[n]))].any()]
    logger.info('tfprune: %d coupled channel group(s) cannot be pruned '
                'because of %s%s', int(lost.sum()), '; '.join(names[:6]),
                ' ...' if len(names) > 6 else '')
  # Wrappers the graph cannot group keep per-layer masks: a layer it does
  # not understand (a custom PrunableLayer, a shared layer), or one named
  # explicitly whose channels are all pinned (the logits; for input
  # channels, a layer reading the model input).
  grouped = {id(m.wrapper) for m in members
             if m.scored and not g.pinned[m.groups].all()}
  independent = [w for w in wrappers if id(w) not in grouped]
  keys = [tuple(sorted(scorers_of[int(gid)])) for gid in prunable]
  sets = sorted(set(keys))
  index = {key: i for i, key in enumerate(sets)}
  coupled = np.array([index[k] for k in keys], dtype=np.int64)
  members = [m for m in members if id(m.wrapper) not in
             {id(w) for w in independent}]
  return ChannelGroups(members, independent, prunable, coupled, sets,
                       g.n_groups, structure)


def _member_scores(method, member: _Member,
                   structure) -> Tuple[np.ndarray, np.ndarray]:
  """(scores normalised by their mean, L1 weight norm) per mask entry."""
  wrapper = member.wrapper
  scores = np.asarray(method.channel_scores(wrapper), np.float64).reshape(-1)
  weight = wrapper.prunable[0]
  l1 = np.asarray(structure.reduce(
      np.asarray(weight.variable), weight.layout, 'l1'),
                  np.float64).reshape(-1)
  mean = np.abs(scores).mean() if scores.size else 0.0
  return (scores / mean if mean > 0 else scores), l1


def group_mean(cg: ChannelGroups, values) -> np.ndarray:
  """Mean over each prunable group's scored members of ``values``
  (``values(wrapper)`` -> one number per mask entry), in ``cg.prunable``
  order."""
  total = np.zeros(cg.n_groups)
  count = np.zeros(cg.n_groups)
  for member in cg.members:
    if member.scored:
      np.add.at(total, member.groups,
                np.asarray(values(member.wrapper), np.float64).reshape(-1))
      np.add.at(count, member.groups, 1.0)
  return total[cg.prunable] / np.maximum(count[cg.prunable], 1.0)


def importance(method, cg: ChannelGroups) -> Tuple[np.ndarray, np.ndarray]:
  """(importance, tie-break) of every prunable group, in ``cg.prunable``
  order."""
  scored = {id(m.wrapper): _member_scores(method, m, cg.structure)
            for m in cg.members if m.scored}
  imp = group_mean(cg, lambda w: scored[id(w)][0])
  norm = group_mean(cg, lambda w: scored[id(w)][1])
  return imp, norm


def round_unit(size: int, round_to: int) -> int:
  """The multiple a coupled set of ``size`` channels keeps: ``round_to``,
  halved while the set is smaller than twice it."""
  step = round_to
  while step > 1 and size < 2 * step:
    step //= 2
  return step


def _floor(size: int, rule: ChannelSelection) -> int:
  """The fewest channels a coupled set of ``size`` may keep."""
  return min(max(rule.min_channels,
                 int(math.ceil(size * (1 - rule.max_ratio) - 1e-9))), size)


def _kept_count(size: int, target_kept: float, rule: ChannelSelection) -> int:
  """Kept channels of one coupled set: the allowed count (a multiple of its
  rounding unit, or all of them) nearest to ``target_kept``, ties up, and
  never under the floor."""
  step = round_unit(size, rule.round_to)
  allowed = np.append(np.arange(step, size + 1, step), size)
  allowed = allowed[allowed >= max(_floor(size, rule), 1)]
  if allowed.size == 0:
    return size
  distance = np.abs(allowed - target_kept)
  return int(allowed[distance <= distance.min() + 1e-9].max())


def _rank_in_set(order: np.ndarray, coupled: np.ndarray) -> np.ndarray:
  """For each position of ``order``: how many earlier positions hold a
  group of the same coupled set."""
  sets = coupled[order]
  by_set = np.argsort(sets, kind='stable')
  sorted_sets = sets[by_set]
  rank = np.empty(order.size, np.int64)
  rank[by_set] = np.arange(order.size) - np.searchsorted(sorted_sets,
                                                          sorted_sets)
  return rank


def select(imp: np.ndarray, tie: np.ndarray, coupled: np.ndarray,
           n_sets: int, sparsity: float, rule: ChannelSelection) -> np.ndarray:
  """Boolean "remove" per prunable group (in the order of ``imp``)."""
  structures.check_sparsity(sparsity)
  n = imp.size
  remove = np.zeros(n, bool)
  if n == 0 or sparsity <= 0:
    return remove
  order = np.lexsort((np.arange(n), tie, imp))     # least important first
  rank = _rank_in_set(order, coupled)
  sizes = np.bincount(coupled, minlength=n_sets)
  if rule.ranking == 'uniform':
    targets = sizes * (1.0 - sparsity)
  else:               # one ranking; each set gives at most size - floor
    cap = np.array([size - _floor(int(size), rule) for size in sizes])
    eligible = order[rank < cap[coupled[order]]]
    taken = np.bincount(coupled[eligible[:int(round(sparsity * n))]],
                        minlength=n_sets)
    targets = (sizes - taken).astype(np.float64)
  drop = np.array([size - _kept_count(int(size), float(target), rule)
                   if size else 0 for size, target in zip(sizes, targets)])
  remove[order[rank < drop[coupled[order]]]] = True
  return remove


def update_masks(method, cg: ChannelGroups, sparsity: float,
                 rule: ChannelSelection) -> np.ndarray:
  """Mask the least important groups in every member; returns the removed
  graph group ids."""
  imp, tie = importance(method, cg)
  imp[~alive(cg)] = -np.inf     # pruned groups stay pruned (gradual schedules)
  remove = select(imp, tie, cg.coupled, len(cg.sets), sparsity, rule)
  assign(cg, remove)
  for wrapper in cg.independent:
    for index, weight in enumerate(wrapper.prunable):
      wrapper.assign_mask(index, wrapper.structure.select(
          method.score(wrapper, index), sparsity, weight.layout))
  return cg.prunable[remove]


def alive(cg: ChannelGroups) -> np.ndarray:
  """Per prunable group: kept by the current masks of its scored members."""
  keep = np.zeros(cg.n_groups, bool)
  for member in cg.members:
    if member.scored:
      np.logical_or.at(keep, member.groups,
                       np.asarray(member.wrapper.masks[0]).reshape(-1) != 0)
  return keep[cg.prunable]


def assign(cg: ChannelGroups, remove: np.ndarray) -> None:
  """Mask the prunable groups where ``remove`` is True in every member
  (scored ones and followers); all other groups are kept."""
  dead = np.zeros(cg.n_groups, bool)
  dead[cg.prunable[np.asarray(remove, bool)]] = True
  for member in cg.members:
    wrapper = member.wrapper
    keep = (~dead[member.groups]).astype(np.float32)
    shape = wrapper.masks[0].shape
    for index in range(len(wrapper.prunable)):
      wrapper.assign_mask(index, keep.reshape(shape))


def achieved_sparsity(cg: ChannelGroups) -> float:
  """Fraction of the prunable groups that the masks remove now (masked in
  every scored member), the structural channel sparsity."""
  return float((~alive(cg)).sum()) / max(cg.n_prunable, 1)
