"""The workdir of a ``tfprune.train`` run: locked, built aside, replaced safely.

``building(workdir, overwrite)`` is what a run does with its workdir:

* the path is resolved first (``os.path.realpath``): a symlinked workdir is
  written where the link points, and a workdir that is a file is refused
  before any training;
* the run holds ``<workdir>.lock`` with ``fcntl.flock`` from start to end, so
  a second run on the same workdir is refused while the first is alive, and
  the OS drops the lock when a run dies (even on ``kill -9``); the lock file
  is removed when the run ends (a killed run leaves it behind, harmless: the
  next run locks it and removes it);
* everything is written to ``<workdir>.partial`` (marked with a
  :data:`MARKER` file) and renamed onto the workdir when the run succeeds;
  an earlier run's workdir (``overwrite``) is first renamed to
  ``<workdir>.replaced`` and deleted after, so a kill never leaves a
  half-deleted workdir;
* only folders carrying :data:`MARKER` are ever deleted: an earlier run's
  workdir (with ``overwrite``) and the ``.partial`` / ``.replaced`` folders
  a killed run left.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import warnings
from typing import Iterator

try:
  import fcntl
except ImportError:  # not POSIX (Windows): runs proceed without the lock
  fcntl = None

MARKER = '.tfprune_run'
PARTIAL = '.partial'
REPLACED = '.replaced'   # an earlier run's workdir, moved aside to replace it
LOCK = '.lock'
_LOCK_ATTEMPTS = 10


class WorkdirError(Exception):
  """The workdir cannot be used as given; the message says why and the fix."""


class WorkdirExistsError(WorkdirError, FileExistsError):
  """The workdir exists and --overwrite was not given (or cannot apply)."""


class WorkdirInUseError(WorkdirError):
  """Another live tfprune run holds the workdir's lock."""


def resolve(workdir: str) -> str:
  """The workdir's real path, refused early if it is not a folder.

  Symlinks are followed so that the lock, ``.partial`` and the final rename
  all act on the folder the link names (never on the link), and so that two
  spellings of one folder share one lock.
  """
  path = os.path.realpath(workdir)
  if os.path.exists(path) and not os.path.isdir(path):
    shown = workdir if path == os.path.abspath(workdir) else (
        f'{workdir} (-> {path})')
    raise WorkdirError(f'workdir {shown} is a file, not a folder; choose '
                       'another --workdir')
  return path


def _real_folder(path: str) -> bool:
  return os.path.isdir(path) and not os.path.islink(path)


def made_by_tfprune(path: str) -> bool:
  """Whether ``path`` is a real folder a tfprune run created and marked."""
  return _real_folder(path) and os.path.isfile(os.path.join(path, MARKER))


def _replaceable(path: str) -> bool:
  """Whether replacing ``path`` with a run's output loses no user files."""
  return made_by_tfprune(path) or (_real_folder(path) and
                                   not os.listdir(path))


def _holder(fd: int) -> str:
  """What the lock file says about the run holding it (pid, start time)."""
  os.lseek(fd, 0, os.SEEK_SET)
  text = os.read(fd, 200).decode(errors='replace').strip()
  return text or 'pid unknown: it is just starting'


def _names_file(fd: int, path: str) -> bool:
  """Whether ``path`` still names the file open as ``fd``.

  The holder removes the lock file before it unlocks, so a run that opened
  the old file and then got its lock must see that and start over.
  """
  try:
    on_disk, held = os.stat(path), os.fstat(fd)
  except FileNotFoundError:
    return False
  return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


def _acquire(path: str, workdir: str) -> int:
  """Open and flock the lock file; refuse if a live run holds it."""
  for _ in range(_LOCK_ATTEMPTS):
    try:
      fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise WorkdirError(f'cannot create the lock file {path} of workdir '
                         f'{workdir}: {e.strerror}; choose another '
                         '--workdir') from None
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _holder(fd)
      os.close(fd)
      raise WorkdirInUseError(
          f'workdir {workdir} is in use by another tfprune run ({holder}; '
          f'lock {path}); wait for it to finish or choose another '
          '--workdir') from None
    if _names_file(fd, path):
      os.ftruncate(fd, 0)
      os.write(fd, f'pid {os.getpid()}, started '
               f'{time.strftime("%Y-%m-%d %H:%M:%S")}'.encode())
      return fd
    os.close(fd)
  raise WorkdirInUseError(
      f'could not lock workdir {workdir}: {path} was removed and recreated '
      f'{_LOCK_ATTEMPTS} times while locking; other runs keep starting on '
      'it, choose another --workdir')


@contextlib.contextmanager
def _locked(workdir: str) -> Iterator[None]:
  """Hold ``<workdir>.lock`` for the block; the OS releases it if we die."""
  if fcntl is None:
    warnings.warn('fcntl is not available on this platform, so a second run '
                  f'on workdir {workdir} is not detected: start one run per '
                  'workdir at a time')
    yield
    return
  path = workdir + LOCK
  fd = _acquire(path, workdir)
  try:
    yield
  finally:
    if _names_file(fd, path):   # removed while held: no one can lock it now
      os.unlink(path)
    os.close(fd)


def _make_parent(workdir: str) -> None:
  parent = os.path.dirname(workdir)
  try:
    os.makedirs(parent, exist_ok=True)
  except OSError as e:
    raise WorkdirError(f'cannot create {parent}, the folder of workdir '
                       f'{workdir}: {e.strerror}; choose another '
                       '--workdir') from None


def _check_existing(workdir: str, overwrite: bool) -> None:
  """Refuse an existing workdir unless overwrite may replace it."""
  if not os.path.isdir(workdir) or not os.listdir(workdir):
    return
  if not overwrite:
    raise WorkdirExistsError(
        f'workdir {workdir} exists and is not empty; pass --overwrite to '
        'replace it, or choose another --workdir')
  if not made_by_tfprune(workdir):
    raise WorkdirExistsError(
        f'workdir {workdir} was not made by tfprune.train (no {MARKER} '
        'file), so --overwrite will not delete it; choose another --workdir')


def _remove_leftover(path: str) -> None:
  """Delete what a killed run left beside the workdir; refuse anything else."""
  if not os.path.lexists(path):
    return
  if not made_by_tfprune(path):
    raise WorkdirError(
        f'{path} exists and was not made by tfprune.train (no {MARKER} file '
        'in it), so it is not deleted; tfprune.train needs that name for the '
        'run: move it away or choose another --workdir')
  shutil.rmtree(path)


def _start(workdir: str, overwrite: bool) -> str:
  _check_existing(workdir, overwrite)
  partial, replaced = workdir + PARTIAL, workdir + REPLACED
  _remove_leftover(partial)
  _remove_leftover(replaced)
  os.makedirs(partial)
  with open(os.path.join(partial, MARKER), 'w') as f:
    f.write('made by tfprune.train\n')
  return partial


def _finish(partial: str, workdir: str) -> None:
  """Rename the finished run onto the workdir, never leaving a half-deleted one.

  An earlier run's workdir is renamed aside before and deleted after, so a
  kill at any point leaves whole runs only. The workdir is checked again:
  someone may have written into it during the run.
  """
  if os.path.lexists(workdir) and not _replaceable(workdir):
    raise WorkdirExistsError(
        f'workdir {workdir} changed during the run and holds files '
        f'tfprune.train did not make, so it is not replaced; the finished '
        f'run is in {partial}: move it where you want it')
  if made_by_tfprune(workdir):
    replaced = workdir + REPLACED
    os.replace(workdir, replaced)
    os.replace(partial, workdir)
    shutil.rmtree(replaced)
  else:   # absent or an empty folder, which the rename replaces
    os.replace(partial, workdir)


@contextlib.contextmanager
def building(workdir: str, overwrite: bool = False) -> Iterator[str]:
  """Yield the ``.partial`` folder to write a run into; see the module doc.

  Every check happens before the block runs (before any training). If the
  block raises, the ``.partial`` folder is removed and the workdir is left as
  it was; if it succeeds, ``.partial`` replaces the workdir.
  """
  workdir = resolve(workdir)
  _make_parent(workdir)
  with _locked(workdir):
    partial = _start(workdir, overwrite)
    try:
      yield partial
    except BaseException:
      shutil.rmtree(partial, ignore_errors=True)
      raise
    _finish(partial, workdir)
