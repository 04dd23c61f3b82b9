"""tfprune: structured pruning for Keras models (tf_keras and Keras 3), to TFLite.

Wrap layers with ``prune``, train with ``model.fit(callbacks=[PruningStep()])``,
fold the masks with ``strip``, measure with ``report``.
"""

# First, before anything imports TensorFlow: drop its C++ start-up notices
# (tfprune/_tf_logs.py says which, and how to see them).
from tfprune import _tf_logs
_tf_logs.import_tensorflow()

from tfprune import data  # pylint: disable=g-import-not-at-top,wrong-import-position
from tfprune import generations
from tfprune import methods
from tfprune import models
from tfprune import progress
from tfprune import schedules
from tfprune import structures
from tfprune import topology
from tfprune.generations import keras_generation
from tfprune.groups import ChannelSelection
from tfprune.batchnorm import recalibrate_batchnorm
from tfprune.callbacks import PruningStep
from tfprune.callbacks import SparsityLogger
from tfprune.methods.network_trimming import TrimmingCallback
from tfprune.prunable import UnsupportedLayerError
from tfprune.report import Report
from tfprune.report import report
from tfprune.surgery import shrink
from tfprune.transform import prune
from tfprune.transform import strip
from tfprune.trim_retrain import trim_and_retrain
from tfprune.wrapper import Keras3PruningWrapper
from tfprune.wrapper import PruningWrapper

__version__ = '0.1.0'


def custom_objects(keras_generation: str = 'tf_keras') -> dict:
  """The classes a saved tfprune model needs when loaded by that Keras
  generation ('tf_keras' or 'keras3'; both find them registered anyway, this
  also covers files saved before the ``tfprune>`` prefix)."""
  cls = (Keras3PruningWrapper if keras_generation == 'keras3' else
         PruningWrapper)
  generations.named(keras_generation)      # names the choices when wrong
  return {'PruningWrapper': cls, 'tfprune>PruningWrapper': cls}


def custom_object_scope(keras_generation: str = 'tf_keras'):
  """``with tfprune.custom_object_scope(): keras.models.load_model(...)``."""
  keras = generations.named(keras_generation).keras
  return keras.utils.custom_object_scope(custom_objects(keras_generation))


__all__ = ['prune', 'strip', 'shrink', 'report', 'Report', 'PruningWrapper',
           'Keras3PruningWrapper', 'ChannelSelection', 'keras_generation',
           'PruningStep', 'SparsityLogger', 'TrimmingCallback', 'trim_and_retrain',
           'recalibrate_batchnorm', 'UnsupportedLayerError', 'methods', 'models', 'data',
           'schedules', 'structures', 'topology', 'progress', 'custom_objects',
           'custom_object_scope']
