"""Small-world measures of an undirected graph: clustering, path length, sigma.

Watts and Strogatz call a graph small-world when it is clustered like a
lattice (C >> C_rand) but has short paths like a random graph
(L ~ L_rand); Humphries and Gurney's coefficient is
``sigma = (C / C_rand) / (L / L_rand)``, > 1 for small-world graphs.

The layered graph of a neural network (units as nodes, connections as edges)
has no triangles, so the usual clustering coefficient is 0 whatever the
wiring. This module therefore uses the bipartite clustering of Latapy,
Magnien and Del Vecchio (2008), the ``'dot'`` mode of
``networkx.algorithms.bipartite.clustering``: for a node u, the mean over
the nodes v at distance two of ``|N(u) & N(v)| / |N(u) | N(v)|``. It counts
squares (two units sharing inputs), which is what a ring lattice has and a
random graph lacks. Graphs are scipy sparse adjacency matrices, so a VGG-16
sized graph (thousands of nodes, ~10^5 edges) takes about a second.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Optional

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

CLUSTERING = 'bipartite (Latapy dot: mean Jaccard overlap of neighbourhoods)'

# Above this many nodes, path lengths are averaged over a fixed random sample
# of source nodes (an unbiased estimate) instead of every node.
EXACT_PATHS_UP_TO = 2000
SAMPLED_SOURCES = 600


def adjacency(n_nodes: int, edges) -> sparse.csr_matrix:
  """Symmetric 0/1 adjacency of an undirected graph (duplicates merged)."""
  edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
  if edges.size and (edges.min() < 0 or edges.max() >= n_nodes):
    raise ValueError(f'edge endpoints must lie in [0, {n_nodes}), got '
                     f'[{edges.min()}, {edges.max()}]')
  edges = edges[edges[:, 0] != edges[:, 1]]
  rows = np.concatenate([edges[:, 0], edges[:, 1]])
  cols = np.concatenate([edges[:, 1], edges[:, 0]])
  adj = sparse.csr_matrix((np.ones(rows.size, np.float64), (rows, cols)),
                          shape=(n_nodes, n_nodes))
  adj.data[:] = 1.0   # merge duplicate edges
  return adj


def bipartite_clustering(adj: sparse.spmatrix) -> np.ndarray:
  """Latapy 'dot' clustering of every node (0 where no node is 2 steps away)."""
  adj = sparse.csr_matrix(adj, dtype=np.float64)
  degree = np.asarray(adj.sum(axis=1)).ravel()
  common = (adj @ adj).tocoo()            # |N(u) & N(v)| for u, v <= 2 apart
  off = common.row != common.col
  u, v, shared = common.row[off], common.col[off], common.data[off]
  jaccard = shared / (degree[u] + degree[v] - shared)
  total = np.bincount(u, weights=jaccard, minlength=adj.shape[0])
  count = np.bincount(u, minlength=adj.shape[0])
  out = np.zeros(adj.shape[0])
  np.divide(total, count, out=out, where=count > 0)
  return out


@dataclasses.dataclass
class PathLengths:
  """Mean shortest path over connected ordered pairs, and how many connect."""

  mean: float
  reachable_fraction: float
  sources: int


def path_lengths(adj: sparse.spmatrix, seed: int = 0,
                 sources: Optional[int] = None) -> PathLengths:
  """Average shortest-path length (unweighted) over reachable pairs.

  Pairs in different components are left out of the mean (their distance is
  infinite) and reported as ``1 - reachable_fraction``. Graphs larger than
  :data:`EXACT_PATHS_UP_TO` nodes use :data:`SAMPLED_SOURCES` random sources.
  """
  n = adj.shape[0]
  if n < 2:
    raise ValueError('path length needs at least 2 nodes')
  if sources is None:
    sources = n if n <= EXACT_PATHS_UP_TO else SAMPLED_SOURCES
  indices = (np.arange(n) if sources >= n else
             np.random.default_rng(seed).choice(n, sources, replace=False))
  dist = csgraph.shortest_path(adj, method='D', unweighted=True,
                               directed=False, indices=indices)
  dist[np.arange(len(indices)), indices] = np.inf   # drop u == u
  finite = np.isfinite(dist)
  pairs = len(indices) * (n - 1)
  mean = float(dist[finite].mean()) if finite.any() else float('nan')
  return PathLengths(mean, float(finite.sum()) / pairs, len(indices))


@dataclasses.dataclass
class SmallWorldness:
  """C, L of a graph and of equal-density random graphs, and sigma."""

  clustering: float
  path_length: float
  random_clustering: float
  random_path_length: float
  reachable_fraction: float

  @property
  def sigma(self) -> Optional[float]:
    """None when undefined (no clustering or no path in the graphs)."""
    values = (self.clustering, self.random_clustering, self.path_length,
              self.random_path_length)
    if (self.random_clustering == 0 or self.path_length == 0 or
        not all(np.isfinite(v) for v in values)):
      return None
    return ((self.clustering / self.random_clustering) /
            (self.path_length / self.random_path_length))

  def as_dict(self) -> dict:
    out = dataclasses.asdict(self)
    out['sigma'] = self.sigma
    return out


def measure(adj: sparse.spmatrix) -> tuple:
  """(mean clustering, path lengths) of one graph."""
  return float(bipartite_clustering(adj).mean()), path_lengths(adj)


def small_worldness(adj: sparse.spmatrix,
                    random_adjs: Iterable[sparse.spmatrix]) -> SmallWorldness:
  """Sigma of ``adj`` against random graphs with the same nodes and density."""
  clustering, paths = measure(adj)
  reference = [measure(r) for r in random_adjs]
  if not reference:
    raise ValueError('small_worldness needs at least one random graph')
  return SmallWorldness(
      clustering=clustering, path_length=paths.mean,
      random_clustering=float(np.mean([c for c, _ in reference])),
      random_path_length=float(np.mean([p.mean for _, p in reference])),
      reachable_fraction=paths.reachable_fraction)

