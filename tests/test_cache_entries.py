"""A cache entry is served only when it fits the task's contract (its component's declared
outputs); a tampered entry, local or remote, is a miss with a warning and never writes
anywhere. Secrets enter keys as keyed digests; a result can be kept off the remote."""
import json
import os
import stat
from typing import NamedTuple

import pytest
from kfp import dsl
from kfp.dsl import Dataset, Model, Output
from minio import Minio

from localrunner.engine.caching import CacheSettings, TaskCache, entry_problem
from localrunner_cache import ActionCache, ActionResult
from tests.helpers import compile_pipeline, run_cli, run_pipeline_file, states, task
from tests.support.s3_server import moto_server


@dsl.component
def typed(folder: str, data: Output[Dataset], model: Output[Model]) -> NamedTuple(
        'Outputs', [('s', str), ('i', int), ('f', float), ('b', bool), ('l', list), ('d', dict)]):
    import os
    from collections import namedtuple
    open(os.path.join(folder, 'runs'), 'a').write('x\n')
    with open(data.path, 'w') as f:
        f.write('data')
    os.makedirs(model.path)
    with open(os.path.join(model.path, 'weights'), 'w') as f:
        f.write('w')
    return namedtuple('Outputs', 's i f b l d')('text', 3, 0.5, True, [1, 2], {'k': 'v'})


@dsl.pipeline(name='typed')
def typed_pipeline(folder: str):
    typed(folder=folder)


@pytest.fixture(scope='module')
def compiled(tmp_path_factory):
    folder = tmp_path_factory.mktemp('typed')
    path = compile_pipeline(typed_pipeline, folder / 'typed.yaml')
    import yaml
    with open(path) as f:
        ir = yaml.safe_load(f)
    [component] = [c for name, c in ir['components'].items() if name.startswith('comp-typed')]
    return path, component['outputDefinitions']


@pytest.fixture
def recorded(compiled, tmp_path):
    """A real run's entry for the task, and its root, key and contract."""
    path, contract = compiled
    folder = tmp_path / 'c'
    folder.mkdir()
    root = tmp_path / 'root'
    rc, result, proc = run_pipeline_file(path, root, '-p', f'folder={folder}')
    assert rc == 0, proc.stdout + proc.stderr
    key = task(result, 'typed')['cache_key']
    ac = ActionCache(os.path.join(root, 'cache', 'actions'))
    entry = ac.get(key)
    ac.close()
    return root, key, entry, contract, path, folder


def _with(entry: ActionResult, change) -> ActionResult:
    data = json.loads(entry.to_json())
    change(data['outputs'])
    return ActionResult(outputs=data['outputs'], digests=data['digests'], created=data['created'],
                        producer=data['producer'], key_parts=data['key_parts'])


def _set(path, value):
    def change(outputs):
        *parents, last = path
        target = outputs
        for p in parents:
            target = target[p]
        if value is _DELETE:
            del target[last]
        else:
            target[last] = value
    return change


_DELETE = object()
TAMPERED = {
    'undeclared artifact': _set(['artifacts', 'extra'], [{'type': 'system.Dataset', 'version': '0.0.1'}]),
    'artifact name as a path': lambda o: o['artifacts'].__setitem__('../../escape', o['artifacts'].pop('data')),
    'undeclared parameter': _set(['parameters', 'extra'], 'x'),
    'STRING as a number': _set(['parameters', 's'], 3),
    'NUMBER_INTEGER as text': _set(['parameters', 'i'], '3'),
    'NUMBER_INTEGER as a bool': _set(['parameters', 'i'], True),
    'NUMBER_INTEGER as a fraction': _set(['parameters', 'i'], 2.5),
    'NUMBER_DOUBLE as text': _set(['parameters', 'f'], 'nan'),
    'BOOLEAN as a number': _set(['parameters', 'b'], 1),
    'LIST as an object': _set(['parameters', 'l'], {}),
    'STRUCT as a list': _set(['parameters', 'd'], []),
    'a declared parameter missing': _set(['parameters', 's'], _DELETE),
    'a declared artifact missing': _set(['artifacts', 'model'], _DELETE),
    'no artifact in the list': _set(['artifacts', 'data'], []),
    'digest not among the entry digests': _set(['artifacts', 'data', 0, 'digest'], 'f' * 32),
    'malformed digest': _set(['artifacts', 'data', 0, 'digest'], '../../etc/passwd'),
    'unknown kind': _set(['artifacts', 'data', 0, 'kind'], 'symlink'),
    'kind without digest': _set(['artifacts', 'data', 0, 'digest'], None),
    'metadata not an object': _set(['artifacts', 'data', 0, 'metadata'], ['x']),
    'type not a string': _set(['artifacts', 'data', 0, 'type'], {'schemaTitle': 'x'}),
    'artifacts not an object': _set(['artifacts'], [1]),
    'artifact not an object': _set(['artifacts', 'data', 0], 'data'),
    'parameters not an object': _set(['parameters'], 'p'),
}


def test_a_recorded_entry_fits_its_contract(recorded):
    _root, _key, entry, contract, *_ = recorded
    assert entry_problem(entry, contract) is None
    assert entry_problem(entry, None) is None
    whole = _with(entry, _set(['parameters', 'i'], 3.0))
    assert entry_problem(whole, contract) is None, 'a whole float is an integer (KFP numbers are doubles)'
    integer = _with(entry, _set(['parameters', 'f'], 1))
    assert entry_problem(integer, contract) is None


@pytest.mark.parametrize('name', sorted(TAMPERED))
def test_a_tampered_entry_is_refused(recorded, name):
    _root, _key, entry, contract, *_ = recorded
    problem = entry_problem(_with(entry, TAMPERED[name]), contract)
    assert isinstance(problem, str) and problem, name


def test_only_shapes_without_a_contract(recorded):
    _root, _key, entry, *_ = recorded
    assert entry_problem(_with(entry, TAMPERED['artifact name as a path']), None)
    assert entry_problem(_with(entry, TAMPERED['malformed digest']), None)
    assert entry_problem(_with(entry, TAMPERED['undeclared parameter']), None) is None


def test_lookup_drops_a_tampered_local_entry_and_keeps_a_good_one(recorded):
    root, key, entry, contract, *_ = recorded
    cache = TaskCache(str(root), CacheSettings())
    try:
        assert cache.lookup(key, contract).outputs == entry.outputs
        cache.actions.put(key, _with(entry, TAMPERED['NUMBER_INTEGER as text']))
        assert cache.lookup(key, contract) is None
        [warning] = cache.drain_warnings()
        assert 'rejected' in warning and "'i'" in warning
        assert cache.actions.get(key) is None, 'a tampered local entry is dropped'
        assert cache.drain_warnings() == []
    finally:
        cache.close()


def test_a_run_never_restores_an_artifact_outside_its_folder(recorded, tmp_path):
    root, key, entry, contract, path, folder = recorded
    ac = ActionCache(os.path.join(root, 'cache', 'actions'))
    ac.put(key, _with(entry, TAMPERED['artifact name as a path']))
    ac.close()
    rc, result, proc = run_pipeline_file(path, root, '-p', f'folder={folder}')
    assert rc == 0, proc.stdout + proc.stderr
    assert states(result)['typed'] == 'SUCCEEDED', 'a tampered entry is a miss: the task runs'
    assert 'rejected' in proc.stdout and 'Traceback' not in proc.stdout + proc.stderr
    assert open(folder / 'runs').read().count('x') == 2
    assert [os.path.join(d, f) for d, _, fs in os.walk(tmp_path) for f in fs if f == 'escape'] == []
    rc, result, _ = run_pipeline_file(path, root, '-p', f'folder={folder}')
    assert states(result)['typed'] == 'CACHED', 'the run recorded a good entry over it'


# ------------------------------------------------------------------ remote entries
@pytest.fixture(scope='module')
def s3(tmp_path_factory):
    with moto_server(str(tmp_path_factory.mktemp('moto') / 'moto.log')) as endpoint:
        yield endpoint


@pytest.fixture
def remote_env(s3, monkeypatch):
    client = Minio(s3, access_key='testing', secret_key='testing', secure=False, region='us-east-1')
    bucket = f'team-{os.urandom(4).hex()}'
    client.make_bucket(bucket)
    for k, v in {'LOCALRUNNER_S3_ENDPOINT': s3, 'LOCALRUNNER_S3_INSECURE': '1', 'AWS_ACCESS_KEY_ID': 'testing',
                 'AWS_SECRET_ACCESS_KEY': 'testing', 'AWS_DEFAULT_REGION': 'us-east-1'}.items():
        monkeypatch.setenv(k, v)
    return client, bucket


def _share(recorded, tmp_path, bucket, share=True):
    root, key, entry, *_ = recorded
    alice = TaskCache(str(root), CacheSettings(remote=f's3://{bucket}/ml'))
    alice.record(key, entry.key_parts, entry.outputs, entry.digests, entry.producer, share=share)
    assert alice.drain_warnings() == []
    alice.close()
    return TaskCache(str(tmp_path / 'bob'), CacheSettings(remote=f's3://{bucket}/ml'))


def test_a_tampered_remote_entry_is_a_miss_and_pulls_nothing(recorded, remote_env, tmp_path):
    client, bucket = remote_env
    _root, key, entry, contract, *_ = recorded
    bob = _share(recorded, tmp_path, bucket)
    try:
        name = bob.remote.action_name(key)
        good = client.get_object(bucket, name).read()
        bad = json.loads(good)
        bad['outputs']['artifacts']['../../../tmp/owned'] = bad['outputs']['artifacts'].pop('data')
        data = json.dumps(bad).encode()
        import io
        client.put_object(bucket, name, io.BytesIO(data), len(data))
        assert bob.lookup(key, contract) is None
        [warning] = bob.drain_warnings()
        assert 'remote cache entry' in warning and 'rejected' in warning
        assert list(bob.cas.iter_digests()) == [], 'nothing pulled for a refused entry'
        assert bob.actions.get(key) is None
        client.put_object(bucket, name, io.BytesIO(good), len(good))
        hit = bob.lookup(key, contract)
        assert hit is not None and hit.outputs == entry.outputs and bob.drain_warnings() == []
        assert bob.actions.get(key) is not None, 'a remote hit is recorded locally'
    finally:
        bob.close()


def test_a_result_kept_off_the_remote(recorded, remote_env, tmp_path):
    client, bucket = remote_env
    _root, key, _entry, contract, *_ = recorded
    bob = _share(recorded, tmp_path, bucket, share=False)
    try:
        assert list(client.list_objects(bucket, prefix='ml/', recursive=True)) == []
        assert bob.lookup(key, contract) is None and bob.drain_warnings() == []
    finally:
        bob.close()


# ------------------------------------------------------------------ secrets
def test_secret_digest_under_the_cache_key(tmp_path, monkeypatch):
    monkeypatch.delenv('LOCALRUNNER_CACHE_SECRET_KEY_FILE', raising=False)
    a = TaskCache(str(tmp_path / 'a'), CacheSettings())
    b = TaskCache(str(tmp_path / 'b'), CacheSettings())
    try:
        key_file = tmp_path / 'a' / 'cache' / 'secret.key'
        digest = a.secret_digest('hunter2')
        assert digest.startswith('hmac-sha256:') and 'hunter2' not in digest
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        assert a.secret_digest('hunter2') == digest and a.secret_digest(b'hunter2') == digest
        assert b.secret_digest('hunter2') != digest, 'each cache its own key: no guessing across caches'
    finally:
        a.close()
        b.close()
    team = tmp_path / 'team.key'
    team.write_bytes(os.urandom(32))
    monkeypatch.setenv('LOCALRUNNER_CACHE_SECRET_KEY_FILE', str(team))
    a, b = TaskCache(str(tmp_path / 'a'), CacheSettings()), TaskCache(str(tmp_path / 'b'), CacheSettings())
    try:
        assert a.secret_digest('hunter2') == b.secret_digest('hunter2') != digest, 'a team key is shared'
    finally:
        a.close()
        b.close()


def test_a_bad_team_key_file_is_bad_input(compiled, tmp_path):
    path, _contract = compiled
    folder = tmp_path / 'c'
    folder.mkdir()
    (tmp_path / 'short.key').write_text('short')
    for value, why in ((tmp_path / 'absent.key', 'cannot read'), (tmp_path / 'short.key', 'needs at least 16')):
        proc = run_cli('run', path, '-p', f'folder={folder}', '--root', str(tmp_path / 'root'),
                       env={'LOCALRUNNER_CACHE_SECRET_KEY_FILE': str(value)})
        assert proc.returncode == 2, proc.stdout + proc.stderr
        [line] = proc.stderr.strip().splitlines()
        assert 'LOCALRUNNER_CACHE_SECRET_KEY_FILE' in line and str(value) in line and why in line
    assert not os.path.exists(folder / 'runs'), 'nothing ran'
