"""Imports point one way.

Every module of ``tfprune`` has a level; a module imports only modules of a
lower level, or of its own level without a cycle. ``tflite_export`` reads
``.tflite`` files for any Keras generation and needs only ``tfprune.report``
(the description of a model it checks a file against); its converter also
calls the public ``tfprune`` face, to fold a wrapped model's masks first. Imports sit at the
top of a module; one inside a function needs a ``# lazy:`` comment saying
why (e.g. keeping TensorFlow out of a command's start-up).
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Lowest first. A new module must be placed here.
LEVELS = [
    # the one module that tells the Keras generations apart
    {'tfprune.generations'},
    # foundations: structures, the channel graph, schedules, data, models
    {'tfprune.structures', 'tfprune.graph', 'tfprune.schedules',
     'tfprune.prunable', 'tfprune.optimizer_state', 'tfprune.topology',
     'tfprune.config', 'tfprune.data', 'tfprune.models', 'tfprune.workdir',
     'tfprune.groups', 'tfprune.registry', 'tfprune.progress',
     'tfprune._tf_logs'},
    {'tfprune.wrapper'},
    # methods and what they measure with
    {'tfprune.methods', 'tfprune.methods.base', 'tfprune.methods.magnitude',
     'tfprune.methods.network_trimming', 'tfprune.methods.psp',
     'tfprune.methods.small_world', 'tfprune.methods.synaptic_strength',
     'tfprune.methods.synthesis', 'tfprune.methods.edges', 'tfprune.apoz',
     'tfprune.report'},
    # model transforms and the training loop's callbacks
    {'tfprune.transform', 'tfprune.surgery', 'tfprune.callbacks',
     'tfprune.zeroing',
     'tfprune.batchnorm'},
    # drivers and the public face
    {'tfprune.trim_retrain', 'tfprune.experiment', 'tfprune.summary',
     'tfprune.train', 'tfprune.cli', 'tfprune', 'tfprune.__main__'},
]
LEVEL = {m: i for i, mods in enumerate(LEVELS) for m in mods}
EXPORT_MAY_IMPORT = {'tfprune.report'}
CONVERT_MAY_IMPORT = {'tfprune.report', 'tfprune'}


def _modules():
  for path in sorted(ROOT.glob('tfprune/**/*.py')) + sorted(
      ROOT.glob('tflite_export/*.py')):
    parts = list(path.relative_to(ROOT).with_suffix('').parts)
    if parts[-1] == '__init__':
      parts = parts[:-1]
    yield '.'.join(parts), path


def _imports(name, path):
  """(imported module, line, at top level?, source line) of a module's
  project imports."""
  tree = ast.parse(path.read_text())
  lines = path.read_text().splitlines()
  top = {id(n) for n in tree.body}
  package = name.split('.') if path.name == '__init__.py' else \
      name.split('.')[:-1]
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      targets = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:
        base = '.'.join(package[:len(package) - node.level + 1] +
                        ([base] if base else []))
      # ``from tfprune import x`` imports the module tfprune.x when it is one
      targets = [f'{base}.{a.name}' if f'{base}.{a.name}' in KNOWN else base
                 for a in node.names]
    else:
      continue
    for target in targets:
      if target.split('.')[0] in ('tfprune', 'tflite_export'):
        found.append((target, node.lineno, id(node) in top,
                      lines[node.lineno - 1]))
  return found


KNOWN = {name for name, _ in _modules()}
ALL = {name: _imports(name, path) for name, path in _modules()}


def test_every_module_has_a_level():
  missing = sorted(m for m in KNOWN
                   if m.startswith('tfprune') and m not in LEVEL)
  assert not missing, f'place these modules in LEVELS: {missing}'


@pytest.mark.parametrize('name', sorted(KNOWN))
def test_imports_point_down(name):
  wrong = []
  for target, line, _, _ in ALL[name]:
    target = target if target in KNOWN else target.rsplit('.', 1)[0]
    if name.startswith('tflite_export'):
      allowed = (CONVERT_MAY_IMPORT if name == 'tflite_export.convert'
                 else EXPORT_MAY_IMPORT)
      if target.startswith('tfprune') and target not in allowed:
        wrong.append(f'line {line}: {target} (tflite_export may import only '
                     f'{sorted(allowed)})')
    elif target.startswith('tflite_export'):
      if LEVEL[name] < LEVEL['tfprune.experiment']:
        wrong.append(f'line {line}: {target} (only drivers export)')
    elif target != name and LEVEL[target] > LEVEL[name]:
      wrong.append(f'line {line}: {target} is above {name}')
  assert not wrong, wrong


@pytest.mark.parametrize('name', sorted(KNOWN))
def test_imports_are_at_the_top_or_say_why(name):
  hidden = [f'line {line}: {text.strip()}'
            for _, line, top, text in ALL[name]
            if not top and '# lazy:' not in text]
  assert not hidden, hidden


def test_no_import_cycles():
  edges = {name: {t if t in KNOWN else t.rsplit('.', 1)[0]
                  for t, _, top, _ in ALL[name] if top} - {name}
           for name in KNOWN}
  state = {}

  def visit(node, path):
    state[node] = 'open'
    for nxt in sorted(edges.get(node, ())):
      if nxt == 'tfprune' or nxt not in edges:
        continue                # the package face imports everything
      if state.get(nxt) == 'open':
        raise AssertionError(' -> '.join(path + [nxt]))
      if nxt not in state:
        visit(nxt, path + [nxt])
    state[node] = 'done'

  for name in sorted(edges):
    if name not in state and name != 'tfprune':
      visit(name, [name])


KERAS_MODULES = ('keras', 'tf_keras')


@pytest.mark.parametrize('name', sorted(m for m in KNOWN
                                        if m.startswith('tfprune')))
def test_only_the_adapter_imports_keras(name):
  """tfprune is written once for both Keras generations: only
  tfprune.generations imports ``keras`` or ``tf_keras``."""
  path = dict(_modules())[name]
  found = []
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      targets = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and not node.level:
      targets = [node.module or '']
    else:
      continue
    found += [f'line {node.lineno}: {t}' for t in targets
              if t.split('.')[0] in KERAS_MODULES]
  if name == 'tfprune.generations':
    assert found, 'the adapter imports both generations'
  else:
    assert not found, found
