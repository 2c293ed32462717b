"""When the Kubernetes backend needs what (issue 13, item 4): its configuration before a run,
the cluster and the bucket only when a task must run.

(a) kubeconfig problems are named -- the file and the reason -- in one line, exit 2, before
    anything runs: read by find_cluster_config, as kubectl reads them, with no network call;
(b) reachability is asked once, before the first pod, of a recorded API double
    (FakeApiServer, through the official client): an unreachable or refusing server fails the
    tasks that must run, naming the server and the kubeconfig -- never before the run;
(c) a fully cached --cluster rerun talks to nobody: the API double records no request, and
    with the server gone the CLI still succeeds (the cache is first filled by real pods in
    Docker against S3);
(d) `run --cluster --dry-run` needs no kubeconfig and no bucket.
"""
import json
import os
import socket

import pytest
import yaml

from localrunner.backends.kubernetes.api import ClusterConfigError, find_cluster_config
from localrunner.backends.kubernetes.backend import KubernetesBackend
from localrunner.backends.kubernetes.staging import S3Settings
from localrunner.engine.model import State
from tests.helpers import compile_pipeline, run_cli
from tests.support import require_base_image, require_docker
from tests.support.k8s_doubles import DockerClusterApi, FakeApiServer, write_kubeconfig
from tests.support.s3_server import moto_server

BASE_IMAGE = 'localrunner-test-base:bookworm'
NO_CONFIG = {'KUBECONFIG': '', 'KUBERNETES_SERVICE_HOST': '', 'LOCALRUNNER_K8S_CONTEXT': '',
             'LOCALRUNNER_S3_ENDPOINT': '', 'LOCALRUNNER_S3_BUCKET': '', 'LOCALRUNNER_S3_ACCESS_KEY': '',
             'LOCALRUNNER_S3_SECRET_KEY': '', 'AWS_ACCESS_KEY_ID': '', 'AWS_SECRET_ACCESS_KEY': ''}


# ----------------------------------------------------------------------------- pipelines

@pytest.fixture(scope='module')
def two_tasks(tmp_path_factory):
    """Two independent container tasks and one after them (shell only: runs in the base image)."""
    from kfp import dsl

    @dsl.container_component
    def shout(text: str, out: dsl.OutputPath(str)):
        return dsl.ContainerSpec(image=BASE_IMAGE, command=[
            'sh', '-c', 'mkdir -p "$(dirname "$1")"; printf "%s!" "$0" > "$1"'], args=[text, out])

    @dsl.container_component
    def join(a: str, b: str, out: dsl.OutputPath(str)):
        return dsl.ContainerSpec(image=BASE_IMAGE, command=[
            'sh', '-c', 'mkdir -p "$(dirname "$2")"; printf "%s %s" "$0" "$1" > "$2"'], args=[a, b, out])

    @dsl.pipeline(name='k8s-checks')
    def pipeline(text: str = 'hi') -> str:
        a = shout(text=text)
        b = shout(text='fixed')
        return join(a=a.output, b=b.output).output

    return compile_pipeline(pipeline, tmp_path_factory.mktemp('p') / 'checks.yaml')


@pytest.fixture(scope='module')
def s3(tmp_path_factory):
    log = tmp_path_factory.mktemp('moto') / 'moto.log'
    with moto_server(str(log)) as endpoint:
        settings = S3Settings(endpoint=f'http://{endpoint}', bucket='lr-stage', access_key='test',
                              secret_key='testsecret')
        from minio import Minio
        Minio(settings.endpoint, 'test', 'testsecret', secure=False, region='us-east-1').make_bucket('lr-stage')
        yield settings


def _objects(settings: S3Settings) -> list[str]:
    from minio import Minio
    client = Minio(settings.endpoint, settings.access_key, settings.secret_key, secure=False,
                   region=settings.region)
    return [o.object_name for o in client.list_objects(settings.bucket, recursive=True)]


def _s3_env(settings: S3Settings) -> dict:
    return {'LOCALRUNNER_S3_ENDPOINT': f'http://{settings.endpoint}', 'LOCALRUNNER_S3_BUCKET': settings.bucket,
            'AWS_ACCESS_KEY_ID': settings.access_key, 'AWS_SECRET_ACCESS_KEY': settings.secret_key}


def _dead_url() -> str:
    """An address nothing listens on."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return f'http://127.0.0.1:{sock.getsockname()[1]}'


def _one_line_usage_error(proc, *words):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and 'Traceback' not in proc.stderr, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# ----------------------------------------------------------------------------- (a) kubeconfig

def _good(path, **kw):
    return write_kubeconfig(path, 'https://10.0.0.1:6443', **kw)


BROKEN = {
    'malformed': ('clusters: [\n  - name: c1\n    cluster: {server: x\n', 'malformed YAML at line'),
    'empty': ('', 'is empty'),
    'a list': ('- one\n- two\n', 'not a kubeconfig'),
    'not utf-8': (b'\xff\xfe\x00clusters', 'cannot read it'),
    'no current-context': (yaml.safe_dump({'contexts': [{'name': 'a', 'context': {'cluster': 'c'}}],
                                           'clusters': [{'name': 'c', 'cluster': {'server': 'https://x'}}]}),
                           "no current-context is set; choose one with LOCALRUNNER_K8S_CONTEXT (contexts: a)"),
    'unknown current-context': (yaml.safe_dump({'current-context': 'gone', 'contexts': [],
                                                'clusters': []}), "its current-context 'gone' is not defined"),
    'context without cluster': (yaml.safe_dump({'current-context': 'a',
                                                'contexts': [{'name': 'a', 'context': {'cluster': 'c9'}}],
                                                'clusters': []}), "names cluster 'c9', which is not defined"),
    'cluster without server': (yaml.safe_dump({'current-context': 'a',
                                               'contexts': [{'name': 'a', 'context': {'cluster': 'c'}}],
                                               'clusters': [{'name': 'c', 'cluster': {}}]}), 'has no server'),
    'entries without names': (yaml.safe_dump({'contexts': [{'context': {}}]}), 'contexts must be a list of'),
}


@pytest.mark.parametrize('case', sorted(BROKEN))
def test_a_broken_kubeconfig_is_named_with_its_reason(case, tmp_path):
    content, reason = BROKEN[case]
    path = tmp_path / 'kubeconfig'
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ClusterConfigError) as info:
        find_cluster_config(environ={'KUBECONFIG': str(path), 'HOME': str(tmp_path)})
    message = str(info.value)
    assert str(path) in message and reason in message and '\n' not in message, message


def test_missing_files_and_folders_are_named(tmp_path):
    missing = tmp_path / 'nope' / 'config'
    with pytest.raises(ClusterConfigError, match=f'KUBECONFIG names {missing}: no such file'):
        find_cluster_config(environ={'KUBECONFIG': str(missing)})
    # nothing configured at all, and not a pod: the default file is named
    with pytest.raises(ClusterConfigError) as info:
        find_cluster_config(environ={'HOME': str(tmp_path)})
    assert f'no kubeconfig: {tmp_path}/.kube/config does not exist' in str(info.value)
    (tmp_path / 'dir').mkdir()
    with pytest.raises(ClusterConfigError, match='is a directory'):
        find_cluster_config(environ={'KUBECONFIG': str(tmp_path / 'dir')})


@pytest.mark.skipif(os.geteuid() == 0, reason='root reads a file whatever its mode')
def test_an_unreadable_kubeconfig_is_named(tmp_path):
    path = _good(tmp_path / 'config')
    os.chmod(path, 0)
    with pytest.raises(ClusterConfigError, match='cannot read it: Permission denied'):
        find_cluster_config(environ={'KUBECONFIG': path})


def test_an_unknown_context_lists_the_known_ones(tmp_path):
    path = _good(tmp_path / 'config', context='dev')
    with pytest.raises(ClusterConfigError) as info:
        find_cluster_config('prod', environ={'KUBECONFIG': path})
    assert f"kubeconfig {path}: the context asked for 'prod' is not defined (contexts: dev)" == str(info.value)
    found = find_cluster_config('dev', environ={'KUBECONFIG': path})
    assert (found.files, found.context, found.server) == ([path], 'dev', 'https://10.0.0.1:6443')


def test_certificate_and_token_files_must_exist(tmp_path):
    (tmp_path / 'certs').mkdir()
    (tmp_path / 'certs' / 'ca.crt').write_text('x')
    path = tmp_path / 'config'
    config = {'current-context': 'a', 'contexts': [{'name': 'a', 'context': {'cluster': 'c', 'user': 'u'}}],
              'clusters': [{'name': 'c', 'cluster': {'server': 'https://x', 'certificate-authority': 'certs/ca.crt'}}],
              'users': [{'name': 'u', 'user': {'client-certificate': 'certs/me.crt'}}]}
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ClusterConfigError) as info:
        find_cluster_config(environ={'KUBECONFIG': str(path)})     # ca.crt is found next to the file
    assert str(info.value) == (f"kubeconfig {path}: user 'u' names client-certificate {tmp_path}/certs/me.crt, "
                               'which does not exist')
    (tmp_path / 'certs' / 'me.crt').write_text('x')
    assert find_cluster_config(environ={'KUBECONFIG': str(path)}).server == 'https://x'


def test_a_kubeconfig_list_merges_as_kubectl_does(tmp_path):
    """KUBECONFIG=a:b: missing files are skipped; the first file to set current-context or to
    name an entry wins (client-go clientcmd/loader.go)."""
    first = write_kubeconfig(tmp_path / 'first', 'https://first:6443', context='one')
    second = tmp_path / 'second'
    second.write_text(yaml.safe_dump({
        'current-context': 'two',
        'clusters': [{'name': 'c1', 'cluster': {'server': 'https://shadowed:6443'}},
                     {'name': 'c2', 'cluster': {'server': 'https://second:6443'}}],
        'contexts': [{'name': 'two', 'context': {'cluster': 'c2'}}]}))
    listed = os.pathsep.join([str(tmp_path / 'missing'), first, str(second)])
    found = find_cluster_config(environ={'KUBECONFIG': listed})
    assert (found.context, found.server, found.files) == ('one', 'https://first:6443', [first, str(second)])
    assert find_cluster_config('two', environ={'KUBECONFIG': listed}).server == 'https://second:6443'


def test_the_cli_names_a_broken_kubeconfig_before_anything_runs(two_tasks, tmp_path):
    path = tmp_path / 'kubeconfig'
    path.write_text('apiVersion: v1\nclusters:\n- name: c1\n  cluster: {server: https://x\n')
    env = {**NO_CONFIG, 'KUBECONFIG': str(path), 'LOCALRUNNER_S3_ENDPOINT': 'http://127.0.0.1:9',
           'LOCALRUNNER_S3_BUCKET': 'b', 'AWS_ACCESS_KEY_ID': 'k', 'AWS_SECRET_ACCESS_KEY': 's'}
    root = tmp_path / 'root'
    line = _one_line_usage_error(run_cli('run', two_tasks, '--cluster', '--root', str(root), env=env),
                                 str(path), 'malformed YAML at line')
    assert 'no cluster configuration' not in line
    _good(path, context='dev')
    _one_line_usage_error(run_cli('run', two_tasks, '--cluster', '--root', str(root),
                                  env={**env, 'LOCALRUNNER_K8S_CONTEXT': 'prod'}), str(path), "'prod'", 'dev')
    assert not (root / 'runs').exists()                     # nothing ran, no run was recorded


def test_a_missing_client_package_is_named_before_the_run(tmp_path, monkeypatch):
    import sys

    from localrunner.backends.base import LaunchError
    monkeypatch.setenv('KUBECONFIG', _good(tmp_path / 'config'))
    monkeypatch.setitem(sys.modules, 'kubernetes', None)       # how Python marks a module unimportable
    backend = KubernetesBackend(s3=S3Settings('127.0.0.1:9', 'b', 'k', 's'), digest_file=False)
    with pytest.raises(LaunchError, match=r'kubernetes package is not installed \(pip install localrunner'):
        backend.check()


# ----------------------------------------------------------------------------- (b) reachability

def _backend(s3, tmp_path, **kw) -> KubernetesBackend:
    return KubernetesBackend(s3=s3, poll_s=0.05, digest_file=False, **kw)


def test_reachability_is_asked_once_before_the_first_pod(two_tasks, s3, tmp_path, monkeypatch):
    from localrunner.api import run_pipeline
    server = FakeApiServer(token='secret-token')
    try:
        monkeypatch.setenv('KUBECONFIG', write_kubeconfig(tmp_path / 'config', server.url))
        backend = _backend(s3, tmp_path)
        backend.check()                                   # reads the file: asks nothing
        assert server.requests == []
        result = run_pipeline(two_tasks, root=str(tmp_path / 'root'), backend=backend)
        backend.close()
    finally:
        server.stop()
    # the double's pods "succeed" without uploading outputs: the tasks fail, which is not the point
    assert result.state == State.FAILED
    assert server.requests[0] == ('GET', '/version')
    assert server.requests.count(('GET', '/version')) == 1            # two pods, one check
    assert sum(1 for method, _ in server.requests if method == 'POST') == 2
    assert _objects(s3) == []


def test_an_unreachable_cluster_fails_the_tasks_that_must_run_naming_it(two_tasks, s3, tmp_path, monkeypatch):
    from localrunner.api import run_pipeline
    url = _dead_url()
    config = write_kubeconfig(tmp_path / 'config', url, context='far')
    monkeypatch.setenv('KUBECONFIG', config)
    backend = _backend(s3, tmp_path)
    backend.check()                                       # before the run: no network, no error
    result = run_pipeline(two_tasks, root=str(tmp_path / 'root'), backend=backend)
    backend.close()
    errors = {r.name: r.error for r in result.records if r.state == State.FAILED}
    assert set(errors) == {'shout', 'shout-2'}, errors
    for error in errors.values():
        assert error.startswith(f'kubernetes backend: cannot reach the cluster API at {url} '
                                f"(kubeconfig {config}, context 'far'): "), error
        assert 'Connection refused' in error and '\n' not in error and 'object at 0x' not in error
    assert {r.name: r.state for r in result.records}['join'] == State.SKIPPED
    assert _objects(s3) == []                             # nothing was staged for a pod never made


def test_refused_credentials_are_named(two_tasks, s3, tmp_path, monkeypatch):
    from localrunner.api import run_pipeline
    server = FakeApiServer(token='the-right-one')
    try:
        monkeypatch.setenv('KUBECONFIG', write_kubeconfig(tmp_path / 'config', server.url, token='wrong'))
        backend = _backend(s3, tmp_path)
        result = run_pipeline(two_tasks, root=str(tmp_path / 'root'), backend=backend)
        backend.close()
    finally:
        server.stop()
    errors = [r.error for r in result.records if r.state == State.FAILED]
    assert errors and all('refused our credentials: 401' in e for e in errors), errors
    assert [m for m, _ in server.requests] == ['GET']                  # no pod was even tried


# ----------------------------------------------------------------------------- (c) cached: nobody asked

@pytest.mark.docker
def test_a_fully_cached_cluster_rerun_needs_no_cluster(two_tasks, s3, tmp_path, monkeypatch):
    from localrunner.api import run_pipeline
    client = require_docker()
    require_base_image(BASE_IMAGE)
    root = str(tmp_path / 'root')
    kubelet = DockerClusterApi(client)
    backend = KubernetesBackend(api=kubelet, s3=s3, poll_s=0.2, digest_file=False)
    try:
        first = run_pipeline(two_tasks, {'text': 'kube'}, root=root, backend=backend)
    finally:
        backend.close()
    assert first.state == State.SUCCEEDED, [(r.name, r.error) for r in first.records]
    assert first.outputs.parameters == {'Output': 'kube! fixed!'}
    assert len(kubelet.manifests) == 3 and not kubelet.leftovers()

    # the same run through KubeClusterApi and a kubeconfig: served from the cache, nobody asked
    server = FakeApiServer(token='secret-token')
    try:
        monkeypatch.setenv('KUBECONFIG', write_kubeconfig(tmp_path / 'config', server.url))
        backend = KubernetesBackend(s3=s3, digest_file=False)     # its API from the kubeconfig
        again = run_pipeline(two_tasks, {'text': 'kube'}, root=root, backend=backend)
        backend.close()
    finally:
        server.stop()
    assert {r.name: r.state for r in again.records} == {n: State.CACHED for n in ('shout', 'shout-2', 'join')}
    assert again.outputs.parameters == {'Output': 'kube! fixed!'}
    assert server.requests == []

    # the real CLI, the server gone: still served from the cache
    dead = write_kubeconfig(tmp_path / 'dead', _dead_url())
    env = {**NO_CONFIG, **_s3_env(s3), 'KUBECONFIG': dead, 'XDG_CACHE_HOME': str(tmp_path / 'xdg')}
    out = tmp_path / 'result.json'
    proc = run_cli('run', two_tasks, '-p', 'text=kube', '--cluster', '--root', root, '--result-json', str(out),
                   env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert {t['name']: t['state'] for t in result['tasks']} == {n: 'CACHED' for n in ('shout', 'shout-2', 'join')}

    # a changed parameter: one task must run, and that is when the dead server is noticed
    proc = run_cli('run', two_tasks, '-p', 'text=other', '--cluster', '--root', root, '--result-json', str(out),
                   env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    tasks = {t['name']: t for t in json.loads(out.read_text())['tasks']}
    assert tasks['shout-2']['state'] == 'CACHED'
    assert tasks['shout']['state'] == 'FAILED' and 'cannot reach the cluster API' in tasks['shout']['error']
    assert dead in tasks['shout']['error']
    assert 'Traceback' not in proc.stderr

    # (d) the dry run of the cached root: no kubeconfig, no bucket, and it says what is cached
    proc = run_cli('run', two_tasks, '-p', 'text=kube', '--cluster', '--dry-run', '--root', root,
                   '--result-json', str(out), env={**NO_CONFIG, 'HOME': str(tmp_path),
                                                   'XDG_CACHE_HOME': str(tmp_path / 'xdg')})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {t['name']: t['state'] for t in json.loads(out.read_text())['tasks']} == \
        {n: 'CACHED' for n in ('shout', 'shout-2', 'join')}
    assert _objects(s3) == []


# ----------------------------------------------------------------------------- (d) dry run

def test_cluster_dry_run_needs_no_kubeconfig_and_no_bucket(two_tasks, tmp_path):
    root = tmp_path / 'root'
    out = tmp_path / 'result.json'
    env = {**NO_CONFIG, 'HOME': str(tmp_path), 'XDG_CACHE_HOME': str(tmp_path / 'xdg')}
    proc = run_cli('run', two_tasks, '--cluster', '--dry-run', '--root', str(root), '--result-json', str(out),
                   env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'would run' in (proc.stdout + proc.stderr).lower().replace('_', ' ')
    states = {t['name']: t['state'] for t in json.loads(out.read_text())['tasks']}
    assert 'shout' in states and 'CACHED' not in states.values() and 'SUCCEEDED' not in states.values()
    assert not (root / 'runs').exists()
    # the same run for real does need them, and says which is missing, before anything runs
    proc = run_cli('run', two_tasks, '--cluster', '--root', str(root), env=env)
    _one_line_usage_error(proc, 'LOCALRUNNER_S3_ENDPOINT')
    proc = run_cli('run', two_tasks, '--cluster', '--root', str(root),
                   env={**env, 'LOCALRUNNER_S3_ENDPOINT': 'http://127.0.0.1:9', 'LOCALRUNNER_S3_BUCKET': 'b',
                        'AWS_ACCESS_KEY_ID': 'k', 'AWS_SECRET_ACCESS_KEY': 's'})
    _one_line_usage_error(proc, f'no kubeconfig: {tmp_path}/.kube/config does not exist')
    assert not (root / 'runs').exists()


def test_create_pvc_on_a_cluster_fails_at_once_instead_of_waiting(s3, tmp_path, monkeypatch):
    """kfp-kubernetes CreatePVC makes a folder of this machine locally; on a cluster that claim
    would not exist, and a pod mounting it would wait forever: the task fails at once, saying
    why, and nothing downstream is sent to the cluster."""
    from kfp import dsl, kubernetes

    from localrunner.api import run_pipeline

    @dsl.container_component
    def use_it():
        return dsl.ContainerSpec(image='python:3.11', command=['ls', '/data'])

    @dsl.pipeline(name='pvc-on-cluster')
    def pvc_pipeline():
        claim = kubernetes.CreatePVC(pvc_name_suffix='-scratch', access_modes=['ReadWriteOnce'], size='1Gi',
                                     storage_class_name='standard')
        task = use_it()
        kubernetes.mount_pvc(task, pvc_name=claim.outputs['name'], mount_path='/data')

    path = compile_pipeline(pvc_pipeline, tmp_path / 'pvc.yaml')
    server = FakeApiServer(token='secret-token')
    try:
        monkeypatch.setenv('KUBECONFIG', write_kubeconfig(tmp_path / 'config', server.url))
        backend = _backend(s3, tmp_path)
        result = run_pipeline(path, root=str(tmp_path / 'root'), backend=backend)
        backend.close()
    finally:
        server.stop()
    records = {r.name: r for r in result.records}
    assert records['createpvc'].state == State.FAILED and 'kubectl' in records['createpvc'].error
    assert records['use-it'].state == State.SKIPPED
    assert not [r for r in server.requests if r[0] == 'POST']          # no pod was created
    assert not os.path.exists(tmp_path / 'root' / 'pvcs')
