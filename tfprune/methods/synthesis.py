"""Synthesis and Pruning, inspired by Finlinson & Moschoyiannis (2020).

The paper grows a very sparse random sub-network of a fully connected
architecture, adding connections "strategically" (origins at highly
performing nodes, endpoints picked by a Gaussian over the weights) until a
fixed capacity threshold, and prunes weak connections alongside. It gives no
exact rule, so everything below is tfprune's documented reconstruction
(``docs/METHODS.md`` section 4), not a reproduction.

Terms. For a Dense kernel ``W`` of shape ``[n_in, n_out]`` with mask ``M``,
an *edge* is one weight ``(i, j)``; *origins* are the kernel's input units
(rows ``i``, the neurons of the layer below) and *endpoints* its output
units (columns ``j``). Densities count the edges of the wrapped kernels only
(biases are not masked and not counted).

1. *Budgets.* ``initial_density`` and ``capacity`` are fractions of all
   wrapped kernels' edges. Both are split over the layers with the
   Erdos-Renyi rule ``d_l ~ (n_in + n_out) / (n_in * n_out)`` (capped at 1,
   the surplus passed on, totals exact; :func:`tfprune.methods.edges.
   allocate`), or uniformly (``layer_split='uniform'``). This gives every
   layer an initial edge count ``e_l`` and a capacity ``c_l``; the output
   layer is a layer like the others (with the ER rule the 10-unit classifier
   gets the highest density, possibly 1). Leave a layer out with
   ``prune(..., layers=...)`` to keep it dense.
2. *Start* (in ``prune``): each layer keeps ``e_l`` edges drawn uniformly
   (seeded); the surviving initial weights are rescaled per output unit by
   ``sqrt(n_in / fan_in)`` (``rescale_init``, as SmallWorld does) so a
   sparse unit starts at the dense initialiser's activation scale.
3. *Events* (every ``grow_every`` steps, the schedule's update points). Per
   layer, from the weights and mask before the event:

   * counts: ``g = min(max(1, round(growth * c_l)), absent edges, c_l)``;
     with ``prune_weakest=False``: ``g = min(g, c_l - a)`` and ``r = 0`` (growth
     stops at capacity); with ``prune_weakest=True``:
     ``r = min(a, max(floor(prune_ratio * g), a + g - c_l))``, so ``r < g``
     while the layer is below capacity and ``r = g`` at capacity (edges are
     then recycled, SET-like). ``a`` is the layer's active edge count. After
     the event ``a' = a + g - r <= c_l``: the capacity is never exceeded.
   * growth, ``strategy='strategic'``: origins are the top
     ``q = ceil(origin_fraction * n_in)`` input units by the total ``|w|`` of
     their active outgoing edges in this kernel (ties broken at random); if
     their rows have fewer than ``g`` absent edges, the next-ranked units are
     added until they have enough. A Gaussian ``N(mu, sigma)`` is fitted to
     ``|w|`` of the layer's active weights; endpoint ``j`` gets
     ``z_j = (mean |w| of its active incoming edges - mu) / sigma`` (``z = 0``
     for a unit with no incoming edge, or when ``sigma = 0``). The ``g`` new
     edges are drawn without replacement among the absent edges of the
     origin rows, with probability proportional to ``Phi(z_j)`` of their
     endpoint (Efraimidis-Spirakis weighted sampling).
   * growth, ``strategy='random'`` (the SET-like control): ``g`` absent
     edges drawn uniformly.
   * pruning: the ``r`` active edges with the smallest ``|w|`` (among the
     edges active before the event; the ones just grown are never pruned in
     the same event, and edges just pruned are not regrown in it).
   * grown weights start at 0 (``init_std=0``, the default: the network's
     function is unchanged by growth, and the gradient at 0 is not 0) or at
     ``N(0, init_std)``; pruned weights are set to 0. The optimizer's
     per-weight state (momentum, Adam moments) of grown and pruned weights
     is reset with :func:`tfprune.optimizer_state.reset_slots`, so a grown
     weight starts like a fresh one (no stale Adam second moment).

   Randomness is seeded by ``(seed, step, layer)``: the same seed gives the
   same masks for the same weights.
4. *Schedule.* WHEN is a :class:`tfprune.schedules.Periodic` (tfmot's
   ``PruningSchedule`` contract, no target sparsity): every ``grow_every`` steps
   from ``begin_step`` to ``end_step``. ``prune(model, Synthesis(...))``
   without a schedule installs :meth:`Synthesis.schedule`; a target schedule
   (or a one-shot float) is refused, because the budget is the method's.
   HOW MANY is the count rule above (:func:`event_counts`).
5. *Similarity.* :func:`overlap` is the Jaccard similarity of two runs'
   final edge sets (:func:`masks` reads them from a model).
"""

from __future__ import annotations

import copy
import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from scipy import special
import tensorflow as tf

from tfprune import schedules, structures
from tfprune.methods import base
from tfprune.methods import edges as edges_lib
from tfprune.wrapper import collect_wrappers

STRATEGIES = ('strategic', 'random')
ENDPOINTS = ('gaussian', 'uniform')
LAYER_SPLITS = ('erdos_renyi', 'uniform')
_INIT, _EVENT = 1, 2          # rng stream tags


# --- how many -------------------------------------------------------------------
def event_counts(active: int, capacity: int, possible: int, nominal: int,
                 prune_weakest: bool, prune_ratio: float) -> Tuple[int, int]:
  """``(g, r)``: edges grown and pruned in one layer at one event.

  Args:
    active: active edges before the event.
    capacity: the layer's capacity ``c_l`` (edges).
    possible: all edges of the layer (``n_in * n_out``).
    nominal: the nominal growth ``round(growth * c_l)``.
    prune_weakest: whether edges are pruned (else growth stops at capacity).
    prune_ratio: ``r = floor(prune_ratio * g)`` while below capacity.

  The result always satisfies ``active + g - r <= capacity``, ``r <= active``
  and ``g <= min(possible - active, capacity)``; with ``prune_weakest``, ``r < g`` below capacity
  and ``r = g`` at capacity.
  """
  if active > capacity:
    raise ValueError(f'{active} active edges already exceed the capacity '
                     f'{capacity}')
  g = max(0, min(int(nominal), possible - active, capacity))
  if not prune_weakest:
    return min(g, capacity - active), 0
  r = max(int(math.floor(prune_ratio * g)), active + g - capacity)
  return g, min(r, active)


def phi(z: np.ndarray) -> np.ndarray:
  """The standard normal CDF."""
  return special.ndtr(z)


def endpoint_z(kernel: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Per output unit, the z-score of its mean incoming ``|w|`` (see module)."""
  weights = np.abs(kernel)
  active = weights[mask]
  fan_in = mask.sum(axis=0)
  if active.size == 0:
    return np.zeros(mask.shape[1])
  mu, sigma = float(active.mean()), float(active.std())
  mean_in = np.where(mask, weights, 0).sum(axis=0) / np.maximum(fan_in, 1)
  if sigma == 0:
    return np.zeros(mask.shape[1])
  return np.where(fan_in > 0, (mean_in - mu) / sigma, 0.0)


def origin_order(kernel: np.ndarray, mask: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
  """Input units by total ``|w|`` of active outgoing edges, best first."""
  score = np.where(mask, np.abs(kernel), 0).sum(axis=1)
  return np.lexsort((rng.random(score.size), -score))


def grow_strategic(kernel: np.ndarray, mask: np.ndarray, g: int,
                   origin_fraction: float, rng: np.random.Generator,
                   endpoint: str = 'gaussian') -> np.ndarray:
  """Flat indices of ``g`` absent edges: top origins, endpoints weighted
  by ``Phi(z)`` ('gaussian') or not at all ('uniform')."""
  if g == 0:
    return np.zeros(0, np.int64)
  n_in, n_out = mask.shape
  order = origin_order(kernel, mask, rng)
  free = (~mask).sum(axis=1)[order]
  q = max(1, int(math.ceil(origin_fraction * n_in)))
  enough = int(np.searchsorted(np.cumsum(free), g)) + 1   # rows needed for g
  origins = np.sort(order[:max(q, enough)])
  rows, cols = np.nonzero(~mask[origins])
  candidates = origins[rows] * n_out + cols
  weight = (np.ones(cols.size) if endpoint == 'uniform' else
            np.maximum(phi(endpoint_z(kernel, mask))[cols], 1e-300))
  keys = rng.exponential(size=candidates.size) / weight
  chosen = np.argpartition(keys, g - 1)[:g] if g < keys.size else (
      np.arange(keys.size))
  return np.sort(candidates[chosen])


def grow_random(mask: np.ndarray, g: int,
                rng: np.random.Generator) -> np.ndarray:
  """Flat indices of ``g`` absent edges drawn uniformly."""
  absent = np.flatnonzero(~mask.reshape(-1))
  return np.sort(rng.choice(absent, g, replace=False))


def weakest(kernel: np.ndarray, mask: np.ndarray, r: int) -> np.ndarray:
  """Flat indices of the ``r`` active edges with the smallest ``|w|``."""
  active = np.flatnonzero(mask.reshape(-1))
  scores = np.abs(kernel.reshape(-1)[active])
  return np.sort(active[np.argsort(scores, kind='stable')[:r]])


# --- similarity -------------------------------------------------------------------
MaskSet = Union[Mapping[str, np.ndarray], Sequence[np.ndarray]]


def masks(model) -> Dict[str, np.ndarray]:
  """``{layer name: boolean edge mask}`` of every wrapper in a model."""
  return {w.layer.name: np.asarray(w.masks[0]) > 0
          for w in collect_wrappers(model)}


def _aligned(masks_a: MaskSet, masks_b: MaskSet):
  if isinstance(masks_a, Mapping) != isinstance(masks_b, Mapping):
    raise TypeError('overlap needs two dicts or two lists of masks, got '
                    f'{type(masks_a).__name__} and {type(masks_b).__name__}')
  if isinstance(masks_a, Mapping):
    if set(masks_a) != set(masks_b):
      raise ValueError(f'the mask sets name different layers: '
                       f'{sorted(masks_a)} vs {sorted(masks_b)}')
    names = list(masks_a)
    pairs = [(masks_a[n], masks_b[n]) for n in names]
  else:
    if len(masks_a) != len(masks_b):
      raise ValueError(f'{len(masks_a)} masks vs {len(masks_b)}')
    names = list(range(len(masks_a)))
    pairs = list(zip(masks_a, masks_b))
  out = []
  for name, (a, b) in zip(names, pairs):
    a, b = np.asarray(a) != 0, np.asarray(b) != 0
    if a.shape != b.shape:
      raise ValueError(f'masks of {name!r} have different shapes: {a.shape} '
                       f'vs {b.shape}')
    out.append((name, a, b))
  return out


def overlap(masks_a: MaskSet, masks_b: MaskSet,
            per_layer: bool = False) -> Union[float, Dict]:
  """Jaccard similarity ``|A & B| / |A | B|`` of two runs' edge sets.

  Args:
    masks_a, masks_b: dicts ``{layer: mask}`` (e.g. from :func:`masks`) or
      lists of masks of the same shapes; non-zero entries are edges.
    per_layer: also return each layer's Jaccard (then a dict with
      ``'all'`` and one entry per layer).

  Two empty edge sets have overlap 1. Two independent random edge sets of
  density ``d`` overlap ``d / (2 - d)`` on average (see :func:`chance`).
  """
  both = union = 0
  layers = {}
  for name, a, b in _aligned(masks_a, masks_b):
    i, u = int((a & b).sum()), int((a | b).sum())
    both, union = both + i, union + u
    layers[name] = i / u if u else 1.0
  total = both / union if union else 1.0
  if per_layer:
    return {'all': total, **layers}
  return total


def chance(masks_a: MaskSet, masks_b: MaskSet) -> float:
  """Expected Jaccard of independent uniform edge sets with these counts."""
  both = union = 0.0
  for _, a, b in _aligned(masks_a, masks_b):
    expect = a.sum() * b.sum() / max(a.size, 1)
    both += expect
    union += a.sum() + b.sum() - expect
  return both / union if union else 1.0


# --- the method -------------------------------------------------------------------
@base.register
class Synthesis(edges_lib.BudgetMethod):
  """Grow a sparse MLP to a capacity, pruning alongside (inspired by the paper).

  Args:
    initial_density: fraction of the wrapped kernels' edges active at the
      start (random, seeded).
    capacity: the capacity threshold: the largest fraction of edges ever
      active, per layer after the split (never exceeded).
    grow_every: steps between events (the default schedule's frequency).
    growth: edges grown per event, as a fraction of each layer's capacity.
    strategy: 'strategic' (top origins, Gaussian endpoints) or 'random'
      (uniform over absent edges, the SET-like control).
    prune_weakest: prune the weakest edges at each event (``r < g`` below capacity,
      ``r = g`` at capacity); False grows only, until capacity.
    prune_ratio: ``r / g`` while below capacity, in [0, 1).
    origin_fraction: share of a layer's input units that are origins.
    endpoint: how strategic growth weights the endpoints among the origins'
      absent edges: 'gaussian' (``Phi(z)`` of their mean incoming ``|w|``)
      or 'uniform' (the origin rule alone, for ablations).
    init_std: grown weights start at 0 (0.0) or ``N(0, init_std)``.
    layer_split: 'erdos_renyi' or 'uniform' split of the budgets.
    rescale_init: rescale the initial surviving weights to the sparse fan-in.
    seed: seeds the initial masks and every event.
    start_seed: seeds the initial masks instead (None: ``seed``); runs
      with one ``start_seed`` and different ``seed`` start from the same
      sub-network but draw their events independently.
    begin_step, end_step: the default schedule's first and last update step
      (``end_step=-1``: no end).

  Run state (:meth:`get_state`, saved with the model): ``history``, the
  events of training.
  """

  def __init__(self, initial_density: float = 0.02, capacity: float = 0.1,
               grow_every: int = 100, growth: float = 0.1,
               strategy: str = 'strategic', prune_weakest: bool = True,
               prune_ratio: float = 0.5, origin_fraction: float = 0.2,
               endpoint: str = 'gaussian', init_std: float = 0.0, layer_split: str = 'erdos_renyi',
               rescale_init: bool = True, seed: int = 0,
               start_seed: Optional[int] = None, begin_step: int = 0,
               end_step: int = -1,
               structure: str = 'weight'):
    if structure != 'weight':
      raise ValueError("Synthesis edges are single Dense weights: its "
                       "structure is 'weight'")
    super().__init__('weight')
    if not 0 < float(capacity) <= 1:
      raise ValueError(f'capacity must be in (0, 1], got {capacity}')
    if not 0 < float(initial_density) <= 1:
      raise ValueError(f'initial_density must be in (0, 1], got '
                       f'{initial_density}')
    if float(initial_density) > float(capacity):
      raise ValueError(f'initial_density {initial_density} is above the '
                       f'capacity {capacity}; the capacity is the largest '
                       'density ever reached')
    if int(grow_every) < 1:
      raise ValueError(f'grow_every must be >= 1 step, got {grow_every}')
    if not 0 < float(growth) <= 1:
      raise ValueError(f'growth must be in (0, 1] (a fraction of each '
                       f"layer's capacity per event), got {growth}")
    base.check_choice('strategy', strategy, STRATEGIES)
    if not 0 <= float(prune_ratio) < 1:
      raise ValueError(f'prune_ratio must be in [0, 1) so that r < g while '
                       f'growing, got {prune_ratio}')
    if not 0 < float(origin_fraction) <= 1:
      raise ValueError(f'origin_fraction must be in (0, 1], got '
                       f'{origin_fraction}')
    base.check_choice('endpoint', endpoint, ENDPOINTS)
    if float(init_std) < 0:
      raise ValueError(f'init_std must be >= 0, got {init_std}')
    base.check_choice('layer_split', layer_split, LAYER_SPLITS)
    if int(seed) < 0 or (start_seed is not None and int(start_seed) < 0):
      raise ValueError(f'seeds must be >= 0, got {seed}, {start_seed}')
    self.initial_density = float(initial_density)
    self.capacity = float(capacity)
    self.grow_every = int(grow_every)
    self.growth = float(growth)
    self.strategy = strategy
    self.prune_weakest = bool(prune_weakest)
    self.prune_ratio = float(prune_ratio)
    self.origin_fraction = float(origin_fraction)
    self.endpoint = endpoint
    self.init_std = float(init_std)
    self.layer_split = layer_split
    self.rescale_init = bool(rescale_init)
    self.seed = int(seed)
    self.start_seed = None if start_seed is None else int(start_seed)
    self.begin_step = int(begin_step)
    self.end_step = int(end_step)
    self.schedule()            # validates begin_step / end_step
    self.history: Optional[dict] = None

  def schedule(self, begin_step: Optional[int] = None,
               end_step: Optional[int] = None) -> schedules.Periodic:
    """The update points: every ``grow_every`` steps in [begin, end]."""
    return schedules.Periodic(
        self.begin_step if begin_step is None else begin_step,
        self.end_step if end_step is None else end_step, self.grow_every)

  def score(self, wrapper, index):
    """``|w|``: what pruning ranks (growth has its own rules)."""
    return tf.abs(wrapper.prunable[index].variable)

  # --- budgets ----------------------------------------------------------------
  @staticmethod
  def _sizes(wrappers) -> Dict[str, Tuple[int, int]]:
    sizes = {}
    for wrapper in wrappers:
      name = wrapper.layer.name
      if not wrapper.built:
        raise ValueError(
            f'layer {name!r} is not built, so Synthesis cannot size its '
            'masks; give the model an input shape (start it with '
            'keras.Input(shape)) before pruning')
      if (len(wrapper.prunable) != 1 or
          wrapper.prunable[0].layout != structures.DENSE_LAYOUT):
        raise ValueError(
            f'Synthesis grows edges between the units of Dense layers; '
            f'layer {name!r} ({type(wrapper.layer).__name__}) is not Dense. '
            'Wrap only the Dense layers: prune(..., layers=keras.layers.Dense)'
            ' or a list of their names.')
      n_in, n_out = wrapper.prunable[0].variable.shape
      sizes[name] = (int(n_in), int(n_out))
    return sizes

  def _split(self, sizes, density: float) -> Dict[str, int]:
    total = sum(a * b for a, b in sizes.values())
    budget = int(round(density * total))
    if self.layer_split == 'uniform':
      return {n: int(round(density * a * b)) for n, (a, b) in sizes.items()}
    return edges_lib.allocate({n: (a, b, 1) for n, (a, b) in sizes.items()},
                                budget)

  def layer_budgets(self, wrappers) -> Dict[str, Dict[str, int]]:
    """Per layer: possible edges, initial edges, capacity, growth per event."""
    sizes = self._sizes(wrappers)
    start = self._split(sizes, self.initial_density)
    cap = self._split(sizes, self.capacity)
    out = {}
    for name, (n_in, n_out) in sizes.items():
      c = max(cap[name], 1)
      out[name] = {'possible': n_in * n_out, 'initial': min(start[name], c),
                   'capacity': c,
                   'growth': max(1, int(round(self.growth * c)))}
    return out

  # --- start --------------------------------------------------------------------
  def on_wrapped(self, wrappers: Sequence, model) -> None:
    """Check the schedule, draw the initial random masks."""
    schedule = wrappers[0].schedule
    if schedule is None:
      schedule = self.schedule()
      for wrapper in wrappers:
        wrapper.schedule = schedule
    elif not isinstance(schedule, schedules.Periodic):
      raise ValueError(
          'Synthesis keeps its own budget (initial_density, capacity, '
          'growth); a target schedule would be ignored. Pass schedule=None '
          '(the method installs Periodic(frequency=grow_every)) or '
          'Synthesis.schedule(begin_step, end_step).')
    elif schedule.frequency != self.grow_every:
      raise ValueError(
          f'the Periodic schedule updates every {schedule.frequency} steps '
          f'but grow_every={self.grow_every}; build it with '
          'method.schedule(begin_step, end_step) or make them equal')
    plan = self.layer_budgets(wrappers)
    empty = [n for n, p in plan.items() if p['initial'] == 0]
    if empty:
      raise ValueError(
          f'at initial_density {self.initial_density} layer(s) {empty} start '
          'with no edge at all, so the output would not depend on the input;'
          ' raise initial_density or use layer_split="erdos_renyi"')
    for i, wrapper in enumerate(wrappers):
      p = plan[wrapper.layer.name]
      rng = np.random.default_rng([
          self.seed if self.start_seed is None else self.start_seed, _INIT,
          i])
      mask = np.zeros(p['possible'], bool)
      mask[rng.choice(p['possible'], p['initial'], replace=False)] = True
      mask = mask.reshape(wrapper.prunable[0].variable.shape)
      wrapper.assign_mask(0, mask)
      if self.rescale_init:
        edges_lib.rescale_to_fan_in(wrapper, mask)
    total = sum(p['possible'] for p in plan.values())
    initial = sum(p['initial'] for p in plan.values())
    self.history = {
        'strategy': self.strategy, 'prune_weakest': self.prune_weakest,
        'possible_edges': total, 'initial_edges': initial,
        'capacity_edges': sum(p['capacity'] for p in plan.values()),
        'edges': initial, 'density': initial / total,
        'events': 0, 'grown': 0, 'pruned': 0, 'at_capacity_step': None,
        'layers': {n: dict(p, edges=p['initial']) for n, p in plan.items()},
        'log': []}

  # --- events -------------------------------------------------------------------
  def update_masks(self, wrappers: Sequence, sparsity: Optional[float],
                   step: int):
    """One synthesis event: grow ``g`` and prune ``r`` edges per layer."""
    self.refuse_target(sparsity, 'schedule=None or method.schedule(...)')
    plan = self.layer_budgets(wrappers)
    if self.history is None:       # e.g. a method built by hand
      self.history = {'events': 0, 'grown': 0, 'pruned': 0, 'log': [],
                      'at_capacity_step': None,
                      'layers': {n: dict(p) for n, p in plan.items()}}
    grown_total = pruned_total = 0
    edges = possible = capacity = 0
    for i, wrapper in enumerate(wrappers):
      name = wrapper.layer.name
      p = plan[name]
      kernel = wrapper.prunable[0].variable.numpy()
      mask = np.asarray(wrapper.masks[0]) > 0
      active = int(mask.sum())
      g, r = event_counts(active, p['capacity'], p['possible'], p['growth'],
                          self.prune_weakest, self.prune_ratio)
      rng = np.random.default_rng([self.seed, _EVENT, int(step), i])
      if self.strategy == 'strategic':
        grow = grow_strategic(kernel, mask, g, self.origin_fraction, rng,
                              self.endpoint)
      else:
        grow = grow_random(mask, g, rng)
      drop = weakest(kernel, mask, r)
      if g or r:
        edges_lib.move(wrapper, drop, grow, self.optimizer,
                       rng.normal(0.0, self.init_std, g)
                       if self.init_std > 0 else None)
      active += g - r
      self.history['layers'][name]['edges'] = active
      grown_total, pruned_total = grown_total + g, pruned_total + r
      edges, possible = edges + active, possible + p['possible']
      capacity += p['capacity']
    h = self.history
    h['events'] += 1
    h['grown'] += grown_total
    h['pruned'] += pruned_total
    h['edges'], h['density'] = edges, edges / max(possible, 1)
    if edges >= capacity and h.get('at_capacity_step') is None:
      h['at_capacity_step'] = int(step)
    h['log'].append({'step': int(step), 'grown': grown_total,
                     'pruned': pruned_total, 'edges': edges})

  def report_info(self) -> Optional[dict]:
    return None if self.history is None else copy.deepcopy(self.history)

  def get_config(self):
    return {'initial_density': self.initial_density,
            'capacity': self.capacity, 'grow_every': self.grow_every,
            'growth': self.growth, 'strategy': self.strategy,
            'prune_weakest': self.prune_weakest, 'prune_ratio': self.prune_ratio,
            'origin_fraction': self.origin_fraction,
            'endpoint': self.endpoint, 'init_std': self.init_std, 'layer_split': self.layer_split,
            'rescale_init': self.rescale_init, 'seed': self.seed,
            'start_seed': self.start_seed,
            'begin_step': self.begin_step, 'end_step': self.end_step}

  legacy_state_keys = ('history',)      # in the config before 0.2

  def get_state(self) -> dict:
    return {} if self.history is None else {'history': self.history}

  def set_state(self, state: dict) -> None:
    self.history = state.get('history')

  @classmethod
  def from_config(cls, config: dict) -> 'Synthesis':
    config = dict(config)
    if 'prune' in config:                              # renamed in 0.2
      config['prune_weakest'] = config.pop('prune')
    return super().from_config(config)


__all__ = ['Synthesis', 'event_counts', 'overlap', 'chance', 'masks',
           'endpoint_z', 'origin_order', 'grow_strategic', 'grow_random',
           'weakest']
