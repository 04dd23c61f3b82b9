"""Dataset loading from local files, the embedded default, and errors."""

import gzip
import os
import pickle
import warnings

import numpy as np
import pytest

from tfprune import data


def _write_idx(path, array):
  header = bytes([0, 0, 8, array.ndim]) + b''.join(
      int(d).to_bytes(4, 'big') for d in array.shape)
  with gzip.open(path, 'wb') as f:
    f.write(header + array.astype(np.uint8).tobytes())


def test_embedded_digits_needs_no_files():
  x, y = data.load('digits', 'train')
  xt, yt = data.load('digits', 'test')
  assert x.shape == (1437, 8, 8, 1) and xt.shape == (360, 8, 8, 1)
  assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
  assert set(y) == set(range(10))
  again, _ = data.load('digits', 'train')
  np.testing.assert_array_equal(x, again)


def test_data_dir_is_ignored_for_digits_with_a_warning(tmp_path):
  with pytest.warns(UserWarning, match=r"data_dir '.*' is ignored: the digits "
                    'dataset is embedded and needs no files; data_dir is read '
                    'for mnist, fashion_mnist'):
    x, _ = data.load('digits', 'test', data_dir=str(tmp_path))
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    plain, _ = data.load('digits', 'test')
  np.testing.assert_array_equal(x, plain)


def test_idx_gz_files_in_a_named_subfolder(tmp_path):
  rng = np.random.RandomState(0)
  images = rng.randint(0, 256, (5, 28, 28))
  labels = np.array([3, 1, 4, 1, 5])
  os.makedirs(tmp_path / 'fashion_mnist')
  _write_idx(tmp_path / 'fashion_mnist' / 't10k-images-idx3-ubyte.gz', images)
  _write_idx(tmp_path / 'fashion_mnist' / 't10k-labels-idx1-ubyte.gz', labels)
  x, y = data.load('fashion_mnist', 'test', data_dir=str(tmp_path))
  assert x.shape == (5, 28, 28, 1)
  np.testing.assert_allclose(x[..., 0], images / 255.0, rtol=1e-6)
  np.testing.assert_array_equal(y, labels)


def test_truncated_idx_is_reported(tmp_path):
  path = tmp_path / 'train-images-idx3-ubyte.gz'
  _write_idx(path, np.zeros((2, 4, 4)))
  raw = gzip.open(path).read()[:-5]
  with gzip.open(path, 'wb') as f:
    f.write(raw)
  with pytest.raises(ValueError, match='truncated or corrupt'):
    data.read_idx(str(path))


def test_keras_npz(tmp_path):
  np.savez(tmp_path / 'mnist.npz', x_train=np.full((2, 28, 28), 255),
           y_train=np.array([7, 2]), x_test=np.zeros((1, 28, 28)),
           y_test=np.array([0]))
  x, y = data.load('mnist', 'train', data_dir=str(tmp_path))
  assert x.shape == (2, 28, 28, 1) and x.max() == 1.0
  np.testing.assert_array_equal(y, [7, 2])


def test_cifar_python_batches(tmp_path):
  folder = tmp_path / 'cifar-10-batches-py'
  os.makedirs(folder)
  pixels = np.arange(2 * 3072).reshape(2, 3072) % 256
  with open(folder / 'test_batch', 'wb') as f:
    pickle.dump({b'data': pixels.astype(np.uint8), b'labels': [9, 4]}, f)
  x, y = data.load('cifar10', 'test', data_dir=str(tmp_path))
  assert x.shape == (2, 32, 32, 3)
  # channel-first rows become NHWC: pixel (0,0) of image 0 is R=0,G=1024,B=2048
  np.testing.assert_allclose(x[0, 0, 0] * 255, [0, 1024 % 256, 2048 % 256])
  np.testing.assert_array_equal(y, [9, 4])


def test_missing_dataset_names_both_fixes(tmp_path):
  with pytest.raises(data.DatasetNotFoundError) as info:
    data.load('cifar100', 'train', data_dir=str(tmp_path), download=False)
  message = str(info.value)
  assert 'cifar100' in message and 'data_dir' in message
  assert 'tensorflow-datasets' in message
  with pytest.raises(data.DatasetNotFoundError, match='not a folder'):
    data.load('mnist', 'train', data_dir=str(tmp_path / 'nope'))


def test_bad_names():
  with pytest.raises(ValueError, match='unknown dataset'):
    data.load('imagenet')
  with pytest.raises(ValueError, match='unknown split'):
    data.load('digits', 'validation')


def test_resize_images_pads_centred_and_repeats_channels():
  x = np.ones((1, 28, 28, 1), np.float32)
  out = data.resize_images(x, 32, 3)
  assert out.shape == (1, 32, 32, 3)
  assert out[0, 2:30, 2:30].min() == 1 and out.sum() == 28 * 28 * 3
  with pytest.raises(ValueError, match='larger'):
    data.resize_images(x, 16)
