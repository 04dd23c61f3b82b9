"""The child process in which tflite_export runs LiteRT (see guard.py).

Run as a script, never through the package: it needs only numpy and
ai_edge_litert, so it starts in a fraction of a second, without TensorFlow.
The parent imports this module only for ``send`` and ``receive``.

Requests come on stdin, replies go to a private copy of stdout; fd 1 itself
is pointed at stderr, so nothing the native runtime prints can corrupt a
reply. A message is a JSON header frame followed by ``header['frames']``
binary frames (model bytes, arrays as .npy without pickles); a frame is an
8-byte little-endian length and its bytes.

Every request carries its ceilings: the address space the process may add
to its start-up size (RLIMIT_AS: an allocation beyond it fails) and the
seconds one runtime step may take (an ITIMER_REAL alarm whose default
action ends the process, so even a hang inside native code ends). A crash
ends only this process; the parent turns its signal into an error.
"""

import contextlib
import io
import json
import os
import random
import signal
import struct
import sys
import time

if __name__ == '__main__':
  # The script's folder is the package: its modules must not shadow others.
  _HERE = os.path.dirname(os.path.abspath(__file__))
  if sys.path and os.path.abspath(sys.path[0] or '.') == _HERE:
    del sys.path[0]

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

try:
  import resource  # pylint: disable=g-import-not-at-top
except ImportError:   # not POSIX: no memory ceiling
  resource = None

_LENGTH = struct.Struct('<Q')


def _write_frame(stream, payload: bytes) -> None:
  stream.write(_LENGTH.pack(len(payload)))
  stream.write(payload)


def _read_exact(stream, count: int) -> bytes:
  data = stream.read(count)
  if data is None or len(data) != count:
    raise EOFError('the other process closed the channel')
  return data


def send(stream, header: dict, frames=()) -> None:
  """One message: the JSON header (with its frame count), then the frames."""
  frames = list(frames)
  _write_frame(stream, json.dumps(dict(header, frames=len(frames))).encode())
  for frame in frames:
    _write_frame(stream, frame)
  stream.flush()


def receive(stream):
  """(header, frames) of the next message; EOFError when the peer is gone."""
  def frame() -> bytes:
    return _read_exact(stream, _LENGTH.unpack(_read_exact(stream, 8))[0])
  header = json.loads(frame().decode())
  return header, [frame() for _ in range(header['frames'])]


def array_bytes(array: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  np.save(buffer, np.asarray(array), allow_pickle=False)
  return buffer.getvalue()


def bytes_array(frame: bytes) -> np.ndarray:
  return np.load(io.BytesIO(frame), allow_pickle=False)


@contextlib.contextmanager
def _deadline(seconds: float):
  """End the process (SIGALRM, default action) if the block overruns."""
  if not hasattr(signal, 'setitimer'):
    yield
    return
  signal.setitimer(signal.ITIMER_REAL, seconds)
  try:
    yield
  finally:
    signal.setitimer(signal.ITIMER_REAL, 0)


def _address_space() -> int:
  """Current virtual size; 0 where /proc is missing (no ceiling is set)."""
  try:
    with open('/proc/self/statm') as f:
      return int(f.read().split()[0]) * os.sysconf('SC_PAGE_SIZE')
  except (OSError, ValueError):
    return 0


def _cap_memory(base: int, extra: int) -> None:
  if resource is None or not base:
    return
  _, hard = resource.getrlimit(resource.RLIMIT_AS)
  soft = base + int(extra)
  if hard != resource.RLIM_INFINITY:
    soft = min(soft, hard)
  resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _interpreter(content: bytes, threads: int, allocate: bool = True):
  from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
  interpreter = Interpreter(model_content=content, num_threads=threads)
  if allocate:
    interpreter.allocate_tensors()
  return interpreter


def _set_random_inputs(interpreter) -> None:
  rng = np.random.RandomState(0)
  for detail in interpreter.get_input_details():
    shape = [d if d > 0 else 1 for d in detail['shape']]
    if np.issubdtype(detail['dtype'], np.floating):
      value = rng.rand(*shape).astype(detail['dtype'])
    else:
      value = rng.randint(-20, 20, shape).astype(detail['dtype'])
    interpreter.set_tensor(detail['index'], value)


def _time_block(interpreter, count: int):
  times = []
  for _ in range(count):
    start = time.perf_counter_ns()
    interpreter.invoke()
    times.append((time.perf_counter_ns() - start) / 1e3)
  return times


def _load(header, frames):
  """Build and allocate the interpreter: does the runtime accept the file?"""
  with _deadline(header['seconds']):
    _interpreter(frames[0], 1)
  return {}, []


def _bench(header, frames):
  """Per runner (model, threads) the microseconds of every timed invoke.

  Runners are built up front and timed in blocks sized to
  ``block_seconds``, in a shuffled order each round, so drift on a shared
  machine hits all of them alike. Only ``invoke()`` is inside the timing.
  """
  seconds = header['seconds']
  runners = []
  for model, threads in header['runners']:
    with _deadline(seconds):
      runners.append(_interpreter(frames[model], threads))
      _set_random_inputs(runners[-1])
  counts = []
  for interpreter in runners:
    with _deadline(seconds):
      _time_block(interpreter, header['warmup'])
      per_call = np.median(_time_block(interpreter, 10)) / 1e6
    counts.append(int(max(20, min(20000, header['block_seconds'] /
                                  max(per_call, 1e-7)))))
  samples = [[] for _ in runners]
  order = list(range(len(runners)))
  rng = random.Random(header['seed'])
  for _ in range(header['rounds']):
    rng.shuffle(order)
    for k in order:
      with _deadline(seconds):
        samples[k] += _time_block(runners[k], counts[k])
  return {}, [array_bytes(np.asarray(s, np.float64)) for s in samples]


def _predict(header, frames):
  """The model's single output for every row of the array in frame 1."""
  x = bytes_array(frames[1])
  batch_size, seconds = header['batch_size'], header['seconds']
  with _deadline(seconds):
    interpreter = _interpreter(frames[0], header['threads'], allocate=False)
  inp = interpreter.get_input_details()[0]
  out = interpreter.get_output_details()[0]
  results, size = [], None
  for start in range(0, len(x), batch_size):
    chunk = np.asarray(x[start:start + batch_size], inp['dtype'])
    with _deadline(seconds):
      if chunk.shape[0] != size:
        interpreter.resize_tensor_input(inp['index'], chunk.shape)
        interpreter.allocate_tensors()
        size = chunk.shape[0]
      interpreter.set_tensor(inp['index'], chunk)
      interpreter.invoke()
    results.append(interpreter.get_tensor(out['index']).copy())
  return {}, [array_bytes(np.concatenate(results))]


_HANDLERS = {'load': _load, 'bench': _bench, 'predict': _predict}


def _serve(header, frames, base: int):
  """The reply to one request; runtime errors are replies, not crashes."""
  _cap_memory(base, header['memory_bytes'])
  try:
    return _HANDLERS[header['op']](header, frames)
  except MemoryError as e:
    return {'error': 'memory', 'message': str(e) or 'out of memory'}, []
  except (RuntimeError, ValueError) as e:   # what LiteRT raises
    return {'error': 'runtime', 'message': str(e).strip()}, []


def main() -> int:
  replies = os.fdopen(os.dup(1), 'wb')
  os.dup2(2, 1)
  requests = sys.stdin.buffer
  from ai_edge_litert import interpreter  # pylint: disable=g-import-not-at-top,unused-import
  base = _address_space()
  send(replies, {'ready': True})
  while True:
    try:
      header, frames = receive(requests)
    except EOFError:
      return 0
    reply, out = _serve(header, frames, base)
    send(replies, reply, out)


if __name__ == '__main__':
  sys.exit(main())
