"""Export tfprune models to TFLite and read the files back."""

from tflite_export.convert import ConversionError
from tflite_export.convert import convert
from tflite_export.convert import op_names
from tflite_export.runtime import evaluate
from tflite_export.runtime import predict

__all__ = ['convert', 'op_names', 'predict', 'evaluate', 'ConversionError']
