"""Small helpers the benchmark scripts share."""

from __future__ import annotations

import numpy as np


def accuracy(model, x, y) -> float:
  """Top-1 accuracy of a Keras model on arrays."""
  return float((model.predict(x, batch_size=1000, verbose=0).argmax(-1)
                == y).mean())


def fit(model, train, epochs: int, optimizer, batch_size: int):
  """Compile with ``optimizer`` and fit with ``tfprune.PruningStep``."""
  import tfprune  # pylint: disable=g-import-not-at-top
  model.compile(optimizer, 'sparse_categorical_crossentropy')
  model.fit(*train, epochs=epochs, batch_size=batch_size, verbose=2,
            callbacks=[tfprune.PruningStep()])
  return model


def structure_sparsity(model) -> float:
  """Fraction of the wrapped layers' structures whose weights are all zero
  (what the stripped model really lost), over all wrapped layers."""
  import tfprune  # pylint: disable=g-import-not-at-top
  zero = total = 0
  for wrapper in tfprune.wrapper.collect_wrappers(model):
    weight = wrapper.prunable[0]
    value = wrapper.effective_weights()[weight.attr]
    alive = np.asarray(wrapper.structure.reduce(np.abs(value), weight.layout,
                                                'sum')) > 0
    zero, total = zero + int((~alive).sum()), total + alive.size
  return zero / max(total, 1)
