"""Per-layer params, non-zeros, MACs and sparsity per structure kind.

Works on wrapped models (effective weights: weight * mask * gate) and on
stripped or plain ones, with the same layer names, so the two can be compared
(the TFLite checker compares the .tflite file against this report).
Each prunable weight carries its exact zero pattern (``zeros``: packed bits,
see :func:`unpack_zeros`). MACs count multiply-accumulates of the prunable
weights (Dense, Conv2D, DepthwiseConv2D, PrunableLayer) per example;
``effective_macs`` counts only non-zero weights.
"""

from __future__ import annotations

import base64
import json
from typing import Dict, List, Optional

import numpy as np

from tfprune import generations, prunable, structures
from tfprune.wrapper import WrapperCore, collect_wrappers


class Report(dict):
  """A JSON-serialisable dict whose ``str()`` is a readable table."""

  def table(self) -> str:
    return format_table(self)

  def __str__(self):
    return self.table()

  def to_json(self, path: Optional[str] = None) -> str:
    text = json.dumps(self, indent=2)
    if path is not None:
      with open(path, 'w') as f:
        f.write(text + '\n')
    return text


def pack_zeros(value: np.ndarray) -> str:
  """The zero pattern of a weight as base64 of its packed bits (C order)."""
  return base64.b64encode(np.packbits((value == 0).reshape(-1))).decode()


# The layouts of the weights a report describes, by layer type: what a
# reader of report.json (tflite_export.check) needs to find the units.
LAYOUTS = {'Dense': structures.DENSE_LAYOUT,
           'Conv2D': structures.CONV2D_LAYOUT,
           'DepthwiseConv2D': structures.DEPTHWISE_LAYOUT}


def _unit(structure: str) -> structures.Structure:
  unit = structures.get(structure)
  # n:m is a pattern inside each group of m, compared weight by weight
  return structures.Weight() if isinstance(unit, structures.NM) else unit


def units_all_zero(zero: np.ndarray, layer_type: str,
                   structure: str) -> np.ndarray:
  """Per unit of ``structure`` (n:m: per weight): are all its weights zero
  in the boolean pattern ``zero`` of a ``layer_type`` weight."""
  alive = (~np.asarray(zero, bool)).astype(np.float32)
  return np.asarray(_unit(structure).reduce(alive, LAYOUTS[layer_type],
                                            'sum')) == 0


def validate_structure(layer_type: str, structure: str, shape) -> None:
  """Raise a ValueError/TypeError unless ``structure`` fits a weight of
  ``shape`` in a ``layer_type`` layer."""
  _unit(structure).validate(shape, LAYOUTS[layer_type])


def unpack_zeros(weight_entry: Dict) -> np.ndarray:
  """The boolean zero pattern of a report's weight entry, at its shape."""
  shape = weight_entry['shape']
  bits = np.frombuffer(base64.b64decode(weight_entry['zeros']), np.uint8)
  return np.unpackbits(bits)[:int(np.prod(shape))].reshape(shape).astype(bool)


def _flat_layers(model) -> List:
  out = []
  for layer in model.layers:
    if isinstance(layer, generations.MODEL):
      out += _flat_layers(layer)
    else:
      out.append(layer)
  return out


def _positions(layer) -> Optional[int]:
  """Output positions per example (H*W for convs), from the output shape."""
  shape = generations.output_shape(layer)
  if shape is None:
    return None
  dims = shape[1:-1]
  if any(d is None for d in dims):
    return None
  return int(np.prod(dims)) if dims else 1


def _zero_fraction(zero_units: np.ndarray) -> float:
  return float(zero_units.mean()) if zero_units.size else 0.0


def structure_sparsity(weight: np.ndarray, layout: structures.WeightLayout,
                       structure) -> float:
  """Fraction of all-zero units of ``structure`` in a weight tensor."""
  structure = structures.get(structure)
  if isinstance(structure, structures.NM):
    nonzero = structures.Weight().reduce((weight != 0).astype(np.float32),
                                         layout, 'sum')
    return _zero_fraction(np.asarray(nonzero) == 0)
  scores = np.asarray(structure.reduce(weight.astype(np.float32), layout,
                                       'max_abs'))
  return _zero_fraction(scores == 0)


def _layer_entry(layer) -> Optional[Dict]:
  wrapper = layer if isinstance(layer, WrapperCore) else None
  inner = layer.layer if wrapper else layer
  values = {id(v): np.asarray(v) for v in inner.weights}
  if wrapper is not None:
    for attr, value in wrapper.effective_weights().items():
      values[id(getattr(inner, attr))] = value
  params = int(sum(v.size for v in values.values()))
  if not params:
    return None
  entry = {
      'name': inner.name,
      'type': type(inner).__name__,
      'params': params,
      'nonzero_params': int(sum(np.count_nonzero(v) for v in values.values())),
      'structure': str(wrapper.structure) if wrapper else None,
      'weights': [],
      'macs': 0,
      'effective_macs': 0,
  }
  if not prunable.is_supported(inner):
    entry['macs'] = entry['effective_macs'] = None
    return entry
  positions = _positions(layer)
  for weight in prunable.prunable_weights(inner):
    value = values[id(weight.variable)]
    sparsity = {kind: structure_sparsity(value, weight.layout, kind)
                for kind in ('weight', 'kernel', 'channel', 'layer')}
    if wrapper is not None and entry['structure'] not in sparsity:
      sparsity[entry['structure']] = structure_sparsity(
          value, weight.layout, wrapper.structure)
    entry['weights'].append({'attr': weight.attr,
                             'shape': list(value.shape),
                             'size': int(value.size),
                             'nonzero': int(np.count_nonzero(value)),
                             'sparsity': sparsity,
                             'zeros': pack_zeros(value)})
    if positions is None:
      entry['macs'] = entry['effective_macs'] = None
    elif entry['macs'] is not None:
      entry['macs'] += positions * int(value.size)
      entry['effective_macs'] += positions * int(np.count_nonzero(value))
  if isinstance(inner, generations.layers.SeparableConv2D) and (
      entry['macs'] is not None):     # its depthwise part is not pruned
    depthwise = values[id(inner.depthwise_kernel)]
    entry['macs'] += positions * int(depthwise.size)
    entry['effective_macs'] += positions * int(np.count_nonzero(depthwise))
  bias = prunable.bias_of(inner)
  if bias is not None:
    entry['bias_nonzero'] = int(np.count_nonzero(values[id(bias)]))
  return entry


def report(model) -> Report:
  """Per-layer and total params, non-zeros, MACs and structure sparsity."""
  layers = [e for e in (_layer_entry(l) for l in _flat_layers(model)) if e]
  prunable_entries = [w for e in layers for w in e['weights']]
  size = sum(w['size'] for w in prunable_entries)
  nonzero = sum(w['nonzero'] for w in prunable_entries)
  macs = [e['macs'] for e in layers if e['weights']]
  eff = [e['effective_macs'] for e in layers if e['weights']]
  params = sum(e['params'] for e in layers)
  nonzero_params = sum(e['nonzero_params'] for e in layers)
  totals = {
      'params': params,
      'nonzero_params': nonzero_params,
      'kept_fraction': nonzero_params / params if params else 0.0,
      'prunable_params': size,
      'prunable_nonzero': nonzero,
      'weight_sparsity': 1.0 - nonzero / size if size else 0.0,
      'macs': None if None in macs else int(sum(macs)),
      'effective_macs': None if None in eff else int(sum(eff)),
  }
  methods = {}
  for wrapper in collect_wrappers(model):
    if wrapper.cohort not in methods:
      info = wrapper.method.report_info()
      if info is not None:
        methods[wrapper.cohort] = {'method': type(wrapper.method).__name__,
                                  **info}
  rep = Report(model=model.name, layers=layers, totals=totals)
  if methods:
    rep['methods'] = methods
  return rep


def _fmt_int(value) -> str:
  return '-' if value is None else f'{value:,}'


def format_table(rep: Dict) -> str:
  """A fixed-width text table of a report (also valid Markdown)."""
  head = ['layer', 'type', 'structure', 'params', 'nonzero', 'weight sp.',
          'kernel sp.', 'channel sp.', 'MACs', 'eff. MACs']
  rows = []
  for e in rep['layers']:
    sp = e['weights'][0]['sparsity'] if e['weights'] else {}
    pct = lambda k: f'{100 * sp[k]:.2f}%' if k in sp else '-'  # pylint: disable=cell-var-from-loop
    rows.append([e['name'], e['type'], e['structure'] or '-',
                 _fmt_int(e['params']), _fmt_int(e['nonzero_params']),
                 pct('weight'), pct('kernel'), pct('channel'),
                 _fmt_int(e['macs']), _fmt_int(e['effective_macs'])])
  t = rep['totals']
  rows.append(['total', '', '', _fmt_int(t['params']),
               _fmt_int(t['nonzero_params']),
               f'{100 * t["weight_sparsity"]:.2f}%', '', '',
               _fmt_int(t['macs']), _fmt_int(t['effective_macs'])])
  widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
  line = lambda r: '| ' + ' | '.join(str(c).ljust(w) for c, w in zip(r, widths)) + ' |'
  sep = '|' + '|'.join('-' * (w + 2) for w in widths) + '|'
  return '\n'.join([line(head), sep] + [line(r) for r in rows])
