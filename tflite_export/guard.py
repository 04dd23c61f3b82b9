"""Run the LiteRT interpreter in a child process, never in the caller's.

LiteRT trusts its input: a corrupt file can end the process with SIGSEGV
or make it allocate gigabytes. ``reader.validate`` refuses the faults we
know of; this module contains the rest. One child process per parent
process (``_guard_child.py``, numpy and ai_edge_litert only, started on the
first call in about 0.3 s and reused after) builds, allocates and invokes
interpreters on the validated bytes it is sent, under a memory ceiling and
a per-step time limit (``validation.Limits``); a call with a lower memory
ceiling than an earlier one gets a fresh child. A signal in the child becomes
``RuntimeCrashError`` in the parent and the next call starts a new child;
an error LiteRT reports becomes ``RuntimeRefusedError``.

Calls are serialised by a lock; a forked parent starts its own child.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
from typing import List, Optional, Sequence, Tuple

import numpy as np

from tflite_export import _guard_child as child
from tflite_export.validation import InvalidModelError
from tflite_export.validation import Limits
from tflite_export.validation import ModelTooLargeError
from tflite_export.validation import format_bytes


class RuntimeCrashError(InvalidModelError):
  """The TFLite runtime died on the file (a signal, or its time limit)."""


class RuntimeRefusedError(RuntimeError):
  """The TFLite runtime reported an error: the file does not load or run."""

  def __init__(self, what: str, reason: str):
    super().__init__(f'{what}: {reason}')
    self.what = what
    self.reason = reason   # LiteRT's own words, without the file name

  def __reduce__(self):   # picklable despite the two-argument constructor
    return type(self), (self.what, self.reason)


def _said(log, since: int, lines: int = 2) -> str:
  """The last lines the child wrote to stderr since ``since``, less INFO."""
  log.flush()
  log.seek(since)
  text = log.read()[-4096:].decode('utf-8', 'replace').splitlines()
  return ' | '.join([l for l in text if l.strip() and
                     not l.startswith('INFO:')][-lines:])


def _death(returncode: int, what: str, limits: Limits, said: str) -> Exception:
  """The error for a child that ended with ``returncode`` during a call."""
  said = f' (it said: {said})' if said else ''
  if returncode < 0 and -returncode == getattr(signal, 'SIGALRM', None):
    return RuntimeCrashError(
        f'{what}: the TFLite runtime did not finish one step within '
        f'{limits.seconds:g} s and was stopped; if the model is really that '
        'slow, raise Limits(seconds=...) / --max-seconds')
  if returncode < 0:
    try:
      name = signal.Signals(-returncode).name
    except ValueError:
      name = 'unknown signal'
    hint = (' (most likely the system ran out of memory; lower '
            'Limits(runtime_bytes=...))' if name == 'SIGKILL' else '')
    return RuntimeCrashError(
        f'{what}: the TFLite runtime crashed on this file: signal '
        f'{-returncode} ({name}){hint}{said}. The file is corrupt or made to '
        'crash LiteRT; re-export it with tflite_export.convert')
  return RuntimeCrashError(f'{what}: the TFLite runtime process exited with '
                           f'status {returncode}{said}')


class _Child:
  """The child process of this parent process, started on demand."""

  def __init__(self):
    self._lock = threading.Lock()
    self._proc: Optional[subprocess.Popen] = None
    self._pid = None
    self._log = None
    self._cap = 0   # the largest memory ceiling the child has run under

  def _start(self) -> subprocess.Popen:
    self._log = tempfile.TemporaryFile()
    env = dict(os.environ, MALLOC_ARENA_MAX='2')   # fewer reserved arenas
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          '_guard_child.py')
    self._proc = subprocess.Popen(
        [sys.executable, script], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=self._log, env=env)
    self._pid = os.getpid()
    try:
      child.receive(self._proc.stdout)   # ready: ai_edge_litert imported
    except EOFError:
      self._proc.wait()
      said = _said(self._log, 0, 5)
      self._forget()
      raise RuntimeError(f'the TFLite runtime process did not start: {said}'
                         ) from None
    return self._proc

  def call(self, header: dict, frames: Sequence[bytes], what: str,
           limits: Limits) -> Tuple[dict, List[bytes]]:
    """Send one request and wait for its reply; a dead child raises."""
    with self._lock:
      if self._pid != os.getpid():
        self._proc = None   # inherited through fork: the parent's child
      elif self._proc is not None and limits.runtime_bytes < self._cap:
        self._stop(grace=5)   # it may hold memory granted under a larger cap
      if self._proc is None:
        self._start()
        self._cap = 0
      self._cap = max(self._cap, limits.runtime_bytes)
      request = dict(header, memory_bytes=limits.runtime_bytes,
                     seconds=limits.seconds)
      since = self._log.seek(0, os.SEEK_END)
      try:
        child.send(self._proc.stdin, request, frames)
        return child.receive(self._proc.stdout)
      except (EOFError, BrokenPipeError):
        returncode, said = self._proc.wait(), _said(self._log, since)
        self._forget()
        raise _death(returncode, what, limits, said) from None
      except BaseException:   # e.g. KeyboardInterrupt: the reply is lost
        self._stop(grace=0)
        raise

  def _stop(self, grace: float) -> None:
    """End the child: closing its stdin makes it leave its loop."""
    with contextlib.suppress(BrokenPipeError):   # it may be dead already
      self._proc.stdin.close()
    try:
      self._proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
      self._proc.kill()
      self._proc.wait()
    self._forget()

  def _forget(self) -> None:
    """Drop the ended child; the next call starts a new one."""
    with contextlib.suppress(BrokenPipeError):   # unsent bytes to the dead
      self._proc.stdin.close()
    self._proc.stdout.close()
    self._log.close()
    self._proc = self._log = None

  def close(self) -> None:
    with self._lock:
      if self._proc is not None and self._pid == os.getpid():
        self._stop(grace=5)


_CHILD = _Child()
atexit.register(_CHILD.close)


def _run(header: dict, frames: Sequence[bytes], what: str,
         limits: Optional[Limits]) -> List[bytes]:
  """The reply frames of one request; an error reply raises."""
  limits = limits or Limits()
  reply, out = _CHILD.call(header, frames, what, limits)
  if reply.get('error') == 'memory':
    raise ModelTooLargeError(
        f'{what}: the TFLite runtime needed more than its '
        f'{format_bytes(limits.runtime_bytes)} memory ceiling; if the model '
        'really needs that, raise Limits(runtime_bytes=...) / '
        '--max-runtime-mib')
  if reply.get('error'):
    raise RuntimeRefusedError(what, reply['message'])
  return out


def load(data: bytes, what: str, limits: Optional[Limits] = None) -> None:
  """Build and allocate an interpreter for validated model bytes."""
  _run({'op': 'load'}, [data], what, limits)


def bench(models: Sequence[bytes], runners: Sequence[Tuple[int, int]],
          what: str, rounds: int, block_seconds: float, warmup: int,
          seed: int, limits: Optional[Limits] = None) -> List[np.ndarray]:
  """Microseconds of every timed invoke, per runner ``(model, threads)``."""
  header = {'op': 'bench', 'runners': [list(r) for r in runners],
            'rounds': rounds, 'block_seconds': block_seconds,
            'warmup': warmup, 'seed': seed}
  return [child.bytes_array(f) for f in _run(header, models, what, limits)]


def predict(data: bytes, x: np.ndarray, batch_size: int, threads: int,
            what: str, limits: Optional[Limits] = None) -> np.ndarray:
  """The model's single output for every row of ``x``."""
  header = {'op': 'predict', 'batch_size': batch_size, 'threads': threads}
  frames = _run(header, [data, child.array_bytes(x)], what, limits)
  return child.bytes_array(frames[0])


def close() -> None:
  """End the runtime child now (it also ends when this process exits)."""
  _CHILD.close()
