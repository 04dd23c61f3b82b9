"""Small-World structural pruning (Krishnan, Du, Cao 2019), reconstructed.

The paper trims a network into a "locally clustered, globally sparse"
Small-World graph before training, trains it, then optimises it for
accuracy. It does not say how the graph is built; tfprune's reconstruction
(``docs/METHODS.md`` section 1, every step a documented choice):

1. *Level 1, network:* a global budget, ``density`` x all parameters of the
   model, is split over the wrapped layers. Parameters SmallWorld does not
   prune (biases, BatchNorm, unwrapped layers) are paid first; the rest goes
   to the layers' connections with Erdos-Renyi densities,
   ``d_l = eps * (n_in + n_out) / (n_in * n_out)``, capped at 1 (a capped
   layer's surplus goes to the others), ``eps`` solved so the budget is met;
   ``layer_density`` fixes chosen layers. Integer edge counts are rounded by
   largest remainder, so the kept parameter count equals the budget exactly
   whenever a Dense layer (1 parameter per edge) can absorb the remainder.
2. *Level 2, layer:* nodes are input and output units (Dense) or channels
   (Conv2D, whose edges are whole 2-D kernels: the ``kernel`` structure).
   Output ``j`` of ``n_out`` is connected to the ``k_j`` inputs nearest to
   position ``j * n_in / n_out`` on a ring (a bipartite Watts-Strogatz
   lattice; ``k_j`` spread evenly so the layer has its exact edge count).
   Each edge is rewired with probability ``p``: it is removed, and the
   output gets a new input drawn uniformly among those it is not (still)
   connected to, so the old input may be drawn again (fan-in is kept).
3. *Choosing p:* ``rewire_p='auto'`` tries a grid of p (0 included) and
   keeps the one with the largest small-world coefficient
   ``sigma = (C/C_r) / (L/L_r)`` of the layered graph of all wrapped layers (nodes: channel groups of
   :mod:`tfprune.graph`, so a Flatten's inputs are their channel) against
   equal-density random graphs (p=1). C is bipartite clustering
   (:mod:`tfprune.topology`), since a layered graph has no triangles.
   The grid, the chosen p, C, L and sigma are logged (logger ``tfprune``)
   and kept in :attr:`SmallWorld.topology`, which ``tfprune.report``
   includes. On small layered graphs sigma can peak at p=0: LeNet-5 at 2.3%
   gets the plain lattice, because its path lengths are short already
   (only 4 layers) and rewiring costs clustering faster than it saves
   length; VGG-16 picks an interior p. Pass ``p_grid`` without 0 to force
   rewiring. The random graphs are measured once for the whole grid, and
   large graphs on fixed node samples (:mod:`tfprune.topology`): on
   keras.applications ResNet50 (96x96, 11,469 nodes) the search takes
   11 s on 2 CPU cores (208 s when every measure was exact and the random
   graphs were measured again for each p) and picks the same p, 0.003. A
   bar with an ETA (:mod:`tfprune.progress`) shows when it runs over 3 s.
4. *Training:* masks are set by ``tfprune.prune`` and never change (use
   ``schedule=None``). Surviving weights are rescaled per output unit by
   ``sqrt(n_in / k_j)`` so a sparse unit starts with the activation scale of
   the dense initialiser (``rescale_init``; a choice, not from the paper).
5. *Stage 3, "optimise for accuracy":* fine-tune at a lower learning rate
   (a second ``fit``). Optionally, with ``regrow_fraction > 0`` and a
   :class:`tfprune.schedules.Periodic` schedule, at each of its steps every
   layer drops that fraction of its weakest edges (L1 of the edge's
   weights) and regrows as many absent edges drawn uniformly (not the ones
   just dropped); grown weights are set to 0 and the optimizer state of
   grown and dropped weights is reset; the budget is unchanged.
   ``prune(..., schedule=<float>)`` is refused: the budget is the method's.
"""

from __future__ import annotations

import copy
import logging
import warnings
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from tfprune import graph as graph_lib
from tfprune import progress, schedules, structures, topology
from tfprune.report import report as model_report
from tfprune.methods import base
from tfprune.methods import edges as edges_lib

logger = logging.getLogger('tfprune')

DEFAULT_P_GRID = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)


# --- level 2: the layer lattice and its rewiring ------------------------------
def edges_per_output(n_out: int, edges: int) -> np.ndarray:
  """Fan-in of every output, as even as possible, summing to ``edges``."""
  cuts = (np.arange(n_out + 1) * edges) // n_out
  return np.diff(cuts)


def ring_lattice(n_in: int, n_out: int, edges: int) -> np.ndarray:
  """Bipartite ring lattice: output j reads the inputs nearest j*n_in/n_out."""
  if not 0 <= edges <= n_in * n_out:
    raise ValueError(f'{edges} edges do not fit a {n_in}x{n_out} layer')
  fan_in = edges_per_output(n_out, edges)
  centre = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
  start = np.floor(centre - (fan_in - 1) / 2.0 + 0.5).astype(np.int64)
  offsets = np.arange(int(fan_in.max()) if n_out else 0)
  rows = (start[:, None] + offsets[None, :]) % n_in
  valid = offsets[None, :] < fan_in[:, None]
  mask = np.zeros((n_in, n_out), bool)
  cols = np.broadcast_to(np.arange(n_out)[:, None], rows.shape)
  mask[rows[valid], cols[valid]] = True
  return mask


def rewire(mask: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
  """Move each edge's input end with probability p to an absent input.

  Per output, the rewired edges are replaced by inputs drawn uniformly
  without replacement among those the output does not keep (an edge's old
  input is free again once it is rewired); fan-in is unchanged.
  """
  if not 0.0 <= p <= 1.0:
    raise ValueError(f'rewire probability must be in [0, 1], got {p}')
  if p == 0.0:
    return mask.copy()
  moved = mask & (rng.random(mask.shape) < p)
  kept = mask & ~moved
  count = moved.sum(axis=0)
  keys = rng.random(mask.shape)
  keys[kept] = np.inf
  # Output j takes the count[j] smallest keys among the inputs it does not
  # keep: every key up to its column's count[j]-th smallest (one sort of the
  # columns that move an edge; keys are distinct floats).
  out = kept.copy()
  cols = np.flatnonzero(count)
  if cols.size:
    ordered = np.sort(keys[:, cols].T, axis=1)
    threshold = ordered[np.arange(cols.size), count[cols] - 1]
    out[:, cols] |= keys[:, cols] <= threshold[None, :]
  return out


def layer_masks(sizes: Dict[str, Sequence[int]], edges: Dict[str, int],
                p: float, seed: Union[int, Sequence[int]]
                ) -> Dict[str, np.ndarray]:
  """Rewired lattices ``(n_in, n_out)`` of every layer (deterministic)."""
  seed = list(np.atleast_1d(seed))
  out = {}
  for i, (name, (n_in, n_out, _)) in enumerate(sizes.items()):
    rng = np.random.default_rng(seed + [i])
    out[name] = rewire(ring_lattice(n_in, n_out, edges[name]), p, rng)
  return out


# --- the layered graph -----------------------------------------------------------
class LayeredGraph:
  """Maps each wrapped layer's mask to edges between channel-group nodes."""

  def __init__(self, model, names: Sequence[str]):
    g = graph_lib.build(model, warn=False)
    self.ends = {}
    for node in g.nodes:
      if node.name in names and node.kind == graph_lib.CONV:
        self.ends[node.name] = (g.groups(node.inputs[0]),
                                g.groups(node.outputs[0]))
    self.missing = sorted(set(names) - set(self.ends))
    self._used = np.unique(np.concatenate(
        [np.concatenate(e) for e in self.ends.values()])) if self.ends else (
            np.zeros(0, np.int64))
    self.n_nodes = int(self._used.size)

  def adjacency(self, masks: Dict[str, np.ndarray]):
    pairs = []
    for name, (ins, outs) in self.ends.items():
      rows, cols = np.nonzero(masks[name])
      pairs.append(np.stack([ins[rows], outs[cols]], axis=1))
    pairs = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
    return topology.adjacency(self.n_nodes,
                              np.searchsorted(self._used, pairs))


# --- the method ----------------------------------------------------------------
@base.register
class SmallWorld(edges_lib.BudgetMethod):
  """Fixed Small-World masks over Dense units and Conv2D channel pairs.

  Args:
    density: fraction of ALL the model's parameters kept (e.g. 0.023).
    rewire_p: rewiring probability in [0, 1], or 'auto' (max sigma).
    seed: makes the masks reproducible.
    layer_density: ``{layer name: density}`` for layers not rescaled by
      the Erdos-Renyi rule (e.g. ``{'conv1': 1.0}``).
    rescale_init: rescale surviving initial weights per output unit (for
      training from scratch, the paper's order; pass False when pruning a
      trained model).
    regrow_fraction: stage-3 prune-and-regrow fraction per update (0: off).
    p_grid: the p values tried by 'auto'.
    random_graphs: equal-density random graphs averaged for C_r and L_r.

  Run state (:meth:`get_state`, saved with the model): ``topology``, filled
  by ``prune``.
  """

  def __init__(self, density: float = 0.023,
               rewire_p: Union[str, float] = 'auto', seed: int = 0,
               layer_density: Optional[Dict[str, float]] = None,
               rescale_init: bool = True, regrow_fraction: float = 0.0,
               p_grid: Sequence[float] = DEFAULT_P_GRID,
               random_graphs: int = 2, structure: str = 'kernel'):
    if structure != 'kernel':
      raise ValueError('SmallWorld edges are single Dense weights and whole '
                       "Conv2D kernels: its structure is 'kernel'")
    super().__init__('kernel')
    if not 0 < float(density) <= 1:
      raise ValueError(f'density must be in (0, 1], got {density}')
    if isinstance(rewire_p, str) and rewire_p.lower() == 'auto':
      rewire_p = 'auto'
    elif isinstance(rewire_p, str) or not 0 <= float(rewire_p) <= 1:
      raise ValueError(f"rewire_p must be 'auto' or in [0, 1], got "
                       f'{rewire_p!r}')
    if not p_grid or any(not 0 <= float(p) <= 1 for p in p_grid):
      raise ValueError(f'p_grid must be a non-empty list of values in [0, 1],'
                       f' got {p_grid!r}')
    if int(seed) < 0:
      raise ValueError(f'seed must be >= 0, got {seed}')
    if not 0 <= float(regrow_fraction) < 1:
      raise ValueError(f'regrow_fraction must be in [0, 1), got '
                       f'{regrow_fraction}')
    if int(random_graphs) < 1:
      raise ValueError('random_graphs must be >= 1')
    self.density = float(density)
    self.rewire_p = rewire_p if rewire_p == 'auto' else float(rewire_p)
    self.seed = int(seed)
    self.layer_density = dict(layer_density or {})
    self.rescale_init = bool(rescale_init)
    self.regrow_fraction = float(regrow_fraction)
    self.p_grid = tuple(float(p) for p in p_grid)
    self.random_graphs = int(random_graphs)
    self.topology: Optional[dict] = None

  def score(self, wrapper, index):
    weight = wrapper.prunable[index]
    return self.structure.reduce(weight.variable, weight.layout, 'l1')

  # --- stage 1: build the masks ------------------------------------------------
  def _sizes(self, wrappers) -> Dict[str, tuple]:
    sizes = {}
    for wrapper in wrappers:
      name = wrapper.layer.name
      if not wrapper.built:
        raise ValueError(
            f'layer {name!r} is not built, so SmallWorld cannot size its '
            'graph; give the model an input shape (start it with '
            'keras.Input(shape)) before pruning')
      kinds = (structures.DENSE_LAYOUT, structures.CONV2D_LAYOUT)
      if (len(wrapper.prunable) != 1 or
          wrapper.prunable[0].layout not in kinds):
        raise ValueError(
            f'SmallWorld connects input and output units of Dense and Conv2D'
            f' layers; layer {name!r} ({type(wrapper.layer).__name__}) is '
            'neither (a DepthwiseConv2D connection is a channel). Leave it '
            'out with prune(..., layers=...).')
      shape = wrapper.prunable[0].variable.shape
      area = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
      sizes[name] = (int(shape[-2]), int(shape[-1]), area)
    return sizes

  def on_wrapped(self, wrappers: Sequence, model) -> None:
    """Stage 1: allocate the budget, build and rewire the lattices."""
    schedule = wrappers[0].schedule
    if schedule is not None and not isinstance(schedule, schedules.Periodic):
      raise ValueError(
          'SmallWorld masks are fixed by its density budget; a target '
          'schedule would be ignored. Use schedule=None, or for stage-3 '
          'prune-and-regrow tfprune.schedules.Periodic(begin_step, '
          'frequency=...) with regrow_fraction > 0.')
    if schedule is not None and self.regrow_fraction == 0:
      raise ValueError('a Periodic schedule with regrow_fraction=0 would do '
                       'nothing; set regrow_fraction (e.g. 0.1) or pass '
                       'schedule=None')
    if schedule is None and self.regrow_fraction > 0:
      raise ValueError('regrow_fraction needs update points: pass schedule='
                       'tfprune.schedules.Periodic(begin_step, frequency=...)'
                       ' (or regrow_fraction=0)')
    sizes = self._sizes(wrappers)
    total = model_report(model)['totals']['params']   # what the budget is a share of
    prunable_params = sum(s[0] * s[1] * s[2] for s in sizes.values())
    fixed_params = total - prunable_params
    budget = int(round(self.density * total))
    if budget < fixed_params:
      raise ValueError(
          f'density {self.density} keeps {budget} of {total} parameters, but '
          f'{fixed_params} of them are not pruned by SmallWorld (biases, '
          'BatchNorm, unwrapped layers); the smallest possible density here '
          f'is {fixed_params / total:.4f}')
    edges = edges_lib.allocate(sizes, budget - fixed_params,
                               self.layer_density)
    empty = [n for n, e in edges.items() if e == 0]
    if empty:
      raise ValueError(
          f'at density {self.density} layer(s) {empty} get no connection at '
          'all, so the output would not depend on the input; raise density '
          'or their layer_density')
    graph = LayeredGraph(model, list(sizes))
    if self.rewire_p == 'auto':
      p, grid, chosen = self._choose_p(sizes, edges, graph)
    else:
      p, grid = self.rewire_p, []
      chosen = self._measure(sizes, edges, graph, p) if graph.ends else None
    masks = layer_masks(sizes, edges, p, [self.seed, _p_key(p)])
    for wrapper in wrappers:
      mask = masks[wrapper.layer.name]
      wrapper.assign_mask(0, mask)
      if self.rescale_init:
        edges_lib.rescale_to_fan_in(wrapper, mask)
    kept = fixed_params + sum(edges[n] * sizes[n][2] for n in sizes)
    if budget - kept >= min(s[2] for s in sizes.values()):
      warnings.warn(
          f'SmallWorld keeps {kept} parameters, {budget - kept} fewer than '
          f'the budget {budget}: the layers that could take them are full '
          '(check layer_density)', stacklevel=3)
    self.topology = {
        'rewire_p': p, 'auto': self.rewire_p == 'auto',
        'clustering': topology.CLUSTERING,
        'params': total, 'kept_params': kept, 'kept_fraction': kept / total,
        'fixed_params': fixed_params, 'budget_params': budget,
        'graph_nodes': graph.n_nodes, 'graph_missing_layers': graph.missing,
        'layers': {n: {'edges': int(edges[n]), 'possible': s[0] * s[1],
                       'density': edges[n] / (s[0] * s[1]),
                       'params_per_edge': s[2]}
                   for n, s in sizes.items()},
        'small_world': chosen.as_dict() if chosen else None,
        'grid': grid, 'regrow_events': 0, 'regrown_edges': 0}
    logger.info('SmallWorld: kept %d of %d params (%.4f); p=%s; %s', kept,
                total, kept / total, p,
                'sigma=%s C=%.4f (random %.4f) L=%.3f (random %.3f)' % (
                    chosen.sigma, chosen.clustering, chosen.random_clustering,
                    chosen.path_length, chosen.random_path_length)
                if chosen else 'no graph measures')

  def _random_reference(self, sizes, edges, graph, bar=None):
    """:func:`topology.measure` of the equal-density random graphs."""
    out = []
    for r in range(self.random_graphs):
      out.append(topology.measure(graph.adjacency(layer_masks(
          sizes, edges, 1.0, [self.seed, 10**9 + r]))))
      if bar is not None:
        bar.update(bar.done + 1)
    return out

  def _measure(self, sizes, edges, graph, p, reference=None):
    adj = graph.adjacency(layer_masks(sizes, edges, p, [self.seed, _p_key(p)]))
    if reference is None:
      reference = self._random_reference(sizes, edges, graph)
    return topology.small_worldness(adj, reference=reference)

  def _choose_p(self, sizes, edges, graph):
    if not graph.ends:
      raise ValueError(
          "rewire_p='auto' needs the layered graph, but no wrapped layer was "
          'found in the channel graph (shared or nested layers?); pass a '
          'number, e.g. rewire_p=0.1')
    bar = progress.Progress(
        f'Small-World: sigma of {len(self.p_grid)} rewire_p values '
        f'({graph.n_nodes} nodes)', self.random_graphs + len(self.p_grid))
    try:
      bar.update(0)
      reference = self._random_reference(sizes, edges, graph, bar)
      results = []
      for p in self.p_grid:
        results.append((p, self._measure(sizes, edges, graph, p, reference)))
        bar.update(bar.done + 1)
    finally:
      bar.close()
    best = max(results, key=lambda r: (-1.0 if r[1].sigma is None
                                       else r[1].sigma,
                                       -r[0]))
    grid = [{'p': p, 'C': m.clustering, 'L': m.path_length, 'sigma': m.sigma}
            for p, m in results]
    for row in grid:
      logger.info('SmallWorld p=%-6g C=%.4f L=%.3f sigma=%s', row['p'],
                  row['C'], row['L'], row['sigma'])
    return best[0], grid, best[1]

  # --- stage 3: prune and regrow ------------------------------------------------
  def update_masks(self, wrappers: Sequence, sparsity: Optional[float],
                   step: int):
    """Drop the weakest ``regrow_fraction`` of each layer's edges, regrow."""
    self.refuse_target(sparsity, 'schedule=None, or tfprune.schedules.'
                       'Periodic for stage-3 prune-and-regrow')
    moved = 0
    for i, wrapper in enumerate(wrappers):
      mask = np.asarray(wrapper.masks[0]) > 0
      n_move = int(round(self.regrow_fraction * mask.sum()))
      absent = np.flatnonzero(~mask.reshape(-1))
      n_move = min(n_move, absent.size)
      if n_move == 0:
        continue
      scores = np.asarray(self.score(wrapper, 0)).reshape(-1)
      active = np.flatnonzero(mask.reshape(-1))
      drop = active[np.argsort(scores[active], kind='stable')[:n_move]]
      rng = np.random.default_rng([self.seed, int(step), i])
      grow = rng.choice(absent, n_move, replace=False)
      edges_lib.move(wrapper, drop, grow, self.optimizer)
      moved += n_move
    if self.topology is not None:
      self.topology['regrow_events'] += 1
      self.topology['regrown_edges'] += moved

  def report_info(self) -> Optional[dict]:
    return None if self.topology is None else copy.deepcopy(self.topology)

  def get_config(self):
    return {'density': self.density, 'rewire_p': self.rewire_p,
            'seed': self.seed, 'layer_density': dict(self.layer_density),
            'rescale_init': self.rescale_init,
            'regrow_fraction': self.regrow_fraction,
            'p_grid': list(self.p_grid), 'random_graphs': self.random_graphs}

  legacy_state_keys = ('topology',)     # in the config before 0.2

  def get_state(self) -> dict:
    return {} if self.topology is None else {'topology': self.topology}

  def set_state(self, state: dict) -> None:
    self.topology = state.get('topology')



def _p_key(p: float) -> int:
  return int(round(float(p) * 1e6))
