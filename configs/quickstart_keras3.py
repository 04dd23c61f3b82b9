"""Quickstart on Keras 3: configs/quickstart.py with the model built,
trained and saved by Keras 3 (``import keras``, TensorFlow backend) instead
of tf_keras.

    tfprune train --config=configs/quickstart_keras3.py --workdir=runs/quickstart_keras3
"""

import os
import runpy

_QUICKSTART = runpy.run_path(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), 'quickstart.py'))


def get_config():
  c = _QUICKSTART['get_config']()
  c.keras_generation = 'keras3'
  return c
