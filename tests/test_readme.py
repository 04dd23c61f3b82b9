"""The README's usage examples run as written (in order, one namespace)."""

import os
import re

from conftest import kept_params

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_usage_example_runs(tmp_path, monkeypatch, capsys):
  with open(os.path.join(ROOT, 'README.md')) as f:
    blocks = re.findall(r'```python\n(.*?)```', f.read(), re.S)
  assert len(blocks) == 5
  code = blocks[0].replace('epochs=10', 'epochs=10, verbose=0')
  monkeypatch.chdir(tmp_path)
  namespace = {}
  exec(compile(code, 'README.md', 'exec'), namespace)  # pylint: disable=exec-used
  dense_bytes = os.path.getsize(tmp_path / 'digits.tflite')
  small_bytes = os.path.getsize(tmp_path / 'digits_small.tflite')
  assert 0 < small_bytes < dense_bytes / 2   # half the channels removed
  out = capsys.readouterr().out
  assert '| conv1' in out and '| total' in out
  gain = re.search(r'^shrink: (\d+\.\d)x smaller, (\d+\.\d)x faster on 1 '
                   r'thread$', out, re.M)
  assert gain, out
  assert float(gain.group(1)) == round(dense_bytes / small_bytes, 1)
  assert float(gain.group(2)) == round(
      namespace['timed']['results'][1]['ratio'], 1)
  assert namespace['small'].count_params() < namespace['plain'].count_params()
  report = namespace['tfprune'].report(namespace['plain'])
  channel = {e['name']: e['weights'][0]['sparsity']['channel']
             for e in report['layers']}
  assert channel == {'conv1': 0.5, 'conv2': 0.5, 'fc1': 0.5, 'logits': 0.0}
  # Channel groups: the rule holds and shrink removes what was masked
  exec(compile(blocks[1], 'README.md', 'exec'), namespace)  # pylint: disable=exec-used
  tfprune = namespace['tfprune']
  wrapped = {w.layer.name for w in tfprune.wrapper.collect_wrappers(
      namespace['pruned'])}
  assert 'Conv1' not in wrapped and 'Logits' not in wrapped
  assert 'block_16_project' in wrapped
  before = tfprune.report(namespace['net'])['totals']['macs']
  after = tfprune.report(namespace['shrunk'])['totals']['macs']
  assert before / after > 2.5
  kept = {l.name: l.output_shape[-1] for l in namespace['shrunk'].layers
          if l.name in wrapped}
  assert kept['block_16_project'] == 160 and kept['expanded_conv_project'] == 8
  # Small-World: the budget is exact and the masks survive training
  shorter = {'epochs=2)': 'epochs=1, verbose=0)',   # dense start
             'epochs=28': 'epochs=2, verbose=0',     # rewiring
             'epochs=5': 'epochs=1, verbose=0'}      # lower LR
  small_world = blocks[2]
  for epochs, short in shorter.items():
    assert small_world.count(epochs) == 1, epochs
    small_world = small_world.replace(epochs, short)
  exec(compile(small_world, 'README.md', 'exec'), namespace)  # pylint: disable=exec-used
  pruned = namespace['pruned']
  params = namespace['tfprune'].report(pruned)['totals']['params']
  assert kept_params(pruned) == round(0.1 * params)  # after the rewiring
  topology = namespace['sw'].topology
  assert topology['regrow_events'] >= 2 and topology['regrown_edges'] > 0
  # Training modes: a custom loop drives the schedule like fit
  exec(compile(blocks[3], 'README.md', 'exec'), namespace)  # pylint: disable=exec-used
  model = namespace['model']
  assert int(namespace['step'].step) == 135
  for wrapper in tfprune.wrapper.collect_wrappers(model):
    assert float(wrapper.masks[0].numpy().mean()) == 0.5
    assert int(wrapper.pruning_step.numpy()) == 135


def test_keras3_example_runs(tmp_path, monkeypatch):
  with open(os.path.join(ROOT, 'README.md')) as f:
    blocks = re.findall(r'```python\n(.*?)```', f.read(), re.S)
  code = blocks[4].replace('epochs=10', 'epochs=3, verbose=0')
  monkeypatch.chdir(tmp_path)
  namespace = {}
  exec(compile(code, 'README.md', 'exec'), namespace)  # pylint: disable=exec-used
  tfprune = namespace['tfprune']
  pruned, small = namespace['pruned'], namespace['small']
  assert tfprune.keras_generation(pruned) == 'keras3'
  assert tfprune.keras_generation(small) == 'keras3'
  wrapped = {w.layer.name for w in tfprune.wrapper.collect_wrappers(pruned)}
  assert wrapped == {'conv1', 'conv2', 'fc1'}       # not the logits
  assert small.count_params() < 0.4 * namespace['model'].count_params()
  loaded = namespace['keras'].models.load_model(
      str(tmp_path / 'digits_pruned.keras'))
  assert len(tfprune.wrapper.collect_wrappers(loaded)) == 3
  assert os.path.getsize(tmp_path / 'digits_small_keras3.tflite') > 0
