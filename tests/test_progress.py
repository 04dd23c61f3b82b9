"""tfprune.progress: bars only for slow steps, an ETA while running."""

import io
import time

import pytest

from tfprune import progress


class _Terminal(io.StringIO):

  def isatty(self):
    return True


@pytest.fixture(name='delay')
def _delay(monkeypatch):
  def set_to(seconds):
    monkeypatch.setitem(progress._settings, 'delay', seconds)  # pylint: disable=protected-access
  return set_to


def test_fast_steps_print_nothing(delay):
  delay(60.0)
  out = io.StringIO()
  assert list(progress.track(range(4), 'quick', stream=out)) == [0, 1, 2, 3]
  assert out.getvalue() == ''
  delay(None)
  list(progress.track(range(4), 'never', stream=out))
  assert out.getvalue() == ''


def test_terminal_bar_refreshes_one_line_with_eta(delay):
  delay(0.0)
  out = _Terminal()
  bar = progress.Progress('APoZ pass', 4, stream=out)
  bar.update(1)
  assert out.getvalue().startswith('\rAPoZ pass 1/4 [=====>')
  assert ', ETA ' in out.getvalue()
  bar.update(4)
  bar.close()
  assert out.getvalue().endswith('4/4 [====================] 0s\n')


def test_log_file_gets_a_last_line_when_stopped_early(delay, monkeypatch):
  delay(0.0)
  monkeypatch.setattr(progress, 'LOG_EVERY', 3600.0)
  out = io.StringIO()
  for i in progress.track(range(10), 'convert', stream=out):
    if i == 2:
      break
  assert out.getvalue().splitlines() == [
      'convert 0/10 [>                   ] 0s',
      'convert 2/10 [====>               ] 0s, ETA 0s']


def test_bad_arguments():
  with pytest.raises(ValueError, match='total='):
    list(progress.track(iter([1]), 'x'))
  with pytest.raises(ValueError, match='>= 0 or None'):
    progress.set_delay(-1)


def test_elapsed_shows_time_only_for_a_slow_call(delay, monkeypatch):
  delay(0.0)
  monkeypatch.setattr(progress, 'LOG_EVERY', 3600.0)
  out = io.StringIO()
  with progress.elapsed('converting model.tflite', stream=out):
    time.sleep(1.2)   # one tick of the thread
  assert out.getvalue().splitlines() == [
      'converting model.tflite: 1s', 'converting model.tflite: done in 1s']
  delay(60.0)
  quiet = io.StringIO()
  with progress.elapsed('fast', stream=quiet):
    pass
  assert quiet.getvalue() == ''
