"""Export tfprune models to TFLite, read the files back, check and time them."""

from tflite_export.bench import bench
from tflite_export.check import CheckResult
from tflite_export.check import ReportMismatchError
from tflite_export.check import check
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

__all__ = ['convert', 'inspect', 'validate', 'check', 'bench', 'predict',
           'evaluate', 'op_names', 'CheckResult', 'ModelInfo', 'Limits',
           'ConversionError', 'InvalidModelError', 'ModelTooLargeError',
           'RuntimeCrashError', 'RuntimeRefusedError', 'ReportMismatchError',
           'QUANTIZE_MODES']
