"""The end of a run at a glance: one table and one per-layer chart.

``table(rows)`` compares the models of a ``tfprune.train`` run (dense,
pruned and stripped, shrunk): test accuracy, parameters, MACs, ``.tflite``
bytes, 1-thread latency and the TFLite check, each with its gain over the
first row. ``layer_chart(report, path)`` draws kept vs removed weights and
output channels per pruned layer as a PNG (matplotlib).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional, Sequence

import numpy as np


@dataclasses.dataclass
class Row:
  """One model of a run; None where a value was not measured."""

  model: str
  accuracy: Optional[float]
  params: int
  nonzero_params: int
  macs: Optional[int]
  effective_macs: Optional[int]
  tflite_bytes: Optional[int] = None
  latency_us: Optional[float] = None
  check: str = '-'


def _gain(base, value) -> str:
  return f' ({base / value:.2f}x)' if base and value else ''


def _count(value) -> str:
  return '-' if value is None else f'{value:,}'


def table(rows: Sequence[Row]) -> str:
  """Markdown table; gains are the first row's value over each row's."""
  if not rows:
    raise ValueError('table needs at least one row')
  base = rows[0]
  lines = ['| model | test accuracy | params (non-zero) | MACs (non-zero '
           'weights) | .tflite bytes | 1-thread latency | TFLite check |',
           '|---|---|---|---|---|---|---|']
  for r in rows:
    accuracy = '-' if r.accuracy is None else f'{100 * r.accuracy:.2f}%'
    params = (f'{_count(r.params)} ({_count(r.nonzero_params)})'
              f'{_gain(base.nonzero_params, r.nonzero_params)}')
    macs = (f'{_count(r.macs)} ({_count(r.effective_macs)})'
            f'{_gain(base.macs, r.macs)}')
    size = _count(r.tflite_bytes) + _gain(base.tflite_bytes, r.tflite_bytes)
    latency = ('-' if r.latency_us is None else f'{r.latency_us:.1f} us' +
               _gain(base.latency_us, r.latency_us))
    lines.append(f'| {r.model} | {accuracy} | {params} | {macs} | {size} | '
                 f'{latency} | {r.check} |')
  return '\n'.join(lines)


def layer_counts(report: Dict) -> List[Dict]:
  """Per pruned layer: weights and output channels, kept and removed."""
  out = []
  for entry in report['layers']:
    if not entry.get('structure') or not entry['weights']:
      continue
    weight = entry['weights'][0]
    shape = weight['shape']
    channels = shape[-1] if entry['type'] != 'DepthwiseConv2D' else (
        shape[-2] * shape[-1])
    removed = int(round(weight['sparsity'].get('channel', 0.0) * channels))
    out.append({'layer': entry['name'], 'structure': entry['structure'],
                'weights_kept': weight['nonzero'],
                'weights_removed': weight['size'] - weight['nonzero'],
                'channels_kept': channels - removed,
                'channels_removed': removed})
  return out


def layer_chart(report: Dict, path: str, title: str = '') -> Optional[str]:
  """Draw kept vs removed weights and channels per pruned layer to ``path``.

  Returns None (and writes nothing) without matplotlib, or when no layer
  was pruned; otherwise ``path``.
  """
  counts = layer_counts(report)
  if not counts:
    return None
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  names = [c['layer'] for c in counts]
  height = 1.6 + 0.35 * len(names)
  figure, axes = plt.subplots(1, 2, figsize=(10, height), sharey=True)
  for ax, unit in zip(axes, ('weights', 'channels')):
    kept = np.array([c[f'{unit}_kept'] for c in counts], float)
    total = kept + [c[f'{unit}_removed'] for c in counts]
    share = 100 * kept / np.maximum(total, 1)
    ax.barh(names, share, color='#2b7bba', label='kept')
    ax.barh(names, 100 - share, left=share, color='#d9d9d9',
            label='removed')
    for y, (k, t) in enumerate(zip(kept, total)):
      ax.text(101, y, f'{int(k):,}/{int(t):,}', va='center', fontsize=8)
    ax.set_xlim(0, 125)
    ax.set_xticks([0, 25, 50, 75, 100])
    ax.set_xlabel('% of weights kept' if unit == 'weights' else
                  '% of output channels kept')
  axes[0].invert_yaxis()
  handles, labels = axes[0].get_legend_handles_labels()
  figure.legend(handles, labels, loc='upper right', ncol=2, fontsize=8,
                frameon=False)
  figure.suptitle(title or 'kept vs removed per pruned layer', fontsize=10,
                  x=0.01, ha='left')
  figure.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.savefig(path, dpi=90, bbox_inches='tight')
  plt.close(figure)
  return path
