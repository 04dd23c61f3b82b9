"""The experiment config of ``tfprune.train``: every key and its default.

A config file in ``configs/`` starts from :func:`default_config` and changes
values; the result is locked, so a misspelt key (in the file or on the
command line, ``--config.epochs=3``) is an error instead of being ignored.
``model_kwargs``, ``method_kwargs`` and ``schedule`` hold free-form arguments
for the builder, the method and the schedule.
"""

from __future__ import annotations

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
  c.verbose = 2
  # Physically remove dead channels before export: 'auto' does it for the
  # channel, kernel and layer structures; 'yes' / 'no' force it.
  c.shrink = 'auto'
  c.shrink_round_to = 1
  c.shrink_min_channels = 1
  return c


def lock(config: config_dict.ConfigDict) -> config_dict.ConfigDict:
  """Lock a config so unknown keys fail, keeping free-form dicts open."""
  known = set(default_config().keys())
  unknown = sorted(set(config.keys()) - known)
  if unknown:
    raise ConfigError(f'unknown config key(s) {unknown}; the known keys are '
                   f'{sorted(known)} (see tfprune/config.py)')
  config.lock()
  for key in FREE_FORM:
    config[key].unlock()
  return config
