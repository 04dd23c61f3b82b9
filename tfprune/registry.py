"""The method registry: a method's class name <-> the class, and a method
<-> its JSON-able config.

It sits below the wrapper and the methods: a wrapper saves and restores its
method through it without importing any method module, and every method
module registers itself here when it is imported (``tfprune`` imports them
all).
"""

from __future__ import annotations

import re
from typing import Dict, List

from tfprune import groups as groups_lib

_CLASSES: Dict[str, type] = {}


def register(cls):
  """Class decorator making a method deserialisable by its class name."""
  _CLASSES[cls.__name__] = cls
  return cls


def _key(name: str) -> str:
  return name.replace('_', '').lower()


def known() -> list:
  return sorted(_CLASSES)


def names() -> List[str]:
  """The registered methods as ``get`` and configs spell them (snake case)."""
  return sorted(re.sub(r'(?<=[a-z])(?=[A-Z])', '_', n).lower()
                for n in _CLASSES)


def get(name: str, **kwargs):
  """A method by name, e.g. ``get('magnitude', structure='channel')``
  (case and underscores are ignored)."""
  for cls_name, cls in _CLASSES.items():
    if _key(cls_name) == _key(name):
      return cls(**kwargs)
  raise ValueError(f'unknown pruning method {name!r}; known: {known()}')


def serialize(method) -> dict:
  """``{'class_name', 'config'[, 'selection']}`` of a method."""
  out = {'class_name': type(method).__name__, 'config': method.get_config()}
  if method.prunes_channel_groups:
    out['selection'] = method.selection.get_config()
  return out


def deserialize(config):
  """A method from :func:`serialize`'s dict (a method passes through)."""
  if not isinstance(config, dict):
    return config
  name = config['class_name']
  if name not in _CLASSES:
    raise ValueError(f'unknown pruning method {name!r}; known: {known()} '
                     '(import the module defining it before loading the '
                     'model)')
  method = _CLASSES[name].from_config(config['config'])
  if config.get('selection'):
    method.selection = groups_lib.ChannelSelection(**config['selection'])
  return method
