"""Every config in configs/ builds a valid, locked experiment config."""

import glob
import importlib.util
import os

import pytest

from tfprune import config as config_lib
from tfprune import experiment
from tfprune import methods
from tfprune import models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = sorted(glob.glob(os.path.join(ROOT, 'configs', '*.py')))


def test_there_are_configs():
  names = [os.path.basename(f) for f in FILES]
  assert {'quickstart.py', 'lenet5_mnist_magnitude.py'} <= set(names)


@pytest.mark.parametrize('path', FILES, ids=os.path.basename)
def test_config_is_valid(path):
  spec = importlib.util.spec_from_file_location('cfg', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = config_lib.lock(module.get_config())
  assert c.model in models.NAMES
  methods.get(c.method, **c.method_kwargs)          # builds
  experiment.build_schedule(c.schedule, total_steps=1000)
  assert c.shrink in ('auto', 'yes', 'no')
