"""What enters the CAS is created 0644 at most and never more readable than its source
(item 3, "everywhere"): a task's private output (0600) must not become readable by every
user of the machine once stored. The library side is branch cache-hardening."""
import os
import stat

import pytest
from kfp import dsl

from tests.security.conftest import compile_to, run, task
from tests.support.docker_image import DEFAULT_TAG as IMAGE


@dsl.container_component
def private_output(mode: str, art: dsl.Output[dsl.Artifact]):
    return dsl.ContainerSpec(
        image=IMAGE,
        command=['sh', '-c', 'mkdir -p "$(dirname "$1")"; echo "private $0" > "$1"; chmod "$0" "$1"'],
        args=[mode, art.path])


@dsl.pipeline(name='private')
def private_pipeline(mode: str):
    private_output(mode=mode)


def _stored_mode(root: str, result: dict) -> int:
    [art] = task(result, 'private-output')['outputs']['artifacts']['art']
    digest = art['digest']
    return stat.S_IMODE(os.stat(os.path.join(root, 'cache', 'cas', 'objects', digest[:2], digest[2:])).st_mode)


def _all_modes(root: str):
    objects = os.path.join(root, 'cache', 'cas', 'objects')
    for folder, _, files in os.walk(objects):
        for name in files:
            yield os.path.join(folder, name), stat.S_IMODE(os.lstat(os.path.join(folder, name)).st_mode)


def test_cas_objects_are_0644_at_most(sentinel, root, tmp_path):
    pipeline = compile_to(private_pipeline, tmp_path / 'p.yaml')
    rc, result, proc = run(pipeline, root, '-p', 'mode=0755')
    assert rc == 0, proc.stdout + proc.stderr
    modes = dict(_all_modes(root))
    assert modes
    for path, mode in modes.items():
        assert mode & ~0o644 == 0, f'{path}: {oct(mode)}'
    sentinel.assert_unchanged()


def test_a_private_output_is_not_stored_readable_by_others(sentinel, root, tmp_path):
    pipeline = compile_to(private_pipeline, tmp_path / 'p.yaml')
    rc, result, proc = run(pipeline, root, '-p', 'mode=0600')
    assert rc == 0, proc.stdout + proc.stderr
    assert _stored_mode(root, result) & 0o077 == 0
    sentinel.assert_unchanged()
