"""KubernetesBackend without a cluster.

(a) the Pod manifests validate against the official Kubernetes schema (kubernetes-validate);
(b) the pod's container contract runs FOR REAL: DockerClusterApi plays the kubelet -- init
    container, then main container, emptyDirs as Docker volumes at the same paths, host
    network -- against a real S3 server (moto_server), through KubernetesBackend;
(c) the engine drives it: run_pipeline(backend='kubernetes') on a compiled pipeline.
Without a Docker engine (b) and (c) skip -- except under CI=true, where they fail.
"""

import os
import socket
import subprocess
import threading
import time
import uuid

import pytest

from localrunner.backends.base import LaunchError, LaunchSpec, Mount, Resources
from localrunner.backends.kubernetes import pod_spec
from localrunner.backends.kubernetes.api import MAIN_CONTAINER, ClusterApi, PodStatus
from localrunner.backends.kubernetes.backend import KILLED, KubernetesBackend
from localrunner.backends.kubernetes.staging import S3Settings
from localrunner.environments.python_env import InstallStep, PythonEnv
from tests.support import require_base_image, require_docker
from tests.support.k8s_doubles import DockerClusterApi, FakeApiServer

K8S_VERSION = '1.30'
BASE_IMAGE = 'localrunner-test-base:bookworm'


# ----------------------------------------------------------------------------- fixtures

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def s3():
    """A real S3 API (moto_server) on 127.0.0.1, with a bucket; yields S3Settings."""
    port = _free_port()
    proc = subprocess.Popen(['moto_server', '-H', '127.0.0.1', '-p', str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(('127.0.0.1', port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail('moto_server did not start')
                time.sleep(0.2)
        settings = S3Settings(endpoint=f'http://127.0.0.1:{port}', bucket='lr-stage',
                              access_key='test', secret_key='testsecret')
        from minio import Minio
        Minio(settings.endpoint, 'test', 'testsecret', secure=False, region='us-east-1').make_bucket('lr-stage')
        yield settings
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope='module')
def docker_client():
    client = require_docker()
    require_base_image(BASE_IMAGE)
    return client


@pytest.fixture
def cluster(docker_client):
    api = DockerClusterApi(docker_client)
    yield api
    assert not api.leftovers(), f'pods left behind: {api.leftovers()}'


@pytest.fixture
def backend(cluster, s3, tmp_path):
    be = KubernetesBackend(api=cluster, s3=s3, poll_s=0.2, digest_file=str(tmp_path / 'digests.json'))
    yield be
    be.close()


def objects(settings: S3Settings) -> list[str]:
    from minio import Minio
    client = Minio(settings.endpoint, settings.access_key, settings.secret_key, secure=settings.secure,
                   region=settings.region)
    return [o.object_name for o in client.list_objects(settings.bucket, recursive=True)]


def make_spec(tmp_path, argv, image=BASE_IMAGE, **kw) -> LaunchSpec:
    task_dir = tmp_path / 'run' / 'tasks' / 'work'
    attempt = task_dir / 'attempt-1'
    attempt.mkdir(parents=True, exist_ok=True)
    kw.setdefault('mounts', [])
    kw['mounts'] = list(kw['mounts']) + [Mount(str(task_dir), read_only=False)]
    return LaunchSpec(task=kw.pop('task', 'pipeline/work'), image=image, argv=argv, env=kw.pop('env', {}),
                      workdir=str(task_dir), log_path=str(attempt / 'log.txt'), **kw)


# ----------------------------------------------------------------------------- (a) manifests

def _staging(spec: LaunchSpec) -> pod_spec.Staging:
    entries = [(m.path, not os.path.splitext(m.path)[1], m.read_only) for m in spec.mounts]
    return pod_spec.Staging(
        downloads=[pod_spec.Download(f'http://minio.kubeflow:9000/b/in-{n}?X-Amz-Signature=abc', p, d)
                   for n, (p, d, _) in enumerate(entries)],
        upload_url='http://minio.kubeflow:9000/b/out.tar.gz?X-Amz-Signature=def',
        upload_paths=[m.path for m in spec.mounts if not m.read_only],
        volumes=pod_spec.plan_volumes(entries))


PLATFORM = {
    'secretAsEnv': [{'secretNameParameter': {'componentInputParameter': 'sec'},
                     'keyToEnv': [{'secretKey': 'password', 'envVar': 'PW'}], 'optional': False}],
    'secretAsVolume': [{'secretName': 's2', 'mountPath': '/mnt/s2', 'optional': False}],
    'configMapAsEnv': [{'configMapName': 'cm', 'keyToEnv': [{'configMapKey': 'k', 'envVar': 'K'}]}],
    'configMapAsVolume': [{'configMapNameParameter': {'runtimeValue': {'constant': 'cm2'}},
                           'mountPath': '/mnt/cm'}],
    'pvcMount': [{'constant': 'data', 'mountPath': '/data',
                  'pvcNameParameter': {'runtimeValue': {'constant': 'data'}}}],
    'nodeSelector': {'labels': {'accelerator': 'a100'}},
    'tolerations': [{'key': 'nvidia.com/gpu', 'operator': 'Exists', 'effect': 'NoSchedule'},
                    {'key': 'spot', 'operator': 'Equal', 'value': 'true', 'effect': 'NoExecute',
                     'tolerationSeconds': 30}],
    'imagePullSecret': [{'secretName': 'regcred'}],
    'imagePullPolicy': 'IfNotPresent',
    'fieldPathAsEnv': [{'name': 'POD', 'fieldPath': 'metadata.name'}],
    'podMetadata': {'labels': {'team': 'ml'}, 'annotations': {'note': 'a/b c'}},
    'emptyDirMounts': [{'volumeName': 'scratch', 'mountPath': '/scratch', 'medium': 'Memory'}],
    'enabledSharedMemory': {'volumeName': 'shm', 'size': '1Gi'},
    'nodeAffinity': [{'matchExpressions': [{'key': 'zone', 'operator': 'In', 'values': ['a']}]},
                     {'matchExpressions': [{'key': 'gen', 'operator': 'In', 'values': ['5']}], 'weight': 10}],
    'activeDeadlineSeconds': 3600,
}

SPECS = {
    'plain': dict(argv=['echo', 'hi'], mounts=[Mount('/data/runs/r1/tasks/a/artifacts/ds.csv')]),
    'gpu': dict(argv=['python3', 'train.py'], resources=Resources(
        cpu_limit=4, cpu_request=0.5, memory_limit=16 * 2**30, memory_request=2**30,
        accelerator_type='nvidia.com/gpu', accelerator_count=2)),
    'amd-gpu-by-type': dict(argv=['x'], resources=Resources(accelerator_type='amd.com/gpu', accelerator_count=1)),
    'platform': dict(argv=['sh', '-c', 'env'], env={'PW': 'local-stand-in', 'A': '1'}, platform=PLATFORM,
                     labels={'localrunner.run': 'hello-20250101-000000-abc', 'localrunner.task': 'for-loop-2/train'}),
    'lightweight': dict(argv=['sh', '-ec', 'python3 -m kfp.dsl.executor_main "$@"', '--executor_input', '{}'],
                        python_env=PythonEnv((InstallStep(('kfp==2.17.3', 'pandas'), ('https://pypi.org/simple',),
                                                          trusted_hosts=('pypi.org',)),))),
}


@pytest.mark.parametrize('case', sorted(SPECS))
def test_pod_manifest_validates_against_the_kubernetes_schema(case):
    import kubernetes_validate
    kw = dict(SPECS[case])
    mounts = kw.pop('mounts', [])
    platform = pod_spec.resolve_platform(kw.pop('platform', {}), {'sec': 'db-creds'})
    spec = LaunchSpec(task='pipeline/' + case, image='python:3.11', env=kw.pop('env', {}),
                      workdir='/data/runs/r1/tasks/' + case, log_path='/data/runs/r1/tasks/x/attempt-1/log.txt',
                      mounts=[*mounts, Mount('/data/runs/r1/tasks/' + case, read_only=False)], platform=platform,
                      **kw)
    manifest = pod_spec.build_pod(spec, pod_spec.pod_name(spec.task, uuid.uuid4().hex), _staging(spec),
                                  platform=platform)
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    pod = manifest['spec']
    main = pod['containers'][0]
    assert pod['restartPolicy'] == 'Never'
    assert main['command'][:2] == ['sh', '-c'] and main['command'][4:] == spec.argv
    assert {m['mountPath'] for m in main['volumeMounts']} >= {spec.workdir, pod_spec.STAGE_DIR}
    if case == 'plain':
        assert {m['mountPath']: m.get('readOnly') for m in main['volumeMounts']}[
            '/data/runs/r1/tasks/a/artifacts'] is True
    if case == 'gpu':
        assert main['resources'] == {'limits': {'cpu': '4', 'memory': str(16 * 2**30), 'nvidia.com/gpu': '2'},
                                     'requests': {'cpu': '500m', 'memory': str(2**30)}}
    if case == 'amd-gpu-by-type':
        assert main['resources']['limits'] == {'amd.com/gpu': '1'}
    if case == 'platform':
        env = {e['name']: e for e in main['env']}
        assert env['PW']['valueFrom'] == {'secretKeyRef': {'name': 'db-creds', 'key': 'password', 'optional': False}}
        assert 'value' not in env['PW'] and env['A']['value'] == '1'
        assert env['K']['valueFrom']['configMapKeyRef'] == {'name': 'cm', 'key': 'k'}
        assert env['POD']['valueFrom']['fieldRef']['fieldPath'] == 'metadata.name'
        vols = {v['name']: v for v in pod['volumes']}
        assert vols['pvc-0']['persistentVolumeClaim'] == {'claimName': 'data'}
        assert vols['secret-0']['secret']['secretName'] == 's2'
        assert vols['configmap-0']['configMap']['name'] == 'cm2'
        assert vols['shm']['emptyDir'] == {'medium': 'Memory', 'sizeLimit': '1Gi'}
        assert {m['mountPath'] for m in main['volumeMounts']} >= {'/data', '/mnt/s2', '/mnt/cm', '/scratch', '/dev/shm'}
        assert pod['nodeSelector'] == {'accelerator': 'a100'}
        assert pod['tolerations'][1] == {'key': 'spot', 'operator': 'Equal', 'value': 'true',
                                         'effect': 'NoExecute', 'tolerationSeconds': 30}
        assert pod['imagePullSecrets'] == [{'name': 'regcred'}]
        assert main['imagePullPolicy'] == 'IfNotPresent'
        assert pod['activeDeadlineSeconds'] == 3600
        affinity = pod['affinity']['nodeAffinity']
        assert affinity['preferredDuringSchedulingIgnoredDuringExecution'][0]['weight'] == 10
        meta = manifest['metadata']
        assert meta['labels']['team'] == 'ml' and meta['labels']['localrunner.task'] == 'for-loop-2-train'
        assert meta['annotations']['localrunner.task'] == 'for-loop-2/train'
        assert meta['annotations']['note'] == 'a/b c'
    if case == 'lightweight':
        script = main['command'][2]
        assert ("python3 -m pip install --quiet --no-warn-script-location --index-url "
                "https://pypi.org/simple --trusted-host pypi.org kfp==2.17.3 pandas") in script


def test_volumes_collapse_and_refuse_system_folders():
    assert pod_spec.plan_volumes([('/r/t/a/out', False, True), ('/r/t', True, False),
                                  ('/r/x/in.csv', False, True), ('/r/x/other.csv', False, True)]) == \
        [('/r/t', False), ('/r/x', True)]
    with pytest.raises(ValueError, match='system folders'):
        pod_spec.plan_volumes([('/usr/share/data.csv', False, True)])


def test_pod_names_are_dns_labels():
    name = pod_spec.pod_name('For_Loop-1/Train Model.v2' * 4, 'abcdef0123456789')
    assert len(name) <= 63 and name.startswith('lr-for-loop-1-train') and name.endswith('abcdef0123')
    assert all(c.isalnum() and c.islower() or c.isdigit() or c == '-' for c in name)


def test_missing_configuration_names_the_setting(tmp_path, monkeypatch):
    for var in ('LOCALRUNNER_S3_ENDPOINT', 'LOCALRUNNER_S3_BUCKET', 'LOCALRUNNER_S3_ACCESS_KEY',
                'AWS_ACCESS_KEY_ID', 'LOCALRUNNER_S3_SECRET_KEY', 'AWS_SECRET_ACCESS_KEY'):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv('LOCALRUNNER_S3_ENDPOINT', 'https://minio.example:9000')
    be = KubernetesBackend(api=DockerClusterApi(None), digest_file=False)
    spec = make_spec(tmp_path, ['true'])
    assert be.environment_fingerprint(spec) == BASE_IMAGE     # a cache lookup needs no config
    with pytest.raises(LaunchError, match='LOCALRUNNER_S3_BUCKET is not set') as info:
        be.prepare(spec, print)
    assert not info.value.retryable and '\n' not in str(info.value)
    monkeypatch.setenv('LOCALRUNNER_S3_BUCKET', 'b')
    monkeypatch.setenv('AWS_ACCESS_KEY_ID', 'k')
    with pytest.raises(LaunchError, match=r'LOCALRUNNER_S3_SECRET_KEY \(or AWS_SECRET_ACCESS_KEY\)'):
        KubernetesBackend(api=DockerClusterApi(None), digest_file=False).launch(spec, print)
    settings = S3Settings.from_env({'LOCALRUNNER_S3_ENDPOINT': 'http://m:9000', 'LOCALRUNNER_S3_BUCKET': 'b',
                                    'AWS_ACCESS_KEY_ID': 'k', 'AWS_SECRET_ACCESS_KEY': 's'})
    assert (settings.endpoint, settings.secure) == ('m:9000', False)


# ----------------------------------------------------------------------------- (b) real pods

TASK_SCRIPT = r'''
set -e
in="$1"; out_ds="$2"; out_param="$3"
echo "reading $in"
mkdir -p "$(dirname "$out_ds")" "$(dirname "$out_param")"
tr a-z A-Z < "$in" > "$out_ds"
ls "$4" > "$out_ds.listing"
wc -l < "$in" | tr -d ' ' > "$out_param"
echo "secret=$TOKEN"
echo done
'''


@pytest.mark.docker
def test_task_runs_in_a_pod_with_inputs_staged_in_and_outputs_back(backend, cluster, s3, tmp_path):
    producer = tmp_path / 'run' / 'tasks' / 'producer' / 'artifacts'
    producer.mkdir(parents=True)
    (producer / 'data').write_text('alpha\nbeta\ngamma\n')
    tree = tmp_path / 'run' / 'tasks' / 'other' / 'artifacts' / 'model'
    (tree / 'sub').mkdir(parents=True)
    (tree / 'sub' / 'weights.bin').write_bytes(b'\x00\x01' * 100)
    (tree / 'config.json').write_text('{}')
    spec = make_spec(tmp_path, ['sh', '-c', TASK_SCRIPT, 'task'], env={'TOKEN': 's3cr3t'},
                     mounts=[Mount(str(producer / 'data')), Mount(str(tree))])
    out_ds = os.path.join(spec.workdir, 'artifacts', 'upper')
    out_param = os.path.join(spec.workdir, 'parameters', 'lines')
    spec.argv += [str(producer / 'data'), out_ds, out_param, str(tree / 'sub')]
    lines = []
    execution = backend.launch(spec, lines.append)
    assert execution.wait() == 0, open(spec.log_path).read()
    assert execution.wait() == 0                               # repeatable
    assert open(out_ds).read() == 'ALPHA\nBETA\nGAMMA\n'
    assert open(out_ds + '.listing').read() == 'weights.bin\n'
    assert open(out_param).read() == '3\n'
    assert lines == [f'reading {producer / "data"}', 'secret=s3cr3t', 'done']
    assert open(spec.log_path).read().splitlines() == lines
    manifest = cluster.manifests[execution.pod]
    assert manifest['metadata']['labels']['localrunner.managed'] == 'true'
    assert cluster.pod_phase(execution.pod).phase == 'Gone'     # deleted
    assert objects(s3) == []                                    # staged objects removed
    # the cluster said which image ran: the NEXT backend (run) keys on it, this one never
    # changes its keys halfway through a run
    assert backend.environment_fingerprint(spec) == BASE_IMAGE
    assert backend.reported_digests[BASE_IMAGE].startswith('sha256:')
    later = KubernetesBackend(api=cluster, s3=s3, digest_file=str(tmp_path / 'digests.json'))
    assert later.environment_fingerprint(spec) == backend.reported_digests[BASE_IMAGE]


@pytest.mark.docker
def test_failing_command_reports_its_exit_status_and_skips_outputs(backend, cluster, tmp_path):
    spec = make_spec(tmp_path, ['sh', '-c', 'echo partial > out.txt; echo failing >&2; exit 3'])
    lines = []
    execution = backend.launch(spec, lines.append)
    assert execution.wait() == 3
    assert 'failing' in lines
    assert not os.path.exists(os.path.join(spec.workdir, 'out.txt'))
    assert cluster.pod_phase(execution.pod).phase == 'Gone'


@pytest.mark.docker
def test_inputs_are_read_only_in_the_pod(backend, tmp_path):
    data = tmp_path / 'run' / 'tasks' / 'up' / 'artifacts' / 'x'
    data.parent.mkdir(parents=True)
    data.write_text('keep')
    spec = make_spec(tmp_path, ['sh', '-c', f'echo changed > {data}'], mounts=[Mount(str(data))])
    assert backend.launch(spec, lambda line: None).wait() != 0
    assert data.read_text() == 'keep'


@pytest.mark.docker
def test_lightweight_prologue_is_re_applied_in_the_pod(backend, cluster, tmp_path):
    # `pip` is already installed, so pip resolves it without reaching the (dead) index
    env = PythonEnv((InstallStep(('pip',), ('http://127.0.0.1:9/simple',)),))
    spec = make_spec(tmp_path, ['sh', '-c', 'python3 -m pip --version >/dev/null && echo ran > ok'],
                     python_env=env)
    execution = backend.launch(spec, lambda line: None)
    assert execution.wait() == 0, open(spec.log_path).read()
    assert open(os.path.join(spec.workdir, 'ok')).read() == 'ran\n'
    assert 'pip install' in cluster.manifests[execution.pod]['spec']['containers'][0]['command'][2]
    assert backend.environment_fingerprint(spec).endswith('+' + env.key())


@pytest.mark.docker
def test_terminate_deletes_the_pod(backend, cluster, tmp_path):
    spec = make_spec(tmp_path, ['sh', '-c', 'echo started; sleep 60'])
    lines = []
    execution = backend.launch(spec, lines.append)
    deadline = time.monotonic() + 60
    while 'started' not in lines and time.monotonic() < deadline:
        time.sleep(0.2)
    threading.Timer(0.5, execution.terminate).start()
    started = time.monotonic()
    assert execution.wait() == KILLED
    assert time.monotonic() - started < 30
    assert cluster.pod_phase(execution.pod).phase == 'Gone'


@pytest.mark.docker
def test_secret_env_comes_from_the_cluster_not_the_local_stand_in(docker_client, s3, tmp_path):
    cluster = DockerClusterApi(docker_client, secrets={'db': {'password': 'from-cluster'}})
    be = KubernetesBackend(api=cluster, s3=s3, poll_s=0.2, digest_file=False)
    try:
        platform = pod_spec.resolve_platform(
            {'secretAsEnv': [{'secretNameParameter': {'componentInputParameter': 'name'},
                              'keyToEnv': [{'secretKey': 'password', 'envVar': 'PW'}]}]}, {'name': 'db'})
        spec = make_spec(tmp_path, ['sh', '-c', 'echo "$PW" > pw'], env={'PW': 'local'}, platform=platform)
        assert be.launch(spec, lambda line: None).wait() == 0
        assert open(os.path.join(spec.workdir, 'pw')).read() == 'from-cluster\n'
    finally:
        be.close()
    assert not cluster.leftovers()


# ----------------------------------------------------------------------------- (c) the engine

@pytest.mark.docker
def test_engine_runs_a_compiled_pipeline_on_the_kubernetes_backend(cluster, s3, tmp_path):
    from kfp import dsl

    from localrunner.api import run_pipeline
    from tests.helpers import compile_pipeline

    @dsl.container_component
    def produce(text: str, data: dsl.Output[dsl.Dataset]):
        return dsl.ContainerSpec(image=BASE_IMAGE, command=['sh', '-c', 'mkdir -p "$(dirname "$1")"; '
                                                            'printf "%s\\n" "$0" "$0" > "$1"'],
                                 args=[text, data.path])

    @dsl.container_component
    def count(data: dsl.Input[dsl.Dataset], lines: dsl.OutputPath(int), copy: dsl.Output[dsl.Dataset]):
        return dsl.ContainerSpec(image=BASE_IMAGE, command=[
            'sh', '-c', 'mkdir -p "$(dirname "$1")" "$(dirname "$2")"; wc -l < "$0" | tr -d " " > "$1"; '
                        'cp "$0" "$2"; echo counted'],
            args=[data.path, lines, copy.path])

    @dsl.pipeline(name='k8s-smoke')
    def smoke(text: str = 'hello') -> int:
        produced = produce(text=text)
        return count(data=produced.outputs['data']).outputs['lines']

    from localrunner.engine.model import State
    path = compile_pipeline(smoke, tmp_path / 'smoke.yaml')
    def backend():
        return KubernetesBackend(api=cluster, s3=s3, poll_s=0.2, digest_file=False)
    result = run_pipeline(path, {'text': 'kube'}, root=str(tmp_path / 'root'), backend=backend())
    records = {r.name: r for r in result.records}
    assert result.state == State.SUCCEEDED, [(r.name, r.state, r.error, r.logs) for r in result.records]
    assert result.outputs.parameters == {'Output': 2}
    assert open(os.path.join(records['count'].task_dir, 'out', 'artifacts', 'copy')).read() == 'kube\nkube\n'
    assert 'counted' in open(records['count'].logs[-1]).read()
    assert len(cluster.manifests) == 2
    again = run_pipeline(path, {'text': 'kube'}, root=str(tmp_path / 'root'), backend=backend())
    assert again.state == State.SUCCEEDED
    assert {r.name: r.state for r in again.records if r.name in records} == \
        {'produce': State.CACHED, 'count': State.CACHED}
    assert again.outputs.parameters == {'Output': 2}
    assert len(cluster.manifests) == 2                           # served from the cache: no pod
    assert objects(s3) == []


# ----------------------------------------------------------------------------- KubeClusterApi

def test_kube_cluster_api_speaks_the_pod_api_through_the_official_client():
    from kubernetes import client

    from localrunner.backends.kubernetes.api import KubeClusterApi
    server = FakeApiServer()
    try:
        configuration = client.Configuration()
        configuration.host = server.url
        api = KubeClusterApi('team-a', configuration=configuration)
        spec = LaunchSpec(task='p/t', image='img', argv=['true'], env={}, workdir='/r/t', log_path='/r/t/l')
        manifest = pod_spec.build_pod(spec, 'lr-t-1', _staging(spec))
        api.create_pod(manifest)
        assert server.requests[0] == ('POST', 'team-a')
        assert server.pods['lr-t-1']['spec']['containers'][0]['name'] == MAIN_CONTAINER
        status = api.pod_phase('lr-t-1')
        assert (status.phase, status.exit_code, status.done) == ('Succeeded', 0, True)
        assert status.image_id.endswith('a' * 64)
        assert list(api.stream_logs('lr-t-1')) == ['one', 'two', 'three']
        api.delete_pod('lr-t-1')
        api.delete_pod('lr-t-1')                                  # idempotent
        assert api.pod_phase('lr-t-1').phase == 'Gone'
        api.close()
    finally:
        server.httpd.shutdown()


def test_status_of_reports_init_failures_and_waiting_reasons():
    from kubernetes import client as k

    from localrunner.backends.kubernetes.api import status_of

    def pod(phase, init=None, main=None):
        return k.V1Pod(status=k.V1PodStatus(phase=phase, init_container_statuses=init, container_statuses=main))

    def cs(name, state):
        return k.V1ContainerStatus(name=name, image='i', image_id='', ready=False, restart_count=0, state=state)

    failed_init = pod('Failed', init=[cs('stage-in', k.V1ContainerState(
        terminated=k.V1ContainerStateTerminated(exit_code=6, reason='Error')))])
    assert (status_of(failed_init).phase, status_of(failed_init).exit_code) == ('Failed', 6)
    assert 'stage-in' in status_of(failed_init).reason
    pulling = pod('Pending', main=[cs('main', k.V1ContainerState(
        waiting=k.V1ContainerStateWaiting(reason='ImagePullBackOff', message='no such image')))])
    assert status_of(pulling).reason.startswith('ImagePullBackOff') and not status_of(pulling).done
    failed = pod('Failed', main=[cs('main', k.V1ContainerState(
        terminated=k.V1ContainerStateTerminated(exit_code=2, reason='Error')))])
    assert (status_of(failed).phase, status_of(failed).exit_code) == ('Failed', 2)


class _ScriptedApi(ClusterApi):
    """A cluster that accepts pods and then keeps them in one state (or refuses them)."""

    def __init__(self, status: PodStatus, refuse: Exception | None = None):
        self.status, self.refuse, self.deleted = status, refuse, []

    def create_pod(self, manifest):
        if self.refuse:
            raise self.refuse

    def pod_phase(self, name):
        return PodStatus('Gone') if name in self.deleted else self.status

    def stream_logs(self, name):
        return iter(())

    def delete_pod(self, name):
        self.deleted.append(name)


def test_a_pod_that_cannot_pull_its_image_fails_and_is_deleted(s3, tmp_path):
    api = _ScriptedApi(PodStatus('Pending', reason='ErrImagePull pull access denied'))
    be = KubernetesBackend(api=api, s3=s3, poll_s=0.05, hopeless_grace_s=0.3, digest_file=False)
    spec = make_spec(tmp_path, ['true'])
    lines = []
    execution = be.launch(spec, lines.append)
    assert execution.wait() == 125
    assert any('ErrImagePull' in line for line in lines)
    assert api.deleted == [execution.pod] and objects(s3) == []


def test_a_refused_pod_is_a_launch_error_and_leaves_nothing_staged(s3, tmp_path):
    class Forbidden(Exception):
        status = 403
    be = KubernetesBackend(api=_ScriptedApi(PodStatus('Pending'), refuse=Forbidden('pods is forbidden')),
                           s3=s3, digest_file=False)
    with pytest.raises(LaunchError, match='forbidden') as info:
        be.launch(make_spec(tmp_path, ['true']), print)
    assert not info.value.retryable
    assert objects(s3) == []
