"""The experiment config of ``tfprune.train``: every key and its default.

A config file in ``configs/`` starts from :func:`default_config` and changes
values; the result is locked, so a misspelt key (in the file or on the
command line, ``--config.epochs=3``) is an error instead of being ignored.
``model_kwargs``, ``method_kwargs`` and ``schedule`` hold free-form arguments
for the builder, the method and the schedule.
"""

from __future__ import annotations

import difflib
from typing import Iterable, List, Tuple

from ml_collections import config_dict

FREE_FORM = ('model_kwargs', 'method_kwargs')


class ConfigError(KeyError):
  """A config has keys that tfprune.train does not know."""

  def __str__(self):
    return str(self.args[0])


def default_config() -> config_dict.ConfigDict:
  c = config_dict.ConfigDict()
  c.seed = 0
  # Data: a tfprune.data name; data_dir '' = tensorflow-datasets only.
  c.dataset = 'digits'
  c.data_dir = ''
  c.image_size = 0          # >0: zero-pad images to this square size
  c.channels = 0            # >0: repeat a grey channel this many times
  c.validation_fraction = 0.1   # of the training split, held out
  # Model: a tfprune.models name and its keyword arguments.
  c.model = 'lenet5'
  c.model_kwargs = config_dict.ConfigDict()
  # 'tf_keras' or 'keras3' (Keras 3 on the TensorFlow backend): which Keras
  # builds, trains and saves the model.
  c.keras_generation = 'tf_keras'
  # Pruning: a tfprune.methods name, its kwargs, the layers to wrap
  # (comma-separated names; '' = every supported layer).
  c.method = 'magnitude'
  c.method_kwargs = config_dict.ConfigDict()
  c.layers = ''
  # Channel structures: how coupled channel groups are chosen
  # (tfprune.ChannelSelection; ignored by other structures).
  c.channel_selection = config_dict.ConfigDict(dict(
      ranking='uniform', round_to=1, min_channels=1, max_ratio=1.0))
  # Schedule kind: 'polynomial_decay', 'constant', 'one_shot' (prune once
  # before fine-tuning), 'none' (masks left to the method) or 'periodic'
  # (update points only, for methods with their own budget).
  # end_step -1 = two thirds of the pruning epochs' steps ('periodic': no
  # end); 'periodic' begin_step -1 = the first step of the final epochs.
  c.schedule = config_dict.ConfigDict(dict(
      kind='polynomial_decay', initial_sparsity=0.0, final_sparsity=0.9,
      begin_step=0, end_step=-1, frequency=100, power=3.0))
  # Training: dense pre-training epochs (the baseline), then pruning epochs.
  c.pretrain_epochs = 0
  c.epochs = 2
  c.batch_size = 128
  c.optimizer = 'adam'      # 'adam' or 'sgd' (momentum below)
  c.learning_rate = 1e-3
  c.finetune_learning_rate = -1.0   # pruning epochs' LR; -1 = learning_rate
  # Optional last stage after the pruning epochs (a fresh optimizer at a
  # lower LR; Small-World's "optimise for accuracy"); -1 = the pruning LR.
  c.final_epochs = 0
  c.final_learning_rate = -1.0
  c.momentum = 0.9
  c.verbose = -1            # Keras fit: -1 'auto' (a bar at a terminal, a
                            # line per epoch in a log), 0, 1 or 2
  # Physically remove dead channels before export: 'auto' does it for the
  # channel, kernel and layer structures; 'yes' / 'no' force it.
  c.shrink = 'auto'
  c.shrink_round_to = 1
  c.shrink_min_channels = 1
  return c


def unknown_key(key: str, known: Iterable[str]) -> str:
  """One line naming an unknown key and the nearest known one.

  ``unknown key 'epoch' in config; did you mean 'epochs'?``, or the known
  keys when none is close. ``key`` may be dotted (``schedule.kinds``); it
  is then compared with the known keys of its own level.
  """
  prefix, _, last = key.rpartition('.')
  known = sorted(known)
  near = difflib.get_close_matches(last, known, n=1, cutoff=0.6)
  if near:
    return (f"unknown key {key!r} in config; did you mean "
            f"{(prefix + '.' if prefix else '') + near[0]!r}?")
  return (f'unknown key {key!r} in config; the keys{" of " + prefix if prefix else ""}'
          f' are {", ".join(known)}')


def keys(config: config_dict.ConfigDict = None,
         prefix: str = '') -> List[Tuple[str, object]]:
  """Every (dotted key, value) of ``config`` (the defaults by default)."""
  config = default_config() if config is None else config
  out = []
  for key, value in config.items():
    if isinstance(value, config_dict.ConfigDict) and value.keys():
      out += keys(value, prefix + key + '.')
    else:
      out.append((prefix + key, value.to_dict() if isinstance(
          value, config_dict.ConfigDict) else value))
  return out


def _unknown(config, default, prefix: str) -> List[str]:
  """Messages for the keys of ``config`` that ``default`` lacks (nested)."""
  known = set(default.keys())
  out = [unknown_key(prefix + k, known) for k in sorted(set(config.keys()) -
                                                        known)]
  for key in sorted(set(config.keys()) & known):
    if (isinstance(default[key], config_dict.ConfigDict) and
        isinstance(config[key], config_dict.ConfigDict) and
        not (prefix == '' and key in FREE_FORM)):
      out += _unknown(config[key], default[key], prefix + key + '.')
  return out


def lock(config: config_dict.ConfigDict) -> config_dict.ConfigDict:
  """Lock a config so unknown keys fail, keeping free-form dicts open."""
  problems = _unknown(config, default_config(), '')
  if problems:
    raise ConfigError('; '.join(problems))
  config.lock()
  for key in FREE_FORM:
    config[key].unlock()
  return config
