"""A container component's image is not the host: which tasks need their image is decided when
the run is planned; the default backend says so up front and names the fix when such a task
fails; `--backend auto` sends exactly those tasks to Docker and keeps the rest on the host."""
import pytest
from kfp import dsl

from localrunner.engine import placement
from tests.helpers import compile_pipeline, run_pipeline_file, states, task
from tests.ir_views import container_view
from tests.support import require_base_image, require_docker
from tests.support.docker_image import DEFAULT_TAG as IMAGE


def image_need(container: dict):
    """placement.image_need of a container as the IR writes it."""
    return placement.image_need(container_view(container))


def test_what_needs_an_image():
    lightweight = {'image': 'python:3.11', 'command': ['sh', '-c', 'python3 -m pip install kfp==2.17.3 && "$0" "$@"',
                                                       'sh', '-ec', 'python3 -m kfp.dsl.executor_main'], 'args': []}
    assert image_need(lightweight) is None
    assert image_need({'image': 'python:3.11-slim', 'command': ['sh', '-c', 'echo hi']}) is None
    built = {'image': 'registry.example/team/comp:v3', 'command': ['python3', '-m', 'kfp.dsl.executor_main'],
             'args': ['--executor_input', '{{$}}', '--function_to_execute', 'train']}
    assert 'containerized Python component' in image_need(built)
    assert 'alpine' in image_need({'image': 'alpine:3.19', 'command': ['sh', '-c', '[ "$0" == x ]']})


@dsl.container_component
def only_in_image(marker: str):
    # true inside the image (the host's marker file is not mounted), false on this machine
    return dsl.ContainerSpec(image=IMAGE, command=['sh', '-c', 'test ! -e "$0"'], args=[marker])


@dsl.component
def on_host(marker: str) -> bool:
    import os
    return os.path.exists(marker)


@dsl.pipeline(name='placement')
def placement_pipeline(marker: str):
    only_in_image(marker=marker)
    on_host(marker=marker)


@pytest.fixture
def compiled(tmp_path):
    marker = tmp_path / 'host-only-marker'
    marker.write_text('x')
    return compile_pipeline(placement_pipeline, tmp_path / 'p.yaml'), str(marker)


def test_the_default_backend_warns_up_front_and_names_the_fix(compiled, tmp_path):
    path, marker = compiled
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', '-p', f'marker={marker}')
    assert rc == 1 and 'Traceback' not in proc.stderr
    assert any('need their image' in w and 'exec-only-in-image' in w for w in result['warnings'])
    failed = task(result, 'only-in-image')
    assert failed['state'] == 'FAILED' and '--backend auto' in failed['error'] and IMAGE in failed['error']
    assert task(result, 'on-host')['outputs']['parameters']['Output'] is True


@pytest.mark.docker
def test_auto_sends_only_the_image_task_to_docker(compiled, tmp_path):
    require_docker()
    require_base_image()
    path, marker = compiled
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', '--backend', 'auto', '-p', f'marker={marker}')
    assert rc == 0, proc.stdout + proc.stderr
    assert states(result) == {'only-in-image': 'SUCCEEDED', 'on-host': 'SUCCEEDED'}
    assert task(result, 'on-host')['outputs']['parameters']['Output'] is True     # ran on this machine
    assert not any('need their image' in w for w in result['warnings'])
