"""Run a .tflite file with ai_edge_litert's Interpreter (XNNPACK on).

The file is validated first and run in the runtime child process
(``tflite_export.guard``), so a corrupt file raises instead of ending the
caller's process.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from tflite_export import guard
from tflite_export import reader
from tflite_export.validation import Limits


def predict(path: str, x: np.ndarray, batch_size: int = 256,
            num_threads: int = 2,
            limits: Optional[Limits] = None) -> np.ndarray:
  """Outputs of the model's single output for every row of ``x``."""
  if int(batch_size) < 1 or int(num_threads) < 1:
    raise ValueError(f'batch_size and num_threads must be >= 1, got '
                     f'{batch_size} and {num_threads}')
  data = reader.validate(path, limits)
  return guard.predict(data, np.asarray(x), int(batch_size), int(num_threads),
                       path, limits)


def evaluate(path: str, x: np.ndarray, y: np.ndarray, **kwargs) -> float:
  """Top-1 accuracy of a classifier .tflite file on ``(x, y)``."""
  return float((predict(path, x, **kwargs).argmax(-1) == y).mean())
