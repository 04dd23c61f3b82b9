"""Hostile .tflite files: refused by inspect or contained by the runtime child.

The two reported files are rebuilt here from a small converted model: a
RESHAPE whose shape input is -1 (LiteRT dereferences it: SIGSEGV) and a
tensor shape set to [1, 5505052, 28, 1] (gigabytes allocated before any
error). A seeded fuzz test runs a few hundred mutants of the same model
through inspect, check and bench.
"""

import collections
import os
import random
import resource
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

import tflite_export
import tfprune
from conftest import rewrite_tflite
from conftest import small_conv_model
from tflite_export import guard
from tflite_export import validation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HUGE = [1, 5505052, 28, 1]


@pytest.fixture(scope='module')
def model_file(tmp_path_factory):
  """(path, report) of conftest's conv -> depthwise -> reshape -> dense."""
  folder = tmp_path_factory.mktemp('hostile')
  model = small_conv_model()
  path = tflite_export.convert(model, str(folder / 'm.tflite'))['path']
  report = str(folder / 'report.json')
  tfprune.report(model).to_json(report)
  return path, report


def reshape_without_shape(model, fb):
  for op in model.subgraphs[0].operators:
    code = model.operatorCodes[op.opcodeIndex]
    if max(code.builtinCode,
           code.deprecatedBuiltinCode) == fb.BuiltinOperator.RESHAPE:
      op.inputs[1] = -1


def reshaped(tensor_index, shape, signature=None):
  """An edit giving one tensor another shape (and shape signature)."""
  def edit(model, fb):
    del fb
    tensor = model.subgraphs[0].tensors[tensor_index]
    tensor.shape = np.asarray(shape, np.int32)
    if signature is not None:
      tensor.shapeSignature = np.asarray(signature, np.int32)
  return edit


def set_quantization(tensor_index, scale, zero_point):
  def edit(model, fb):
    quant = fb.QuantizationParametersT()
    quant.scale, quant.zeroPoint = scale, zero_point
    model.subgraphs[0].tensors[tensor_index].quantization = quant
  return edit


def set_field(getter, attribute, value):
  def edit(model, fb):
    del fb
    setattr(getter(model), attribute, value)
  return edit


def child_peak_bytes():
  """Peak resident memory of the runtime child, while it is alive."""
  pid = guard._CHILD._proc.pid  # pylint: disable=protected-access
  with open(f'/proc/{pid}/status') as f:
    line = [l for l in f if l.startswith('VmHWM:')][0]
  return int(line.split()[1]) * 1024


def test_reshape_without_its_shape_is_refused_by_inspect(model_file, tmp_path):
  path = rewrite_tflite(model_file[0], tmp_path / 'r.tflite',
                        reshape_without_shape)
  with pytest.raises(tflite_export.InvalidModelError,
                     match=r'operator 2 .*\(RESHAPE\) has input 1 absent'):
    tflite_export.inspect(path)


@pytest.mark.parametrize('edit,message', [
    (set_quantization(7, [float('nan')], [0]),
     r"tensor 7 'net/conv/Conv2D1' .* scales that are negative, infinite or "
     'NaN'),
    (set_quantization(7, [1.0, 1.0], [0, 0]),
     r'2 quantization scales and 2 zero points on axis 0 of shape \[1, 4'),
    (set_field(lambda m: m.subgraphs[0].tensors[6], 'buffer', 99),
     r'tensor 6 .* refers to buffer 99 of 14'),
    (set_field(lambda m: m.subgraphs[0].tensors[6], 'shape',
               np.asarray([4, 3, 3, 3], np.int32)),
     r"tensor 6 'net/conv/Conv2D' .* stores 288 bytes but its shape "
     r'\[4, 3, 3, 3\] \(FLOAT32\) needs 432'),
    (set_field(lambda m: m.subgraphs[0].operators[1], 'inputs',
               np.asarray([7, 999, 3], np.int32)),
     r'operator 1 .*\(DEPTHWISE_CONV_2D\) input 1 is tensor 999 of 11'),
    (set_field(lambda m: m.subgraphs[0].operators[1], 'inputs',
               np.asarray([7, -1, 3], np.int32)),
     r'\(DEPTHWISE_CONV_2D\) has input 1 absent \(-1\)'),
    (set_field(lambda m: m.subgraphs[0].operators[0], 'opcodeIndex', 40),
     r'operator 0 of subgraph 0 uses operator code 40 of 4'),
    (set_field(lambda m: m.subgraphs[0], 'inputs', np.asarray([11], np.int32)),
     r'subgraph 0 inputs \[11\] are not tensors'),
    (set_field(lambda m: m.subgraphs[0].tensors[0], 'type', 77),
     r'tensor 0 .* unknown type code 77'),
])
def test_structural_faults_are_refused_by_inspect(model_file, tmp_path, edit,
                                                  message):
  path = rewrite_tflite(model_file[0], tmp_path / 'bad.tflite', edit)
  with pytest.raises(tflite_export.InvalidModelError,
                     match=message + '.*truncated or corrupt'):
    tflite_export.inspect(path)


def test_tensor_size_limits(model_file, tmp_path):
  path = rewrite_tflite(model_file[0], tmp_path / 'big.tflite',
                 reshaped(0, [1, 5505052, 28, 2], [-1, 5505052, 28, 2]))
  with pytest.raises(tflite_export.ModelTooLargeError,
                     match=r"tensor 0 'serving_default_input_1:0' of subgraph "
                     r'0 would take 1.15 GiB .* over the 1 GiB limit for one '
                     r'tensor.*Limits\(tensor_bytes=...\) / --max-tensor-mib'):
    tflite_export.inspect(path)
  raised = validation.Limits(tensor_bytes=2 << 30)
  assert tflite_export.inspect(path, raised).op_names[0] == 'CONV_2D'
  with pytest.raises(tflite_export.ModelTooLargeError,
                     match=r'take 1.15 GiB, over the 1 GiB limit for all '
                     r'tensors.*--max-total-mib'):
    tflite_export.inspect(path, validation.Limits(tensor_bytes=2 << 30,
                                                  total_bytes=1 << 30))


@pytest.mark.parametrize('tensor,signature', [
    (7, None),            # an activation, its signature left as it was
    (0, None),            # the input
    (0, [-1] + HUGE[1:]),  # the input, signature edited to match
])
def test_reported_huge_shape_is_refused_quickly(model_file, tmp_path, tensor,
                                                signature):
  path = rewrite_tflite(model_file[0], tmp_path / 'big.tflite',
                 reshaped(tensor, HUGE, signature))
  start = time.perf_counter()
  if signature is None:
    with pytest.raises(tflite_export.InvalidModelError,
                       match=r'shape \[1, 5505052, 28, 1\] but shape '
                       'signature'):
      tflite_export.check(path, model_file[1])
  else:   # inspect accepts it (616 MB < 1 GiB); LiteRT refuses 1 channel
    result = tflite_export.check(path, model_file[1])
    assert not result.ok and 'does not load' in result.failures[-1]
    with pytest.raises(tflite_export.RuntimeRefusedError):
      tflite_export.bench([path], threads=(1,), rounds=1)
    assert child_peak_bytes() < 1 << 30
  assert time.perf_counter() - start < 10


def test_command_lines_on_the_reshape_file_exit_2(model_file, tmp_path):
  """Both commands used to die with SIGSEGV on this file."""
  path = rewrite_tflite(model_file[0], tmp_path / 'r.tflite',
                        reshape_without_shape)
  code = ('import importlib\n'
          'check = importlib.import_module("tflite_export.check")\n'
          'bench = importlib.import_module("tflite_export.bench")\n'
          f'print(check.main([{path!r}, "--expect", {model_file[1]!r}]),\n'
          f'      bench.main([{path!r}, "--rounds", "1"]))\n')
  proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                        text=True, cwd=ROOT, timeout=120,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.split() == ['2', '2']
  errors = [l for l in proc.stderr.splitlines()
            if l.startswith('tflite_export.')]
  assert len(errors) == 2 and all('(RESHAPE) has input 1 absent' in l
                                  for l in errors)
  assert 'Traceback' not in proc.stderr


def test_a_runtime_crash_is_an_error_not_a_dead_process(model_file, tmp_path,
                                                        monkeypatch):
  """A fault inspect misses still only ends the runtime child."""
  path = rewrite_tflite(model_file[0], tmp_path / 'r.tflite',
                        reshape_without_shape)
  optional = validation._OPTIONAL_INPUTS  # pylint: disable=protected-access
  monkeypatch.setitem(optional, 'RESHAPE', frozenset({1}))
  crashed = r'crashed on this file: signal 11 \(SIGSEGV\)'
  with pytest.raises(tflite_export.RuntimeCrashError, match=crashed):
    tflite_export.check(path, model_file[1])
  with pytest.raises(tflite_export.RuntimeCrashError, match=crashed):
    tflite_export.bench([path], threads=(1,), rounds=1)
  with pytest.raises(tflite_export.RuntimeCrashError, match=crashed):
    tflite_export.predict(path, np.zeros((2, 6, 6, 2), np.float32))
  # the next call gets a new child
  assert tflite_export.predict(model_file[0], np.zeros(
      (2, 6, 6, 2), np.float32)).shape == (2, 3)


def test_the_runtime_child_has_a_memory_ceiling(model_file, tmp_path):
  """Declared sizes pass inspect, what the runtime derives from them not."""
  path = rewrite_tflite(model_file[0], tmp_path / 'big.tflite',
                 reshaped(0, [1, 5505052, 6, 2], [-1, 5505052, 6, 2]))
  limits = tflite_export.Limits(runtime_bytes=256 << 20)
  result = tflite_export.check(path, model_file[1], limits=limits)
  assert 'does not load under ai_edge_litert' in result.failures[-1]
  with pytest.raises((tflite_export.ModelTooLargeError,
                      tflite_export.RuntimeRefusedError)):
    tflite_export.bench([path], threads=(1,), rounds=1, limits=limits)
  assert child_peak_bytes() < 512 << 20
  with pytest.raises(tflite_export.ModelTooLargeError,
                     match=r'needed more than its 16 MiB memory ceiling.*'
                     r'--max-runtime-mib'):   # 23 MB of inputs
    tflite_export.predict(model_file[0], np.zeros((40000, 6, 6, 2)),
                          limits=tflite_export.Limits(runtime_bytes=16 << 20))


def test_a_step_over_the_time_limit_is_stopped(model_file, tmp_path):
  path = rewrite_tflite(model_file[0], tmp_path / 'slow.tflite',
                 reshaped(0, [1, 100000, 6, 2], [-1, 100000, 6, 2]))
  limits = tflite_export.Limits(seconds=0.1)
  start = time.perf_counter()
  with pytest.raises(tflite_export.RuntimeCrashError,
                     match=r'did not finish one step within 0.1 s.*'
                     r'Limits\(seconds=...\)'):
    tflite_export.bench([path], threads=(1,), rounds=1, block_seconds=5,
                        limits=limits)
  assert time.perf_counter() - start < 10


def test_operator_without_outputs_is_read_and_refused_by_the_runtime(
    model_file, tmp_path):
  """The fuzzed file on which inspect raised TypeError."""
  path = rewrite_tflite(model_file[0], tmp_path / 'bad.tflite', set_field(
      lambda m: m.subgraphs[0].operators[3], 'outputs', None))
  info = tflite_export.inspect(path)
  assert info.operators[3].outputs == [] and info.operators[3].label == (
      'operator 3')
  result = tflite_export.check(path, model_file[1])
  assert 'does not load under ai_edge_litert' in result.failures[-1]


def mutants(data, seed=0, count=450):
  """(kind, bytes): seeded byte flips, int32 overwrites and truncations."""
  rng = random.Random(seed)
  for k in range(count):
    kind = ('flip', 'int32', 'truncate')[k % 3]
    mutant = bytearray(data)
    if kind == 'flip':
      for _ in range(rng.randint(1, 8)):
        mutant[rng.randrange(len(mutant))] ^= 1 << rng.randrange(8)
    elif kind == 'int32':   # any offset: fields, offsets, lengths, values
      struct.pack_into('<i', mutant, rng.randrange(len(mutant) - 4), rng.choice(
          [-1, 0, 1, 2**31 - 1, -2**31, rng.randrange(-4096, 1 << 20)]))
    else:
      del mutant[rng.randrange(len(mutant)):]
    yield kind, bytes(mutant)


CLEAN_ERRORS = (tflite_export.InvalidModelError,
                tflite_export.ReportMismatchError,
                tflite_export.RuntimeRefusedError)


def outcome(name, call):
  """The error type (or 'ok'); anything else, or a slow call, fails."""
  start = time.perf_counter()
  try:
    call()
    result = 'ok'
  except CLEAN_ERRORS as e:
    assert '\n' not in str(e), f'{name}: not one line: {e}'
    result = type(e).__name__
  except Exception as e:  # pylint: disable=broad-except
    pytest.fail(f'{name}: {type(e).__name__}: {e}')
  assert time.perf_counter() - start < 20, name
  return result


def test_fuzzed_files_end_in_a_result_or_one_clean_error(model_file,
                                                         tmp_path):
  """inspect on every mutant; check and bench on the ones inspect accepts."""
  source, report = model_file
  with open(source, 'rb') as f:
    data = f.read()
  files = []
  for i, (kind, mutant) in enumerate(mutants(data)):
    files.append(str(tmp_path / f'{i}_{kind}.tflite'))
    with open(files[-1], 'wb') as f:
      f.write(mutant)
  crafted = [('reshape', reshape_without_shape), ('huge7', reshaped(7, HUGE)),
             ('huge0', reshaped(0, HUGE, [-1] + HUGE[1:]))]
  files += [rewrite_tflite(source, tmp_path / f'{name}.tflite', edit)
            for name, edit in crafted]
  limits = tflite_export.Limits(runtime_bytes=1 << 30, seconds=10)
  parent_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  runs = {'check': lambda p: tflite_export.check(p, report, limits=limits),
          'bench': lambda p: tflite_export.bench(
              [p], threads=(1,), rounds=1, block_seconds=0.002, warmup=1,
              limits=limits)}
  seen = collections.Counter()
  accepted = []
  for path in files:
    result = outcome(f'inspect {path}',
                     lambda: tflite_export.inspect(path, limits))  # pylint: disable=cell-var-from-loop
    seen['inspect ' + result] += 1
    if result == 'ok':
      accepted.append(path)
  for path in accepted[:60] + files[-1:]:   # + the crafted input shape
    for what, run in runs.items():
      seen[f'{what} ' + outcome(f'{what} {path}', lambda: run(path))] += 1  # pylint: disable=cell-var-from-loop
    if guard._CHILD._proc is not None:  # pylint: disable=protected-access
      assert child_peak_bytes() < 2 << 30, path
  grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - parent_peak
  assert grown * 1024 < 2 << 30
  print(sorted(seen.items()))
  assert seen['inspect ok'] >= 60 and seen['inspect InvalidModelError'] >= 200
  assert seen['check ok'] and seen['bench ok']
