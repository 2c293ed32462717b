"""Caching options as KFP means them: the forms the kfp compiler writes, checked against the
compiler itself, then run for real twice with a component whose output differs every time
it really executes (a fresh random token)."""
import os
import subprocess
import sys

import pytest
import yaml
from kfp import dsl

from tests.helpers import compile_pipeline, run_pipeline_file, states


@dsl.component
def token(label: str) -> str:
    import secrets
    return f'{label}-{secrets.token_hex(8)}'


@dsl.pipeline(name='caching-forms')
def forms() -> None:
    token(label='default')                                            # enableCache: true
    token(label='off').set_caching_options(False)                     # {}
    token(label='on').set_caching_options(True)                       # enableCache: true
    token(label='keyed').set_caching_options(True, cache_key='k-v1')  # + cacheKey
    token(label='keyed-off').set_caching_options(False, cache_key='k-v1')


@dsl.pipeline(name='caching-twins')
def twins() -> None:
    # two identical tasks in one run: same key
    token(label='same').set_caching_options(False)
    token(label='same').set_caching_options(False)
    token(label='shared')
    token(label='shared')


def _options(path) -> dict:
    spec = next(yaml.safe_load_all(open(path)))
    return {name: t.get('cachingOptions', 'ABSENT') for name, t in spec['root']['dag']['tasks'].items()}


def _outputs(result: dict) -> dict:
    return {t['name']: t['outputs']['parameters'].get('Output') for t in result['tasks']
            if t.get('type') == 'container'}


@pytest.fixture
def compiled(tmp_path):
    return compile_pipeline(forms, tmp_path / 'forms.yaml')


def test_the_compiler_writes_these_forms(compiled):
    """What kfp 2.17.3 itself writes: set_caching_options(False) is an EMPTY mapping."""
    assert _options(compiled) == {
        'token': {'enableCache': True},
        'token-2': {},
        'token-3': {'enableCache': True},
        'token-4': {'enableCache': True, 'cacheKey': 'k-v1'},
        'token-5': {'cacheKey': 'k-v1'},
    }


def test_caching_off_reruns_and_on_is_served(compiled, tmp_path):
    root = tmp_path / 'root'
    rc, first, proc = run_pipeline_file(compiled, root)
    assert rc == 0, proc.stdout + proc.stderr
    rc, second, proc = run_pipeline_file(compiled, root)
    assert rc == 0, proc.stdout + proc.stderr
    assert states(second) == {'token': 'CACHED', 'token-2': 'SUCCEEDED', 'token-3': 'CACHED',
                              'token-4': 'CACHED', 'token-5': 'SUCCEEDED'}
    a, b = _outputs(first), _outputs(second)
    for name in ('token', 'token-3', 'token-4'):
        assert a[name] == b[name]                       # served: the first run's value
    for name in ('token-2', 'token-5'):
        assert a[name] != b[name]                       # executed again: a fresh value


def test_enable_cache_false_and_absent_mean_off(compiled, tmp_path):
    """`enableCache: false` (a JSON serialiser that writes defaults) and no cachingOptions at
    all (hand-written IR) are both false in the protobuf: off."""
    spec_docs = list(yaml.safe_load_all(open(compiled)))
    tasks = spec_docs[0]['root']['dag']['tasks']
    tasks['token']['cachingOptions'] = {'enableCache': False}
    del tasks['token-3']['cachingOptions']
    edited = tmp_path / 'edited.yaml'
    edited.write_text(yaml.safe_dump_all(spec_docs))
    root = tmp_path / 'root'
    rc, first, _ = run_pipeline_file(str(edited), root)
    rc, second, proc = run_pipeline_file(str(edited), root)
    assert rc == 0, proc.stdout + proc.stderr
    st = states(second)
    assert st['token'] == 'SUCCEEDED' and st['token-3'] == 'SUCCEEDED' and st['token-4'] == 'CACHED'
    assert _outputs(first)['token'] != _outputs(second)['token']


def test_identical_tasks_with_caching_off_both_run(tmp_path):
    path = compile_pipeline(twins, tmp_path / 'twins.yaml')
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root')
    assert rc == 0, proc.stdout + proc.stderr
    out, st = _outputs(result), states(result)
    assert st['token'] == st['token-2'] == 'SUCCEEDED'
    assert out['token'] != out['token-2']                   # never deduplicated
    # caching on: the twin is served the first one's result within the run
    assert sorted([st['token-3'], st['token-4']]) == ['CACHED', 'SUCCEEDED']
    assert out['token-3'] == out['token-4']


def test_no_cache_reads_and_writes_nothing(compiled, tmp_path):
    root = tmp_path / 'root'
    rc, first, proc = run_pipeline_file(compiled, root, '--no-cache')
    assert rc == 0, proc.stdout + proc.stderr
    assert set(states(first).values()) == {'SUCCEEDED'}
    rc, second, _ = run_pipeline_file(compiled, root)
    # nothing was recorded by the --no-cache run: everything executes again
    assert set(states(second).values()) == {'SUCCEEDED'}
    assert _outputs(first)['token'] != _outputs(second)['token']


def test_disable_by_default_at_compile_time(tmp_path):
    """KFP_DISABLE_EXECUTION_CACHING_BY_DEFAULT read by the SDK when it compiles (a fresh
    process: the SDK reads it at import) turns every task into `cachingOptions: {}`."""
    out = tmp_path / 'compiled-off.yaml'
    code = ('import sys; sys.path.insert(0, %r)\n'
            'from tests.test_caching_options import token\n'
            'from kfp import dsl, compiler\n'
            '@dsl.pipeline(name="compiled-off")\n'
            'def p():\n'
            '    token(label="x")\n'
            'compiler.Compiler().compile(p, %r)\n') % (os.getcwd(), str(out))
    env = dict(os.environ, KFP_DISABLE_EXECUTION_CACHING_BY_DEFAULT='t')
    subprocess.run([sys.executable, '-c', code], check=True, env=env)
    assert _options(out) == {'token': {}}
    root = tmp_path / 'root'
    rc, first, _ = run_pipeline_file(str(out), root)
    rc, second, proc = run_pipeline_file(str(out), root)
    assert rc == 0, proc.stdout + proc.stderr
    assert states(second) == {'token': 'SUCCEEDED'}
    assert _outputs(first) != _outputs(second)


def test_disable_by_default_at_run_time(compiled, tmp_path):
    root = tmp_path / 'root'
    run_pipeline_file(compiled, root)
    rc, second, proc = run_pipeline_file(compiled, root, env={'KFP_DISABLE_EXECUTION_CACHING_BY_DEFAULT': 'y'})
    assert rc == 0, proc.stdout + proc.stderr
    assert set(states(second).values()) == {'SUCCEEDED'}
