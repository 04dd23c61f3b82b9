"""Progress with an ETA for steps that can take more than a few seconds.

One helper for every slow loop (Small-World's automatic ``rewire_p``
search, APoZ passes, ...) so they all look alike::

    for p in progress.track(grid, 'Small-World: measuring rewire_p'):
      ...

A bar appears only once a step has run for :data:`DELAY` seconds, so fast
runs (tests, small models) stay quiet; it then reads
``Small-World: measuring rewire_p 5/13 [=====>    ] 12s, ETA 19s`` on
one refreshed line at a terminal, or one line every :data:`LOG_EVERY`
seconds and a last line in a log file. ``set_delay(0)`` shows every bar,
``set_delay(None)`` none. Output goes to ``sys.stdout``, where Keras'
progress bars go.

A single long call that reports no count (a TFLite conversion, a shrink)
gets :func:`elapsed` instead: the time it has run so far, on the same
rules, since there is nothing to base an ETA on.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Iterable, Iterator, Optional, TextIO, TypeVar

T = TypeVar('T')

DELAY = 3.0       # seconds a step runs before its bar appears
LOG_EVERY = 10.0  # seconds between lines when the output is not a terminal
_WIDTH = 20
_settings = {'delay': DELAY}


def set_delay(seconds: Optional[float]) -> None:
  """Show bars after ``seconds`` (0: always; None: never)."""
  if seconds is not None and seconds < 0:
    raise ValueError(f'delay must be >= 0 or None, got {seconds}')
  _settings['delay'] = seconds


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  if seconds < 60:
    return f'{seconds}s'
  if seconds < 3600:
    return f'{seconds // 60}m{seconds % 60:02d}s'
  return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m'


class Progress:
  """A labelled counter towards ``total`` with elapsed time and ETA.

  Args:
    label: what is being done, e.g. ``'APoZ pass'``.
    total: the number of units the step will do; None shows the time
      only (see :func:`elapsed`).
    stream: where to write (default ``sys.stdout`` at each write).
  """

  def __init__(self, label: str, total: Optional[int],
               stream: Optional[TextIO] = None):
    if total is not None and total < 0:
      raise ValueError(f'total must be >= 0, got {total}')
    self.label, self._stream = label, stream
    self.total = None if total is None else int(total)   # None: time only
    self.finished = False
    self.done = 0
    self.start = time.monotonic()
    self._shown = False
    self._last_line = -float('inf')

  @property
  def stream(self) -> TextIO:
    return self._stream if self._stream is not None else sys.stdout

  def _terminal(self) -> bool:
    try:
      return bool(self.stream.isatty())
    except (AttributeError, ValueError):   # no isatty, or a closed stream
      return False

  def line(self) -> str:
    """The current line: label, count, bar, elapsed and ETA."""
    elapsed = time.monotonic() - self.start
    if self.total is None:
      return (f'{self.label}: ' + ('done in ' if self.finished else '') +
              _duration(elapsed))
    filled = int(_WIDTH * self.done / self.total) if self.total else _WIDTH
    bar = '=' * filled + ('>' if filled < _WIDTH else '') + ' ' * max(
        _WIDTH - filled - 1, 0)
    text = f'{self.label} {self.done}/{self.total} [{bar}] {_duration(elapsed)}'
    if 0 < self.done < self.total:
      text += f', ETA {_duration(elapsed / self.done * (self.total - self.done))}'
    return text

  def update(self, done: int) -> None:
    """Record ``done`` finished units and refresh the display if shown."""
    self.done = int(done) if self.total is None else min(int(done),
                                                         self.total)
    delay = _settings['delay']
    now = time.monotonic()
    if delay is None or now - self.start < delay:
      return
    if self._terminal():
      self.stream.write('\r' + self.line())
    elif (now - self._last_line >= LOG_EVERY or self.done == self.total or
          self.finished):
      self.stream.write(self.line() + '\n')
      self._last_line = now
    else:
      return
    self._shown = True
    self.stream.flush()

  def close(self) -> None:
    """Finish the display (a last line if a bar was shown)."""
    if not self._shown:
      return
    if self._terminal():
      self.stream.write('\r' + self.line() + '\n')
    elif self.done != self.total and not self.finished:   # stopped early
      self.stream.write(self.line() + '\n')
    self.stream.flush()


def track(items: Iterable[T], label: str, total: Optional[int] = None,
          stream: Optional[TextIO] = None) -> Iterator[T]:
  """Yield ``items``, showing a :class:`Progress` bar for slow loops."""
  if total is None:
    try:
      total = len(items)  # type: ignore[arg-type]
    except TypeError as e:
      raise ValueError('track needs total= for an iterable without len()'
                       ) from e
  bar = Progress(label, total, stream)
  try:
    bar.update(0)
    for i, item in enumerate(items):
      yield item
      bar.update(i + 1)
  finally:
    bar.close()


@contextlib.contextmanager
def elapsed(label: str, stream: Optional[TextIO] = None) -> Iterator[None]:
  """Show ``label ... 12s`` while the block runs, once it passes the delay.

  A thread refreshes the line every second at a terminal, or writes one
  every :data:`LOG_EVERY` seconds to a log; a last line gives the total.
  """
  bar = Progress(label, None, stream)
  done = threading.Event()

  def tick():
    while not done.wait(1.0):
      bar.update(0)

  thread = threading.Thread(target=tick, daemon=True)
  thread.start()
  try:
    yield
  finally:
    done.set()
    thread.join()
    bar.finished = True
    bar.update(0)
    bar.close()
