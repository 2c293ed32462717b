"""The engine on `--backend docker`, against the real Docker engine (offline base image)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from tests.helpers import compile_pipeline, run_pipeline_file, states, task
from tests.support import require_base_image, require_docker
from tests.support.docker_image import DEFAULT_TAG

IMAGE = DEFAULT_TAG
EXAMPLE = os.path.join(os.path.dirname(__file__), '..', 'examples', 'ml_pipeline.yaml')


@pytest.fixture(scope='module')
def docker_client():
    client = require_docker()
    require_base_image()
    return client


def _our_containers(client, run_id=None):
    filters = {'label': 'localrunner.run' + (f'={run_id}' if run_id else '')}
    return client.containers.list(all=True, ignore_removed=True, filters=filters)


def test_example_pipeline_on_docker_then_cached(docker_client, tmp_path):
    root = tmp_path / 'root'
    repo = os.path.join(os.path.dirname(__file__), '..')
    args = ['--backend', 'docker', '--image-map', f'python:3.11-slim={IMAGE}']
    rc, first, proc = run_pipeline_file(os.path.abspath(EXAMPLE), root, *args, cwd=repo)
    assert rc == 0, proc.stdout + proc.stderr
    st = states(first)
    assert st['condition-1/deploy-model'] == 'SUCCEEDED'
    metrics = task(first, 'evaluate-model')['outputs']['artifacts']['eval_metrics'][0]['metadata']
    assert metrics['test_accuracy'] >= 0.85
    rc, second, proc = run_pipeline_file(os.path.abspath(EXAMPLE), root, *args, cwd=repo)
    assert rc == 0
    assert {n: s for n, s in states(second).items() if n != 'importer'} == {
        'preprocess-data': 'CACHED', 'train-model': 'CACHED', 'evaluate-model': 'CACHED',
        'condition-1/deploy-model': 'SUCCEEDED'}     # set_caching_options(False): runs every time
    assert not _our_containers(docker_client, first['run_id'])
    assert not _our_containers(docker_client, second['run_id'])


@dsl.component(base_image=IMAGE)
def produce(out: Output[Dataset]):
    with open(out.path, 'w') as f:
        f.write('from-container')
    out.metadata['n'] = 1


@dsl.container_component
def consume(text: str, data: Input[Dataset], out_text: dsl.OutputPath(str), out_art: Output[Dataset]):
    return dsl.ContainerSpec(
        image=IMAGE,
        command=['sh', '-c', '''
            printf '%s|%s' "$0" "$(cat "$1")" > "$3"
            mkdir -p "$(dirname "$4")"; echo "$2" > "$4"
            if echo x > "$1" 2>/dev/null; then echo WRITABLE; exit 3; fi
        '''],
        args=[text, data.path, data.metadata, out_text, out_art.path])


@dsl.pipeline(name='docker-io')
def docker_io(text: str = 'hello'):
    p = produce()
    consume(text=text, data=p.outputs['out'])


def test_container_io_with_read_only_inputs(docker_client, tmp_path):
    path = compile_pipeline(docker_io, tmp_path / 'io.yaml')
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', '--backend', 'docker')
    assert rc == 0, proc.stdout + proc.stderr
    out = task(result, 'consume')['outputs']
    assert out['parameters']['out_text'] == 'hello|from-container'
    assert json.loads(open(out['artifacts']['out_art'][0]['path']).read()) == {'n': 1}


@dsl.container_component
def exits(code: int):
    return dsl.ContainerSpec(image=IMAGE, command=['sh', '-c', 'echo "about to fail"; exit "$0"'], args=[code])


@dsl.pipeline(name='docker-fail')
def docker_fail():
    exits(code=7)


def test_failing_container_reports_failed(docker_client, tmp_path):
    path = compile_pipeline(docker_fail, tmp_path / 'f.yaml')
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', '--backend', 'docker')
    assert rc == 1 and result['state'] == 'FAILED'
    t = task(result, 'exits')
    assert t['state'] == 'FAILED' and 'code 7' in t['error']
    assert 'about to fail' in proc.stdout
    assert not _our_containers(docker_client, result['run_id'])


@dsl.container_component
def long_sleep():
    return dsl.ContainerSpec(image=IMAGE, command=['sleep', '300'])


@dsl.pipeline(name='docker-interrupt')
def docker_interrupt():
    long_sleep()


def test_ctrl_c_leaves_no_container(docker_client, tmp_path):
    path = compile_pipeline(docker_interrupt, tmp_path / 'i.yaml')
    result_path = tmp_path / 'r.json'
    proc = subprocess.Popen([sys.executable, '-m', 'localrunner.cli', 'run', path, '--backend', 'docker',
                             '--root', str(tmp_path / 'root'), '--result-json', str(result_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    # this runner's container (the daemon is shared: another run's long-sleep is not ours)
    while not [c for c in _our_containers(docker_client) if c.status == 'running'
               and c.labels.get('localrunner.task') == 'long-sleep'
               and c.labels.get('localrunner.runner.pid') == str(proc.pid)]:
        assert time.time() < deadline and proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=90)[0].decode()
    assert proc.returncode == 130, out
    result = json.loads(result_path.read_text())
    assert result['state'] == 'CANCELED'
    assert not _our_containers(docker_client, result['run_id'])


@dsl.component(base_image=IMAGE)
def read_secret(mount: str) -> str:
    import os
    return os.environ.get('DB_USER', '<unset>') + '|' + open(os.path.join(mount, 'password')).read()


@dsl.pipeline(name='secrets')
def secret_pipeline():
    from kfp import kubernetes
    t = read_secret(mount='/mnt/creds')
    kubernetes.use_secret_as_env(t, secret_name='db', secret_key_to_env={'user': 'DB_USER'})
    kubernetes.use_secret_as_volume(t, secret_name='db', mount_path='/mnt/creds')


def test_kubernetes_secret_from_local_folder(docker_client, tmp_path):
    secret = tmp_path / 'db'
    secret.mkdir()
    (secret / 'user').write_text('admin')
    (secret / 'password').write_text('s3cret')
    path = compile_pipeline(secret_pipeline, tmp_path / 's.yaml')
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', '--backend', 'docker', '--secret', f'db={secret}')
    assert rc == 0, proc.stdout + proc.stderr
    assert task(result, 'read-secret')['outputs']['parameters']['Output'] == 'admin|s3cret'


@dsl.component(base_image=IMAGE)
def write_shared(text: str):
    with open('/data/shared.txt', 'w') as f:
        f.write(text)


@dsl.component(base_image=IMAGE)
def read_shared() -> str:
    return open('/data/shared.txt').read()


@dsl.pipeline(name='pvc-share')
def pvc_pipeline(text: str = 'via-pvc'):
    from kfp import kubernetes
    pvc = kubernetes.CreatePVC(pvc_name='shared-claim', access_modes=['ReadWriteOnce'], size='1Gi',
                               storage_class_name='standard')
    w = write_shared(text=text)
    kubernetes.mount_pvc(w, pvc_name=pvc.outputs['name'], mount_path='/data')
    r = read_shared().after(w)
    kubernetes.mount_pvc(r, pvc_name=pvc.outputs['name'], mount_path='/data')


def test_pvc_mounts_map_to_a_host_folder(docker_client, tmp_path):
    host = tmp_path / 'claim'
    path = compile_pipeline(pvc_pipeline, tmp_path / 'pvc.yaml')
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', '--backend', 'docker',
                                         '--pvc', f'shared-claim={host}')
    assert rc == 0, proc.stdout + proc.stderr
    assert task(result, 'read-shared')['outputs']['parameters']['Output'] == 'via-pvc'
    assert (host / 'shared.txt').read_text() == 'via-pvc'


@dsl.container_component
def image_marker(out: dsl.OutputPath(str)):
    return dsl.ContainerSpec(image='localrunner-test/rebuilt:latest', command=['sh', '-c', 'cat /marker > "$0"'],
                             args=[out])


@dsl.pipeline(name='rebuilt-image')
def rebuilt_pipeline():
    image_marker()


def _build_marker_image(client, text):
    container = client.containers.create(IMAGE, ['sh', '-c', f'echo {text} > /marker'])
    try:
        container.start()
        container.wait()
        container.commit('localrunner-test/rebuilt', 'latest')
    finally:
        container.remove(force=True)


def test_image_rebuilt_under_the_same_tag_is_a_miss(docker_client, tmp_path):
    path = compile_pipeline(rebuilt_pipeline, tmp_path / 'rb.yaml')
    _build_marker_image(docker_client, 'one')
    rc, first, proc = run_pipeline_file(path, tmp_path / 'root', '--backend', 'docker')
    assert rc == 0, proc.stdout + proc.stderr
    rc, again, _ = run_pipeline_file(path, tmp_path / 'root', '--backend', 'docker')
    assert states(again)['image-marker'] == 'CACHED'
    _build_marker_image(docker_client, 'two')
    rc, rebuilt, _ = run_pipeline_file(path, tmp_path / 'root', '--backend', 'docker')
    assert states(rebuilt)['image-marker'] == 'SUCCEEDED'
    assert task(rebuilt, 'image-marker')['outputs']['parameters']['out'].strip() == 'two'


@dsl.component(base_image=IMAGE)
def slow_with_scratch(seconds: float) -> str:
    import os
    import time
    with open('/scratch/tmp.txt', 'w') as f:
        f.write('scratch')
    time.sleep(seconds)
    return open('/scratch/tmp.txt').read()


@dsl.pipeline(name='deadline')
def deadline_pipeline(seconds: float = 0.0):
    from kfp import kubernetes
    t = slow_with_scratch(seconds=seconds)
    kubernetes.set_timeout(t, 3)
    kubernetes.empty_dir_mount(t, volume_name='scratch', mount_path='/scratch')


def test_timeout_and_empty_dir_on_docker(docker_client, tmp_path):
    path = compile_pipeline(deadline_pipeline, tmp_path / 'd.yaml')
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', '--backend', 'docker')
    assert rc == 0, proc.stdout + proc.stderr
    assert task(result, 'slow-with-scratch')['outputs']['parameters']['Output'] == 'scratch'
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', '--backend', 'docker', '-p', 'seconds=60')
    assert rc == 1
    t = task(result, 'slow-with-scratch')
    assert t['state'] == 'FAILED' and 'timed out after 3s' in t['error']
    assert not _our_containers(docker_client, result['run_id'])
