"""One worker of the MultiWorkerMirroredStrategy test (run as a script).

With ``TF_CONFIG`` set it trains under MultiWorkerMirroredStrategy (the
global batch split over the workers); without, it trains the same model on
one process. It trains one model per method in ``argv[1]`` (comma
separated; one cluster start serves them all) and saves the masks and
kernels to ``argv[2]``, keyed ``method:layer/array``.
"""

import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top
import tf_keras as keras  # pylint: disable=g-import-not-at-top

import tfprune  # pylint: disable=g-import-not-at-top


def _train(method_name: str, strategy) -> dict:
  """Train one pruned model; its masks, kernels and step counts."""
  keras.utils.set_random_seed(0)
  rng = np.random.RandomState(0)
  x = rng.rand(64, 6, 6, 2).astype(np.float32)
  y = rng.randint(0, 3, 64)
  data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
  schedule = tfprune.schedules.PolynomialDecay(0.0, 0.5, begin_step=0,
                                               end_step=8, frequency=2)
  method = (tfprune.methods.Magnitude('channel') if method_name == 'magnitude'
            else tfprune.methods.PSP('filter', epsilon=0.05))
  with strategy.scope():
    inputs = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(8, 3, activation='relu', name='conv')(inputs)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(8, activation='relu', name='fc')(h)
    outputs = keras.layers.Dense(3, name='logits')(h)
    model = tfprune.prune(keras.Model(inputs, outputs), method, schedule)
    model.compile(keras.optimizers.SGD(0.1), keras.losses.
                  SparseCategoricalCrossentropy(from_logits=True))
  model.fit(data, epochs=2, verbose=0, callbacks=[tfprune.PruningStep()])
  arrays = {}
  for wrapper in tfprune.wrapper.collect_wrappers(model):
    arrays[f'{wrapper.name}/mask'] = np.asarray(wrapper.masks[0])
    arrays[f'{wrapper.name}/kernel'] = np.asarray(wrapper.layer.kernel)
    arrays[f'{wrapper.name}/step'] = np.asarray(wrapper.pruning_step)
  return arrays


def main(method_names: str, out: str) -> None:
  distributed = 'TF_CONFIG' in os.environ
  strategy = (tf.distribute.MultiWorkerMirroredStrategy() if distributed
              else tf.distribute.get_strategy())
  arrays = {}
  for name in method_names.split(','):
    arrays.update({f'{name}:{key}': value
                   for key, value in _train(name, strategy).items()})
  np.savez(out, **arrays)


if __name__ == '__main__':
  main(sys.argv[1], sys.argv[2])
