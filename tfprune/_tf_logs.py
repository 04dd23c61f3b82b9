"""Keep TensorFlow's C++ start-up notices out of tfprune's output.

Importing TensorFlow 2.21 writes lines like these to stderr before any
logging setting applies (``TF_CPP_MIN_LOG_LEVEL`` does not stop them)::

    WARNING: All log messages before absl::InitializeLog() is called ...
    I0000 ... port.cc:153] oneDNN custom operations are on. ...
    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine ...
    I0000 ... cpu_feature_guard.cc:227] This TensorFlow binary is optimized ...

and on a machine without a GPU driver the first device query adds
``E0000 ... failed call to cuInit: ... (303)``, which reads like a failure.

:func:`import_tensorflow` (called first thing by ``tfprune/__init__.py``)
imports TensorFlow and lists its physical devices with file descriptor 2
sent to a temporary file, then writes back every line except these known
notices (the cuInit error only when the "Could not find cuda drivers"
notice said there is no driver to initialise). The command lines
(``tfprune ...``, ``python -m tfprune.train``, ``python -m tflite_export.*``)
also default ``TF_CPP_MIN_LOG_LEVEL`` to 3, which silences TensorFlow's
later C++ lines (cuInit, converter and SavedModel chatter); Python
exceptions still report every error. Setting ``TF_CPP_MIN_LOG_LEVEL``
yourself wins: ``TF_CPP_MIN_LOG_LEVEL=0 tfprune train ...`` shows them all,
notices included.

This module uses the standard library only: it must run before TensorFlow
is imported.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

ENV = 'TF_CPP_MIN_LOG_LEVEL'
# The start-up notices dropped by import_tensorflow (one pattern per line).
NOTICES = (
    re.compile(r'^WARNING: All log messages before absl::InitializeLog\(\) '
               r'is called are written to STDERR$'),
    re.compile(r'^[IW]\d{4} .* port\.cc:\d+\] oneDNN custom operations are '
               r'on\.'),
    re.compile(r'^[IW]\d{4} .* cudart_stub\.cc:\d+\] Could not find cuda '
               r'drivers'),
    re.compile(r'^[IW]\d{4} .* cpu_feature_guard\.cc:\d+\] This TensorFlow '
               r'binary is optimized'),
    re.compile(r'^To enable the following instructions: .* rebuild '
               r'TensorFlow with the appropriate compiler flags\.$'),
)
_NO_DRIVER = NOTICES[2]
_CUINIT = re.compile(r'^E\d{4} .* cuda_platform\.cc:\d+\] failed call to '
                     r'cuInit')
_COMMANDS = ('tfprune', 'tflite_export')


def is_command_line() -> bool:
  """Whether this process is one of tfprune's command lines.

  ``tfprune ...`` (the console script) or ``python -m tfprune[.x]`` /
  ``python -m tflite_export.x``; decided from ``sys.orig_argv`` because the
  package is imported before the command's own module runs.
  """
  argv = list(getattr(sys, 'orig_argv', sys.argv))
  if sys.argv and os.path.basename(sys.argv[0]) == 'tfprune':
    return True
  for flag, module in zip(argv, argv[1:]):
    if flag == '-m':
      return module.split('.')[0] in _COMMANDS
  return False


def user_wants_logs() -> bool:
  """Whether the user asked for TensorFlow's C++ logs (level 0 or 1)."""
  return os.environ.get(ENV, '').strip() in ('0', '1')


def is_notice(line: str) -> bool:
  """Whether ``line`` is one of the known TensorFlow start-up notices."""
  return any(p.search(line) for p in NOTICES)


def drop_notices(text: str) -> str:
  """``text`` without the known notices (and an expected cuInit error)."""
  lines = text.splitlines(keepends=True)
  no_driver = any(_NO_DRIVER.search(line) for line in lines)
  return ''.join(line for line in lines
                 if not is_notice(line.rstrip('\n')) and
                 not (no_driver and _CUINIT.search(line)))


def import_tensorflow() -> None:
  """Import TensorFlow without its start-up notices (see the module doc)."""
  if is_command_line():
    os.environ.setdefault(ENV, '3')
  if 'tensorflow' in sys.modules or user_wants_logs():
    import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
    return
  try:
    sys.stderr.flush()
    saved = os.dup(2)
  except (OSError, ValueError):   # no file descriptor 2 to redirect
    import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
    return
  with tempfile.TemporaryFile(mode='w+b') as caught:
    os.dup2(caught.fileno(), 2)
    try:
      import tensorflow  # pylint: disable=g-import-not-at-top
      tensorflow.config.list_physical_devices()   # the cuInit attempt
    finally:
      os.dup2(saved, 2)
      os.close(saved)
      caught.seek(0)
      kept = drop_notices(caught.read().decode(errors='replace'))
      if kept:
        sys.stderr.write(kept)
        sys.stderr.flush()
