"""placement.py: whether a task runs faithfully on this machine or only in its image."""
import pytest

from localrunner.engine import placement
from tests.ir_views import container_view


def image_need(container: dict):
    """placement.image_need of a container as the IR writes it."""
    return placement.image_need(container_view(container))


# what kfp 2.17 compiles @dsl.component into (a pip prologue, then the function's source)
KFP_PROLOGUE = ('\nif ! [ -x "$(command -v pip)" ]; then\n    python3 -m ensurepip || python3 -m ensurepip --user'
                ' || apt-get install python3-pip\nfi\n\nPIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip install'
                ' --quiet --no-warn-script-location \'kfp==2.17.3\' \'--no-deps\' \'typing-extensions>=3.7.4,<5;'
                ' python_version<"3.9"\' && "$0" "$@"\n')
LIGHTWEIGHT = {
    'image': 'python:3.11',
    'command': ['sh', '-c', KFP_PROLOGUE, 'sh', '-ec',
                'program_path=$(mktemp -d)\n\nprintf "%s" "$0" > "$program_path/ephemeral_component.py"\n\n'
                '_KFP_RUNTIME=true python3 -m kfp.dsl.executor_main --component_module_path '
                '"$program_path/ephemeral_component.py" "$@"\n',
                '\nimport kfp\nfrom kfp import dsl\n\ndef c(x: str) -> str: return x\n'],
    'args': ['--executor_input', '{{$}}', '--function_to_execute', 'c'],
}


def test_a_lightweight_component_runs_on_the_host_whatever_its_base_image():
    assert image_need(LIGHTWEIGHT) is None
    assert image_need({**LIGHTWEIGHT, 'image': 'nvcr.io/nvidia/pytorch:24.01-py3'}) is None


@pytest.mark.parametrize('image', ['python:3.11', 'python', 'python:3.12-slim-bookworm', 'library/python:3.9',
                                   'docker.io/library/python:3.10-alpine', 'docker.io/python:3.12',
                                   'python@sha256:' + 'a' * 64, 'python:3.11@sha256:' + '0' * 64])
def test_a_python_base_image_running_python_or_sh_needs_no_image(image):
    assert image_need({'image': image, 'command': ['sh', '-c', 'echo "$0"'], 'args': ['hi']}) is None
    assert image_need({'image': image, 'command': ['python3', '-c', 'print(1)']}) is None


@pytest.mark.parametrize('image', ['alpine:3.19', 'busybox', 'gcr.io/team/python:3.11', 'mypython:3',
                                   'python-extra:1', 'ghcr.io/library/python:3', 'registry.local:5000/python:3.11'])
def test_any_other_image_is_needed_and_named(image):
    why = image_need({'image': image, 'command': ['sh', '-c', 'echo hi']})
    assert why is not None and image in why and '(sh)' in why


def test_a_command_from_the_image_entrypoint():
    why = image_need({'image': 'alpine:3', 'args': ['echo', 'hi']})
    assert 'image entrypoint' in why and 'alpine:3' in why


def test_a_containerized_python_component_needs_its_image():
    """`kfp component build`: the code lives in the image; no --component_module_path."""
    built = {'image': 'registry.example/team/comp:v3', 'command': ['python3', '-m', 'kfp.dsl.executor_main'],
             'args': ['--executor_input', '{{$}}', '--function_to_execute', 'train']}
    assert 'containerized Python component' in image_need(built)
    # even on a plain python base image: the module isn't on this machine
    assert 'containerized Python component' in image_need({**built, 'image': 'python:3.11'})
