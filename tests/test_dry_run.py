"""The dry run is exact: run `--dry-run`, then the real run, and hold the prediction to what
happened — every task the real run executed was predicted WOULD_RUN or MAY_RUN, every task
predicted CACHED was served from the cache, and every task the real run reached is listed."""
import fnmatch
import os

import pytest
import yaml
from kfp import dsl
from kfp.dsl import Dataset, Input, Output, PipelineTaskFinalStatus

from tests.helpers import compile_pipeline, run_pipeline_file

LEAF = ('container', 'importer')


@dsl.component
def load(data: Input[Dataset], out: Output[Dataset]) -> int:
    text = open(data.path).read()
    with open(out.path, 'w') as f:
        f.write(text.upper())
    return len(text)


@dsl.component
def items_of(n: int) -> list:
    return list(range(n))


@dsl.component
def square(x: int) -> int:
    return x * x


@dsl.component
def total(xs: list) -> int:
    return sum(xs)


@dsl.component
def shout(data: Input[Dataset], suffix: str) -> str:
    return open(data.path).read() + suffix


@dsl.component
def independent(tag: str) -> str:
    return tag


@dsl.component
def report(status: PipelineTaskFinalStatus) -> str:
    return status.state


@dsl.pipeline
def inner(data: Input[Dataset], suffix: str) -> str:
    return shout(data=data, suffix=suffix).output


@dsl.pipeline(name='dry-run-exact')
def exact(uri: str, n: int = 3, suffix: str = '!', mode: str = 'a'):
    exit_task = report()
    with dsl.ExitHandler(exit_task, name='guarded'):
        imp = dsl.importer(artifact_uri=uri, artifact_class=Dataset)
        loaded = load(data=imp.output)
        listed = items_of(n=n)
        with dsl.ParallelFor(listed.output) as x:          # a loop over an upstream output
            sq = square(x=x)
        total(xs=dsl.Collected(sq.output))
        inner(data=loaded.outputs['out'], suffix=suffix)    # a nested pipeline
        with dsl.If(mode == 'a'):
            independent(tag='if-a')
        with dsl.Elif(mode == 'b'):
            independent(tag='elif-b')
        with dsl.Else():
            independent(tag='else')
        independent(tag='after-load').after(loaded)         # control dependency only


def _leaf(result):
    return [t for t in result['tasks'] if t.get('type') in LEAF]


def _prediction_for(predicted: dict, name: str):
    if name in predicted:
        return predicted[name]
    for pattern, p in predicted.items():      # a loop of unknown count: '<loop>.*/task'
        if '*' in pattern and fnmatch.fnmatchcase(name, pattern):
            return p
    return None


def check_exact(dry: dict, real: dict) -> None:
    predicted = {t['name']: t['prediction'] for t in dry['tasks'] if t.get('prediction')}
    assert all(p in ('CACHED', 'WOULD_RUN', 'MAY_RUN') for p in predicted.values()), predicted
    for task in _leaf(real):
        if task['state'] == 'SKIPPED':
            continue
        p = _prediction_for(predicted, task['name'])
        assert p is not None, f'{task["name"]} was reached ({task["state"]}) but the dry run does not list it'
        if task['state'] != 'CACHED':
            assert p in ('WOULD_RUN', 'MAY_RUN'), f'{task["name"]} ran ({task["state"]}) but was predicted {p}'
    real_states = {t['name']: t['state'] for t in _leaf(real)}
    for name, p in predicted.items():
        if p == 'CACHED':
            assert real_states.get(name) == 'CACHED', f'{name} was predicted CACHED but was {real_states.get(name)}'


@pytest.fixture
def world(tmp_path):
    data = tmp_path / 'data.txt'
    data.write_text('abc')
    path = compile_pipeline(exact, tmp_path / 'exact.yaml')
    root = tmp_path / 'root'

    def both(pipeline=None, *params):
        args = ['-p', f'uri={data}', *params]
        rc, dry, proc = run_pipeline_file(pipeline or path, root, '--dry-run', *args)
        assert rc == 0 and dry is not None, proc.stdout + proc.stderr
        assert 'Traceback' not in proc.stderr
        rc, real, proc = run_pipeline_file(pipeline or path, root, *args)
        assert rc == 0, proc.stdout + proc.stderr
        check_exact(dry, real)
        return dry, real
    return both, data, path, tmp_path


def _predictions(dry):
    return {t['name']: t['prediction'] for t in dry['tasks'] if t.get('prediction')}


def test_first_run_everything_would_run(world):
    both, *_ = world
    dry, real = both()
    p = _predictions(dry)
    assert p['exit-handler-1/load'] == 'WOULD_RUN' and p['exit-handler-1/items-of'] == 'WOULD_RUN'
    # the loop's count comes from items-of, which would run: its body is MAY_RUN, index unknown
    assert p['exit-handler-1/for-loop-2.*/square'] == 'MAY_RUN'
    assert p['exit-handler-1/inner/shout'] == 'MAY_RUN'          # reads load's output
    assert p['exit-handler-1/independent-4'] == 'WOULD_RUN'      # after load, but reads nothing of it
    assert p['report'] == 'MAY_RUN'                        # reads the guarded DAG's final status
    assert not [t for t in real['tasks'] if 'prediction' in t]       # predictions belong to dry runs


def test_unchanged_rerun_is_predicted_cached(world):
    both, *_ = world
    both()
    dry, real = both()
    p = _predictions(dry)
    for name in ('exit-handler-1/load', 'exit-handler-1/items-of', 'exit-handler-1/total',
                 'exit-handler-1/inner/shout', 'exit-handler-1/condition-branches-3/condition-4/independent'):
        assert p[name] == 'CACHED', (name, p)
    assert p['exit-handler-1/for-loop-2.2/square'] == 'CACHED'     # the count is known: iterations are named


@pytest.mark.parametrize('edit', ['param', 'file', 'branch', 'code', 'image'])
def test_edits_are_predicted(world, edit):
    both, data, path, tmp_path = world
    both()
    params, pipeline = [], None
    if edit == 'param':
        params = ['-p', 'suffix=?']
    elif edit == 'file':
        data.write_text('abcd')
    elif edit == 'branch':
        params = ['-p', 'mode=b']
    elif edit in ('code', 'image'):
        docs = list(yaml.safe_load_all(open(path)))
        executors = docs[0]['deploymentSpec']['executors']
        square_exec = next(e for name, e in executors.items() if 'square' in name)
        if edit == 'code':
            args = square_exec['container']['command']
            args[-1] = args[-1].replace('return x * x', 'return x * x + 0')
        else:
            square_exec['container']['image'] = 'python:3.11-slim-bookworm'
        pipeline = str(tmp_path / f'edited-{edit}.yaml')
        with open(pipeline, 'w') as f:
            yaml.safe_dump_all(docs, f)
    dry, real = both(pipeline, *params)
    p = _predictions(dry)
    if edit == 'param':
        assert p['exit-handler-1/inner/shout'] == 'WOULD_RUN'
        assert 'input parameter suffix' in _reason(dry, 'exit-handler-1/inner/shout')
        assert p['exit-handler-1/load'] == 'CACHED'
    if edit == 'file':
        assert p['exit-handler-1/load'] == 'WOULD_RUN'
        assert 'input artifact data' in _reason(dry, 'exit-handler-1/load')
        assert p['exit-handler-1/inner/shout'] == 'MAY_RUN'
    if edit == 'branch':
        assert p['exit-handler-1/condition-branches-3/condition-5/independent-2'] == 'WOULD_RUN'
        assert 'exit-handler-1/condition-branches-3/condition-4/independent' not in p
    if edit in ('code', 'image'):
        assert p['exit-handler-1/for-loop-2.0/square'] == 'WOULD_RUN'
        assert ('code' if edit == 'code' else 'image') in _reason(dry, 'exit-handler-1/for-loop-2.0/square')
        assert p['exit-handler-1/total'] == 'MAY_RUN' and p['exit-handler-1/load'] == 'CACHED'


def _reason(dry, name):
    return next(t.get('reason', '') for t in dry['tasks'] if t['name'] == name)


def test_a_dry_run_leaves_no_run_and_no_cache_entry(world):
    both, data, path, tmp_path = world
    root = tmp_path / 'dry-only'
    rc, dry, proc = run_pipeline_file(path, root, '--dry-run', '-p', f'uri={data}')
    assert rc == 0, proc.stdout + proc.stderr
    assert not os.path.exists(root / 'runs') or not os.listdir(root / 'runs')
    assert not os.path.exists(dry['run_dir'])
