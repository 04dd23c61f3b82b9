"""tfprune: structured pruning methods for tf_keras models, exported to TFLite.

Wrap layers with ``prune``, train with ``model.fit(callbacks=[PruningStep()])``,
fold the masks with ``strip``, measure with ``report``.
"""

# First, before anything imports TensorFlow: drop its C++ start-up notices
# (tfprune/_tf_logs.py says which, and how to see them).
from tfprune import _tf_logs
_tf_logs.import_tensorflow()

from tfprune import data  # pylint: disable=g-import-not-at-top,wrong-import-position
from tfprune import methods
from tfprune import models
from tfprune import progress
from tfprune import schedules
from tfprune import structures
from tfprune import topology
from tfprune.groups import ChannelSelection
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
from tfprune.wrapper import PruningWrapper

__version__ = '0.1.0'


def custom_objects() -> dict:
  """The classes a saved tfprune model needs when loaded."""
  return {'PruningWrapper': PruningWrapper,
          'tfprune>PruningWrapper': PruningWrapper}


def custom_object_scope():
  """``with tfprune.custom_object_scope(): keras.models.load_model(...)``."""
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  return keras.utils.custom_object_scope(custom_objects())


__all__ = ['prune', 'strip', 'shrink', 'report', 'Report', 'PruningWrapper',
           'ChannelSelection',
           'PruningStep', 'SparsityLogger', 'TrimmingCallback', 'trim_and_retrain', 'UnsupportedLayerError', 'methods', 'models', 'data',
           'schedules', 'structures', 'topology', 'progress', 'custom_objects',
           'custom_object_scope']
