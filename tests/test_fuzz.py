"""Property: whatever a pipeline file or a command-line value holds, localrunner exits 0, 1 or
2, prints no traceback, and a usage error is exactly one line; a pipeline that loads never
reaches the engine's "internal error" catch-all.

Documents are the project's own compiled pipelines (examples/*.yaml and pipelines compiled
here from tests/control_flow_pipelines.py), mutated: keys dropped, values swapped for other
kinds, keys renamed to hostile names, placeholders injected, the text truncated. The CLI
runs in-process (`localrunner.cli.main`) for speed, and as real processes for a few.
"""
import contextlib
import copy
import glob
import io
import json
import os
import tempfile

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from kfp import dsl

from localrunner.cli import main
from tests import control_flow_pipelines as cf
from tests.helpers import compile_pipeline, run_cli

HERE = os.path.dirname(__file__)
# the engine's CEL library raises the recursion limit when a run first evaluates a condition
pytestmark = pytest.mark.filterwarnings('ignore:The recursion limit will not be reset')
FUZZ = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def fuzz(max_examples: int) -> settings:
    # ~200 examples in all keeps the suite fast on two cores; deadline=None: a real run's time varies
    return settings(max_examples=max_examples, **FUZZ)

# keys whose values are data, not structure: a new value there mostly still loads, and so
# exercises the engine (conversions, CEL, loops over non-lists, quantities, retries)
VALUE_KEYS = {'constant', 'defaultValue', 'raw', 'condition', 'maxRetryCount', 'backoffDuration', 'backoffFactor',
              'resourceCpuLimit', 'resourceMemoryLimit', 'resourceCount', 'parallelismLimit',
              'parameterExpressionSelector', 'image', 'cacheKey', 'runtimeParameter'}
HOSTILE_NAMES = ['../x', '/etc/passwd', 'a/b', 'a\\b', '..', '.', '', '\x00', 'tab\tname', 'x' * 300,
                 "{{$.inputs.parameters['nope']}}", 'ok-name']
VALUES = [None, True, 0, -1, 2.5, 10 ** 12, '', 'text', '../x', [], [1, 'a'], {}, {'a': 1}, {'constant': 'x'},
          "{{$.inputs.parameters['nope']}}", '{{$.inputs.parameters[nope]}}', '{{$.bogus}}',
          '{"Concat": [1]}', '{"IfPresent": {"InputName": "zz", "Then": ["a"]}}', '{{$}}', 'nan', '-5s']


@dsl.container_component
def shout(text: str, out: dsl.OutputPath(str), copy: dsl.Output[dsl.Artifact]):
    return dsl.ContainerSpec(image='alpine', command=['sh', '-c', 'printf %s "$0" > "$1"; printf %s "$0" > "$2"'],
                             args=[text, out, copy.path])


@dsl.container_component
def count(data: dsl.Input[dsl.Artifact], n: int):
    return dsl.ContainerSpec(image='alpine', command=['sh', '-c', 'wc -c < "$0"; echo "$1"'], args=[data.path, n])


@dsl.pipeline(name='fuzz-target')
def fuzz_target(text: str = 'hi', n: int = 2):
    first = shout(text=text)
    with dsl.If(n > 1):
        count(data=first.outputs['copy'], n=n).set_retry(1)
    with dsl.ParallelFor([1, 2]):
        shout(text='loop').set_caching_options(False)


@pytest.fixture(scope='module')
def seeds(tmp_path_factory):
    """(name, documents) of every seed pipeline, with a parameters file when one is needed."""
    folder = tmp_path_factory.mktemp('seeds')
    paths = sorted(glob.glob(os.path.join(HERE, '..', 'examples', '*.yaml')))
    paths.append(compile_pipeline(fuzz_target, folder / 'fuzz_target.yaml'))
    for name in ('conditions_pipeline', 'loops_pipeline', 'collected_pipeline', 'nested_pipeline',
                 'exit_handler_pipeline', 'oneof_pipeline'):
        paths.append(compile_pipeline(getattr(cf, name), folder / f'{name}.yaml'))
    out = []
    for path in paths:
        with open(path) as f:
            out.append((os.path.basename(path), [d for d in yaml.safe_load_all(f) if d is not None]))
    return out


@pytest.fixture(scope='module')
def runnable(seeds):
    return next(docs for name, docs in seeds if name == 'fuzz_target.yaml')


# ---------------------------------------------------------------------------- mutations
def _nodes(doc, path=()):
    yield path
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _nodes(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _nodes(v, path + (i,))


def _at(doc, path):
    for p in path:
        doc = doc[p]
    return doc


@st.composite
def mutated(draw, docs):
    """DOCS with 1-3 mutations; returns the YAML text (possibly truncated)."""
    docs = copy.deepcopy(docs)
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
        doc = docs[draw(st.integers(0, len(docs) - 1))]
        gentle = draw(st.booleans())
        paths = [p for p in _nodes(doc) if p and (not gentle or p[-1] in VALUE_KEYS)]
        if not paths:
            continue
        path = paths[draw(st.integers(0, len(paths) - 1))]
        parent, key = _at(doc, path[:-1]), path[-1]
        op = 'swap' if gentle else draw(st.sampled_from(['drop', 'swap', 'rename', 'duplicate']))
        if op == 'drop':
            del parent[key]
        elif op == 'swap':
            parent[key] = draw(st.sampled_from(VALUES) | st.text(max_size=8))
        elif op == 'rename' and isinstance(parent, dict):
            parent[draw(st.sampled_from(HOSTILE_NAMES) | st.text(max_size=6))] = parent.pop(key)
        elif op == 'duplicate':
            parent[key] = [copy.deepcopy(parent[key])] if draw(st.booleans()) else {'x': copy.deepcopy(parent[key])}
    text = yaml.safe_dump_all(docs, allow_unicode=True)
    if draw(st.integers(0, 19)) == 0:
        text = text[:draw(st.integers(0, len(text)))]
    return text


@contextlib.contextmanager
def _inside(folder: str):
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def _run_in_process(argv: list) -> tuple:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = main(argv)
    return rc, err.getvalue(), out.getvalue()


def _assert_clean(rc, stderr: str, result_path: str = '') -> None:
    event(f'exit {rc}')          # pytest --hypothesis-show-statistics: how often each outcome came up
    assert rc in (0, 1, 2), (rc, stderr)
    assert 'Traceback' not in stderr, stderr
    if rc == 2:
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith('localrunner: error: '), stderr
    if result_path and os.path.exists(result_path):
        with open(result_path) as f:
            result = json.load(f)
        internal = [t for t in result['tasks'] if 'internal error' in str(t.get('error'))]
        assert not internal, internal


def _document_argv(tmp: str, text: str) -> list:
    path = os.path.join(tmp, 'pipeline.yaml')
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text)
    argv = ['run', path, '--root', os.path.join(tmp, 'root'), '--gpus', 'none', '-q']
    # the control-flow pipelines take an output folder; an unknown -p is a usage error elsewhere
    return argv + (['-p', f'out_dir={tmp}'] if 'out_dir' in text else [])


def _run_document(text: str, dry: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp, _inside(tmp):
        result = os.path.join(tmp, 'result.json')
        argv = _document_argv(tmp, text) + ['--result-json', result] + (['--dry-run'] if dry else [])
        rc, err, _ = _run_in_process(argv)
        _assert_clean(rc, err, result)


# ---------------------------------------------------------------------------- properties
@fuzz(110)
@given(data=st.data())
def test_mutated_pipelines_never_crash_a_dry_run(seeds, data):
    name, docs = seeds[data.draw(st.integers(0, len(seeds) - 1), label='seed')]
    _run_document(data.draw(mutated(docs), label=name), dry=True)


@fuzz(20)
@given(data=st.data())
def test_mutated_pipelines_never_crash_a_real_run(runnable, data):
    """Real task processes (container components run their command on the host)."""
    _run_document(data.draw(mutated(runnable)), dry=False)


CLI_TEXT = st.sampled_from(['0', '-1', '1', '2', 'all', 'none', 'device=0,2', '0,0', '1,', 'banana', '',
                            '7d', '1.5h', 'nan', 'inf', '-5s', 's3://', 's3://ok-bucket/p', 's3://A',
                            '1e999', ' ', '\x00', '9' * 30]) | st.text(max_size=12)
OPTIONS = {
    'run': ['--gpus', '--max-parallel', '--cache-max-age', '--remote-cache', '--result-json', '--root', '-p',
            '--params-file', '--artifact', '--secret', '--pvc', '--image-map', '--backend'],
    'cache prune': ['--older-than', '--max-size', '--keep-runs', '--root'],
    'runs prune': ['--keep', '--older-than', '--root'],
    'envs prune': ['--older-than', '--env-dir'],
}


@fuzz(60)
@given(command=st.sampled_from(sorted(OPTIONS)), data=st.data())
def test_any_option_value_is_a_clean_outcome(command, data):
    with tempfile.TemporaryDirectory() as tmp, _inside(tmp):      # relative paths land in tmp
        options = data.draw(st.lists(st.sampled_from(OPTIONS[command]), min_size=1, max_size=3, unique=True))
        argv = command.split()
        if command == 'run':
            argv += [os.path.join(HERE, '..', 'examples', 'hello_pipeline.yaml'), '--dry-run',
                     '--root', os.path.join(tmp, 'root')]
        elif command == 'envs prune':
            # venvs only: derived images live in the shared Docker engine
            argv += ['--kind', 'venv', '--env-dir', os.path.join(tmp, 'envs')]
        else:
            argv += ['--root', os.path.join(tmp, 'root')]
        for option in options:
            value = data.draw(CLI_TEXT, label=option)
            if '\x00' in value:
                continue        # no process can be given a NUL in an argument
            argv += [option, value]
        rc, err, _ = _run_in_process(argv)
        _assert_clean(rc, err)


@fuzz(4)
@given(data=st.data())
def test_real_processes_print_no_traceback(seeds, data):
    """The same property across a process boundary: interpreter start, imports, exit code."""
    name, docs = seeds[data.draw(st.integers(0, len(seeds) - 1), label='seed')]
    text = data.draw(mutated(docs), label=name)
    with tempfile.TemporaryDirectory() as tmp:
        proc = run_cli(*_document_argv(tmp, text), '--dry-run', cwd=tmp, timeout=300)
        _assert_clean(proc.returncode, proc.stderr)
