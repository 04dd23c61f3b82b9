"""Read what check() compares a file with: the report and the shrink plan.

Both often come from JSON files, so both are validated field by field
before check() indexes or allocates by them: a wrong structure, bad base64
or a shape that does not match its zero pattern is one
``ReportMismatchError`` that names the layer and the field, never a
traceback or an allocation sized by a corrupt number.
"""

from __future__ import annotations

import base64
import json
from typing import Dict, List, Tuple, Union

import numpy as np

OP_OF = {'Dense': 'FULLY_CONNECTED', 'Conv2D': 'CONV_2D',
         'DepthwiseConv2D': 'DEPTHWISE_CONV_2D'}
_RANK = {'Dense': 2, 'Conv2D': 4, 'DepthwiseConv2D': 4}
_REWRITE = 'write the report with tfprune.report(model).to_json(path)'


class ReportMismatchError(ValueError):
  """The report is malformed or does not describe the converted model."""


def read_json(path: str, what: str):
  """A JSON file's content; every way of not being one is a clear error."""
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except FileNotFoundError:
    raise FileNotFoundError(f'no such {what} file: {path}') from None
  except IsADirectoryError:
    raise ReportMismatchError(f'{path} is a directory, not a {what} JSON '
                              'file') from None
  except (ValueError, RecursionError) as e:   # JSONDecodeError, bad UTF-8
    raise ReportMismatchError(f'{path} is not a JSON {what}: {e}') from e


def load_report(expected: Union[str, Dict]) -> Dict:
  """The report dict, from itself or its JSON file."""
  report = expected if isinstance(expected, dict) else read_json(
      str(expected), 'report')
  if not isinstance(report, dict) or 'layers' not in report:
    raise ReportMismatchError('expected a tfprune.report() dict (with '
                              '"layers") or its JSON file')
  if not isinstance(report['layers'], list):
    raise ReportMismatchError(f'report "layers" must be a list; {_REWRITE}')
  return report


def _malformed(where: str, problem: str) -> ReportMismatchError:
  return ReportMismatchError(f'report layer {where}: {problem}; {_REWRITE}')


def _check_zeros(where: str, weight: Dict, shape: List[int]) -> None:
  """The zero pattern decodes and holds one bit per weight of ``shape``."""
  try:
    bits = base64.b64decode(weight['zeros'], validate=True)
  except (TypeError, ValueError) as e:   # binascii.Error is a ValueError
    raise _malformed(where, f'weights[0].zeros is not base64 ({e})') from e
  count = int(np.prod(shape, dtype=object))
  if len(bits) != (count + 7) // 8:
    raise _malformed(where, f'weights[0].zeros holds {8 * len(bits)} bits, '
                     f'shape {shape} has {count} weights')


def _check_structure(where: str, kind: str, structure, shape) -> None:
  from tfprune.report import validate_structure  # lazy: TensorFlow
  try:
    validate_structure(kind, structure, shape)
  except (TypeError, ValueError) as e:
    raise _malformed(where, f'structure {structure!r}: {e}') from e


def _check_layer(index: int, entry: Dict) -> None:
  """Refuse a prunable layer entry whose fields check() cannot use."""
  name = entry.get('name')
  where = f'{index} ({name!r})'
  if not isinstance(name, str):
    raise _malformed(where, '"name" must be a string')
  weights = entry['weights']
  if not isinstance(weights, list) or not isinstance(weights[0], dict):
    raise _malformed(where, '"weights" must be a list of objects')
  shape, rank = weights[0].get('shape'), _RANK[entry['type']]
  if not (isinstance(shape, list) and len(shape) == rank and
          all(type(d) is int and d >= 1 for d in shape)):   # not bool
    raise _malformed(where, f'weights[0].shape must be {rank} positive '
                     f'integers for a {entry["type"]}, got {shape!r}')
  if 'zeros' in weights[0]:
    _check_zeros(where, weights[0], shape)
  if entry.get('structure') is not None:
    _check_structure(where, entry['type'], entry['structure'], shape)


def prunable_layers(report: Dict) -> List[Dict]:
  """The report's Dense/Conv2D/DepthwiseConv2D entries with weights, checked."""
  layers = []
  for index, entry in enumerate(report['layers']):
    if not isinstance(entry, dict):
      raise _malformed(str(index), f'is a {type(entry).__name__}, not an '
                       'object')
    if entry.get('type') in OP_OF and entry.get('weights'):
      _check_layer(index, entry)
      layers.append(entry)
  missing = [e['name'] for e in layers if 'zeros' not in e['weights'][0]]
  if missing:
    raise ReportMismatchError(f'report layers {missing} carry no zero '
                              'pattern; make it with tfprune.report()')
  return layers


def _is_index_list(value) -> bool:
  return (isinstance(value, list) and
          all(type(i) is int and i >= 0 for i in value) and
          len(set(value)) == len(value))


def load_plan(plan) -> Dict[str, Tuple[List[int], List[int]]]:
  """``{layer: (kept_inputs, kept_outputs)}`` from a shrink Plan, its
  ``as_dict()`` or a JSON file of it."""
  if plan is None:
    return {}
  if hasattr(plan, 'as_dict'):
    plan = plan.as_dict()
  elif not isinstance(plan, dict):
    plan = read_json(str(plan), 'shrink plan')
  try:
    kept = {name: (entry['kept_inputs'], entry['kept'])
            for name, entry in plan.items()}
  except (KeyError, TypeError, AttributeError) as e:
    raise ReportMismatchError('a shrink plan maps layer names to {"kept", '
                              '"kept_inputs", ...}: write it with '
                              'json.dump(plan.as_dict(), f)') from e
  bad = sorted(str(name) for name, pair in kept.items()
               if not all(_is_index_list(v) for v in pair))
  if bad:
    raise ReportMismatchError(f'shrink plan layers {bad}: "kept" and '
                              '"kept_inputs" must be lists of distinct '
                              'non-negative integers')
  return kept


def check_kept(entry: Dict, kept: Tuple[List[int], List[int]]) -> None:
  """The plan keeps only inputs and outputs the reported layer has."""
  shape = entry['weights'][0]['shape']
  if entry['type'] == 'DepthwiseConv2D':   # outputs c*M + m follow input c
    sizes = (shape[2], shape[2] * shape[3])
  else:
    sizes = (shape[-2], shape[-1])
  for what, indices, size in zip(('input', 'output'), kept, sizes):
    if indices and max(indices) >= size:
      raise ReportMismatchError(
          f'the shrink plan keeps {what} {max(indices)} of layer '
          f'{entry["name"]!r}, which has {size}: the plan does not belong to '
          'this report (pass the plan and the report of the same model)')
