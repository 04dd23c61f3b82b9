"""Workdir guarantees: the lock, what is deleted, files and symlinks.

The refusals happen before any data is loaded, so these tests train nothing.
"""

import fcntl
import os
import pathlib
import re
import signal

import pytest

from tfprune import config as config_lib
from tfprune import experiment
from tfprune import workdir as workdir_lib

from conftest import lock_held_by_another_process


def _made_by_a_run(path, content):
  os.makedirs(path)
  for name, text in ((workdir_lib.MARKER, ''), ('metrics.json', content)):
    with open(os.path.join(path, name), 'w') as f:
      f.write(text)


def _contents(path):
  return {p.name: p.read_text() for p in sorted(pathlib.Path(path).iterdir())}


@pytest.mark.parametrize('overwrite', [False, True])
def test_second_run_is_refused_while_the_first_holds_the_workdir(tmp_path,
                                                                 overwrite):
  workdir = str(tmp_path / 'run')
  _made_by_a_run(workdir, 'earlier run')
  _made_by_a_run(workdir + '.partial', 'the running run')
  before = _contents(workdir), _contents(workdir + '.partial')
  with lock_held_by_another_process(workdir) as holder:
    with pytest.raises(
        workdir_lib.WorkdirInUseError,
        match=(rf'workdir {re.escape(workdir)} is in use by another tfprune '
               rf'run \(pid {holder.pid}, started 2000-01-01 00:00:00; .*\); '
               'wait for it to finish or choose another --workdir')):
      experiment.run(config_lib.default_config(), workdir, overwrite)
  assert (_contents(workdir), _contents(workdir + '.partial')) == before


def test_a_killed_run_leaves_no_lock_that_blocks_the_next(tmp_path):
  workdir = str(tmp_path / 'run')
  _made_by_a_run(workdir + '.partial', 'killed run')
  with lock_held_by_another_process(workdir) as holder:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert os.path.exists(workdir + '.lock')     # left behind by kill -9
    with workdir_lib.building(workdir) as partial:
      assert sorted(os.listdir(partial)) == [workdir_lib.MARKER]  # cleaned
      with open(os.path.join(partial, 'metrics.json'), 'w') as f:
        f.write('next run')
  assert _contents(workdir)['metrics.json'] == 'next run'
  assert sorted(os.listdir(tmp_path)) == ['run']   # no .partial, no .lock


def test_a_lock_file_removed_before_we_lock_it_is_not_trusted(tmp_path,
                                                             monkeypatch):
  """The run that held the lock removes its file just after we opened it."""
  workdir = str(tmp_path / 'run')
  open(workdir + '.lock', 'w').close()
  calls = []

  class RemovedUnderUs:
    LOCK_EX, LOCK_NB = fcntl.LOCK_EX, fcntl.LOCK_NB

    @staticmethod
    def flock(fd, operation):
      if not calls:
        os.unlink(workdir + '.lock')
      calls.append(fd)
      fcntl.flock(fd, operation)

  monkeypatch.setattr(workdir_lib, 'fcntl', RemovedUnderUs)
  with workdir_lib.building(workdir):
    fd = os.open(workdir + '.lock', os.O_RDWR)   # the file there now is held
    with pytest.raises(BlockingIOError):
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)
  assert len(calls) == 2


def test_without_fcntl_runs_proceed_unlocked_with_a_warning(tmp_path,
                                                           monkeypatch):
  monkeypatch.setattr(workdir_lib, 'fcntl', None)
  workdir = str(tmp_path / 'run')
  with pytest.warns(UserWarning, match='second run on workdir .* is not '
                    'detected'):
    with workdir_lib.building(workdir) as partial:
      assert not os.path.exists(workdir + '.lock')
  assert os.listdir(tmp_path) == ['run'] and not os.path.exists(partial)


@pytest.mark.parametrize('suffix', ['.partial', '.replaced'])
def test_a_users_folder_beside_the_workdir_is_never_deleted(tmp_path, suffix):
  workdir = str(tmp_path / 'run')
  os.makedirs(workdir + suffix)
  with open(os.path.join(workdir + suffix, 'notes.txt'), 'w') as f:
    f.write('mine')
  with pytest.raises(workdir_lib.WorkdirError,
                     match=rf'{re.escape(workdir + suffix)} exists and was not '
                     r'made by tfprune.train \(no .tfprune_run file in it\), '
                     'so it is not deleted'):
    experiment.run(config_lib.default_config(), workdir, overwrite=True)
  assert _contents(workdir + suffix) == {'notes.txt': 'mine'}
  assert sorted(os.listdir(tmp_path)) == ['run' + suffix]


def test_overwrite_never_leaves_a_half_deleted_workdir(tmp_path, monkeypatch):
  workdir = str(tmp_path / 'run')
  _made_by_a_run(workdir, 'earlier run')

  def killed(path, ignore_errors=False):
    raise KeyboardInterrupt   # stands for a kill while deleting
  with pytest.raises(KeyboardInterrupt):
    with workdir_lib.building(workdir, overwrite=True) as partial:
      with open(os.path.join(partial, 'metrics.json'), 'w') as f:
        f.write('new run')
      monkeypatch.setattr(workdir_lib.shutil, 'rmtree', killed)
  assert _contents(workdir)['metrics.json'] == 'new run'
  assert _contents(workdir + '.replaced')['metrics.json'] == 'earlier run'
  monkeypatch.undo()
  with workdir_lib.building(workdir, overwrite=True):
    pass
  assert sorted(os.listdir(tmp_path)) == ['run']


@pytest.mark.parametrize('as_link', [False, True])
def test_a_workdir_that_is_a_file_is_refused_before_training(tmp_path,
                                                            as_link):
  target = tmp_path / 'results.txt'
  target.write_text('mine')
  workdir = str(target)
  if as_link:
    workdir = str(tmp_path / 'run')
    os.symlink(target, workdir)
  with pytest.raises(workdir_lib.WorkdirError,
                     match='is a file, not a folder; choose another'):
    experiment.run(config_lib.default_config(), workdir, overwrite=True)
  assert target.read_text() == 'mine'
  assert sorted(os.listdir(tmp_path)) == sorted(
      ['results.txt'] + (['run'] if as_link else []))


def test_a_workdir_inside_a_file_is_refused(tmp_path):
  (tmp_path / 'results.txt').write_text('mine')
  with pytest.raises(workdir_lib.WorkdirError,
                     match=r'cannot create .*results.txt, the folder of '
                     r'workdir .*results.txt/run: .*; choose another'):
    experiment.run(config_lib.default_config(),
                   str(tmp_path / 'results.txt' / 'run'))
  assert (tmp_path / 'results.txt').read_text() == 'mine'


def test_a_symlinked_workdir_is_written_where_it_points(tmp_path):
  target = tmp_path / 'disk' / 'run'
  link = str(tmp_path / 'run')
  os.symlink(target, link)
  with workdir_lib.building(link) as partial:
    assert partial == str(target) + '.partial'
    with open(os.path.join(partial, 'metrics.json'), 'w') as f:
      f.write('first')
  _made_by_a_run(str(target) + '.partial', 'killed run')
  with workdir_lib.building(link, overwrite=True) as partial:
    with open(os.path.join(partial, 'metrics.json'), 'w') as f:
      f.write('second')
  assert os.path.islink(link) and _contents(link)['metrics.json'] == 'second'
  assert sorted(os.listdir(target.parent)) == ['run']


def test_a_workdir_changed_during_the_run_is_not_replaced(tmp_path):
  workdir = str(tmp_path / 'run')
  with pytest.raises(workdir_lib.WorkdirExistsError,
                     match=('the finished run is in ' +
                            re.escape(workdir + '.partial'))):
    with workdir_lib.building(workdir) as partial:
      os.makedirs(workdir)
      with open(os.path.join(workdir, 'notes.txt'), 'w') as f:
        f.write('mine')
  assert _contents(workdir) == {'notes.txt': 'mine'}
  assert workdir_lib.MARKER in os.listdir(partial)
  assert not os.path.exists(workdir + '.lock')
