"""The channel dependency graph and the method registry, tested directly."""

import warnings

import numpy as np
import pytest
import tf_keras as keras

import tfprune
from tfprune import graph, registry

L = keras.layers


def _node(g, name):
  (node,) = [n for n in g.nodes if n.name == name]
  return node


def _model():
  inputs = keras.Input((6, 6, 3), name='x')
  a = L.Conv2D(4, 3, padding='same', name='a')(inputs)
  b = L.Conv2D(4, 1, name='b')(a)
  s = L.Add(name='add')([a, b])
  d = L.DepthwiseConv2D(3, depth_multiplier=2, padding='same', name='dw')(s)
  c = L.Conv2D(3, 1, name='c')(inputs)
  cat = L.Concatenate(name='cat')([d, c])            # 8 + 3 channels
  f = L.Flatten(name='flat')(L.MaxPooling2D(3, name='pool')(cat))
  return keras.Model(inputs, L.Dense(2, name='logits')(f))


def test_roles_and_links():
  g = graph.build(_model())
  kinds = {n.name: n.kind for n in g.nodes}
  assert kinds == {'x': 'input', 'a': 'conv', 'b': 'conv', 'add': 'merge',
                   'dw': 'depthwise', 'c': 'conv', 'cat': 'concat',
                   'pool': 'channelwise', 'flat': 'flatten',
                   'logits': 'conv'}
  groups = lambda name: g.groups(_node(g, name).outputs[0])
  # residual partners are one channel each; depthwise output c*M+m is its
  # input channel c
  np.testing.assert_array_equal(groups('a'), groups('b'))
  np.testing.assert_array_equal(groups('add'), groups('a'))
  np.testing.assert_array_equal(groups('dw'), np.repeat(groups('a'), 2))
  # concatenate: d's 8 channels, then c's 3
  np.testing.assert_array_equal(groups('cat'),
                                np.concatenate([groups('dw'), groups('c')]))
  # flatten: flat index j is channel j % 11 (2x2 positions after pooling)
  np.testing.assert_array_equal(groups('flat'), np.tile(groups('cat'), 4))
  # the model input and the logits are pinned, the rest is free
  assert g.pinned[g.groups(_node(g, 'x').outputs[0])].all()
  assert g.pinned[groups('logits')].all()
  assert not g.pinned[groups('a')].any() and not g.pinned[groups('c')].any()
  # consumers: who reads the add
  assert [n.name for n, _ in g.consumers(_node(g, 'add').outputs[0])] == ['dw']


def test_opaque_layers_pin_their_channels_and_are_named_once():
  inputs = keras.Input((6, 6, 3))
  a = L.Conv2D(4, 3, padding='same', name='a')(inputs)
  lam = L.Lambda(lambda t: t * 2.0, name='lam')(a)
  b = L.Conv2D(4, 3, padding='same', name='b')(lam)
  shared = L.Conv2D(4, 1, name='shared')
  c = shared(shared(b))
  out = L.Dense(2, name='logits')(L.GlobalAveragePooling2D()(c))
  model = keras.Model(inputs, out)
  with pytest.warns(graph.ShrinkWarning) as caught:
    g = graph.build(model)
  assert len(caught) == 1
  text = str(caught[0].message)
  assert "'lam' (Lambda: tfprune.graph does not know Lambda)" in text
  assert "'shared' (Conv2D: it is called 2 times (shared layer))" in text
  a_groups = g.groups(_node(g, 'a').outputs[0])
  assert g.pinned[a_groups].all()
  assert [n.name for n in g.opaque_touching(a_groups)] == ['lam']
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    graph.build(model, warn=False)           # quiet when asked


def test_check_flat_names_the_problem():
  inner = keras.Sequential([keras.Input((4,)), L.Dense(3)], name='inner')
  inputs = keras.Input((4,))
  nested = keras.Model(inputs, inner(inputs), name='outer')
  with pytest.raises(TypeError, match="nests the model 'inner'"):
    graph.check_flat(nested)
  with pytest.raises(TypeError, match='unbuilt Sequential'):
    graph.check_flat(keras.Sequential([L.Dense(3)], name='lazy'))
  with pytest.raises(TypeError, match='expected a Keras Model'):
    graph.check_flat(object())


def test_registry_names_and_errors():
  method = registry.get('network_trimming', fraction=0.5)
  assert type(method).__name__ == 'NetworkTrimming' and method.fraction == 0.5
  assert registry.get('SYNAPTICSTRENGTH').l1 > 0
  with pytest.raises(ValueError, match=r"unknown pruning method 'magnitud'; "
                     r"known: \[.*'Magnitude', 'NetworkTrimming', 'PSP'"):
    registry.get('magnitud')
  with pytest.raises(ValueError, match='import the module defining it'):
    registry.deserialize({'class_name': 'Nope', 'config': {}})
  rule = tfprune.ChannelSelection(ranking='global', round_to=4)
  magnitude = tfprune.methods.Magnitude('channel')
  magnitude.selection = rule
  config = registry.serialize(magnitude)
  assert config['selection']['round_to'] == 4
  again = registry.deserialize(config)
  assert again.selection == rule and again is not magnitude
  assert registry.deserialize(magnitude) is magnitude
  assert 'selection' not in registry.serialize(tfprune.methods.Magnitude())


def test_configs_saved_before_run_state_still_load():
  """tfprune 0.1 kept run state in get_config and called prune_weakest
  'prune': such saved models still load, with the state restored."""
  old = registry.deserialize({'class_name': 'SmallWorld', 'config': {
      'density': 0.1, 'topology': {'rewire_p': 0.0}}})
  assert old.topology == {'rewire_p': 0.0} and 'topology' not in \
      old.get_config()
  old = registry.deserialize({'class_name': 'Synthesis', 'config': {
      'prune': False, 'history': {'events': 3}}})
  assert old.prune_weakest is False and old.get_state() == {
      'history': {'events': 3}}
