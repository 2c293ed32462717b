"""An environment enters the cache key as what it really holds -- interpreter, platform and the
installed versions, read from the built venv -- never as a host path or the requested packages.

Real venvs, real interpreters (one copied elsewhere), the real CLI, a real S3 server (moto).
The package the components ask for is a tiny wheel made here, served from a local folder.
"""
import json
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest
from kfp import dsl
from minio import Minio

from localrunner.backends.base import BackendOptions, LaunchSpec
from localrunner.backends.subprocess_backend import SubprocessBackend
from localrunner.environments.python_env import InstallStep, PythonEnv
from localrunner.environments.venvs import RESOLVED_FILE, VenvCache
from tests.helpers import compile_pipeline, task
from tests.support.s3_server import moto_server
from tests.support.wheels import make_wheel

pytestmark = pytest.mark.slow
PROBE = 'lr-envkey-probe'            # not on PyPI: only our wheel folder offers it
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dsl.component(base_image='python:3.11', packages_to_install=['lr-envkey-probe'])
def probe(folder: str) -> str:
    import importlib.metadata
    import os
    version = importlib.metadata.version('lr-envkey-probe')
    with open(os.path.join(folder, 'runs'), 'a') as f:
        f.write(version + '\n')
    return version


@dsl.container_component
def on_host(folder: str):
    return dsl.ContainerSpec(image='alpine:3.19', command=['sh', '-c', 'echo x >> "$0/host-runs"', folder])


@dsl.pipeline(name='env-keys')
def env_keys_pipeline(folder: str):
    probe(folder=folder).set_caching_options(True)
    on_host(folder=folder).set_caching_options(True)


def lr(python: str, *args: str, env: dict):
    return subprocess.run([python, '-m', 'localrunner.cli', *args], capture_output=True, text=True,
                          env={**os.environ, **env}, cwd=REPO, timeout=600)


def run(python: str, pipeline: str, root, folder, env: dict, *extra: str) -> dict:
    result_path = os.path.join(str(root), 'result.json')
    os.makedirs(str(root), exist_ok=True)
    proc = lr(python, 'run', pipeline, '--root', str(root), '--result-json', result_path,
              '-p', f'folder={folder}', *extra, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(result_path) as f:
        return json.load(f)


def key_parts(python: str, root, key: str, env: dict) -> dict:
    proc = lr(python, 'cache', 'show', key, '--root', str(root), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)['key_parts']


@pytest.fixture(scope='module')
def elsewhere(tmp_path_factory):
    """This Python installed a second time, in another folder (its stdlib copied, its own
    libpython loaded), as a venv that sees this checkout and its dependencies: another machine's
    interpreter of the same version. Returns (python, env to run it with, its prefix)."""
    base = os.path.realpath(sys.base_prefix)
    name = f'python{sys.version_info.major}.{sys.version_info.minor}'
    if not os.path.isfile(os.path.join(base, 'bin', name)) or base in ('/usr', '/usr/local'):
        pytest.skip(f'{base}: a system-wide interpreter cannot be copied elsewhere')
    copy = str(tmp_path_factory.mktemp('py-elsewhere') / 'python')
    big = {os.path.join(base, 'lib', name, 'site-packages'), os.path.join(base, 'lib', name, 'test')}
    shutil.copytree(base, copy, symlinks=True, ignore=lambda d, names: [n for n in names if os.path.join(d, n) in big])
    env = {'LD_LIBRARY_PATH': os.path.join(copy, 'lib')}
    venv = str(tmp_path_factory.mktemp('machine-b') / 'venv')
    subprocess.run([os.path.join(copy, 'bin', name), '-m', 'venv', '--without-pip', venv], check=True,
                   env={**os.environ, **env})
    site = os.path.join(venv, 'lib', name, 'site-packages')
    with open(os.path.join(site, 'this-checkout.pth'), 'w') as f:
        f.write(f'import site; site.addsitedir({sysconfig.get_paths()["purelib"]!r})\n')
    python = os.path.join(venv, 'bin', 'python')
    probe_ = subprocess.run([python, '-c', 'import sys, localrunner; print(sys.base_prefix); '
                             'print([l.split()[-1] for l in open("/proc/self/maps") if "libpython" in l][:1])'],
                            capture_output=True, text=True, env={**os.environ, **env}, check=True)
    # it really runs from there: its own prefix, and its own libpython where there is one
    assert probe_.stdout.splitlines()[0] == copy
    assert base not in probe_.stdout.splitlines()[1]
    return python, env, copy


@pytest.fixture
def wheels(tmp_path):
    folder = tmp_path / 'wheels'
    make_wheel(folder, PROBE, '1.0')
    return folder


@pytest.fixture(scope='module')
def s3(tmp_path_factory):
    with moto_server(str(tmp_path_factory.mktemp('moto') / 'moto.log')) as endpoint:
        Minio(endpoint, access_key='testing', secret_key='testing', secure=False,
              region='us-east-1').make_bucket('team')
        yield {'LOCALRUNNER_S3_ENDPOINT': endpoint, 'LOCALRUNNER_S3_INSECURE': '1',
               'AWS_ACCESS_KEY_ID': 'testing', 'AWS_SECRET_ACCESS_KEY': 'testing',
               'AWS_DEFAULT_REGION': 'us-east-1'}


def _home(env_dir) -> str:
    """`home` of the one venv built under ENV_DIR: the interpreter it was made from."""
    [cfg] = [os.path.join(env_dir, d, 'pyvenv.cfg') for d in os.listdir(env_dir)
             if os.path.isfile(os.path.join(env_dir, d, 'pyvenv.cfg'))]
    return next(line.split('=', 1)[1].strip() for line in open(cfg) if line.startswith('home'))


def test_two_machines_with_python_in_different_places_share_hits(tmp_path, wheels, elsewhere, s3):
    other_python, other_env, other_prefix = elsewhere
    pipeline = compile_pipeline(env_keys_pipeline, tmp_path / 'p.yaml')
    folder = tmp_path / 'out'
    folder.mkdir()
    common = {**s3, 'PIP_FIND_LINKS': str(wheels)}
    remote = ('--remote-cache', 's3://team/keys')
    alice = {**common, 'LOCALRUNNER_ENV_DIR': str(tmp_path / 'envs-alice')}
    bob = {**common, **other_env, 'LOCALRUNNER_ENV_DIR': str(tmp_path / 'envs-bob')}

    first = run(sys.executable, pipeline, tmp_path / 'alice', folder, alice, *remote)
    second = run(other_python, pipeline, tmp_path / 'bob', folder, bob, *remote)

    assert task(first, 'probe')['state'] == 'SUCCEEDED' and task(first, 'on-host')['state'] == 'SUCCEEDED'
    # each machine built its venv from its own interpreter ...
    assert _home(tmp_path / 'envs-bob').startswith(other_prefix)
    assert not _home(tmp_path / 'envs-alice').startswith(other_prefix)
    # ... and the second is served the first's results through the bucket
    for name in ('probe', 'on-host'):
        t = task(second, name)
        assert t['state'] == 'CACHED', t
        assert t['cached_from']['run'] == first['run_id']
        assert t['cache_key'] == task(first, name)['cache_key']
    assert task(second, 'probe')['outputs']['parameters']['Output'] == '1.0'
    assert (folder / 'runs').read_text() == '1.0\n'
    assert (folder / 'host-runs').read_text() == 'x\n'

    # what the key holds: the venv's interpreter, platform and versions, and no host path
    parts = key_parts(other_python, tmp_path / 'bob', task(second, 'probe')['cache_key'], bob)
    environment = parts['environment']
    major_minor = f'{sys.version_info.major}{sys.version_info.minor}'
    assert environment.startswith(f'venv:{sys.implementation.name}-{sys.version.split()[0]} cp{major_minor} ')
    assert f'{PROBE}==1.0' in environment.split(' | ')[1].split()
    assert 'kfp==2.17.3' in environment.split(' | ')[1].split()
    assert '/' not in environment
    described = json.dumps(parts)
    for path in (os.path.realpath(sys.base_prefix), other_prefix, str(tmp_path / 'envs-alice'),
                 str(tmp_path / 'envs-bob'), str(wheels)):
        assert path not in described
    host_parts = key_parts(sys.executable, tmp_path / 'alice', task(first, 'on-host')['cache_key'], alice)
    assert host_parts['environment'] == f'host:{os.uname().sysname}'


def test_the_key_follows_the_installed_versions(tmp_path, wheels):
    pipeline = compile_pipeline(env_keys_pipeline, tmp_path / 'p.yaml')
    folder = tmp_path / 'out'
    folder.mkdir()
    env_dir = tmp_path / 'envs'
    env = {'PIP_FIND_LINKS': str(wheels), 'LOCALRUNNER_ENV_DIR': str(env_dir)}
    root = tmp_path / 'root'

    def probe_task():
        return task(run(sys.executable, pipeline, root, folder, env), 'probe')

    first = probe_task()
    assert (first['state'], first['outputs']['parameters']['Output']) == ('SUCCEEDED', '1.0')
    [venv] = [os.path.join(env_dir, d) for d in os.listdir(env_dir) if os.path.isdir(os.path.join(env_dir, d))]
    py = os.path.join(venv, 'bin', 'python')

    # a newer release on the index changes nothing while the venv holds 1.0: the key is what runs
    make_wheel(wheels, PROBE, '2.0')
    again = probe_task()
    assert again['state'] == 'CACHED' and again['cache_key'] == first['cache_key']

    # 2.0 installed into the venv: a new key, the task runs again, with 2.0
    uv_install = [sys.executable, '-m', 'uv', 'pip', 'install', '--quiet', '--python', py,
                  '--no-index', '--find-links', str(wheels)]
    subprocess.run(uv_install + [f'{PROBE}==2.0'], check=True, capture_output=True)
    upgraded = probe_task()
    assert (upgraded['state'], upgraded['outputs']['parameters']['Output']) == ('SUCCEEDED', '2.0')
    assert upgraded['cache_key'] != first['cache_key']
    assert f'{PROBE}==2.0' in key_parts(sys.executable, root, upgraded['cache_key'], env)['environment']

    # back to 1.0: the first result is true again, and served
    subprocess.run(uv_install + [f'{PROBE}==1.0'], check=True, capture_output=True)
    back = probe_task()
    assert back['state'] == 'CACHED' and back['cache_key'] == first['cache_key']

    # the venv pruned and rebuilt: the unpinned requirement now resolves to 2.0, whose result
    # (made by the upgraded venv) is served; nothing ran with a stale key
    proc = lr(sys.executable, 'envs', 'prune', '--all', '--kind', 'venv', '--env-dir', str(env_dir), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not os.path.exists(venv)
    rebuilt = probe_task()
    assert rebuilt['state'] == 'CACHED' and rebuilt['cache_key'] == upgraded['cache_key']
    assert (folder / 'runs').read_text() == '1.0\n2.0\n'


# ------------------------------------------------------------------ the venv's record


@pytest.fixture
def probe_env(wheels, monkeypatch):
    monkeypatch.setenv('PIP_FIND_LINKS', str(wheels))
    return PythonEnv((InstallStep((PROBE,)),))


def test_a_venv_without_a_record_is_read_once_and_recorded(tmp_path, probe_env):
    cache = VenvCache(str(tmp_path / 'envs'))
    built = cache.resolved(probe_env, lambda line: None)
    record = os.path.join(cache.path(probe_env), RESOLVED_FILE)
    os.remove(record)                    # as a venv of an older localrunner has none
    log = []
    assert cache.resolved(probe_env, log.append) == built
    assert os.path.isfile(record) and log == []     # recorded, not rebuilt
    assert dict(built.packages) == {PROBE: '1.0'}
    assert '/' not in built.identity() and str(tmp_path) not in open(record).read()


def test_a_corrupt_record_is_not_believed(tmp_path, probe_env):
    cache = VenvCache(str(tmp_path / 'envs'))
    built = cache.resolved(probe_env, lambda line: None)
    record = os.path.join(cache.path(probe_env), RESOLVED_FILE)
    data = json.load(open(record))
    for planted in ('{"site": {}, "resolved": ', 'not json',
                    json.dumps({**data, 'resolved': {**data['resolved'], 'packages': {PROBE: '9.9'}},
                                'site': {k: v - 1 for k, v in data['site'].items()}})):
        with open(record, 'w') as f:
            f.write(planted)
        assert cache.resolved(probe_env, lambda line: None) == built
        assert json.load(open(record)) == data


def test_a_broken_venv_is_rebuilt(tmp_path, probe_env):
    cache = VenvCache(str(tmp_path / 'envs'))
    built = cache.resolved(probe_env, lambda line: None)
    os.remove(os.path.join(cache.path(probe_env), 'bin', 'python'))   # its interpreter is gone
    log = []
    assert cache.resolved(probe_env, log.append) == built
    assert any(line.startswith('building environment') for line in log)
    assert os.access(os.path.join(cache.path(probe_env), 'bin', 'python'), os.X_OK)


def test_the_fingerprint_builds_what_it_reads_and_prepare_reuses_it(tmp_path, probe_env):
    backend = SubprocessBackend(BackendOptions(env_dir=str(tmp_path / 'envs')))
    spec = LaunchSpec(task='t', image='python:3.11', argv=['true'], env={}, workdir=str(tmp_path),
                      log_path=str(tmp_path / 'log'), python_env=probe_env)
    assert backend.environment_fingerprint(spec, build=False) is None      # a dry run builds nothing
    log = []
    fingerprint = backend.environment_fingerprint(spec, log.append)       # builds, its output to the log
    assert fingerprint.endswith(f'| {PROBE}==1.0')
    assert sum(line.startswith('building environment') for line in log) == 1
    assert backend.environment_fingerprint(spec, build=False) == fingerprint
    log.clear()
    backend.prepare(spec, log.append)
    assert log == []                       # built once, reported once
    assert backend.environment_fingerprint(spec) == fingerprint
    spec.python_env = None
    assert backend.environment_fingerprint(spec) == f'host:{os.uname().sysname}'
