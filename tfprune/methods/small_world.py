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
   The ring order of a Dense layer after a Flatten is channel by channel
   (``lattice='channel'``): a unit reads neighbouring positions of one or
   two channels, a receptive field, and the next layer's lattice then reads
   bands of channels at every position. Keras' flatten order (``'index'``)
   would give each unit several channels at ONE position, and the logits
   of each class only a corner of the image (``docs/METHODS.md`` section 1;
   both are rows of the benchmark).
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
   weights) and regrows as many absent edges (not the ones just dropped):
   drawn uniformly (``regrow='random'``), or, with ``regrow='gradient'``,
   those with the largest loss gradient on ``regrow_batch`` examples of
   ``regrow_data`` (RigL's growth rule, Evci et al. 2020; the gradient at
   absent edges is exact because pruned weights are zeros, see
   :meth:`SmallWorld._edge_gradients`). ``regrow_anneal='cosine'`` decays
   the fraction to 0 at the schedule's ``end_step``, as RigL does. Grown
   weights are set to 0 and the optimizer state of grown and dropped
   weights is reset; the budget is unchanged.
   ``prune(..., schedule=<float>)`` is refused: the budget is the method's.
"""

from __future__ import annotations

import copy
import logging
import warnings
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from tfprune import generations
from tfprune import graph as graph_lib
from tfprune import progress, schedules, structures, topology
from tfprune.report import report as model_report
from tfprune.methods import base
from tfprune.methods import edges as edges_lib

logger = logging.getLogger('tfprune')

LATTICE_ORDERS = ('channel', 'index')
REGROW_RULES = ('random', 'gradient')
REGROW_ANNEALS = ('constant', 'cosine')
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
                p: float, seed: Union[int, Sequence[int]],
                orders: Optional[Dict[str, np.ndarray]] = None
                ) -> Dict[str, np.ndarray]:
  """Rewired lattices ``(n_in, n_out)`` of every layer (deterministic).

  ``orders[name]`` (optional) is the ring order of that layer's inputs:
  lattice position ``r`` is input ``orders[name][r]``.
  """
  seed = list(np.atleast_1d(seed))
  orders = orders or {}
  out = {}
  for i, (name, (n_in, n_out, _)) in enumerate(sizes.items()):
    rng = np.random.default_rng(seed + [i])
    mask = rewire(ring_lattice(n_in, n_out, edges[name]), p, rng)
    order = orders.get(name)
    if order is not None:
      placed = np.empty_like(mask)
      placed[order] = mask
      mask = placed
    out[name] = mask
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

  def channel_orders(self) -> Dict[str, np.ndarray]:
    """Ring orders that put a Dense layer's flattened inputs channel by
    channel (a channel's spatial positions next to each other, in row-major
    order) instead of position by position; only for layers whose inputs
    repeat a channel group (a Flatten before them)."""
    orders = {}
    for name, (ins, _) in self.ends.items():
      if np.unique(ins).size < ins.size:
        orders[name] = np.argsort(ins, kind='stable')
    return orders

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
    regrow: which absent edges grow: 'random' (uniform) or 'gradient' (the
      largest loss gradient on a batch of ``regrow_data``, RigL-style).
    regrow_anneal: 'constant', or 'cosine': the fraction decays from
      ``regrow_fraction`` to 0 over the Periodic schedule's
      [begin_step, end_step].
    regrow_data: ``(x, y)`` arrays for ``regrow='gradient'`` (not saved with
      the model: give it again, ``method.regrow_data = (x, y)``, to resume).
    regrow_batch: examples per gradient (drawn from ``regrow_data``).
    p_grid: the p values tried by 'auto'.
    random_graphs: equal-density random graphs averaged for C_r and L_r.
    lattice: ring order of a Dense layer's flattened inputs: 'channel'
      (a channel's positions next to each other) or 'index' (Keras' flatten
      order, position by position, as earlier tfprune versions did).

  Run state (:meth:`get_state`, saved with the model): ``topology``, filled
  by ``prune``.
  """

  def __init__(self, density: float = 0.023,
               rewire_p: Union[str, float] = 'auto', seed: int = 0,
               layer_density: Optional[Dict[str, float]] = None,
               rescale_init: bool = True, regrow_fraction: float = 0.0,
               regrow: str = 'random', regrow_anneal: str = 'constant',
               regrow_data=None, regrow_batch: int = 1024,
               p_grid: Sequence[float] = DEFAULT_P_GRID,
               random_graphs: int = 2, lattice: str = 'channel',
               structure: str = 'kernel'):
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
    base.check_choice('regrow', regrow, REGROW_RULES)
    base.check_choice('regrow_anneal', regrow_anneal, REGROW_ANNEALS)
    base.check_choice('lattice', lattice, LATTICE_ORDERS)
    if int(regrow_batch) < 1:
      raise ValueError(f'regrow_batch must be >= 1, got {regrow_batch}')
    self.density = float(density)
    self.rewire_p = rewire_p if rewire_p == 'auto' else float(rewire_p)
    self.seed = int(seed)
    self.layer_density = dict(layer_density or {})
    self.rescale_init = bool(rescale_init)
    self.regrow_fraction = float(regrow_fraction)
    self.regrow = regrow
    self.regrow_anneal = regrow_anneal
    self.regrow_batch = int(regrow_batch)
    self.regrow_data = regrow_data
    self.p_grid = tuple(float(p) for p in p_grid)
    self.random_graphs = int(random_graphs)
    self.lattice = lattice
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
    if (self.regrow_anneal == 'cosine' and schedule is not None and
        schedule.end_step <= schedule.begin_step):
      raise ValueError("regrow_anneal='cosine' decays over the schedule's "
                       '[begin_step, end_step]; give the Periodic schedule an'
                       f' end_step after its begin_step ({schedule.begin_step})')
    if self.regrow == 'gradient' and self.regrow_fraction > 0:
      self._check_regrow_data()
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
    masks = layer_masks(sizes, edges, p, [self.seed, _p_key(p)],
                        self._orders(graph))
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

  def _orders(self, graph: LayeredGraph) -> Dict[str, np.ndarray]:
    return graph.channel_orders() if self.lattice == 'channel' else {}

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
    adj = graph.adjacency(layer_masks(sizes, edges, p, [self.seed, _p_key(p)],
                                      self._orders(graph)))
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
    """Drop each layer's weakest edges (L1 of their weights) and grow as
    many absent ones (uniformly, or by the largest gradient)."""
    self.refuse_target(sparsity, 'schedule=None, or tfprune.schedules.'
                       'Periodic for stage-3 prune-and-regrow')
    fraction = self.regrow_fraction_at(wrappers[0].schedule, step)
    gradients = (self._edge_gradients(wrappers, step)
                 if self.regrow == 'gradient' and fraction > 0 else None)
    moved = 0
    for i, wrapper in enumerate(wrappers):
      mask = np.asarray(wrapper.masks[0]) > 0
      n_move = int(round(fraction * mask.sum()))
      absent = np.flatnonzero(~mask.reshape(-1))
      n_move = min(n_move, absent.size)
      if n_move == 0:
        continue
      scores = np.asarray(self.score(wrapper, 0)).reshape(-1)
      active = np.flatnonzero(mask.reshape(-1))
      drop = active[np.argsort(scores[active], kind='stable')[:n_move]]
      if gradients is None:
        rng = np.random.default_rng([self.seed, int(step), i])
        grow = rng.choice(absent, n_move, replace=False)
      else:
        grow = absent[np.argsort(-gradients[i][absent],
                                 kind='stable')[:n_move]]
      edges_lib.move(wrapper, drop, grow, self.optimizer)
      moved += n_move
    if self.topology is not None:
      self.topology['regrow_events'] += 1
      self.topology['regrown_edges'] += moved

  def regrow_fraction_at(self, schedule, step: int) -> float:
    """The fraction of edges moved at ``step`` (cosine: decays to 0 at the
    schedule's end_step)."""
    if self.regrow_anneal == 'constant' or schedule is None:
      return self.regrow_fraction
    begin, end = schedule.begin_step, schedule.end_step
    elapsed = min(max((step - begin) / max(end - begin, 1), 0.0), 1.0)
    return self.regrow_fraction * 0.5 * (1 + np.cos(np.pi * elapsed))

  def _check_regrow_data(self):
    data = self.regrow_data
    if (not isinstance(data, (tuple, list)) or len(data) != 2 or
        len(data[0]) != len(data[1]) or not len(data[0])):
      raise ValueError(
          "regrow='gradient' ranks absent edges by the loss gradient on "
          'training examples: pass regrow_data=(x, y), two arrays of the '
          'same length (after loading a saved model, set '
          'method.regrow_data = (x, y) before training on)')

  def _edge_gradients(self, wrappers, step: int) -> List[np.ndarray]:
    """|dLoss/dw| summed over each edge's weights, for every edge, on
    ``regrow_batch`` examples of ``regrow_data``.

    Pruned weights are exact zeros, so with every mask set to 1 for one
    forward pass the model computes the same function, and the gradient of
    each kernel is the gradient of the effective weight everywhere (also
    at absent edges, where the masked forward gives 0). The masks are then
    written back unchanged.
    """
    self._check_regrow_data()
    model = self._model
    if model is None or getattr(model, 'loss', None) is None:
      raise ValueError("regrow='gradient' needs the model being trained, "
                       'compiled with a loss (model.compile(loss=...)); in a'
                       ' custom loop, compile the model and give PruningStep '
                       'the model (set_model) before training')
    x, y = self.regrow_data
    rng = np.random.default_rng([self.seed, int(step), 1 << 20])
    take = rng.choice(len(x), min(self.regrow_batch, len(x)), replace=False)
    take.sort()
    xb = tf.convert_to_tensor(np.asarray(x)[take])
    yb = tf.convert_to_tensor(np.asarray(y)[take])
    saved = [wrapper.masks[0].numpy() for wrapper in wrappers]
    kernels = [wrapper.prunable[0].variable for wrapper in wrappers]

    def gradients():
      with tf.GradientTape() as tape:
        loss = _data_loss(model, yb, model(xb, training=False))
      return tape.gradient(loss, kernels)

    try:
      for wrapper, mask in zip(wrappers, saved):
        wrapper.masks[0].assign(np.ones_like(mask))
      strategy = tf.distribute.get_strategy()
      if tf.distribute.has_strategy() and (
          tf.distribute.in_cross_replica_context()):
        # Mirrored variables give no gradient outside a replica: every
        # replica takes the same batch, the first one's gradients are used.
        grads = [strategy.experimental_local_results(g)[0]
                 for g in strategy.run(gradients)]
      else:
        grads = gradients()
    finally:
      for wrapper, mask in zip(wrappers, saved):
        wrapper.masks[0].assign(mask)
    return [np.asarray(wrapper.structure.reduce(
        tf.abs(g), wrapper.prunable[0].layout, 'sum')).reshape(-1)
            for wrapper, g in zip(wrappers, grads)]

  def report_info(self) -> Optional[dict]:
    return None if self.topology is None else copy.deepcopy(self.topology)

  def get_config(self):
    return {'density': self.density, 'rewire_p': self.rewire_p,
            'seed': self.seed, 'layer_density': dict(self.layer_density),
            'rescale_init': self.rescale_init,
            'regrow_fraction': self.regrow_fraction,
            'regrow': self.regrow, 'regrow_anneal': self.regrow_anneal,
            'regrow_batch': self.regrow_batch,
            'p_grid': list(self.p_grid), 'random_graphs': self.random_graphs,
            'lattice': self.lattice}

  legacy_state_keys = ('topology',)     # in the config before 0.2

  def get_state(self) -> dict:
    return {} if self.topology is None else {'topology': self.topology}

  def set_state(self, state: dict) -> None:
    self.topology = state.get('topology')



def _data_loss(model, y, pred):
  """The compiled loss of ``model`` on one batch, mean over examples.

  Not ``model.compute_loss``: tf_keras' adds the batch to the epoch's loss
  metric, whose variables MirroredStrategy refuses to update outside a
  replica. Regularisation terms are left out: their gradient at an absent
  edge (a zero weight) is zero.
  """
  if isinstance(model.loss, (dict, list, tuple)):
    raise ValueError("regrow='gradient' needs a model compiled with one loss"
                     f', got {model.loss!r}')
  loss = generations.of(model).keras.losses.get(model.loss)
  return tf.reduce_mean(loss(y, pred))


def _p_key(p: float) -> int:
  return int(round(float(p) * 1e6))
