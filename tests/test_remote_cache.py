"""--remote-cache: two machines (two roots) share results through a real S3 server."""

import pytest
from kfp import dsl
from kfp.dsl import Dataset, Output
from minio import Minio

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
