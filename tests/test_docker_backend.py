"""DockerBackend and environment images against a real Docker engine.

Runs in the offline base image from tests.support (debootstrapped bookworm + python3 + pip).
Without an engine these tests skip -- except under CI=true, where they fail.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

from localrunner.backends.base import BackendOptions, LaunchError, LaunchSpec, Mount, Resources
from localrunner.backends.docker_backend import RUN_LABEL, DockerBackend
from localrunner.environments import images
from localrunner.environments.python_env import InstallStep, PythonEnv
from localrunner.environments.resolved import Resolved
from tests.support import require_base_image, require_docker

pytestmark = pytest.mark.docker
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def client():
    return require_docker()


@pytest.fixture(scope='module')
def base_image(client):
    return require_base_image()


@pytest.fixture
def backend(client):
    be = DockerBackend(BackendOptions(run_id='test-' + uuid.uuid4().hex[:10], settings={'stop_grace': 2}))
    yield be
    be.close()
    left = client.containers.list(all=True, ignore_removed=True, filters={'label': f'{RUN_LABEL}={be.run_id}'})
    assert not left, f'containers left behind: {[c.name for c in left]}'


@pytest.fixture
def fresh_base(client, base_image):
    """A base image with an id of its own, so environment images built on it are new."""
    nonce = uuid.uuid4().hex[:12]
    container = client.containers.create(base_image, command=['true'])
    try:
        image = container.commit(repository='localrunner-test-nonce', tag=nonce,
                                 conf={'Labels': {'localrunner.test.nonce': nonce}})
    finally:
        container.remove(force=True)
    yield f'localrunner-test-nonce:{nonce}'
    for derived in client.images.list(filters={'label': f'{images.BASE_LABEL}={image.id}'}):
        client.images.remove(derived.id, force=True)
    client.images.remove(image.id, force=True)


def make_spec(tmp_path, image, argv, **kw):
    workdir = tmp_path / 'attempt'
    workdir.mkdir(exist_ok=True)
    kw.setdefault('env', {})
    return LaunchSpec(task=kw.pop('task', 'test/' + uuid.uuid4().hex[:6]), image=image,
                      argv=argv, workdir=str(workdir), log_path=str(tmp_path / 'attempt.log'),
                      **kw)


def run(backend, spec):
    lines = []
    status = backend.launch(spec, lines.append).wait()
    return status, lines


def test_trivial_container_succeeds_and_streams_output(backend, base_image, tmp_path):
    spec = make_spec(tmp_path, base_image, ['sh', '-c', 'echo "hello $WHO"; echo oops >&2; pwd'],
                     env={'WHO': 'docker'})
    status, lines = run(backend, spec)
    assert status == 0
    assert sorted(lines) == sorted(['hello docker', 'oops', spec.workdir])
    assert sorted(open(spec.log_path).read().splitlines()) == sorted(lines)


def test_failing_container_returns_its_real_exit_code(backend, base_image, tmp_path):
    spec = make_spec(tmp_path, base_image, ['python3', '-c', 'import sys; print("bye"); sys.exit(7)'])
    lines = []
    execution = backend.launch(spec, lines.append)
    assert (execution.wait(), lines) == (7, ['bye'])
    assert execution.wait() == 7   # asking again does not change the answer
    missing = make_spec(tmp_path, base_image, ['no-such-program'])
    assert run(backend, missing)[0] not in (0, None)


def test_terminate_midway_removes_the_container(backend, client, base_image, tmp_path):
    spec = make_spec(tmp_path, base_image, ['sh', '-c', 'echo started; sleep 60'])
    started = threading.Event()
    execution = backend.launch(spec, lambda line: started.set())
    assert started.wait(20), 'container never printed'
    threading.Timer(0.2, execution.terminate).start()   # as the engine's timeout would
    t0 = time.monotonic()
    status = execution.wait()
    assert status != 0 and time.monotonic() - t0 < 15
    execution.terminate()   # idempotent
    assert client.containers.list(all=True, ignore_removed=True, filters={'label': f'{RUN_LABEL}={backend.run_id}'}) == []


def test_ctrl_c_in_wait_removes_the_container(backend, client, base_image, tmp_path):
    spec = make_spec(tmp_path, base_image, ['sleep', '60'])
    execution = backend.launch(spec, lambda line: None)
    main = threading.main_thread().ident
    assert threading.get_ident() == main
    # a real SIGINT to the main thread, as Ctrl-C delivers it, while wait() blocks
    timer = threading.Timer(1.0, signal.pthread_kill, args=(main, signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        execution.wait()
    timer.join()
    assert client.containers.list(all=True, ignore_removed=True, filters={'label': f'{RUN_LABEL}={backend.run_id}'}) == []


def test_mounts_keep_their_paths_and_inputs_are_read_only(backend, base_image, tmp_path):
    inputs = tmp_path / 'inputs'
    inputs.mkdir()
    (inputs / 'data.txt').write_text('payload')
    volume = tmp_path / 'volume'
    volume.mkdir()
    (volume / 'secret').write_text('s3cr3t')
    script = textwrap.dedent(f'''
        cat {inputs}/data.txt; echo
        cat /mnt/secret/secret; echo
        if touch {inputs}/new 2>/dev/null; then echo WROTE-INPUT; else echo input-is-read-only; fi
        echo result > out.txt
    ''')
    spec = make_spec(tmp_path, base_image, ['sh', '-c', script],
                     mounts=[Mount(str(inputs), read_only=True)],
                     volumes={str(volume): '/mnt/secret'})
    status, lines = run(backend, spec)
    assert status == 0, lines
    assert lines == ['payload', 's3cr3t', 'input-is-read-only']
    assert not (inputs / 'new').exists()
    out = tmp_path / 'attempt' / 'out.txt'
    assert out.read_text() == 'result\n'
    out.unlink()   # the host user can delete what the container wrote


def test_missing_mount_source_is_a_clear_error(backend, base_image, tmp_path):
    spec = make_spec(tmp_path, base_image, ['true'], mounts=[Mount(str(tmp_path / 'nope'))])
    with pytest.raises(LaunchError, match='nope.*does not exist'):
        backend.launch(spec, print)


def test_resources_map_to_nano_cpus_and_memory(backend, client, base_image, tmp_path):
    spec = make_spec(tmp_path, base_image, ['true'],
                     resources=Resources(cpu_limit=0.5, memory_limit=64 * 2**20))
    container = backend.create_container(spec)
    try:
        host = client.api.inspect_container(container.id)['HostConfig']
        assert (host['NanoCpus'], host['Memory']) == (500_000_000, 64 * 2**20)
        assert host['NetworkMode'] == 'host'
    finally:
        container.remove(force=True)
    huge = make_spec(tmp_path, base_image, ['true'], resources=Resources(cpu_limit=4096))
    container = backend.create_container(huge)   # a cluster-sized limit is clamped, not fatal
    try:
        ncpu = client.info()['NCPU']
        assert client.api.inspect_container(container.id)['HostConfig']['NanoCpus'] == ncpu * 10**9
    finally:
        container.remove(force=True)


def test_gpu_ids_become_device_requests(backend, client, base_image, tmp_path):
    containers = []
    try:
        for gid in ('0', '1'):
            spec = make_spec(tmp_path, base_image, ['true'],
                             resources=Resources(accelerator_count=1, gpu_ids=(gid,)))
            containers.append(backend.create_container(spec))
            requests = client.api.inspect_container(containers[-1].id)['HostConfig']['DeviceRequests']
            assert [(r['DeviceIDs'], r['Capabilities']) for r in requests] == [([gid], [['gpu']])]
    finally:
        for container in containers:
            container.remove(force=True)
    if 'nvidia' in json.dumps(client.info().get('Runtimes', {})):
        pytest.skip('this engine has a GPU runtime: the no-GPU failure path cannot be shown')
    spec = make_spec(tmp_path, base_image, ['true'],
                     resources=Resources(accelerator_count=1, gpu_ids=('1',)))
    with pytest.raises(LaunchError) as err:
        backend.launch(spec, print)
    assert err.value.retryable is False and 'GPU' in str(err.value)
    assert client.containers.list(all=True, ignore_removed=True, filters={'label': f'{RUN_LABEL}={backend.run_id}'}) == []


def test_gpu_count_without_ids_is_refused(backend, base_image, tmp_path):
    spec = make_spec(tmp_path, base_image, ['true'], resources=Resources(accelerator_count=2))
    with pytest.raises(LaunchError, match='asks for 2 GPUs'):
        backend.create_container(spec)


def test_fingerprint_is_the_image_id_never_the_tag(backend, client, base_image, tmp_path):
    spec = make_spec(tmp_path, 'localrunner-test-base:bookworm', ['true'])
    assert backend.environment_fingerprint(spec) == client.images.get(spec.image).id
    assert backend.environment_fingerprint(spec).startswith('sha256:')


@pytest.mark.slow
def test_environment_fingerprint_is_the_base_id_and_what_the_image_holds(client, fresh_base, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv('LOCALRUNNER_ENV_DIR', str(tmp_path / 'envs'))
    base_id = client.images.get(fresh_base).id
    env = PythonEnv((InstallStep(('six==1.16.0',)),))
    spec = make_spec(tmp_path, fresh_base, ['true'], python_env=env)
    first = DockerBackend()
    fingerprint = first.environment_fingerprint(spec)        # builds the derived image
    base, _, holds = fingerprint.partition('+')
    assert base == base_id
    interpreter, _, packages = holds.partition(' | ')
    assert interpreter.startswith('cpython-3.') and interpreter.endswith(' linux_x86_64 glibc')
    assert 'six==1.16.0' in packages.split() and '/' not in holds
    [derived] = client.images.list(filters={'label': f'{images.BASE_LABEL}={base_id}'})
    labels = derived.attrs['Config']['Labels']
    assert images.RESOLVED_LABEL in labels and holds == Resolved.parse(labels[images.RESOLVED_LABEL]).identity()
    # its build output, held by the fingerprint, is shown by prepare(), once
    lines = []
    first.prepare(spec, lines.append)
    assert sum('building environment image' in line for line in lines) == 1
    assert any(line.startswith('[localrunner] environment holds: ') for line in lines)
    lines.clear()
    first.prepare(spec, lines.append)
    assert lines == []
    first.close()
    # another run: the same key from the image's label, nothing built
    second = DockerBackend()
    assert second.environment_fingerprint(spec) == fingerprint
    assert [d.id for d in client.images.list(filters={'label': f'{images.BASE_LABEL}={base_id}'})] == [derived.id]
    second.close()


@pytest.mark.slow
def test_environment_image_without_a_resolved_label_is_rebuilt(client, fresh_base, tmp_path, monkeypatch):
    """An environment image made by an older localrunner (no RESOLVED_LABEL) under the very
    tag and key: its package list is unknown, so it is built again, never keyed by guess."""
    monkeypatch.setenv('LOCALRUNNER_ENV_DIR', str(tmp_path / 'envs'))
    base_id = client.images.get(fresh_base).id
    env = PythonEnv((InstallStep(('six==1.16.0',)),))
    key = images.env_image_key(base_id, env)
    old = client.containers.create(fresh_base, command=['true'])
    try:
        planted = old.commit(repository=images.ENV_IMAGE_REPO, tag=key[:16],
                             conf={'Labels': {images.KEY_LABEL: key, images.BASE_LABEL: base_id}})
    finally:
        old.remove(force=True)
    lines = []
    built = images.ensure_env_image(client, base_id, env, lines.append)
    assert built.built and built.image_id != planted.id
    assert dict(built.resolved.packages)['six'] == '1.16.0'
    assert images.find_env_image(client, key) == built.image_id


def test_missing_image_without_registry_fails_fast(tmp_path, client):
    backend = DockerBackend(BackendOptions(settings={'pull_timeout': 30}))
    spec = make_spec(tmp_path, 'localrunner-test/absent-image:never', ['true'])
    t0 = time.monotonic()
    with pytest.raises(LaunchError, match='localrunner-test/absent-image:never') as err:
        backend.environment_fingerprint(spec)
    assert err.value.retryable is False
    assert time.monotonic() - t0 < 40
    backend.close()


_PREPARE_IN_A_PROCESS = textwrap.dedent('''
    import json, sys
    from localrunner.backends.base import LaunchSpec
    from localrunner.backends.docker_backend import DockerBackend
    from localrunner.environments.python_env import InstallStep, PythonEnv
    lines = []
    spec = LaunchSpec(task='env', image=sys.argv[1], argv=['true'], env={}, workdir='/tmp',
                      log_path='/dev/null', python_env=PythonEnv((InstallStep(('six==1.16.0',)),)))
    backend = DockerBackend()
    backend.prepare(spec, lines.append)
    backend.prepare(spec, lines.append)     # a second call is a dictionary look-up
    print(json.dumps({"built": sum('building environment image' in l for l in lines),
                      "image": backend.run_image(spec)}))
''')


@pytest.mark.slow
def test_environment_image_is_built_once_across_processes(client, fresh_base, backend, tmp_path,
                                                          monkeypatch):
    monkeypatch.setenv('LOCALRUNNER_ENV_DIR', str(tmp_path / 'envs'))   # the shared lock dir
    procs = [subprocess.Popen([sys.executable, '-c', _PREPARE_IN_A_PROCESS, fresh_base],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=REPO_ROOT) for _ in range(2)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r['built'] for r in results) == [0, 1]
    assert results[0]['image'] == results[1]['image']
    base_id = client.images.get(fresh_base).id
    derived = client.images.list(filters={'label': f'{images.BASE_LABEL}={base_id}'})
    assert [d.id for d in derived] == [results[0]['image']]
    # ... and a task of that environment runs in it without installing anything
    spec = make_spec(tmp_path, fresh_base, ['python3', '-c', 'import six; print(six.__version__)'],
                     python_env=PythonEnv((InstallStep(('six==1.16.0',)),)))
    assert run(backend, spec) == (0, ['1.16.0'])


@pytest.mark.slow
def test_environment_image_is_built_once_across_threads(client, fresh_base, tmp_path, monkeypatch):
    monkeypatch.setenv('LOCALRUNNER_ENV_DIR', str(tmp_path / 'envs'))
    env = PythonEnv((InstallStep(('six==1.16.0',)),))
    spec = make_spec(tmp_path, fresh_base, ['true'], python_env=env)
    backends = [DockerBackend(), DockerBackend()]   # two engines' worth of state, one process
    logs = [[], []]
    threads = [threading.Thread(target=b.prepare, args=(spec, log.append))
               for b, log in zip(backends, logs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    built = [sum('building environment image' in line for line in log) for log in logs]
    assert sorted(built) == [0, 1]
    assert backends[0].run_image(spec) == backends[1].run_image(spec)
    for b in backends:
        b.close()


@pytest.mark.slow
def test_failed_install_leaves_no_image_and_names_the_step(client, fresh_base, backend, tmp_path):
    env = PythonEnv((InstallStep(('six',)),
                     InstallStep(('localrunner-no-such-package-zz==0.0.1',), no_deps=True)))
    spec = make_spec(tmp_path, fresh_base, ['true'], python_env=env)
    with pytest.raises(LaunchError) as err:
        backend.prepare(spec, lambda line: None)
    message = str(err.value)
    assert 'step 2/2' in message and 'localrunner-no-such-package-zz==0.0.1' in message
    assert 'No matching distribution' in message
    key = images.env_image_key(client.images.get(fresh_base).id, env)
    assert images.find_env_image(client, key) is None
    assert client.containers.list(all=True, ignore_removed=True, filters={'label': f'{images.KEY_LABEL}={key}'}) == []


def test_pip_config_list_parsing_and_container_settings(tmp_path):
    text = textwrap.dedent('''\
        :env:.cert='/etc/ssl/certs/ca-certificates.crt'
        :env:.default-timeout='180'
        global.index-url='https://mirror.example/simple'
        install.index-url='https://better.example/simple'
        global.extra-index-url='file:///opt/pypi/simple https://extra.example/simple'
        global.find-links='/opt/wheels'
        global.trusted-host='mirror.example'
    ''')
    values = images.parse_pip_config_list(text)
    assert values['index-url'] == 'https://better.example/simple'   # install beats global
    settings = images.PipSettings.from_values(values, {'HTTPS_PROXY': 'http://proxy:3128',
                                                       'HOME': '/root'})
    env = settings.script_env()
    assert env['PIP_INDEX_URL'] == 'https://better.example/simple'
    assert env['PIP_EXTRA_INDEX_URL'] == 'https://extra.example/simple'
    assert env['HTTPS_PROXY'] == 'http://proxy:3128' and 'HOME' not in env
    assert 'PIP_FIND_LINKS' not in env and env['PIP_DEFAULT_TIMEOUT'] == '180'
    assert any('file:///opt/pypi/simple' in s for s in settings.skipped)
