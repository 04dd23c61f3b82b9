"""Every structure kind x layer layout, against hand-computed numbers."""

import numpy as np
import pytest
import tensorflow as tf

from tfprune import structures as st

DENSE = st.DENSE_LAYOUT
CONV = st.CONV2D_LAYOUT
DW = st.DEPTHWISE_LAYOUT
CUSTOM = st.default_layout(2)   # a PrunableLayer weight [in, out]

# Dense kernel [in=4, out=2].
W_DENSE = np.array([[1., -2.], [3., 0.5], [-4., 6.], [0., -1.]], np.float32)
# Conv2D kernel [kh=1, kw=2, in=2, out=2]: entry = +-(10*i + j + 1) per tap.
W_CONV = np.zeros((1, 2, 2, 2), np.float32)
for i in range(2):
  for j in range(2):
    W_CONV[0, 0, i, j] = 10 * i + j + 1
    W_CONV[0, 1, i, j] = -(10 * i + j + 1)
# Depthwise kernel [kh=1, kw=2, C=2, M=2].
W_DW = W_CONV.copy()


def np_(t):
  return np.asarray(t)


@pytest.mark.parametrize('spec,cls', [
    ('weight', st.Weight), ('kernel', st.Kernel), ('channel', st.Channel),
    ('layer', st.Layer), ('block(4,1)', st.Block), ('2:4', st.NM),
    (' Block(2, 3) ', st.Block)])
def test_get_parses_every_kind(spec, cls):
  s = st.get(spec)
  assert isinstance(s, cls)
  assert st.get(str(s)) == s


def test_get_rejects_unknown():
  with pytest.raises(ValueError, match='unknown structure'):
    st.get('rows')
  with pytest.raises(ValueError, match='0 < n < m'):
    st.get('4:4')


class TestDense:

  def test_weight(self):
    s = st.get('weight')
    assert s.mask_shape(W_DENSE.shape, DENSE) == (4, 2)
    np.testing.assert_array_equal(np_(s.reduce(W_DENSE, DENSE)),
                                  np.abs(W_DENSE))

  def test_kernel_is_weight_for_dense(self):
    s = st.get('kernel')
    assert s.mask_shape(W_DENSE.shape, DENSE) == (4, 2)
    np.testing.assert_array_equal(np_(s.reduce(W_DENSE, DENSE)),
                                  np.abs(W_DENSE))

  def test_channel(self):
    s = st.get('channel')
    assert s.mask_shape(W_DENSE.shape, DENSE) == (2,)
    np.testing.assert_allclose(np_(s.reduce(W_DENSE, DENSE)), [8., 9.5])
    np.testing.assert_allclose(np_(s.reduce(W_DENSE, DENSE, 'l2')),
                               [np.sqrt(26.), np.sqrt(41.25)])
    expanded = np_(s.expand([1., 0.], W_DENSE.shape, DENSE))
    np.testing.assert_array_equal(expanded, [[1, 0]] * 4)
    np.testing.assert_array_equal(np_(s.bias_mask(tf.constant([1., 0.]),
                                                  DENSE)), [1, 0])

  def test_layer(self):
    s = st.get('layer')
    assert s.mask_shape(W_DENSE.shape, DENSE) == ()
    assert float(s.reduce(W_DENSE, DENSE)) == pytest.approx(17.5)
    assert float(s.reduce(W_DENSE, DENSE, 'mean_abs')) == pytest.approx(17.5 / 8)
    np.testing.assert_array_equal(np_(s.expand(0., W_DENSE.shape, DENSE)),
                                  np.zeros((4, 2)))

  def test_block(self):
    s = st.get('block(2,1)')
    assert s.mask_shape(W_DENSE.shape, DENSE) == (2, 2)
    # rows (0,1) and (2,3) of each column: |1|+|3|, |-2|+|.5|, |-4|+0, 6+1
    np.testing.assert_allclose(np_(s.reduce(W_DENSE, DENSE)),
                               [[4., 2.5], [4., 7.]])
    np.testing.assert_allclose(np_(s.reduce(W_DENSE, DENSE, 'max_abs')),
                               [[3., 2.], [4., 6.]])
    expanded = np_(s.expand([[1., 0.], [0., 1.]], W_DENSE.shape, DENSE))
    np.testing.assert_array_equal(expanded, [[1, 0], [1, 0], [0, 1], [0, 1]])

  def test_block_must_divide(self):
    with pytest.raises(ValueError, match=r'does not divide .*in % 3'):
      st.get('block(3,1)').mask_shape(W_DENSE.shape, DENSE)

  def test_n_m(self):
    s = st.get('2:4')
    assert s.mask_shape(W_DENSE.shape, DENSE) == (4, 2)
    mask = np_(s.select(s.reduce(W_DENSE, DENSE), None, DENSE))
    # column 0: |1,3,4,0| keeps 3,4; column 1: |2,.5,6,1| keeps 2,6.
    np.testing.assert_array_equal(mask, [[0, 1], [1, 0], [1, 1], [0, 0]])
    with pytest.raises(ValueError, match='4 consecutive inputs'):
      s.mask_shape((6, 2), DENSE)


class TestConv2D:

  def test_weight(self):
    s = st.get('weight')
    assert s.mask_shape(W_CONV.shape, CONV) == (1, 2, 2, 2)

  def test_kernel(self):
    s = st.get('kernel')
    assert s.mask_shape(W_CONV.shape, CONV) == (2, 2)
    # each 2-D kernel holds +v and -v: L1 = 2v, sum = 0.
    np.testing.assert_allclose(np_(s.reduce(W_CONV, CONV)),
                               [[2., 4.], [22., 24.]])
    np.testing.assert_allclose(np_(s.reduce(W_CONV, CONV, 'sum')),
                               np.zeros((2, 2)))
    expanded = np_(s.expand([[1., 0.], [0., 1.]], W_CONV.shape, CONV))
    assert expanded.shape == W_CONV.shape
    np.testing.assert_array_equal(expanded[0, 1], [[1, 0], [0, 1]])

  def test_channel(self):
    s = st.get('channel')
    assert s.mask_shape(W_CONV.shape, CONV) == (2,)
    np.testing.assert_allclose(np_(s.reduce(W_CONV, CONV)), [24., 28.])
    expanded = np_(s.expand([0., 1.], W_CONV.shape, CONV))
    np.testing.assert_array_equal(expanded[..., 0], 0)
    np.testing.assert_array_equal(expanded[..., 1], 1)

  def test_layer(self):
    assert st.get('layer').mask_shape(W_CONV.shape, CONV) == ()
    assert float(st.get('layer').reduce(W_CONV, CONV)) == pytest.approx(52.)

  def test_block_per_window_position(self):
    s = st.get('block(2,1)')
    assert s.mask_shape(W_CONV.shape, CONV) == (1, 2, 1, 2)
    np.testing.assert_allclose(np_(s.reduce(W_CONV, CONV))[0, :, 0, :],
                               [[12., 14.], [12., 14.]])

  def test_n_m_along_input_channels(self):
    s = st.get('1:2')
    mask = np_(s.select(s.reduce(W_CONV, CONV), None, CONV))
    # along in: |1| vs |11| -> keep in=1, for every tap and output.
    np.testing.assert_array_equal(mask[:, :, 0, :], 0)
    np.testing.assert_array_equal(mask[:, :, 1, :], 1)


class TestDepthwise:

  def test_kernel_and_channel_are_c_by_m(self):
    for kind in ('kernel', 'channel'):
      s = st.get(kind)
      assert s.mask_shape(W_DW.shape, DW) == (2, 2)
      np.testing.assert_allclose(np_(s.reduce(W_DW, DW)),
                                 [[2., 4.], [22., 24.]])

  def test_channel_bias_order_is_c_times_m_plus_m(self):
    mask = tf.constant([[1., 0.], [0., 1.]])   # [C, M]
    np.testing.assert_array_equal(
        np_(st.get('channel').bias_mask(mask, DW)), [1, 0, 0, 1])

  def test_block_tiles_c_by_m(self):
    s = st.get('block(1,2)')
    assert s.mask_shape(W_DW.shape, DW) == (1, 2, 2, 1)
    np.testing.assert_allclose(np_(s.reduce(W_DW, DW))[0, 0, :, 0], [3., 23.])


class TestCustomPrunableLayout:

  def test_default_layout(self):
    assert CUSTOM == st.WeightLayout(spatial=(), in_axis=0, outputs=(1,))
    assert st.default_layout(4) == CONV
    assert st.default_layout(1).outputs == (0,)

  @pytest.mark.parametrize('kind,shape', [
      ('weight', (4, 2)), ('kernel', (4, 2)), ('channel', (2,)),
      ('layer', ()), ('block(2,2)', (2, 1)), ('2:4', (4, 2))])
  def test_mask_shapes(self, kind, shape):
    assert st.get(kind).mask_shape((4, 2), CUSTOM) == shape


def test_keep_top_matches_tfmot_rule_with_ties():
  scores = tf.constant([0.1, 0.5, 0.5, 0.3, 0.9])
  # k = round(5 * 0.4) = 2 -> threshold 0.5 -> both ties kept.
  np.testing.assert_array_equal(np_(st.keep_top(scores, 0.6)),
                                [0, 1, 1, 0, 1])
  # never fewer than one unit kept
  np.testing.assert_array_equal(np_(st.keep_top(scores, 0.99)),
                                [0, 0, 0, 0, 1])


@pytest.mark.parametrize('bad', [1.0, -0.1, 1.5])
def test_sparsity_outside_unit_interval(bad):
  with pytest.raises(ValueError, match=r'must be in \[0, 1\)'):
    st.keep_top([1., 2.], bad)


@pytest.mark.parametrize('kind', ['weight', 'kernel', 'column',
                                  'input_channel', 'channel', 'layer',
                                  'block(1,2)', '1:2'])
@pytest.mark.parametrize('layout', [CONV, DW], ids=['conv', 'depthwise'])
def test_numpy_masks_expand_in_numpy_like_tensors(kind, layout):
  """Mask updates expand numpy masks without TF ops (an eager op per layer
  per update was most of a MobileNetV2 update); same values as tensors."""
  s = st.get(kind)
  shape = s.mask_shape(W_CONV.shape, layout)
  mask = (np.arange(int(np.prod(shape))).reshape(shape) % 3 != 0)
  mask = mask.astype(np.float32)
  for method in ('broadcastable', 'expand'):
    out = getattr(s, method)(mask, W_CONV.shape, layout)
    assert isinstance(out, (np.ndarray, np.generic)), method
    np.testing.assert_array_equal(
        out, np_(getattr(s, method)(tf.constant(mask), W_CONV.shape, layout)))
  assert s.expand(mask, W_CONV.shape, layout).shape == W_CONV.shape
  bias = s.bias_mask(mask, layout)
  if bias is not None:
    assert isinstance(bias, (np.ndarray, np.generic))
    np.testing.assert_array_equal(bias,
                                  np_(s.bias_mask(tf.constant(mask), layout)))


@pytest.mark.parametrize('kind,layout,reshaped', [
    ('weight', CONV, False), ('channel', CONV, False), ('kernel', CONV, False),
    ('channel', DENSE, False), ('weight', DENSE, False),
    ('column', CONV, True), ('input_channel', CONV, True),
    ('input_channel', DENSE, True)])
def test_broadcastable_skips_the_reshape_when_the_mask_broadcasts(
    kind, layout, reshaped):
  """The wrapper multiplies by ``broadcastable`` in every training step: a
  mask that already broadcasts against the weight (its trailing axes) is
  used as it is, one op less per weight; the product is the same."""
  s = st.get(kind)
  weight_shape = W_CONV.shape if layout is CONV else (6, 5)
  mask = tf.constant(np.random.RandomState(0).rand(
      *s.mask_shape(weight_shape, layout)) > 0.5, tf.float32)
  out = s.broadcastable(mask, weight_shape, layout)
  assert (out is not mask) == reshaped
  weight = tf.ones(weight_shape)
  np.testing.assert_array_equal(np_(weight * out),
                                np_(s.expand(mask, weight_shape, layout)))


@pytest.mark.parametrize('reduction', ['l1', 'l2', 'mean_abs', 'max_abs',
                                       'sum', 'mean'])
@pytest.mark.parametrize('kind', ['weight', 'kernel', 'column',
                                  'input_channel', 'channel', 'layer',
                                  'block(1,2)'])
def test_numpy_weights_reduce_in_numpy_like_tensors(kind, reduction):
  """Magnitude scores read each weight once and reduce it in numpy; the
  scores equal TensorFlow's."""
  s = st.get(kind)
  w = np.random.RandomState(0).randn(*W_CONV.shape).astype(np.float32)
  out = s.reduce(w, CONV, reduction)
  assert isinstance(out, (np.ndarray, np.generic))
  expected = np_(s.reduce(tf.constant(w), CONV, reduction))
  assert out.shape == expected.shape == tuple(s.mask_shape(w.shape, CONV))
  np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_unknown_reduction_is_refused_for_numpy_too():
  with pytest.raises(ValueError, match='unknown reduction'):
    st.get('channel').reduce(np.ones((3, 3, 2, 4), np.float32), CONV, 'l3')
