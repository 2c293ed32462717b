"""`localrunner render` (issue 13, item 4): the Pod manifests a --cluster run would create,
written without a cluster, a kubeconfig or a bucket.

Every rendered document is validated against the official Kubernetes schema
(kubernetes-validate, strict) and against the API server's own naming and reference rules
that a schema cannot express (server_rules below, after k8s.io/kubernetes
pkg/apis/core/validation/validation.go), for several pipelines: the example, kfp-kubernetes
settings, GPUs and resources, retries, loops, conditions, exit handlers, nested pipelines.
The Docker test at the end checks that render shows what the backend really creates.
"""
import json
import os
import re

import pytest
import yaml
from kfp import dsl, kubernetes

from tests.helpers import compile_pipeline, run_cli

K8S_VERSION = '1.30'
BASE_IMAGE = 'localrunner-test-base:bookworm'
EXAMPLE = os.path.join(os.path.dirname(__file__), '..', 'examples', 'ml_pipeline.yaml')
NO_CLUSTER = {'KUBECONFIG': '/nonexistent/kubeconfig', 'KUBERNETES_SERVICE_HOST': '', 'LOCALRUNNER_S3_ENDPOINT': '',
              'LOCALRUNNER_S3_BUCKET': '', 'AWS_ACCESS_KEY_ID': '', 'AWS_SECRET_ACCESS_KEY': '',
              'LOCALRUNNER_K8S_NAMESPACE': '', 'LOCALRUNNER_K8S_STAGE_IMAGE': ''}

_DNS_LABEL = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')
_DNS_SUBDOMAIN = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')
_QUALIFIED = re.compile(r'^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$')
_LABEL_VALUE = re.compile(r'^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$')
_ENV_NAME = re.compile(r'^[-._a-zA-Z][-._a-zA-Z0-9]*$')


def server_rules(pod: dict) -> None:
    """What the API server checks beyond the schema (ValidatePodCreate): DNS names, label and
    annotation syntax, unique volume / container names, mounts that name a volume, unique
    mount paths per container, env var names."""
    meta = pod['metadata']
    assert _DNS_SUBDOMAIN.match(meta['name']) and len(meta['name']) <= 253, meta['name']
    for key, value in meta.get('labels', {}).items():
        assert _QUALIFIED.match(key) and _LABEL_VALUE.match(value) and len(value) <= 63, (key, value)
    for key in meta.get('annotations', {}):
        assert _QUALIFIED.match(key), key
    spec = pod['spec']
    volumes = [v['name'] for v in spec.get('volumes', [])]
    assert len(volumes) == len(set(volumes)) and all(_DNS_LABEL.match(v) and len(v) <= 63 for v in volumes), volumes
    containers = spec.get('initContainers', []) + spec['containers']
    names = [c['name'] for c in containers]
    assert len(names) == len(set(names)) and all(_DNS_LABEL.match(n) for n in names), names
    for c in containers:
        paths = [m['mountPath'] for m in c.get('volumeMounts', [])]
        assert len(paths) == len(set(paths)), paths
        assert all(m['name'] in volumes for m in c.get('volumeMounts', [])), c.get('volumeMounts')
        assert all(p.startswith('/') for p in paths), paths
        for e in c.get('env', []):
            assert _ENV_NAME.match(e['name']), e['name']
            if 'valueFrom' in e:
                ref = next(iter(e['valueFrom'].values()))
                assert 'name' not in ref or _DNS_SUBDOMAIN.match(ref['name']), ref
    for v in spec.get('volumes', []):
        for kind, key in (('persistentVolumeClaim', 'claimName'), ('secret', 'secretName'), ('configMap', 'name')):
            if kind in v:
                assert _DNS_SUBDOMAIN.match(v[kind][key]), v


def validate(docs: list[dict]) -> None:
    import kubernetes_validate
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        server_rules(doc)


def render(*args, env=None, cwd=None) -> tuple[list[dict], str, str]:
    proc = run_cli('render', *args, env={**NO_CLUSTER, **(env or {})}, cwd=cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d], proc.stdout, proc.stderr


def by_task(docs: list[dict]) -> dict[str, dict]:
    return {d['metadata']['annotations']['localrunner.task'] if 'localrunner.task' in d['metadata'].get(
        'annotations', {}) else d['metadata']['labels']['localrunner.task']: d for d in docs}


def main(doc: dict) -> dict:
    return doc['spec']['containers'][0]


def executor_input(doc: dict) -> dict:
    argv = main(doc)['command']
    return json.loads(argv[argv.index('--executor_input') + 1])


# ----------------------------------------------------------------------------- the example

def test_the_example_renders_valid_pods_without_a_cluster(tmp_path):
    docs, stream, stderr = render(EXAMPLE, '-p', 'n_estimators=7', '--root', str(tmp_path / 'root'),
                                  env={'HOME': str(tmp_path)}, cwd=os.path.dirname(EXAMPLE) + '/..')
    validate(docs)
    pods = by_task(docs)
    assert set(pods) == {'preprocess-data', 'train-model', 'evaluate-model', 'condition-1/deploy-model'}
    assert 'rendered 4 pod manifests' in stderr and '1 task without a pod' in stderr
    assert re.search(r'^# no pod for importer: an importer', stream, re.M)
    run_dir = f'{tmp_path}/root/runs/ml-training-pipeline-RUN-ID'
    train = pods['train-model']
    inputs = executor_input(train)['inputs']
    assert inputs['parameterValues'] == {'n_estimators': 7, 'max_depth': 5, 'random_state': 42}
    # the upstream artifact is where the run puts it, staged in read-only
    upstream = inputs['artifacts']['train_dataset']['artifacts'][0]
    assert upstream['uri'] == f'{run_dir}/tasks/preprocess-data/out/artifacts/train_dataset'
    assert "metadata of output 'train_dataset' of preprocess-data" in json.dumps(upstream['metadata'])
    mounts = {m['mountPath']: m.get('readOnly') for m in main(train)['volumeMounts']}
    assert mounts[f'{run_dir}/tasks/preprocess-data/out/artifacts'] is True
    assert mounts[f'{run_dir}/tasks/train-model/out'] is False
    assert main(train)['workingDir'] == f'{run_dir}/tasks/train-model/out'
    # the pip prologue runs in the pod, as KFP's would
    assert "pip install --quiet --no-warn-script-location 'pandas>=2,<3'" in main(train)['command'][2]
    deploy = pods['condition-1/deploy-model']['metadata']['annotations']
    assert deploy['render.localrunner.dev/condition'].endswith('decided at run time')
    assert deploy['render.localrunner.dev/caching'].startswith('off')      # set_caching_options(False)
    assert pods['train-model']['metadata']['annotations']['render.localrunner.dev/caching'].startswith('on')
    # presigned URLs are placeholders, and said to be
    assert "'<<presigned GET URL of the staged in-" in train['spec']['initContainers'][0]['command'][2]
    assert 'presigned' in train['metadata']['annotations']['render.localrunner.dev/placeholders']
    assert all(d['metadata']['namespace'] == 'default' for d in docs)


def test_one_file_per_pod_same_documents_and_deterministic(tmp_path):
    args = [EXAMPLE, '--root', '/srv/lr', '--namespace', 'team-a']
    docs, stream, _ = render(*args)
    again, stream_again, _ = render(*args)
    assert stream == stream_again                       # diffable: no time, no random id
    out = tmp_path / 'manifests'
    proc = run_cli('render', *args, '-o', str(out), env=NO_CLUSTER)
    assert proc.returncode == 0, proc.stderr
    files = sorted(os.listdir(out))
    assert files == ['condition-1__deploy-model.yaml', 'evaluate-model.yaml', 'preprocess-data.yaml',
                     'train-model.yaml']
    from_files = [yaml.safe_load(open(out / f)) for f in files]
    assert sorted(json.dumps(d, sort_keys=True) for d in from_files) == \
        sorted(json.dumps(d, sort_keys=True) for d in docs)
    assert all(d['metadata']['namespace'] == 'team-a' for d in from_files)
    assert open(out / 'train-model.yaml').read().startswith('# localrunner render: task train-model')
    single = tmp_path / 'all.yaml'
    assert run_cli('render', *args, '-o', str(single), env=NO_CLUSTER).returncode == 0
    assert single.read_text() == stream
    # the Python source, compiled on the fly with the kfp SDK, renders the same pods
    _, from_python, _ = render(EXAMPLE.replace('.yaml', '.py'), *args[1:])
    assert from_python == stream


@pytest.mark.parametrize('args, words', [
    (['-p', 'nope=1'], ["unknown parameter 'nope'", 'n_estimators']),
    (['-p', 'n_estimators=many'], ["parameter 'n_estimators'", "'many' is not a valid NUMBER_INTEGER"]),
    (['-p', 'n_estimators'], ['-p n_estimators: expected NAME=VALUE']),
    (['--params-file', '/nonexistent/params.yaml'], ['/nonexistent/params.yaml: cannot read params file']),
])
def test_parameters_are_checked_as_run_checks_them(args, words, tmp_path):
    proc = run_cli('render', EXAMPLE, *args, '-o', str(tmp_path / 'out'), env=NO_CLUSTER)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in proc.stderr, proc.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert not (tmp_path / 'out').exists() and proc.stdout == ''


def test_a_missing_required_parameter_is_named(tmp_path):
    @dsl.component(base_image='python:3.11')
    def echo(x: str) -> str:
        return x

    @dsl.pipeline(name='needs')
    def needs(text: str):
        echo(x=text)

    path = compile_pipeline(needs, tmp_path / 'needs.yaml')
    proc = run_cli('render', path, env=NO_CLUSTER)
    assert proc.returncode == 2 and "missing required parameter 'text'" in proc.stderr, proc.stderr
    docs, _, _ = render(path, '-p', 'text=hello')
    assert executor_input(docs[0])['inputs']['parameterValues'] == {'x': 'hello'}


def test_pipeline_input_artifacts_and_importers(tmp_path):
    @dsl.container_component
    def count(data: dsl.Input[dsl.Dataset], ref: dsl.Input[dsl.Artifact], n: dsl.OutputPath(int)):
        return dsl.ContainerSpec(image='python:3.11', command=['sh', '-c', 'wc -l < "$0" > "$2"'],
                                 args=[data.path, ref.uri, n])

    @dsl.pipeline(name='inputs')
    def inputs(data: dsl.Input[dsl.Dataset]):
        remote = dsl.importer(artifact_uri='gs://bucket/model', artifact_class=dsl.Artifact)
        count(data=data, ref=remote.output)

    path = compile_pipeline(inputs, tmp_path / 'inputs.yaml')
    docs, stream, _ = render(path)
    validate(docs)
    pod = docs[0]
    mounts = {m['mountPath']: m.get('readOnly') for m in main(pod)['volumeMounts']}
    assert mounts['/PIPELINE-INPUTS'] is True
    assert main(pod)['command'][-3:-1] == ['/PIPELINE-INPUTS/data', 'gs://bucket/model']
    assert '/PIPELINE-INPUTS/<name>: the path of a pipeline input artifact' in \
        pod['metadata']['annotations']['render.localrunner.dev/placeholders']
    assert re.search(r'^# no pod for importer: an importer: the engine makes the artifact from gs://bucket/model',
                     stream, re.M)


# ----------------------------------------------------------------------------- kfp-kubernetes, GPUs, retries

@dsl.container_component
def work(text: str, out: dsl.OutputPath(str)):
    return dsl.ContainerSpec(image='python:3.11', command=['sh', '-c', 'echo "$0" > "$1"'], args=[text, out])


@dsl.component(base_image='python:3.11')
def train(data: str, model: dsl.Output[dsl.Model]):
    with open(model.path, 'w') as f:
        f.write(data)


@dsl.pipeline(name='k8s-settings')
def k8s_settings(secret: str = 'db-creds', text: str = 'x'):
    pvc = kubernetes.CreatePVC(pvc_name_suffix='-scratch', access_modes=['ReadWriteOnce'], size='1Gi')
    first = work(text=text)
    kubernetes.use_secret_as_env(first, secret_name=secret, secret_key_to_env={'password': 'DB_PASSWORD'})
    kubernetes.use_secret_as_volume(first, secret_name='tls', mount_path='/etc/tls', optional=True)
    kubernetes.use_config_map_as_env(first, config_map_name='settings', config_map_key_to_env={'mode': 'MODE'})
    kubernetes.use_config_map_as_volume(first, config_map_name='settings', mount_path='/etc/settings')
    kubernetes.mount_pvc(first, pvc_name=pvc.outputs['name'], mount_path='/scratch', sub_path='run')
    kubernetes.mount_pvc(first, pvc_name='shared-data', mount_path='/data')
    kubernetes.add_node_selector(first, label_key='cloud.google.com/gke-nodepool', label_value='cpu-pool')
    kubernetes.add_toleration(first, key='dedicated', operator='Equal', value='ml', effect='NoSchedule')
    kubernetes.add_node_affinity(first, match_expressions=[{'key': 'zone', 'operator': 'In', 'values': ['a']}])
    kubernetes.set_image_pull_secrets(first, ['regcred'])
    kubernetes.set_image_pull_policy(first, 'Always')
    kubernetes.add_pod_label(first, 'team', 'ml')
    kubernetes.add_pod_annotation(first, 'owner', 'ml-team@example.com')
    kubernetes.use_field_path_as_env(first, env_name='POD_NAME', field_path='metadata.name')
    kubernetes.set_timeout(first, 600)
    kubernetes.empty_dir_mount(first, volume_name='cache', mount_path='/cache', medium='Memory', size_limit='1Gi')
    kubernetes.add_ephemeral_volume(first, volume_name='eph', mount_path='/eph', access_modes=['ReadWriteOnce'],
                                    size='5Gi', storage_class_name='fast', labels={'purpose': 'tmp'})
    kubernetes.set_security_context(first, run_as_user=1000, run_as_group=100)
    first.set_retry(num_retries=3, backoff_duration='30s', backoff_factor=2)
    first.set_caching_options(False)
    gpu = train(data=first.output)
    gpu.set_accelerator_type('nvidia.com/gpu').set_accelerator_limit(2)
    gpu.set_cpu_request('500m').set_cpu_limit('4').set_memory_request('2Gi').set_memory_limit('16Gi')
    gpu.set_env_variable('MODE', 'fast')
    kubernetes.add_toleration(gpu, key='nvidia.com/gpu', operator='Exists', effect='NoSchedule')
    kubernetes.add_node_selector(gpu, label_key='accelerator', label_value='a100')
    kubernetes.DeletePVC(pvc_name=pvc.outputs['name']).after(gpu)


@pytest.fixture(scope='module')
def settings_yaml(tmp_path_factory):
    return compile_pipeline(k8s_settings, tmp_path_factory.mktemp('p') / 'settings.yaml')


def test_kfp_kubernetes_settings_gpus_and_retries(settings_yaml, tmp_path):
    docs, stream, stderr = render(settings_yaml, '-p', 'secret=prod-db', '--root', '/srv/lr')
    validate(docs)
    pods = by_task(docs)
    assert set(pods) == {'work', 'train'}
    assert re.search(r'^# no pod for createpvc: a kfp-kubernetes CreatePVC', stream, re.M)
    assert '2 tasks without a pod' in stderr
    first, spec = pods['work'], pods['work']['spec']
    env = {e['name']: e for e in main(first)['env']}
    # the secret's name came from a pipeline parameter; `optional` as the SDK compiled it
    assert env['DB_PASSWORD']['valueFrom']['secretKeyRef'] == {'name': 'prod-db', 'key': 'password',
                                                               'optional': False}
    assert env['MODE']['valueFrom']['configMapKeyRef'] == {'name': 'settings', 'key': 'mode', 'optional': False}
    assert env['POD_NAME']['valueFrom']['fieldRef'] == {'fieldPath': 'metadata.name'}
    volumes = {v['name']: v for v in spec['volumes']}
    claims = {v['persistentVolumeClaim']['claimName'] for v in volumes.values() if 'persistentVolumeClaim' in v}
    # the CreatePVC's name is known at run time: a valid name standing for it, and said so
    assert claims == {'runtime-output-name-of-createpvc', 'shared-data'}
    assert "runtime-output-name-of-createpvc: output 'name' of createpvc" in \
        first['metadata']['annotations']['render.localrunner.dev/placeholders']
    mounts = {m['mountPath']: m for m in main(first)['volumeMounts']}
    assert mounts['/scratch']['subPath'] == 'run' and 'subPath' not in mounts['/data']
    assert volumes['eph']['ephemeral']['volumeClaimTemplate'] == {
        'spec': {'accessModes': ['ReadWriteOnce'], 'resources': {'requests': {'storage': '5Gi'}},
                 'storageClassName': 'fast'}, 'metadata': {'labels': {'purpose': 'tmp'}}}
    assert volumes['cache']['emptyDir'] == {'medium': 'Memory', 'sizeLimit': '1Gi'}
    assert {'/etc/tls', '/etc/settings', '/cache', '/eph'} <= set(mounts)
    assert spec['nodeSelector'] == {'cloud.google.com/gke-nodepool': 'cpu-pool'}
    assert spec['tolerations'] == [{'key': 'dedicated', 'operator': 'Equal', 'value': 'ml', 'effect': 'NoSchedule'}]
    assert spec['affinity']['nodeAffinity']['requiredDuringSchedulingIgnoredDuringExecution'] == {
        'nodeSelectorTerms': [{'matchExpressions': [{'key': 'zone', 'operator': 'In', 'values': ['a']}]}]}
    assert spec['imagePullSecrets'] == [{'name': 'regcred'}] and main(first)['imagePullPolicy'] == 'Always'
    assert spec['activeDeadlineSeconds'] == 600
    assert main(first)['securityContext'] == {'runAsUser': 1000, 'runAsGroup': 100,
                                              'capabilities': {'drop': ['ALL']}}
    assert first['metadata']['labels']['team'] == 'ml'
    assert first['metadata']['annotations']['owner'] == 'ml-team@example.com'
    notes = first['metadata']['annotations']
    assert notes['render.localrunner.dev/retries'].startswith('3: a new pod per attempt')
    assert 'backoffDuration 30s' in notes['render.localrunner.dev/retries']
    assert notes['render.localrunner.dev/caching'].startswith('off')
    gpu = pods['train']
    assert main(gpu)['resources'] == {'limits': {'cpu': '4', 'memory': str(16 * 2**30), 'nvidia.com/gpu': '2'},
                                      'requests': {'cpu': '500m', 'memory': str(2 * 2**30)}}
    assert {'name': 'MODE', 'value': 'fast'} in main(gpu)['env']
    assert gpu['spec']['nodeSelector'] == {'accelerator': 'a100'}
    # an upstream output parameter is a run-time value in the executor input
    assert executor_input(gpu)['inputs']['parameterValues'] == {'data': "<<output 'out' of work>>"}
    assert "<<output 'out' of work>>" in gpu['metadata']['annotations']['render.localrunner.dev/placeholders']


def test_a_setting_the_backend_cannot_apply_is_named_not_dropped(tmp_path):
    @dsl.pipeline(name='json-settings')
    def json_settings(tolerations: list = [{'key': 'spot', 'operator': 'Exists'}]):
        task = work(text='a')
        kubernetes.add_toleration_json(task, tolerations)
        fixed = work(text='b')
        kubernetes.add_node_selector_json(fixed, {'pool': 'big'})
        kubernetes.add_toleration_json(fixed, [{'key': 'a', 'operator': 'Exists'}, {'key': 'b', 'operator': 'Exists'}])

    path = compile_pipeline(json_settings, tmp_path / 'json.yaml')
    proc = run_cli('render', path, env=NO_CLUSTER)
    assert proc.returncode == 1, proc.stderr
    assert 'task work: kfp-kubernetes tolerations (add_toleration_json) taken from a pipeline parameter' \
        in proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    validate(docs)
    assert [d['metadata']['labels']['localrunner.task'] for d in docs] == ['work-2']
    assert docs[0]['spec']['nodeSelector'] == {'pool': 'big'}
    assert docs[0]['spec']['tolerations'] == [{'key': 'a', 'operator': 'Exists'}, {'key': 'b', 'operator': 'Exists'}]


# ----------------------------------------------------------------------------- control flow

@dsl.component(base_image='python:3.11')
def numbers(n: int) -> list:
    return list(range(n))


@dsl.component(base_image='python:3.11')
def square(x: int) -> int:
    return x * x


@dsl.component(base_image='python:3.11')
def total(values: list) -> int:
    return sum(values)


@dsl.component(base_image='python:3.11')
def report(message: str, status: dsl.PipelineTaskFinalStatus):
    print(message, status.state)


@dsl.pipeline(name='inner')
def inner(x: int) -> int:
    return square(x=x).output


@dsl.pipeline(name='control-flow')
def control_flow(n: int = 3, mode: str = 'fast', items: list = [1, 2]):
    exit_task = report(message='done')
    with dsl.ExitHandler(exit_task):
        made = numbers(n=n)
        with dsl.ParallelFor(made.output, parallelism=2) as x:
            with dsl.If(x > 1):
                squared = square(x=x)
        total(values=dsl.Collected(squared.output))
        with dsl.ParallelFor(items) as item:
            inner(x=item)
        with dsl.If(mode == 'fast'):
            square(x=n)
        with dsl.Else():
            square(x=0)


def test_loops_conditions_exit_handlers_and_nested_pipelines(tmp_path):
    path = compile_pipeline(control_flow, tmp_path / 'control.yaml')
    docs, stream, _ = render(path, '-p', 'mode=slow', '--root', '/srv/lr')
    validate(docs)
    pods = by_task(docs)
    loop = next(t for t in pods if t.endswith('/square') and '.*/condition' in t)
    nested = next(t for t in pods if t.endswith('/inner/square'))
    assert loop.startswith('exit-handler-1/for-loop-') and nested.startswith('exit-handler-1/for-loop-')
    notes = pods[loop]['metadata']['annotations']
    assert 'one pod per item of ' in notes['render.localrunner.dev/loop']
    assert "output 'Output' of exit-handler-1/numbers" in notes['render.localrunner.dev/loop']
    assert 'at most 2 at once' in notes['render.localrunner.dev/loop']
    assert notes['render.localrunner.dev/condition'].endswith('decided at run time')
    value = executor_input(pods[loop])['inputs']['parameterValues']['x']
    assert value.startswith('<<each item of exit-handler-1/for-loop-') and value.endswith('>>')
    assert f'/srv/lr/runs/control-flow-RUN-ID/tasks/{loop}/out' == main(pods[loop])['workingDir']
    # a known list is named (the IR keeps numbers as doubles); a known condition is evaluated with the given parameters
    assert 'the list [1.0, 2.0]' in pods[nested]['metadata']['annotations']['render.localrunner.dev/loop']
    branches = {t: d['metadata']['annotations']['render.localrunner.dev/condition']
                for t, d in pods.items() if '/condition-branches-' in t}
    assert len(branches) == 2
    assert sum('would NOT run' in c for c in branches.values()) == 1       # mode=slow: the If branch
    assert sum(c.endswith('-- true') for c in branches.values()) == 1      # ... and the Else branch runs
    collected = executor_input(pods['exit-handler-1/total'])['inputs']['parameterValues']['values']
    assert collected == f"<<list of output 'Output' of {loop}>>"
    exit_notes = pods['report']['metadata']['annotations']
    assert 'report runs once exit-handler-1 ended, whatever their state' in \
        exit_notes['render.localrunner.dev/exit-handler']
    assert executor_input(pods['report'])['inputs']['parameterValues']['status'] == \
        '<<final status of exit-handler-1>>'
    assert len({d['metadata']['name'] for d in docs}) == len(docs)


# ----------------------------------------------------------------------------- fidelity (Docker)

@pytest.mark.docker
def test_render_shows_what_the_backend_creates(tmp_path):
    """A real run through the backend (pods in Docker, S3 in moto) records its manifests; the
    rendered ones match them but for what render cannot know (run id, attempt, URLs) and its
    own annotations."""
    from localrunner.api import run_pipeline
    from localrunner.backends.kubernetes.staging import S3Settings
    from localrunner.engine.model import State
    from tests.support import require_base_image, require_docker
    from tests.support.k8s_doubles import DockerClusterApi
    from tests.support.s3_server import moto_server

    @dsl.container_component
    def produce(text: str, data: dsl.Output[dsl.Dataset]):
        return dsl.ContainerSpec(image=BASE_IMAGE, command=['sh', '-c', 'mkdir -p "$(dirname "$1")"; echo "$0" > "$1"'],
                                 args=[text, data.path])

    @dsl.container_component
    def consume(data: dsl.Input[dsl.Dataset], size: dsl.OutputPath(int)):
        return dsl.ContainerSpec(image=BASE_IMAGE, command=[
            'sh', '-c', 'mkdir -p "$(dirname "$1")"; wc -c < "$0" | tr -d " " > "$1"'], args=[data.path, size])

    @dsl.pipeline(name='fidelity')
    def fidelity(text: str = 'hello') -> int:
        produced = produce(text=text)
        produced.set_env_variable('GREETING', 'hi').set_cpu_limit('1').set_memory_limit('256Mi')
        kubernetes.add_pod_label(produced, 'team', 'ml')
        kubernetes.add_toleration(produced, key='spot', operator='Exists')
        return consume(data=produced.outputs['data']).outputs['size']

    path = compile_pipeline(fidelity, tmp_path / 'fidelity.yaml')
    client = require_docker()
    require_base_image(BASE_IMAGE)
    root = tmp_path / 'root'
    kubelet = DockerClusterApi(client)
    with moto_server(str(tmp_path / 'moto.log')) as endpoint:
        s3 = S3Settings(endpoint=f'http://{endpoint}', bucket='lr-fidelity', access_key='k', secret_key='s')
        from minio import Minio
        Minio(s3.endpoint, 'k', 's', secure=False, region='us-east-1').make_bucket('lr-fidelity')
        from localrunner.backends.kubernetes.backend import KubernetesBackend
        backend = KubernetesBackend(api=kubelet, s3=s3, poll_s=0.2, digest_file=False)
        try:
            result = run_pipeline(path, {'text': 'kube'}, root=str(root), backend=backend)
        finally:
            backend.close()
    assert result.state == State.SUCCEEDED, [(r.name, r.error) for r in result.records]
    assert result.outputs.parameters == {'Output': 5}
    assert not kubelet.leftovers()
    real = {m['metadata']['labels']['localrunner.task']: m for m in kubelet.manifests.values()}
    docs, _, _ = render(path, '-p', 'text=kube', '--root', str(root))
    rendered = by_task(docs)
    assert set(real) == set(rendered) == {'produce', 'consume'}

    def normal(manifest: dict, *run_ids: str) -> dict:
        text = json.dumps(manifest)
        for run_id in run_ids:
            text = text.replace(run_id, 'RUN')
        m = json.loads(text)
        m['metadata'].pop('name')
        m['metadata'].pop('namespace', None)
        m['metadata']['annotations'] = {k: v for k, v in m['metadata'].get('annotations', {}).items()
                                        if not k.startswith('render.localrunner.dev/')}
        if not m['metadata']['annotations']:
            del m['metadata']['annotations']
        for c in m['spec']['initContainers'] + m['spec']['containers']:
            c['command'][2] = re.sub(r"'[^' ]*(X-Amz-Signature|presigned)[^']*'", 'URL', c['command'][2])
        return m

    for task in real:
        # a backend made by the CLI is given the run id; this one (made here) has its own
        assert normal(rendered[task], 'fidelity-RUN-ID') == normal(real[task], result.run_id, backend.run_id), task
