"""report(): params, non-zeros, MACs and structure sparsity by hand."""

import json

import numpy as np
import pytest

import tfprune
from conftest import small_conv_model


def _hand_pruned():
  model = small_conv_model()
  for layer in model.layers:
    layer.set_weights([np.ones_like(w) for w in layer.get_weights()])
  conv = model.get_layer('conv')
  kernel = np.ones((3, 3, 2, 4), np.float32)
  kernel[:, :, 0, 1] = 0          # one 2-D kernel (connection 0 -> 1)
  kernel[:, :, :, 3] = 0          # a whole filter
  kernel[0, 0, 1, 2] = 0          # a single weight
  conv.set_weights([kernel, np.ones(4, np.float32)])
  return model


def test_numbers_by_hand():
  rep = tfprune.report(_hand_pruned())
  conv, dw, dense = rep['layers']
  assert [e['name'] for e in rep['layers']] == ['conv', 'dw', 'dense']
  assert conv['params'] == 76 and conv['nonzero_params'] == 76 - 28
  w = conv['weights'][0]
  assert w['sparsity']['weight'] == pytest.approx(28 / 72)
  assert w['sparsity']['kernel'] == pytest.approx(3 / 8)
  assert w['sparsity']['channel'] == pytest.approx(1 / 4)
  assert w['sparsity']['layer'] == 0.0
  # 4x4 output positions; depthwise 2x2x8; dense 32 -> 3
  assert conv['macs'] == 16 * 72 and conv['effective_macs'] == 16 * 44
  assert dw['macs'] == 4 * 72 and dense['macs'] == 96
  assert dw['weights'][0]['shape'] == [3, 3, 4, 2]
  t = rep['totals']
  assert t['params'] == 76 + 80 + 99
  assert t['macs'] == 1152 + 288 + 96
  assert t['weight_sparsity'] == pytest.approx(28 / (72 + 72 + 96))
  json.loads(json.dumps(rep))      # JSON-serialisable as it is


def test_wrapped_model_reports_effective_weights_and_structure():
  model = tfprune.prune(_hand_pruned(), tfprune.methods.Magnitude('block(2,1)'),
                        layers=['dense'])
  wrapper = model.get_layer('pruned_dense')
  mask = np.ones((16, 3), np.float32)
  mask[:4] = 0
  wrapper.masks[0].assign(mask)
  rep = tfprune.report(model)
  dense = rep['layers'][2]
  assert dense['name'] == 'dense' and dense['structure'] == 'block(2,1)'
  assert dense['weights'][0]['sparsity']['block(2,1)'] == pytest.approx(0.25)
  assert dense['weights'][0]['nonzero'] == 96 - 24
  assert dense['effective_macs'] == 72
  # same names and numbers after stripping
  stripped = tfprune.report(tfprune.strip(model))
  assert stripped['totals']['nonzero_params'] == rep['totals']['nonzero_params']


def test_table_lists_every_layer():
  text = str(tfprune.report(_hand_pruned()))
  lines = text.splitlines()
  assert lines[0].startswith('| layer')
  assert [l.split('|')[1].strip() for l in lines[2:]] == ['conv', 'dw',
                                                          'dense', 'total']
  assert '38.89%' in lines[2]      # conv weight sparsity 28/72
