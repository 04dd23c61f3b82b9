"""Run a .tflite file with ai_edge_litert's Interpreter (XNNPACK on)."""

from __future__ import annotations

import numpy as np


def predict(path: str, x: np.ndarray, batch_size: int = 256,
            num_threads: int = 2) -> np.ndarray:
  """Outputs of the model's single output for every row of ``x``."""
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  interpreter = Interpreter(model_path=path, num_threads=num_threads)
  inp = interpreter.get_input_details()[0]
  out = interpreter.get_output_details()[0]
  results, size = [], None
  for start in range(0, len(x), batch_size):
    chunk = np.asarray(x[start:start + batch_size], inp['dtype'])
    if chunk.shape[0] != size:
      interpreter.resize_tensor_input(inp['index'], chunk.shape)
      interpreter.allocate_tensors()
      size = chunk.shape[0]
    interpreter.set_tensor(inp['index'], chunk)
    interpreter.invoke()
    results.append(interpreter.get_tensor(out['index']).copy())
  return np.concatenate(results)


def evaluate(path: str, x: np.ndarray, y: np.ndarray, **kwargs) -> float:
  """Top-1 accuracy of a classifier .tflite file on ``(x, y)``."""
  return float((predict(path, x, **kwargs).argmax(-1) == y).mean())
