"""Export tfprune models to TFLite, read the files back, check and time them."""

from tflite_export.bench import bench
from tflite_export.check import CheckResult
from tflite_export.check import ReportMismatchError
from tflite_export.check import check
from tflite_export.convert import ConversionError
from tflite_export.convert import QUANTIZE_MODES
from tflite_export.convert import convert
from tflite_export.convert import op_names
from tflite_export.reader import InvalidModelError
from tflite_export.reader import ModelInfo
from tflite_export.reader import inspect
from tflite_export.runtime import evaluate
from tflite_export.runtime import predict

__all__ = ['convert', 'inspect', 'check', 'bench', 'predict', 'evaluate',
           'op_names', 'CheckResult', 'ModelInfo', 'ConversionError',
           'InvalidModelError', 'ReportMismatchError', 'QUANTIZE_MODES']
