"""Prove from the .tflite file that the Keras model's sparsity survived.

``check(path, expected)`` maps every prunable layer of ``expected`` (a
``tfprune.report`` of the converted model, or its JSON file) to its TFLite
operator, brings the file's weight back to Keras layout (FULLY_CONNECTED
``[out, in]``, CONV_2D ``OHWI``, DEPTHWISE_CONV_2D ``[1, H, W, C*M]``), and
compares zero patterns per structure kind:

  * every unit (weight, 2-D kernel, channel, and the layer's own structure
    such as a block or n:m group) that is zero in Keras must be zero in the
    file -- a folded BatchNorm scales a filter but keeps its zeros;
  * extra zero weights in the file (int8 rounding makes some) may be at most
    ``tolerance`` of the weights: 0 for float weights, 0.05 for quantized
    ones unless given.

A model shrunk with ``tfprune.shrink`` is checked against the report of the
model before shrinking plus the shrink plan (``plan=``; ``--plan plan.json``
on the command line): a removed channel or input counts as zero, the file's
weights are put back at their original indices, and weights that were
removed are not counted as extra zeros.

Layers are matched by name (the layer name as a component of the TFLite
tensor names, also with the ``_<n>`` suffix TensorFlow's name scopes add, as
Keras 3 models get) and otherwise by order, operator kind and weight shape:
the file's operator order need not follow the layers' (two same-shape convs
that meet at an Add), so a name is the only safe key. Also
checked: built-in ops only, no leftover wrapper state (variable or
CALL_ONCE ops), static input shape, no sparse tensor fed straight into
DEQUANTIZE (the fp16 NaN bug), and that the file loads and allocates under
ai_edge_litert's default (XNNPACK) delegate, in the runtime child process
(``tflite_export.guard``). DENSIFY ops and size are reported. The report
and the plan are validated first (``report_file``).

    python -m tflite_export.check model.tflite --expect report.json
    tfprune check runs/quickstart/model.tflite   # report and plan beside it
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from typing import Dict, List, Optional, Union

import numpy as np

from tflite_export import guard
from tflite_export import reader
from tflite_export import report_file
from tflite_export.report_file import ReportMismatchError
from tflite_export.report_file import load_plan
from tflite_export.report_file import load_report
from tflite_export.validation import Limits

_OP_OF = report_file.OP_OF
FLOAT_TOLERANCE, QUANTIZED_TOLERANCE = 0.0, 0.05


@dataclasses.dataclass
class LayerCheck:
  layer: str
  op: str
  structure: str
  keras_sparsity: float
  file_sparsity: float
  problems: List[str]
  details: Dict[str, str]

  @property
  def ok(self) -> bool:
    return not self.problems


@dataclasses.dataclass
class CheckResult:
  path: str
  layers: List[LayerCheck]
  deployment: Dict[str, object]
  deployment_problems: List[str]

  @property
  def ok(self) -> bool:
    return not self.deployment_problems and all(l.ok for l in self.layers)

  @property
  def failures(self) -> List[str]:
    return ([f'{l.layer}: {p}' for l in self.layers for p in l.problems] +
            self.deployment_problems)

  def table(self) -> str:
    """Markdown: one row per layer, then the deployment facts."""
    lines = ['| layer | op | structure | Keras zeros | file zeros | units '
             'zero in Keras / in file | result |', '|---|---|---|---|---|---|---|']
    for l in self.layers:
      units = '; '.join(f'{k} {v}' for k, v in l.details.items())
      lines.append(f'| {l.layer} | {l.op} | {l.structure} | '
                   f'{100 * l.keras_sparsity:.2f}% | '
                   f'{100 * l.file_sparsity:.2f}% | {units} | '
                   f'{"ok" if l.ok else "FAIL: " + "; ".join(l.problems)} |')
    lines.append('')
    for key, value in self.deployment.items():
      lines.append(f'- {key}: {value}')
    for problem in self.deployment_problems:
      lines.append(f'- FAIL: {problem}')
    return '\n'.join(lines)


def _to_keras_layout(kind: str, weight: np.ndarray, keras_shape) -> np.ndarray:
  if kind == 'Dense':
    return weight.T
  if kind == 'Conv2D':
    return weight.transpose(1, 2, 3, 0)
  return weight.reshape(keras_shape)   # depthwise [1,H,W,C*M] -> [H,W,C,M]


def _tflite_shape(kind: str, keras_shape) -> List[int]:
  if kind == 'Dense':
    return [keras_shape[1], keras_shape[0]]
  if kind == 'Conv2D':
    return [keras_shape[3], keras_shape[0], keras_shape[1], keras_shape[2]]
  h, w, c, m = keras_shape
  return [1, h, w, c * m]


def _layer_of(tensor_name: str) -> List[str]:
  """Layer names in a TFLite tensor name ('model/conv1/Conv2D;...')."""
  names = []
  for part in tensor_name.split(';'):
    pieces = part.split('/')
    if len(pieces) >= 2:
      names.append(pieces[1])
  return names


def _unsuffixed(names: List[str], layer_names) -> List[str]:
  """``names`` without the ``_<n>`` that TensorFlow's name scopes append
  (Keras 3 traces ``conv1`` as ``functional_1/conv1_1/convolution``); a
  name that is itself a layer of the report keeps its suffix."""
  return [re.sub(r'_\d+$', '', n) for n in names if n not in layer_names]


def _exported_shape(entry: Dict, kept) -> List[int]:
  """The Keras-layout weight shape after shrinking (unchanged without)."""
  shape = list(entry['weights'][0]['shape'])
  if kept is not None:
    kept_in, kept_out = kept
    if entry['type'] == 'DepthwiseConv2D':
      shape[2] = len(kept_in)
    else:
      shape[-2], shape[-1] = len(kept_in), len(kept_out)
  return shape


def _match(layers: List[Dict], ops: List[reader.Operator],
           shapes: Dict[str, List[int]]) -> Dict[str, reader.Operator]:
  """Layer name -> operator, by name first, then by order, kind and shape."""
  def fits(entry, op):
    return (op.weight is not None and op.name == _OP_OF[entry['type']] and
            op.weight.shape == _tflite_shape(entry['type'],
                                             shapes[entry['name']]))

  layer_names = {entry['name'] for entry in layers}
  names = {}
  for op in ops:
    names[op.index] = _layer_of(op.weight.name if op.weight else '')
    for out in op.output_names:
      names[op.index] += _layer_of(out)
  matched, used = {}, set()
  for name_of in (lambda op: names[op.index],
                  lambda op: _unsuffixed(names[op.index], layer_names)):
    for entry in layers:
      if entry['name'] in matched:
        continue
      for op in ops:
        if (op.index not in used and entry['name'] in name_of(op) and
            fits(entry, op)):
          matched[entry['name']] = op
          used.add(op.index)
          break
  last = -1
  for entry in layers:
    if entry['name'] in matched:
      last = matched[entry['name']].index
      continue
    free = [op for op in ops if op.index not in used and fits(entry, op)]
    after = [op for op in free if op.index > last]
    pick = (after or free or [None])[0]
    if pick is None:
      raise ReportMismatchError(
          f'layer {entry["name"]!r} ({entry["type"]}, weight '
          f'{shapes[entry["name"]]}) has no matching '
          f'{_OP_OF[entry["type"]]} operator in the file: the report does not'
          ' belong to this model (pass tfprune.report() of the very model '
          'that was converted)')
    matched[entry['name']] = pick
    used.add(pick.index)
    last = pick.index
  return matched


def _embed(kind: str, kept_zero: np.ndarray, shape, kept):
  """The file's zero pattern at the original shape; removed entries are zero.

  Returns (zero pattern, mask of the removed entries).
  """
  kept_in, kept_out = (np.asarray(k, np.int64) for k in kept)
  zero = np.ones(shape, bool)
  removed = np.ones(shape, bool)
  if kind == 'DepthwiseConv2D':   # outputs c*M + m follow their input c
    index = (slice(None), slice(None), kept_in)
  elif kind == 'Dense':
    index = (kept_in[:, None], kept_out[None, :])
  else:
    index = (slice(None), slice(None), kept_in[:, None], kept_out[None, :])
  zero[index] = kept_zero
  removed[index] = False
  return zero, removed


def _compare(entry: Dict, op: reader.Operator, tolerance: Optional[float],
             kept=None) -> LayerCheck:
  from tfprune.report import unpack_zeros, units_all_zero  # lazy: TensorFlow
  weight_entry = entry['weights'][0]
  shape = weight_entry['shape']
  kind = entry['type']
  keras_zero = unpack_zeros(weight_entry)
  removed = np.zeros(shape, bool)
  if kept is None:
    file_zero = _to_keras_layout(kind, op.weight.zeros, shape)
  else:
    file_zero, removed = _embed(
        kind, _to_keras_layout(kind, op.weight.zeros,
                               _exported_shape(entry, kept)), shape, kept)
  structure = entry.get('structure') or 'weight'
  kinds = ['weight', 'kernel', 'channel']
  if kind == 'Dense':
    kinds.remove('kernel')   # a Dense 'kernel' unit is one weight
  if structure not in kinds:
    kinds.append(structure)
  problems, details = [], {}
  for name in kinds:
    keras_units = units_all_zero(keras_zero, kind, name)
    file_units = units_all_zero(file_zero, kind, name)
    missing = int((keras_units & ~file_units).sum())
    details[name] = f'{int(keras_units.sum())}/{int(file_units.sum())}'
    if missing:
      problems.append(f'{missing} of {int(keras_units.sum())} {name} units '
                      'zero in Keras are non-zero in the file')
  if tolerance is None:
    tolerance = QUANTIZED_TOLERANCE if op.weight.quantized else FLOAT_TOLERANCE
  extra = float((file_zero & ~keras_zero & ~removed).mean())
  if extra > tolerance + 1e-12:
    problems.append(f'{100 * extra:.2f}% extra zero weights in the file '
                    f'(tolerance {100 * tolerance:.2f}%)')
  if kept is not None:
    outputs = shape[2] * shape[3] if kind == 'DepthwiseConv2D' else shape[-1]
    inputs = shape[2] if kind == 'DepthwiseConv2D' else shape[-2]
    details['removed'] = (f'{outputs - len(kept[1])} outputs, '
                          f'{inputs - len(kept[0])} inputs')
  return LayerCheck(entry['name'], op.name + ('+' + '+'.join(op.weight.via)
                                              if op.weight.via else ''),
                    structure, float(keras_zero.mean()),
                    float(file_zero.mean()), problems, details)


def _deployment(info: reader.ModelInfo, path: str, limits: Optional[Limits]):
  facts = {'file bytes': info.size,
           'operators': ', '.join(sorted(set(info.op_names))),
           'DENSIFY ops (weights expanded at load time)':
               info.op_names.count('DENSIFY')}
  problems = []
  if info.custom_ops:
    problems.append(f'non-builtin ops {info.custom_ops}')
  state = sorted(set(info.op_names) & set(reader.STATE_OPS))
  if state:
    problems.append(f'leftover variable state {state}: a pruning wrapper '
                    'was converted; strip the model first')
  for signature in info.input_signatures:
    if any(d < 0 for d in signature[1:]):
      problems.append(f'input shape {signature} is not static')
  for name in info.sparse_into_dequantize():
    problems.append(f'{name}: sparse tensor fed straight into DEQUANTIZE '
                    '(computes NaN)')
  try:   # in the runtime child: a crash raises RuntimeCrashError
    guard.load(info.data, path, limits)
    facts['loads with XNNPACK'] = 'yes'
  except guard.RuntimeRefusedError as e:
    facts['loads with XNNPACK'] = 'no'
    problems.append(f'does not load under ai_edge_litert: {e.reason}')
  return facts, problems


def check(path: str, expected: Union[str, Dict],
          tolerance: Optional[float] = None, plan=None,
          limits: Optional[Limits] = None) -> CheckResult:
  """Compare a .tflite file with the report of the Keras model it came from.

  ``plan``: the ``tfprune.surgery.Plan`` (or its ``as_dict()``/JSON file)
  when the file holds the shrunk model and ``expected`` reports the model
  before shrinking. ``limits``: the ceilings for reading and loading the
  file (``validation.Limits``).
  """
  layers = report_file.prunable_layers(load_report(expected))
  kept = load_plan(plan)
  for entry in layers:
    if entry['name'] in kept:
      report_file.check_kept(entry, kept[entry['name']])
  info = reader.inspect(path, limits)
  facts, problems = _deployment(info, path, limits)
  try:
    shapes = {e['name']: _exported_shape(e, kept.get(e['name']))
              for e in layers}
    matched = _match(layers, info.weight_ops(), shapes)
  except ReportMismatchError as e:
    if set(info.op_names) & set(reader.STATE_OPS):
      # Weights live in variables (an unstripped wrapper): nothing to map.
      return CheckResult(path, [], facts, problems)
    if not kept:
      raise ReportMismatchError(
          f'{e}; if the file holds a model shrunk with tfprune.shrink, pass '
          'the report from before shrinking with its plan (plan=, or --plan '
          'plan.json: tfprune.train writes it beside report.json)') from None
    raise
  rows = [_compare(e, matched[e['name']], tolerance, kept.get(e['name']))
          for e in layers]
  return CheckResult(path, rows, facts, problems)


def _beside(path: str, name: str) -> Optional[str]:
  """``name`` in the folder of ``path``, if that file exists."""
  found = os.path.join(os.path.dirname(os.path.abspath(path)), name)
  return found if os.path.isfile(found) else None


def _check_found(args, limits: Limits) -> CheckResult:
  """check() with the report (and plan) found beside the files if not given.

  Without ``--plan``, a file that does not match the report as it is (a
  shrunk model) is checked again with the ``plan.json`` beside the report,
  when there is one; a note says so.
  """
  expect = args.expect or _beside(args.model, 'report.json')
  if expect is None:
    raise ReportMismatchError(
        f'no --expect given and no report.json beside {args.model}; pass '
        '--expect report.json (written by tfprune train, or by '
        'tfprune.report(model).to_json(path))')
  try:
    return check(args.model, expect, args.tolerance, args.plan, limits)
  except ReportMismatchError:
    plan = None if args.plan else _beside(expect, 'plan.json')
    if plan is None:
      raise
    print(f'note: {args.model} does not match {expect} as it is; checking '
          f'it as the shrunk model with {plan} (--plan)', file=sys.stderr)
    return check(args.model, expect, args.tolerance, plan, limits)


def main(argv=None, prog: str = 'python -m tflite_export.check') -> int:
  """The command line; returns the exit status (0 ok, 1 failed, 2 error)."""
  parser = argparse.ArgumentParser(
      prog=prog,
      description='Check that a .tflite file keeps the sparsity of the Keras '
      'model described by a tfprune report.')
  parser.add_argument('model', help='the .tflite file')
  parser.add_argument('--expect', default=None,
                      help='report.json written by tfprune.train or '
                      'tfprune.report(model).to_json(path) (default: '
                      'report.json beside the model)')
  parser.add_argument('--plan', default=None,
                      help='plan.json of tfprune.shrink when the file holds '
                      'the shrunk model and the report the model before '
                      '(default: plan.json beside the report, when the file '
                      'does not match the report without it)')
  parser.add_argument('--tolerance', type=float, default=None,
                      help='allowed fraction of extra zero weights (default '
                      '0 for float, 0.05 for quantized weights)')
  Limits.add_arguments(parser)
  args = parser.parse_args(argv)
  name = prog.replace('python -m ', '')
  try:
    result = _check_found(args, Limits.from_arguments(args))
  except (OSError, reader.InvalidModelError, ReportMismatchError) as e:
    print(f'{name}: error: {e}', file=sys.stderr)
    return 2
  print(result.table())
  if not result.ok:
    failed = sorted({l.layer for l in result.layers if not l.ok})
    print(f'\nFAILED: sparsity did not survive in {failed or "no layer"}; '
          f'{len(result.deployment_problems)} deployment problem(s)',
          file=sys.stderr)
    return 1
  print('\nOK: every layer keeps its zero pattern')
  return 0


if __name__ == '__main__':
  sys.exit(main())
