"""Export tfprune models to TFLite, read the files back, check and time them.

``check`` and ``bench`` (and ``CheckResult``, ``ReportMismatchError``) are
imported on first use, so that ``python -m tflite_export.check`` and
``python -m tflite_export.bench`` run their module once, as ``__main__``,
without runpy's "found in sys.modules" warning. The functions keep their
names even once ``import tflite_export.check`` has loaded the module of the
same name.
"""

import importlib
import sys
import types

from tflite_export.convert import ConversionError
from tflite_export.convert import QUANTIZE_MODES
from tflite_export.convert import convert
from tflite_export.convert import op_names
from tflite_export.guard import RuntimeCrashError
from tflite_export.guard import RuntimeRefusedError
from tflite_export.reader import InvalidModelError
from tflite_export.reader import ModelInfo
from tflite_export.reader import inspect
from tflite_export.reader import validate
from tflite_export.runtime import evaluate
from tflite_export.runtime import predict
from tflite_export.validation import Limits
from tflite_export.validation import ModelTooLargeError

# name -> (module, attribute), imported on first access
_LAZY = {'check': ('tflite_export.check', 'check'),
         'CheckResult': ('tflite_export.check', 'CheckResult'),
         'ReportMismatchError': ('tflite_export.report_file',
                                 'ReportMismatchError'),
         'bench': ('tflite_export.bench', 'bench')}


def __getattr__(name):
  if name not in _LAZY:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  module, attribute = _LAZY[name]
  value = getattr(importlib.import_module(module), attribute)
  globals()[name] = value
  return value


class _Package(types.ModuleType):
  """Keeps ``tflite_export.check``/``.bench`` the functions.

  Importing the submodule ``tflite_export.check`` makes Python set the
  package attribute ``check`` to that module; this keeps the function.
  """

  def __setattr__(self, name, value):
    if name in _LAZY and isinstance(value, types.ModuleType):
      value = getattr(value, _LAZY[name][1])
    super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = ['convert', 'inspect', 'validate', 'check', 'bench', 'predict',
           'evaluate', 'op_names', 'CheckResult', 'ModelInfo', 'Limits',
           'ConversionError', 'InvalidModelError', 'ModelTooLargeError',
           'RuntimeCrashError', 'RuntimeRefusedError', 'ReportMismatchError',
           'QUANTIZE_MODES']
