"""Small-world measures against hand-computed values and networkx."""

import numpy as np
import pytest

from tfprune import topology


def test_four_cycle_by_hand():
  # 0-1-2-3-0: each node's only node at distance 2 is the opposite one,
  # which has the same two neighbours -> clustering 1; paths 1, 1, 2.
  adj = topology.adjacency(4, [(0, 1), (1, 2), (2, 3), (3, 0)])
  np.testing.assert_allclose(topology.bipartite_clustering(adj), [1, 1, 1, 1])
  paths = topology.path_lengths(adj)
  assert paths.mean == pytest.approx(4 / 3)
  assert paths.reachable_fraction == 1.0


def test_path_graph_by_hand():
  # 0-1-2: node 0 and 2 share their one neighbour (Jaccard 1); node 1 has
  # nobody at distance two (0). Duplicate and self edges are dropped.
  adj = topology.adjacency(3, [(0, 1), (1, 2), (1, 0), (2, 2)])
  assert adj.nnz == 4
  np.testing.assert_allclose(topology.bipartite_clustering(adj), [1, 0, 1])
  assert topology.path_lengths(adj).mean == pytest.approx(4 / 3)


def test_disconnected_pairs_are_counted_apart():
  adj = topology.adjacency(4, [(0, 1), (2, 3)])
  paths = topology.path_lengths(adj)
  assert paths.mean == 1.0
  assert paths.reachable_fraction == pytest.approx(4 / 12)


def test_matches_networkx_on_a_random_bipartite_graph():
  nx = pytest.importorskip('networkx')
  from networkx.algorithms import bipartite  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  edges = [(i, 30 + j) for i in range(30) for j in range(40)
           if rng.random() < 0.12]
  graph = nx.Graph(edges)
  graph.add_nodes_from(range(70))
  adj = topology.adjacency(70, edges)
  expected = bipartite.clustering(graph, mode='dot')
  np.testing.assert_allclose(topology.bipartite_clustering(adj),
                             [expected[n] for n in range(70)])
  giant = graph.subgraph(max(nx.connected_components(graph), key=len))
  order = sorted(giant.nodes)
  sub = topology.adjacency(len(order), [(order.index(a), order.index(b))
                                        for a, b in giant.edges])
  assert topology.path_lengths(sub).mean == pytest.approx(
      nx.average_shortest_path_length(giant))


def test_sampled_path_length_is_close_to_exact():
  rng = np.random.default_rng(1)
  edges = rng.integers(0, 400, size=(2000, 2))
  adj = topology.adjacency(400, edges)
  exact = topology.path_lengths(adj).mean
  sampled = topology.path_lengths(adj, sources=100).mean
  assert sampled == pytest.approx(exact, rel=0.03)


def test_sigma_of_a_lattice_against_random_graphs():
  # A bipartite ring lattice (input i feeds outputs i..i+2 of 60) shares
  # neighbourhoods far more than random bipartite graphs of equal density.
  lattice = [(i, 60 + (i + d) % 60) for i in range(60) for d in range(3)]
  rng = np.random.default_rng(2)
  randoms = [topology.adjacency(120, np.stack(
      [rng.integers(0, 60, 180), 60 + rng.integers(0, 60, 180)], 1))
             for _ in range(3)]
  result = topology.small_worldness(topology.adjacency(120, lattice), randoms)
  # node i's distance-2 nodes are i+-1 (share 2 of 4: 1/2), i+-2 (1/5)
  assert result.clustering == pytest.approx((0.5 + 0.5 + 0.2 + 0.2) / 4)
  assert result.clustering > 1.5 * result.random_clustering
  assert result.path_length > result.random_path_length
  assert result.sigma == pytest.approx(
      (result.clustering / result.random_clustering) /
      (result.path_length / result.random_path_length))
  same = topology.small_worldness(randoms[0], [randoms[0]])
  assert same.sigma == pytest.approx(1.0)


def test_bad_edges_are_refused():
  with pytest.raises(ValueError, match=r'\[0, 3\)'):
    topology.adjacency(3, [(0, 3)])
  with pytest.raises(ValueError, match='at least one random graph'):
    topology.small_worldness(topology.adjacency(2, [(0, 1)]), [])


def test_clustering_of_chosen_nodes_and_its_sampled_mean():
  rng = np.random.default_rng(3)
  adj = topology.adjacency(300, rng.integers(0, 300, size=(1500, 2)))
  full = topology.bipartite_clustering(adj)
  nodes = np.array([5, 17, 250, 3])
  np.testing.assert_allclose(topology.bipartite_clustering(adj, nodes),
                             full[nodes])
  assert topology.mean_clustering(adj) == pytest.approx(full.mean())
  sampled = topology.mean_clustering(adj, nodes=150)
  assert sampled == pytest.approx(full.mean(), rel=0.1)
  assert sampled == topology.mean_clustering(adj, nodes=150)   # fixed sample


def test_sigma_from_measured_random_graphs_equals_measuring_them():
  rng = np.random.default_rng(4)
  graphs = [topology.adjacency(80, rng.integers(0, 80, size=(240, 2)))
            for _ in range(3)]
  direct = topology.small_worldness(graphs[0], graphs[1:])
  cached = topology.small_worldness(
      graphs[0], reference=[topology.measure(g) for g in graphs[1:]])
  assert cached == direct
