"""Network Trimming (Hu, Peng, Tai, Tang 2016): remove units that rarely fire.

A unit (Dense neuron or Conv2D channel) whose post-ReLU output is mostly
exactly zero on validation data (high APoZ, :mod:`tfprune.apoz`) is trimmed
with its in- and out-connections; the network is retrained from the
surviving weights, and the loop repeats. tfprune's choices (docs/METHODS.md
section 3):

* Rule, per layer, among the units still alive: trim those with
  ``APoZ >= mean + threshold_std * std`` (keras-surgeon's ``high_apoz``), or
  with ``fraction`` set, the given fraction with the highest APoZ. A layer
  whose surviving APoZ values are all equal trims nothing; ``min_units``
  are always kept.
* Order: only the ``layers_per_trim`` layers with the highest mean APoZ are
  trimmed in one iteration (None: every layer).
* Two ways to run it. From ``model.fit``: wrap layers with this method
  (``structure='channel'``, masks) and add :class:`TrimmingCallback`, which
  measures APoZ on validation data at the epochs it names and writes masks.
  Or the one-call driver ``tfprune.trim_and_retrain``
  (:mod:`tfprune.trim_retrain`), which physically removes trimmed units
  after every iteration, so retraining runs on the smaller network.
* With BatchNorm between a layer and its ReLU, a trimmed unit outputs
  exactly 0 either way: the driver zeroes its BN scale and shift, and the
  mask route masks them through the BN *follower* that channel-group
  pruning wraps (a model the channel graph cannot group keeps the constant
  BN shift, which ``shrink`` folds into the next layer where that is exact).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

from tfprune import generations
from tfprune import apoz as apoz_lib
from tfprune import groups as groups_lib
from tfprune.methods import base
from tfprune.wrapper import cohorts, collect_wrappers


def select_units(values: np.ndarray, alive: np.ndarray,
                 threshold_std: float = 1.0, fraction: Optional[float] = None,
                 min_units: int = 1) -> np.ndarray:
  """Indices of alive units to trim, by APoZ ``values``.

  ``mean + threshold_std * std`` over the alive units (population std), or
  the ``fraction`` of alive units with the highest APoZ; never leaves fewer
  than ``min_units`` alive (the lowest-APoZ ones stay).
  """
  values = np.asarray(values, np.float64)
  alive = np.asarray(alive, bool)
  idx = np.flatnonzero(alive)
  if idx.size == 0:
    return idx
  live = values[idx]
  if fraction is not None:
    if not 0 <= fraction < 1:
      raise ValueError(f'fraction must be in [0, 1), got {fraction}')
    count = int(round(fraction * idx.size))
    chosen = idx[np.argsort(-live, kind='stable')[:count]]
  else:
    std = live.std()
    if std == 0:
      return np.zeros(0, np.int64)
    chosen = idx[live >= live.mean() + threshold_std * std]
  room = max(idx.size - int(min_units), 0)
  if chosen.size > room:
    chosen = chosen[np.argsort(-values[chosen], kind='stable')[:room]]
  return np.sort(chosen)


@base.register
class NetworkTrimming(base.PruningMethod):
  """APoZ-driven unit trimming (masks on output channels / neurons).

  Args:
    threshold_std: k in the ``mean + k * std`` rule.
    fraction: instead of the std rule, trim this fraction of alive units.
    layers_per_trim: trim only this many layers (highest mean APoZ) per
      iteration; None trims every wrapped layer.
    min_units: units every layer keeps.
    trim_every, tolerance: what :meth:`fit_callbacks` gives
      ``tfprune.train``: a :class:`TrimmingCallback` trimming after every
      ``trim_every``-th epoch on the validation split, stopping once
      validation accuracy falls more than ``tolerance`` (None: never).
  """

  def __init__(self, threshold_std: float = 1.0,
               fraction: Optional[float] = None,
               layers_per_trim: Optional[int] = None, min_units: int = 1,
               trim_every: int = 1, tolerance: Optional[float] = None,
               structure: str = 'channel'):
    if structure != 'channel':
      raise ValueError("NetworkTrimming removes whole units: structure must "
                       "be 'channel'")
    super().__init__('channel')
    if fraction is not None and not 0 <= fraction < 1:
      raise ValueError(f'fraction must be in [0, 1), got {fraction}')
    if layers_per_trim is not None and int(layers_per_trim) < 1:
      raise ValueError('layers_per_trim must be >= 1 or None')
    self.threshold_std = float(threshold_std)
    self.fraction = None if fraction is None else float(fraction)
    self.layers_per_trim = (None if layers_per_trim is None
                            else int(layers_per_trim))
    self.min_units = int(min_units)
    if int(trim_every) < 1:
      raise ValueError('trim_every must be >= 1 (epochs)')
    self.trim_every = int(trim_every)
    self.tolerance = None if tolerance is None else float(tolerance)
    self.apoz_values: Dict[str, np.ndarray] = {}   # measured last
    self.trim_history: List[dict] = []   # appended by TrimmingCallback

  def refusal(self, layer) -> Optional[str]:
    if apoz_lib.has_relu(layer):
      return None
    return (f'layer {layer.name!r} is not followed by a ReLU (fused, or after '
            'BatchNormalization/Dropout): APoZ counts the zeros a ReLU makes,'
            ' so Network Trimming has nothing to measure there')

  def report_info(self) -> Optional[dict]:
    if not self.apoz_values and not self.trim_history:
      return None
    return {'trims': self.trim_history,
            'apoz': {n: [round(float(v), 6) for v in a]
                     for n, a in self.apoz_values.items()}}

  def get_state(self) -> dict:
    return {'apoz': {n: np.asarray(v).tolist()
                     for n, v in self.apoz_values.items()},
            'trim_history': self.trim_history}

  def set_state(self, state: dict) -> None:
    self.apoz_values = {n: np.asarray(v, np.float64)
                        for n, v in (state.get('apoz') or {}).items()}
    self.trim_history = list(state.get('trim_history') or [])

  def fit_callbacks(self, validation) -> list:
    if validation is None or not len(validation[0]):
      raise ValueError('NetworkTrimming measures APoZ on validation data, '
                       'not on training batches; set '
                       'config.validation_fraction > 0')
    x_val, y_val = validation
    return [TrimmingCallback(x_val, every=self.trim_every, validation_y=y_val,
                     tolerance=self.tolerance)]

  def choose(self, values: Dict[str, np.ndarray],
             alive: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Units to trim per layer (only the highest-mean-APoZ layers)."""
    order = sorted(values, key=lambda n: -float(
        np.mean(values[n][alive[n]])) if alive[n].any() else 0.0)
    if self.layers_per_trim is not None:
      order = order[:self.layers_per_trim]
    return {n: select_units(values[n], alive[n], self.threshold_std,
                            self.fraction, self.min_units) for n in order}

  def measure(self, model, x, wrappers: Sequence,
              batch_size: int = 256) -> Dict[str, np.ndarray]:
    """APoZ of every wrapped layer's units on ``x`` (kept in
    ``self.apoz_values``)."""
    self.apoz_values = apoz_lib.measure(
        model, x, [w.layer.name for w in wrappers], batch_size)
    return self.apoz_values

  def apply_rule(self, wrappers: Sequence) -> Dict[str, np.ndarray]:
    """Mask the units the rule picks from ``self.apoz_values``; returns
    them.

    With channel groups (wrappers made by ``prune``), a unit is a group of
    coupled channels: its APoZ is the mean over its producers, and the rule
    runs per coupled set of layers (named by its first layer); every member
    is masked. Otherwise per layer.
    """
    by_name = {w.layer.name: w for w in wrappers}
    missing = sorted(set(by_name) - set(self.apoz_values))
    if missing:
      raise ValueError(f'no APoZ measured for {missing}; call measure() (or '
                       'use TrimmingCallback) first')
    if self.channel_groups is not None and self.channel_groups.n_prunable:
      return self._trim_groups(self.channel_groups)
    alive = {n: np.asarray(w.masks[0]) > 0 for n, w in by_name.items()}
    chosen = self.choose({n: self.apoz_values[n] for n in by_name}, alive)
    for name, units in chosen.items():
      if units.size:
        mask = alive[name].astype(np.float32)
        mask[units] = 0
        by_name[name].assign_mask(0, mask)
    return chosen

  def _trim_groups(self, cg) -> Dict[str, np.ndarray]:
    values = groups_lib.group_mean(
        cg, lambda w: self.apoz_values[w.layer.name])
    alive = groups_lib.alive(cg)
    sets = {cg.sets[c][0]: np.flatnonzero(cg.coupled == c)
            for c in range(len(cg.sets))}
    chosen = self.choose({n: values[i] for n, i in sets.items()},
                         {n: alive[i] for n, i in sets.items()})
    remove = ~alive
    for name, picked in chosen.items():
      remove[sets[name][picked]] = True
    now = np.zeros(cg.n_groups, bool)
    now[cg.prunable[remove & alive]] = True
    groups_lib.assign(cg, remove)
    return {m.wrapper.layer.name: np.flatnonzero(now[m.groups])
            for m in cg.members if m.scored}   # units trimmed now

  def score(self, wrapper, index):
    """1 - APoZ: a tfmot schedule then keeps the most active units."""
    if wrapper.layer.name not in self.apoz_values:
      raise ValueError(f'no APoZ measured for {wrapper.layer.name!r}; add '
                       'tfprune.TrimmingCallback (or call measure())')
    return 1.0 - self.apoz_values[wrapper.layer.name].astype(np.float32)

  def get_config(self):
    return {'threshold_std': self.threshold_std, 'fraction': self.fraction,
            'layers_per_trim': self.layers_per_trim,
            'min_units': self.min_units, 'trim_every': self.trim_every,
            'tolerance': self.tolerance}


class TrimmingCallback(generations.Callback):
  """Measures APoZ on validation data and trims at chosen epochs of ``fit``.

  Args:
    validation_x: inputs APoZ is measured on (not the training batches).
    every: trim after every ``every``-th epoch (1-based), or
    epochs: an explicit list of epochs (1-based) after which to trim.
    validation_y, tolerance: if given, stop trimming once validation
      accuracy is more than ``tolerance`` below its value at the first trim.

  ``history`` lists, per trim, the epoch, the trimmed units per layer and
  the widths left. Needs ``tfprune.PruningStep`` too (it counts steps).
  """

  def __init__(self, validation_x, every: Optional[int] = None,
               epochs: Optional[Sequence[int]] = None, validation_y=None,
               tolerance: Optional[float] = None, batch_size: int = 256):
    super().__init__()
    if (every is None) == (epochs is None):
      raise ValueError('give exactly one of every= or epochs=')
    if tolerance is not None and validation_y is None:
      raise ValueError('tolerance needs validation_y to measure accuracy')
    self.validation_x, self.validation_y = validation_x, validation_y
    self.every, self.epochs = every, (set(epochs) if epochs else None)
    self.tolerance, self.batch_size = tolerance, batch_size
    self.history: List[dict] = []
    self.baseline: Optional[float] = None
    self.stopped = ''

  def _due(self, epoch: int) -> bool:
    if self.epochs is not None:
      return epoch in self.epochs
    return epoch % self.every == 0

  def _accuracy(self) -> float:
    pred = self.model.predict(self.validation_x, batch_size=self.batch_size,
                              verbose=0)
    return float((pred.argmax(-1) == np.asarray(self.validation_y)).mean())

  def on_epoch_end(self, epoch, logs=None):
    if self.stopped or not self._due(epoch + 1):
      return
    groups = dict(enumerate(cohorts(
        [w for w in collect_wrappers(self.model)
         if isinstance(w.method, NetworkTrimming)])))
    if not groups:
      raise ValueError('TrimmingCallback found no layer wrapped with '
                       'tfprune.methods.NetworkTrimming')
    if self.tolerance is not None:
      accuracy = self._accuracy()
      if self.baseline is None:
        self.baseline = accuracy
      elif self.baseline - accuracy > self.tolerance:
        self.stopped = (f'validation accuracy {accuracy:.4f} is more than '
                        f'{self.tolerance} below {self.baseline:.4f}')
        return
    trimmed = {}
    for wrappers in groups.values():
      method = wrappers[0].method
      method.measure(self.model, self.validation_x, wrappers, self.batch_size)
      trimmed.update({n: u.tolist() for n, u in
                      method.apply_rule(wrappers).items()})
    widths = {w.layer.name: int(np.asarray(w.masks[0]).sum())
              for ws in groups.values() for w in ws}
    entry = {'epoch': epoch + 1, 'trimmed': trimmed, 'widths': widths}
    self.history.append(entry)
    for wrappers in groups.values():
      wrappers[0].method.trim_history.append(entry)
    if not any(trimmed.values()):
      self.stopped = 'no unit passes the rule'
