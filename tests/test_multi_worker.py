"""MultiWorkerMirroredStrategy: two worker processes on localhost.

Masks must be identical on both workers and equal to a one-process run
with the same global batch; the step counts batches, not workers.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np

_JOB = os.path.join(os.path.dirname(__file__), 'multi_worker_job.py')


def _free_ports(n):
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(('localhost', 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def test_two_workers_get_the_masks_of_one_process(tmp_path):
  """Magnitude and a gated method (PSP), one after the other in each
  process."""
  workers = [f'localhost:{p}' for p in _free_ports(2)]
  procs, outs = [], []
  for index in range(3):                    # two workers, one single process
    out = str(tmp_path / f'{index}.npz')
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
    env.pop('TF_CONFIG', None)
    if index < 2:
      env['TF_CONFIG'] = json.dumps({'cluster': {'worker': workers},
                                     'task': {'type': 'worker',
                                              'index': index}})
    procs.append(subprocess.Popen(
        [sys.executable, _JOB, 'magnitude,psp', out], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    outs.append(out)
  for proc in procs:
    output, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, output.decode()[-3000:]
  first, second, single = [dict(np.load(out)) for out in outs]
  assert sorted(first) == sorted(single)
  assert {key.split(':')[0] for key in first} == {'magnitude', 'psp'}
  for key in first:
    np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    if key.endswith('/step'):
      assert int(single[key]) == 8
    if key.endswith('/kernel'):
      np.testing.assert_allclose(first[key], single[key], atol=1e-5,
                                 err_msg=key)
    else:
      np.testing.assert_array_equal(first[key], single[key], err_msg=key)
  assert first['magnitude:pruned_conv/mask'].mean() == 0.5
