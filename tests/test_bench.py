"""bench(): structure of the results (timings are never asserted)."""

import importlib
import os
import re

import pytest
import tf_keras as keras

import tflite_export

bench_module = importlib.import_module('tflite_export.bench')


def _tflite(tmp_path, name, units):
  inputs = keras.Input((16,))
  model = keras.Model(inputs, keras.layers.Dense(units)(inputs))
  return tflite_export.convert(model, str(tmp_path / name))['path']


def test_bench_measures_every_model_and_thread_count(tmp_path):
  small, big = _tflite(tmp_path, 'small.tflite', 4), _tflite(
      tmp_path, 'big.tflite', 256)
  result = tflite_export.bench([small, big], threads=(1, 2), rounds=2,
                               block_seconds=0.01, warmup=2)
  rows = {(r['path'], r['threads']): r for r in result['results']}
  assert set(rows) == {(small, 1), (small, 2), (big, 1), (big, 2)}
  assert result['reference'] == small
  for (path, _), row in rows.items():
    assert row['runs'] >= 2 * 20
    assert row['p10_us'] <= row['median_us'] <= row['p90_us']
    assert row['size'] == os.path.getsize(path)
  assert rows[(small, 1)]['ratio'] == 1.0 and rows[(small, 2)]['ratio'] == 1.0
  table = bench_module.format_table(result)
  assert table.count('\n') == 5 and '| big.tflite | 2 |' in table


def test_reference_is_added_when_missing(tmp_path):
  a, b = _tflite(tmp_path, 'a.tflite', 4), _tflite(tmp_path, 'b.tflite', 8)
  result = tflite_export.bench([b], threads=(1,), rounds=1,
                               block_seconds=0.01, warmup=1, reference=a)
  assert [r['path'] for r in result['results']] == [a, b]


def test_errors(tmp_path, capsys):
  with pytest.raises(FileNotFoundError, match='no such .tflite'):
    tflite_export.bench([str(tmp_path / 'none.tflite')])
  with pytest.raises(ValueError, match='at least one'):
    tflite_export.bench([])
  assert bench_module.main([str(tmp_path / 'none.tflite')]) == 2
  assert 'no such .tflite' in capsys.readouterr().err
  path = _tflite(tmp_path, 'm.tflite', 4)
  assert bench_module.main([path, '--threads', '1', '--rounds', '1']) == 0
  assert '| m.tflite | 1 |' in capsys.readouterr().out


@pytest.mark.parametrize('argv,message', [
    (['--rounds', '0'], 'rounds must be at least 1, got 0'),
    (['--threads', '0'], r'threads must be counts >= 1, got \[0\]'),
])
def test_settings_that_measure_nothing_are_refused(tmp_path, capsys, argv,
                                                   message):
  path = _tflite(tmp_path, 'm.tflite', 4)
  assert bench_module.main([path] + argv) == 2
  err = capsys.readouterr().err
  assert re.search(message, err) and err.count('\n') == 1, err
  for limit in ('0', 'nan', 'inf', 'x'):
    with pytest.raises(SystemExit) as exit_:
      bench_module.main([path, '--max-seconds', limit])
    assert exit_.value.code == 2
    assert (f'argument --max-seconds: must be a positive number, got {limit}'
            in capsys.readouterr().err)


def test_a_directory_is_refused(tmp_path, capsys):
  assert bench_module.main([str(tmp_path)]) == 2
  assert 'is a directory, not a .tflite file' in capsys.readouterr().err
