"""Test setup: two logical CPU devices (for MirroredStrategy) and seeds.

The devices must be configured before TensorFlow initialises its runtime,
so this runs at import time, before any test module touches TensorFlow.
"""

import contextlib
import functools
import os
import subprocess
import sys
import textwrap

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

_cpus = tf.config.list_physical_devices('CPU')
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)


@functools.lru_cache(maxsize=None)
def mirrored_strategy():
  """The one MirroredStrategy over the two logical CPUs of the session.

  Strategies made one after the other in a process reuse collective
  instance keys, and TensorFlow then mixes up their all-reduce shapes
  ("Shape mismatch in the collective instance"), so tests share one.
  """
  devices = [d.name for d in tf.config.list_logical_devices('CPU')][:2]
  return tf.distribute.MirroredStrategy(devices)


@pytest.fixture(autouse=True)
def _seed():
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(1234)
  yield
  keras.backend.clear_session()


def small_conv_model(name='net', keras=None):
  """Conv2D -> DepthwiseConv2D -> Flatten -> Dense, on 6x6x2 inputs, in the
  Keras generation of the module ``keras`` (default tf_keras)."""
  if keras is None:
    import tf_keras as keras  # pylint: disable=g-import-not-at-top
  inputs = keras.Input((6, 6, 2))
  x = keras.layers.Conv2D(4, 3, name='conv')(inputs)
  x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name='dw')(x)
  x = keras.layers.Flatten(name='flat')(x)
  outputs = keras.layers.Dense(3, name='dense')(x)
  return keras.Model(inputs, outputs, name=name)


def random_batch(n=16, shape=(6, 6, 2), classes=3, seed=0):
  rng = np.random.RandomState(seed)
  return (rng.rand(n, *shape).astype(np.float32),
          rng.randint(0, classes, n).astype(np.int64))


def kept_params(model):
  """Parameters minus the weights masks remove (what a density budget counts)."""
  import tfprune  # pylint: disable=g-import-not-at-top
  removed = 0
  for wrapper in tfprune.wrapper.collect_wrappers(model):
    shape = wrapper.prunable[0].variable.shape
    area = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    removed += int((np.asarray(wrapper.masks[0]) == 0).sum()) * area
  return tfprune.report(model)['totals']['params'] - removed


# Another process holding <workdir>.lock as a tfprune run does.
_LOCK_HOLDER = textwrap.dedent('''
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, b'pid %d, started 2000-01-01 00:00:00' % os.getpid())
    print('locked', flush=True)
    time.sleep(120)
''')


@contextlib.contextmanager
def lock_held_by_another_process(workdir):
  """Yield a live process (no TensorFlow, starts fast) holding the lock."""
  proc = subprocess.Popen(
      [sys.executable, '-c', _LOCK_HOLDER, workdir + '.lock'],
      stdout=subprocess.PIPE, text=True)
  try:
    assert proc.stdout.readline() == 'locked\n'
    yield proc
  finally:
    proc.kill()
    proc.wait()
    proc.stdout.close()


def rewrite_tflite(path, out, edit):
  """Write ``path`` to ``out`` with ``edit(model, schema)`` applied to its
  flatbuffer object tree (``schema``: ai_edge_litert's schema module)."""
  import flatbuffers  # pylint: disable=g-import-not-at-top
  from ai_edge_litert import schema_py_generated as fb  # pylint: disable=g-import-not-at-top
  with open(path, 'rb') as f:
    model = fb.ModelT.InitFromPackedBuf(bytearray(f.read()), 0)
  edit(model, fb)
  builder = flatbuffers.Builder(0)
  builder.Finish(model.Pack(builder), file_identifier=b'TFL3')
  with open(out, 'wb') as f:
    f.write(bytes(builder.Output()))
  return str(out)
