"""Dataset loading that works offline.

``load(name, split, data_dir)`` returns ``(x, y)`` numpy arrays: images as
float32 NHWC in [0, 1], labels as int64. Sources, in order:

1. ``data_dir``: MNIST / Fashion-MNIST IDX files (``.gz`` or not, in the
   folder or its ``<name>/`` subfolder), a Keras-style ``<name>.npz``, or the
   CIFAR python batches (``cifar-10-batches-py/``, ``cifar-100-python/``);
2. tensorflow-datasets (already prepared data, then a download if allowed);
3. otherwise a ``DatasetNotFoundError`` naming both ways to provide it.

``digits`` is the embedded default: scikit-learn's bundled 8x8 digits (1,797
images), split 80/20 with a fixed seed; it never needs the network (a
``data_dir`` given for it is ignored, with a warning). A
requested dataset is never silently replaced by another.
"""

from __future__ import annotations

import gzip
import os
import pickle
import warnings
from typing import Optional, Tuple

import numpy as np

NAMES = ('digits', 'mnist', 'fashion_mnist', 'cifar10', 'cifar100')
SPLITS = ('train', 'test')
_IDX_FILES = {'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
              'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')}

Arrays = Tuple[np.ndarray, np.ndarray]


class DatasetNotFoundError(FileNotFoundError):
  """The dataset is neither in data_dir nor available through tfds."""


def _open(path: str):
  return gzip.open(path, 'rb') if path.endswith('.gz') else open(path, 'rb')


def _find(folder: str, stem: str) -> Optional[str]:
  for candidate in (stem + '.gz', stem):
    path = os.path.join(folder, candidate)
    if os.path.exists(path):
      return path
  return None


def read_idx(path: str) -> np.ndarray:
  """Read an IDX file (as distributed for MNIST), gzipped or not."""
  with _open(path) as f:
    data = f.read()
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 8:
    raise ValueError(f'{path} is not an unsigned-byte IDX file')
  ndim = data[3]
  dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim)]
  offset = 4 + 4 * ndim
  expected = offset + int(np.prod(dims))
  if len(data) != expected:
    raise ValueError(f'{path} is truncated or corrupt: {len(data)} bytes, '
                     f'expected {expected}')
  return np.frombuffer(data, np.uint8, offset=offset).reshape(dims)


def _from_idx(folder: str, name: str, split: str) -> Optional[Arrays]:
  for base in (os.path.join(folder, name), folder):
    images, labels = (_find(base, stem) for stem in _IDX_FILES[split])
    if images and labels:
      return read_idx(images)[..., None], read_idx(labels)
  return None


def _from_npz(folder: str, name: str, split: str) -> Optional[Arrays]:
  path = os.path.join(folder, f'{name}.npz')
  if not os.path.exists(path):
    return None
  with np.load(path) as f:
    x, y = f[f'x_{split}'], f[f'y_{split}']
  if x.ndim == 3:
    x = x[..., None]
  return x, y.reshape(-1)


def _from_cifar_batches(folder: str, name: str, split: str) -> Optional[Arrays]:
  if name == 'cifar10':
    base = os.path.join(folder, 'cifar-10-batches-py')
    files = ([f'data_batch_{i}' for i in range(1, 6)] if split == 'train'
             else ['test_batch'])
    key = b'labels'
  else:
    base = os.path.join(folder, 'cifar-100-python')
    files, key = [split], b'fine_labels'
  paths = [os.path.join(base, f) for f in files]
  if not all(os.path.exists(p) for p in paths):
    return None
  xs, ys = [], []
  for path in paths:
    with open(path, 'rb') as f:
      batch = pickle.load(f, encoding='bytes')
    xs.append(np.asarray(batch[b'data'], np.uint8).reshape(-1, 3, 32, 32))
    ys.append(np.asarray(batch[key]))
  return np.concatenate(xs).transpose(0, 2, 3, 1), np.concatenate(ys)


def _from_folder(folder: str, name: str, split: str) -> Optional[Arrays]:
  readers = [_from_npz]
  readers.append(_from_cifar_batches if name.startswith('cifar') else _from_idx)
  for reader in readers:
    found = reader(folder, name, split)
    if found is not None:
      return found
  return None


def _from_tfds(name: str, split: str, download: bool) -> Arrays:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  attempts = [False, True] if download else [False]
  error = None
  for allow in attempts:
    try:
      x, y = tfds.as_numpy(tfds.load(name, split=split, as_supervised=True,
                                     batch_size=-1, download=allow))
      return x, y
    except Exception as e:  # tfds raises many types; all mean "not here".
      error = e
  raise DatasetNotFoundError(str(error))


def _digits(split: str) -> Arrays:
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  digits = load_digits()
  order = np.random.RandomState(0).permutation(len(digits.target))
  cut = int(0.8 * len(order))
  index = order[:cut] if split == 'train' else order[cut:]
  x = (digits.images[index] / 16.0).astype(np.float32)[..., None]
  return x, digits.target[index].astype(np.int64)


def load(name: str, split: str = 'train', data_dir: Optional[str] = None,
         download: bool = True, verbose: bool = False) -> Arrays:
  """Load a dataset split as ``(x float32 NHWC in [0,1], y int64)``."""
  if name not in NAMES:
    raise ValueError(f'unknown dataset {name!r}; choose one of {NAMES}')
  if split not in SPLITS:
    raise ValueError(f'unknown split {split!r}; choose one of {SPLITS}')
  if name == 'digits':
    if data_dir is not None:
      warnings.warn(
          f'data_dir {data_dir!r} is ignored: the digits dataset is embedded '
          f'and needs no files; data_dir is read for {", ".join(NAMES[1:])}',
          stacklevel=2)
    return _digits(split)
  found, source = None, None
  if data_dir is not None:
    if not os.path.isdir(data_dir):
      raise DatasetNotFoundError(f'data_dir {data_dir!r} is not a folder')
    found, source = _from_folder(data_dir, name, split), data_dir
  if found is None:
    try:
      found, source = _from_tfds(name, split, download), 'tensorflow-datasets'
    except DatasetNotFoundError as e:
      looked = (f'in data_dir {data_dir!r} (no IDX, .npz or CIFAR batch files'
                ' for it) and ' if data_dir else '')
      raise DatasetNotFoundError(
          f'dataset {name!r} ({split}) was not found {looked}through '
          f'tensorflow-datasets ({type(e).__name__}). Provide it either way: '
          f'pass data_dir=/path (e.g. --data_dir=../shared/data, holding '
          f'{name}/train-images-idx3-ubyte.gz style files, {name}.npz, or '
          'cifar-10-batches-py/), or prepare it once with tensorflow-datasets'
          f' on a machine with network (tfds.load({name!r})).') from None
  if verbose:
    print(f'loaded {name}/{split} from {source}')
  x, y = found
  return (np.asarray(x, np.float32) / 255.0, np.asarray(y, np.int64).reshape(-1))


def resize_images(x: np.ndarray, size: Optional[int] = None,
                  channels: Optional[int] = None) -> np.ndarray:
  """Zero-pad images to ``size`` x ``size`` (centred) and/or repeat channels.

  Used for stated substitute settings such as Fashion-MNIST at 32x32 for a
  CIFAR network.
  """
  if size is not None:
    h, w = x.shape[1:3]
    if h > size or w > size:
      raise ValueError(f'images are {h}x{w}, larger than size={size}')
    top, left = (size - h) // 2, (size - w) // 2
    x = np.pad(x, ((0, 0), (top, size - h - top), (left, size - w - left),
                   (0, 0)))
  if channels is not None and channels != x.shape[-1]:
    if x.shape[-1] != 1:
      raise ValueError(f'can only repeat 1 channel, images have {x.shape[-1]}')
    x = np.repeat(x, channels, axis=-1)
  return x
