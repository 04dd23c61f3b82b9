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
  *follower* whose channel lies in the group.
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
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfprune import graph as graph_lib
from tfprune import structures

RANKINGS = ('uniform', 'global')


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
  producer: bool


@dataclasses.dataclass
class ChannelGroups:
  """The prunable groups of one ``prune`` call and the members masking them."""

  members: List[_Member]
  independent: List[object]   # wrappers masked per layer (see build)
  prunable: np.ndarray      # ids of the prunable graph groups
  coupled: np.ndarray       # coupled-set index of each prunable group
  sets: List[Tuple[str, ...]]   # producer layer names of each coupled set
  n_groups: int

  @property
  def n_prunable(self) -> int:
    return int(self.prunable.size)

  def set_sizes(self) -> np.ndarray:
    return np.bincount(self.coupled, minlength=len(self.sets))


def build(model, wrappers: Sequence) -> ChannelGroups:
  """The channel groups that ``wrappers`` (one ``prune`` call) can remove;
  the BatchNormalization followers of their group are found in ``model``."""
  g = graph_lib.build(model, warn=False)
  ours = {id(w) for w in wrappers}
  group_name = wrappers[0].group if wrappers else None
  ours.update(id(node.layer) for node in g.nodes
              if getattr(node.layer, 'follower', False) and
              node.layer.group == group_name)
  members: List[_Member] = []
  producers_of: Dict[int, set] = {}
  foreign = np.zeros(g.n_groups, bool)     # made by a layer not wrapped here
  for node in g.nodes:
    if node.kind not in (graph_lib.CONV, graph_lib.DEPTHWISE) and not (
        node.kind == graph_lib.CHANNELWISE and id(node.layer) in ours):
      continue
    out_groups = g.groups(node.outputs[0])
    mine = id(node.layer) in ours
    if node.kind == graph_lib.CHANNELWISE:          # a follower
      members.append(_Member(node.layer, out_groups, producer=False))
      continue
    if not mine:
      foreign[out_groups] = True
      continue
    members.append(_Member(node.layer, out_groups, producer=True))
    for group in np.unique(out_groups):
      producers_of.setdefault(int(group), set()).add(node.role_layer.name)
  ok = ~g.pinned & ~foreign
  prunable = np.array(sorted(gid for gid in producers_of if ok[gid]),
                      dtype=np.int64)
  # Wrappers the graph cannot group keep per-layer masks: a layer it does
  # not understand (a custom PrunableLayer, a shared layer), or one named
  # explicitly whose channels are all pinned (the logits).
  grouped = {id(m.wrapper) for m in members
             if m.producer and not g.pinned[m.groups].all()}
  independent = [w for w in wrappers if id(w) not in grouped]
  keys = [tuple(sorted(producers_of[int(gid)])) for gid in prunable]
  sets = sorted(set(keys))
  index = {key: i for i, key in enumerate(sets)}
  coupled = np.array([index[k] for k in keys], dtype=np.int64)
  members = [m for m in members if id(m.wrapper) not in
             {id(w) for w in independent}]
  return ChannelGroups(members, independent, prunable, coupled, sets,
                       g.n_groups)


def _member_scores(method, member: _Member) -> Tuple[np.ndarray, np.ndarray]:
  """(scores normalised by their mean, L1 weight norm) per mask entry."""
  wrapper = member.wrapper
  scores = np.asarray(method.channel_scores(wrapper), np.float64).reshape(-1)
  weight = wrapper.prunable[0]
  l1 = np.asarray(structures.Channel().reduce(
      np.asarray(weight.variable), weight.layout, 'l1'),
                  np.float64).reshape(-1)
  mean = np.abs(scores).mean() if scores.size else 0.0
  return (scores / mean if mean > 0 else scores), l1


def group_mean(cg: ChannelGroups, values) -> np.ndarray:
  """Mean over each prunable group's producers of per-channel ``values``
  (``values(wrapper)`` -> one number per mask entry), in ``cg.prunable``
  order."""
  total = np.zeros(cg.n_groups)
  count = np.zeros(cg.n_groups)
  for member in cg.members:
    if member.producer:
      np.add.at(total, member.groups,
                np.asarray(values(member.wrapper), np.float64).reshape(-1))
      np.add.at(count, member.groups, 1.0)
  return total[cg.prunable] / np.maximum(count[cg.prunable], 1.0)


def importance(method, cg: ChannelGroups) -> Tuple[np.ndarray, np.ndarray]:
  """(importance, tie-break) of every prunable group, in ``cg.prunable``
  order."""
  scored = {id(m.wrapper): _member_scores(method, m) for m in cg.members
            if m.producer}
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


def _kept_count(size: int, target_kept: float, rule: ChannelSelection) -> int:
  """Kept channels of one coupled set: rounded, floored, capped."""
  step = round_unit(size, rule.round_to)
  kept = int(math.floor(target_kept / step + 0.5)) * step
  floor = max(rule.min_channels, int(math.ceil(size * (1 - rule.max_ratio)
                                               - 1e-9)))
  kept = max(kept, min(floor, size), step if size >= step else size)
  if kept % step and kept < size:           # a floor broke the multiple
    kept = min(int(math.ceil(kept / step)) * step, size)
  return min(kept, size)


def select(imp: np.ndarray, tie: np.ndarray, coupled: np.ndarray,
           n_sets: int, sparsity: float, rule: ChannelSelection) -> np.ndarray:
  """Boolean "remove" per prunable group (in the order of ``imp``)."""
  structures.check_sparsity(sparsity)
  n = imp.size
  remove = np.zeros(n, bool)
  if n == 0 or sparsity <= 0:
    return remove
  order = np.lexsort((np.arange(n), tie, imp))     # least important first
  sizes = np.bincount(coupled, minlength=n_sets)
  if rule.ranking == 'uniform':
    targets = sizes * (1.0 - sparsity)
  else:
    budget = int(round(sparsity * n))
    cap = np.array([size - min(max(rule.min_channels,
                                   int(math.ceil(size * (1 - rule.max_ratio)
                                                 - 1e-9))), size)
                    for size in sizes])
    taken = np.zeros(n_sets, np.int64)
    for i in order:
      if budget == 0:
        break
      c = coupled[i]
      if taken[c] < cap[c]:
        taken[c] += 1
        budget -= 1
    targets = (sizes - taken).astype(np.float64)
  for c in range(n_sets):
    if sizes[c] == 0:
      continue
    kept = _kept_count(int(sizes[c]), float(targets[c]), rule)
    in_set = order[coupled[order] == c]
    remove[in_set[:sizes[c] - kept]] = True
  return remove


def update_masks(method, cg: ChannelGroups, sparsity: float,
                 rule: ChannelSelection) -> np.ndarray:
  """Mask the least important groups in every member; returns the removed
  graph group ids."""
  imp, tie = importance(method, cg)
  remove = select(imp, tie, cg.coupled, len(cg.sets), sparsity, rule)
  assign(cg, remove)
  for wrapper in cg.independent:
    for index, weight in enumerate(wrapper.prunable):
      wrapper.assign_mask(index, wrapper.structure.select(
          method.score(wrapper, index), sparsity, weight.layout))
  return cg.prunable[remove]


def alive(cg: ChannelGroups) -> np.ndarray:
  """Per prunable group: kept by the current masks of its producers."""
  keep = np.zeros(cg.n_groups, bool)
  for member in cg.members:
    if member.producer:
      np.logical_or.at(keep, member.groups,
                       np.asarray(member.wrapper.masks[0]).reshape(-1) != 0)
  return keep[cg.prunable]


def assign(cg: ChannelGroups, remove: np.ndarray) -> None:
  """Mask the prunable groups where ``remove`` is True in every member
  (producers and followers); all other groups are kept."""
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
  every producer member), the structural channel sparsity."""
  return float((~alive(cg)).sum()) / max(cg.n_prunable, 1)
