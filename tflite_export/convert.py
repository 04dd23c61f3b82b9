"""Keras model -> .tflite file (plain float32, built-in ops only).

A tfprune-wrapped model is stripped first: a wrapper left in the graph would
convert into variables and assign ops instead of constant, zero-holding
weights. The file is written atomically (temporary file, then rename), so a
failed conversion never leaves a half-written model behind.
"""

from __future__ import annotations

import os
import tempfile
from typing import Dict, List

import tensorflow as tf


class ConversionError(RuntimeError):
  """The TFLite converter could not convert the model."""


def op_names(model_bytes: bytes) -> List[str]:
  """Builtin operator names of the main subgraph, in execution order."""
  from ai_edge_litert import schema_py_generated as fb  # pylint: disable=g-import-not-at-top
  model = fb.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
  by_code = {v: k for k, v in vars(fb.BuiltinOperator).items()
             if not k.startswith('_')}
  names = []
  for op in model.subgraphs[0].operators:
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    names.append(code.customCode.decode() if code.customCode
                 else by_code.get(builtin, str(builtin)))
  return names


def _write_atomically(path: str, data: bytes) -> None:
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix='.tmp_', suffix='.tflite', dir=folder)
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise


def convert(model, path: str) -> Dict:
  """Convert a Keras model to a float32 .tflite file at ``path``.

  Returns ``{'path', 'size', 'ops'}``.
  """
  import tfprune  # pylint: disable=g-import-not-at-top
  if tfprune.wrapper.collect_wrappers(model):
    model = tfprune.strip(model)
  converter = tf.lite.TFLiteConverter.from_keras_model(model)
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  try:
    data = converter.convert()
  except Exception as e:  # the converter raises several internal types
    raise ConversionError(
        f'TFLite could not convert model {model.name!r} with built-in ops '
        f'only: {e}') from e
  _write_atomically(path, data)
  return {'path': path, 'size': len(data), 'ops': op_names(data)}
