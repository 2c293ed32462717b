"""The adversarial suite's common ground (docs/security.md).

Every test gets `sentinel`: a folder OUTSIDE the run root holding files a hostile pipeline or
container would like to read, overwrite or delete (a secret, a JSON that would pass as an
executor output, a folder). Its names, types, sizes, mtimes, link targets and content hashes
are snapshotted before the test, and the test asserts them unchanged at its end
(`sentinel.assert_unchanged()`); a teardown check backs that up for every test of the suite.
`cli()` runs the real `localrunner` and asserts no Python traceback reached the user.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
import subprocess
import sys
from typing import Optional

import pytest
import yaml

ROOT_NAME = 'root'


class Sentinel:
    def __init__(self, folder: str):
        self.dir = folder
        self.token = f'SENTINEL-{secrets.token_hex(8)}'
        self.bytes = self.token.encode()
        os.makedirs(os.path.join(folder, 'inner'))
        self.secret = os.path.join(folder, 'secret.txt')
        with open(self.secret, 'w') as f:
            f.write(self.token + '\n')
        # what a hostile link would like the host to take for the task's executor output
        self.executor_output = os.path.join(folder, 'executor_output.json')
        with open(self.executor_output, 'w') as f:
            json.dump({'parameterValues': {'out': self.token, 'Output': self.token}}, f)
        with open(os.path.join(folder, 'inner', 'keep.txt'), 'w') as f:
            f.write(self.token)
        os.chmod(self.secret, 0o600)
        self.before = self.snapshot()

    def snapshot(self) -> dict:
        """path -> (type, size, mtime_ns, mode, content hash or link target), never following a link."""
        out = {}
        for folder, dirs, files in os.walk(self.dir):
            for name in dirs + files:
                path = os.path.join(folder, name)
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    what = ('link', os.readlink(path))
                elif stat.S_ISREG(st.st_mode):
                    with open(path, 'rb') as f:
                        what = ('file', hashlib.sha256(f.read()).hexdigest())
                else:
                    what = ('dir', None)
                out[os.path.relpath(path, self.dir)] = (what, st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode))
        st = os.lstat(self.dir)
        out['.'] = (('dir', None), None, st.st_mtime_ns, stat.S_IMODE(st.st_mode))
        return out

    def assert_unchanged(self) -> None:
        after = self.snapshot()
        assert after == self.before, f'the sentinel folder {self.dir} outside the root changed'

    def path(self, *names: str) -> str:
        return os.path.join(self.dir, *names)


@pytest.fixture
def sentinel(tmp_path):
    s = Sentinel(str(tmp_path / 'sentinel'))
    yield s
    s.assert_unchanged()        # every test of the suite, whatever it asserted itself


@pytest.fixture
def root(tmp_path) -> str:
    return str(tmp_path / ROOT_NAME)


def no_traceback(proc: subprocess.CompletedProcess) -> None:
    text = proc.stdout + proc.stderr
    assert 'Traceback (most recent call last)' not in text, text
    assert 'internal error' not in text, text


def cli(*args: str, env: Optional[dict] = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """`localrunner ARGS` as a real process; never a traceback."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, '-m', 'localrunner.cli', *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)
    no_traceback(proc)
    return proc


def run(pipeline: str, root: str, *extra: str, env: Optional[dict] = None):
    """Runs a pipeline: (exit code, result document or None, process)."""
    os.makedirs(root, exist_ok=True)
    result_path = os.path.join(os.path.dirname(root), f'result-{secrets.token_hex(4)}.json')
    proc = cli('run', pipeline, '--root', root, '--result-json', result_path, *extra, env=env)
    result = None
    if os.path.exists(result_path):
        with open(result_path) as f:
            result = json.load(f)
        os.remove(result_path)
    return proc.returncode, result, proc


def task(result: dict, name: str) -> dict:
    matches = [t for t in result['tasks'] if t['name'] == name]
    assert matches, f'no task {name!r} in {[t["name"] for t in result["tasks"]]}'
    return matches[-1]


def files_under(folder: str):
    for base, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(base, name)
            if not os.path.islink(path):
                yield path


def assert_nowhere(needle: bytes, *folders: str) -> None:
    """No regular file under `folders` (links not followed) holds `needle`."""
    for folder in folders:
        for path in files_under(folder):
            with open(path, 'rb') as f:
                assert needle not in f.read(), f'{needle!r} found in {path}'


def compile_to(fn, path) -> str:
    from kfp import compiler
    compiler.Compiler().compile(fn, package_path=str(path))
    return str(path)


def load_docs(path: str) -> list:
    with open(path) as f:
        return list(yaml.safe_load_all(f))


def save_docs(docs: list, path: str) -> str:
    with open(path, 'w') as f:
        yaml.safe_dump_all(docs, f, sort_keys=False)
    return str(path)


def replace_everywhere(value, old: str, new: str):
    """`value` (a loaded IR document) with every key and string holding `old` rewritten: how
    a hostile name is planted by hand-editing a compiled pipeline, consistently."""
    if isinstance(value, dict):
        return {replace_everywhere(k, old, new): replace_everywhere(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [replace_everywhere(v, old, new) for v in value]
    if isinstance(value, str):
        return value.replace(old, new)
    return value


@pytest.fixture(scope='session')
def docker_image():
    """The offline test base image, on a real Docker engine (skipped where none answers)."""
    from tests.support import require_base_image
    return require_base_image()


@pytest.fixture(scope='module')
def s3(tmp_path_factory):
    """A real S3 server (moto_server on 127.0.0.1) with an empty bucket 'team-cache':
    (environment for localrunner, a minio client)."""
    from minio import Minio

    from tests.support.s3_server import moto_server
    with moto_server(str(tmp_path_factory.mktemp('moto') / 'moto.log')) as endpoint:
        client = Minio(endpoint, access_key='testing', secret_key='testing', secure=False, region='us-east-1')
        client.make_bucket('team-cache')
        env = {'LOCALRUNNER_S3_ENDPOINT': endpoint, 'LOCALRUNNER_S3_INSECURE': '1', 'AWS_ACCESS_KEY_ID': 'testing',
               'AWS_SECRET_ACCESS_KEY': 'testing', 'AWS_DEFAULT_REGION': 'us-east-1'}
        yield env, client


def bucket_objects(client, bucket: str, prefix: str = '') -> dict:
    """name -> bytes of every object under `prefix`."""
    out = {}
    for obj in client.list_objects(bucket, prefix=prefix, recursive=True):
        response = client.get_object(bucket, obj.object_name)
        try:
            out[obj.object_name] = response.read()
        finally:
            response.close()
            response.release_conn()
    return out
