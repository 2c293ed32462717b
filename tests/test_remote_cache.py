"""--remote-cache: two machines (two roots) share results through a real S3 server."""

import importlib.util
import os
import time

import pytest
from kfp import dsl
from kfp.dsl import Dataset, Output
from minio import Minio

from localrunner.engine.caching import CacheSettings, TaskCache
from localrunner_cache import ActionCache
from tests.helpers import compile_pipeline, run_pipeline_file, states, task
from tests.support.s3_server import moto_server


@dsl.component
def expensive(folder: str, out: Output[Dataset]) -> int:
    import os
    open(os.path.join(folder, 'runs'), 'a').write('x\n')
    with open(out.path, 'w') as f:
        f.write('shared bytes')
    return 42


@dsl.pipeline(name='remote')
def remote_pipeline(folder: str):
    expensive(folder=folder)


@pytest.fixture(scope='module')
def s3(tmp_path_factory):
    with moto_server(str(tmp_path_factory.mktemp('moto') / 'moto.log')) as endpoint:
        client = Minio(endpoint, access_key='testing', secret_key='testing', secure=False, region='us-east-1')
        client.make_bucket('team-cache')
        yield endpoint


def test_second_machine_is_served_from_the_remote(s3, tmp_path):
    env = {'LOCALRUNNER_S3_ENDPOINT': s3, 'LOCALRUNNER_S3_INSECURE': '1', 'AWS_ACCESS_KEY_ID': 'testing',
           'AWS_SECRET_ACCESS_KEY': 'testing', 'AWS_DEFAULT_REGION': 'us-east-1'}
    folder = tmp_path / 'c'
    folder.mkdir()
    path = compile_pipeline(remote_pipeline, tmp_path / 'r.yaml')
    args = ['-p', f'folder={folder}', '--remote-cache', 's3://team-cache/ml']
    rc, first, proc = run_pipeline_file(path, tmp_path / 'alice', *args, env=env)
    assert rc == 0, proc.stdout + proc.stderr
    assert 'warning' not in proc.stdout, proc.stdout
    rc, second, proc = run_pipeline_file(path, tmp_path / 'bob', *args, env=env)
    assert rc == 0, proc.stdout + proc.stderr
    assert states(second)['expensive'] == 'CACHED'
    t = task(second, 'expensive')
    assert t['cached_from']['run'] == first['run_id']
    assert t['outputs']['parameters']['Output'] == 42
    [art] = t['outputs']['artifacts']['out']
    assert art['path'].startswith(str(tmp_path / 'bob')) and open(art['path']).read() == 'shared bytes'
    assert open(folder / 'runs').read().count('x') == 1


def test_unreachable_remote_is_a_miss_with_a_warning(tmp_path):
    env = {'LOCALRUNNER_S3_ENDPOINT': '127.0.0.1:9', 'LOCALRUNNER_S3_INSECURE': '1',
           'AWS_ACCESS_KEY_ID': 'x', 'AWS_SECRET_ACCESS_KEY': 'y', 'AWS_DEFAULT_REGION': 'us-east-1'}
    folder = tmp_path / 'c'
    folder.mkdir()
    path = compile_pipeline(remote_pipeline, tmp_path / 'r.yaml')
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', '-p', f'folder={folder}',
                                         '--remote-cache', 's3://team-cache', env=env)
    assert rc == 0, proc.stdout + proc.stderr
    assert states(result)['expensive'] == 'SUCCEEDED'
    assert 'remote cache' in proc.stdout


def _black_hole_class():
    """The library tests' black hole (one definition: cache/tests/lrcache_helpers.py)."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'cache', 'tests',
                        'lrcache_helpers.py')
    spec = importlib.util.spec_from_file_location('lrcache_helpers_for_engine_tests', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.BlackHole


@pytest.mark.parametrize('kind', ['silent', 'unaccepted'])
def test_a_dead_remote_costs_one_timeout_per_run(kind, tmp_path, monkeypatch):
    """open_remote's timeouts and the store's breaker: ten lookups and ten uploads against
    an endpoint that never answers pay for one request, and say so once."""
    hole = _black_hole_class()(kind)
    try:
        for k, v in {'LOCALRUNNER_S3_ENDPOINT': hole.endpoint, 'LOCALRUNNER_S3_INSECURE': '1',
                     'AWS_ACCESS_KEY_ID': 'x', 'AWS_SECRET_ACCESS_KEY': 'y'}.items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv('AWS_DEFAULT_REGION', raising=False)   # the client asks the bucket's region first
        cache = TaskCache(str(tmp_path / 'root'), CacheSettings(remote='s3://team/ml'))
        out = tmp_path / 'out'
        started = time.monotonic()
        for i in range(10):
            assert cache.lookup(f'key{i}') is None
            out.write_text(f'result {i}')
            digest, _kind = cache.put_output(str(out))
            cache.record(f'key{i}', {}, {'parameters': {}, 'artifacts': {}}, {digest}, {'run': 'r'})
        elapsed = time.monotonic() - started
        warnings = cache.drain_warnings()
        cache.close()
    finally:
        hole.close()
    assert len(warnings) == 1 and 'not used for the rest of this run' in warnings[0], warnings
    assert len(list(ActionCache(str(tmp_path / 'root' / 'cache' / 'actions')).entries())) == 10, 'recorded locally'
    if kind == 'silent':
        assert hole.accepted == 1, 'one request reached the remote, none after it'
    assert elapsed < 20, f'a safety bound only (measured: {elapsed:.1f}s; figures in benchmarks/RESULTS.md)'


def test_an_entry_pulled_within_a_read_ahead_is_served_locally_after(s3, tmp_path, monkeypatch):
    """Two lookups of one key in one hop (identical tasks of a stage): the first pulls the
    entry from the remote and writes it locally; the second reads that, not what the hop read
    ahead (absent), and asks the remote nothing."""
    for k, v in {'LOCALRUNNER_S3_ENDPOINT': s3, 'LOCALRUNNER_S3_INSECURE': '1', 'AWS_ACCESS_KEY_ID': 'testing',
                 'AWS_SECRET_ACCESS_KEY': 'testing', 'AWS_DEFAULT_REGION': 'us-east-1'}.items():
        monkeypatch.setenv(k, v)
    settings = CacheSettings(remote='s3://team-cache/ahead')
    alice = TaskCache(str(tmp_path / 'alice'), settings)
    out = tmp_path / 'out'
    out.write_text('shared bytes')
    digest, _kind = alice.put_output(str(out))
    alice.record('k', {}, {'parameters': {'n': 1}, 'artifacts': {}}, {digest}, {'run': 'r'})
    assert not alice.drain_warnings()
    alice.close()
    bob = TaskCache(str(tmp_path / 'bob'), settings)
    asked = []
    get_action = bob.remote.get_action
    monkeypatch.setattr(bob.remote, 'get_action', lambda key: asked.append(key) or get_action(key))
    with bob.reading_ahead(['k', 'k']):
        first, second = bob.lookup('k'), bob.lookup('k')
    assert first is not None and second is not None
    assert first.outputs == second.outputs == {'parameters': {'n': 1}, 'artifacts': {}}
    assert asked == ['k'], 'the second lookup read the entry the first one wrote locally'
    assert bob.actions.get('k') is not None and not bob.drain_warnings()
    bob.close()
