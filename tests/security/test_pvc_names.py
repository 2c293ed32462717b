"""PVC names computed by an upstream task (item 5).

A claim name is a DNS-1123 name and names a folder under <root>/pvcs (or one given with
--pvc). A CreatePVC, mount_pvc or DeletePVC whose name an upstream task computed as
'../../sentinel', an absolute path, 'UPPER' or 300 characters fails that task with a
one-line reason; nothing outside the root is made or removed. DeletePVC never removes a
folder the user mapped in with --pvc.
"""
import os

import pytest
from kfp import dsl, kubernetes

from tests.security.conftest import compile_to, run, task
from tests.support.docker_image import DEFAULT_TAG as IMAGE


@dsl.container_component
def claim_name(name: str, out: dsl.OutputPath(str)):
    return dsl.ContainerSpec(image=IMAGE, command=['sh', '-c', 'mkdir -p "$(dirname "$1")"; printf %s "$0" > "$1"'],
                             args=[name, out])


@dsl.container_component
def uses_claim(out: dsl.OutputPath(str)):
    return dsl.ContainerSpec(image=IMAGE, command=['sh', '-c', 'mkdir -p "$(dirname "$0")"; echo ran > "$0"'],
                             args=[out])


@dsl.pipeline(name='pvc-create')
def create_pipeline(name: str):
    kubernetes.CreatePVC(pvc_name=claim_name(name=name).outputs['out'], access_modes=['ReadWriteOnce'],
                         size='1Gi')


@dsl.pipeline(name='pvc-mount')
def mount_pipeline(name: str):
    kubernetes.mount_pvc(uses_claim(), pvc_name=claim_name(name=name).outputs['out'], mount_path='/data')


@dsl.pipeline(name='pvc-delete')
def delete_pipeline(name: str):
    kubernetes.DeletePVC(pvc_name=claim_name(name=name).outputs['out'])


PIPELINES = {'createpvc': create_pipeline, 'uses-claim': mount_pipeline, 'deletepvc': delete_pipeline}


def _names(sentinel):
    return {'relative': os.path.join('..', '..', os.path.basename(sentinel.dir)),   # <root>/pvcs/<name>
            'absolute': sentinel.dir, 'upper': 'UPPER', 'long': 'x' * 300,
            'inner-dotdot': 'a/../../../' + os.path.basename(sentinel.dir)}


@pytest.mark.parametrize('kind', ['relative', 'absolute', 'upper', 'long', 'inner-dotdot'])
@pytest.mark.parametrize('which', sorted(PIPELINES))
def test_a_hostile_claim_name_from_an_upstream_task_fails_that_task(which, kind, sentinel, root, tmp_path):
    name = _names(sentinel)[kind]
    pipeline = compile_to(PIPELINES[which], tmp_path / 'pvc.yaml')
    rc, result, proc = run(pipeline, root, '-p', f'name={name}')
    assert rc == 1, proc.stdout + proc.stderr
    assert task(result, 'claim-name')['state'] == 'SUCCEEDED'
    t = task(result, which)
    assert t['state'] == 'FAILED', t
    assert t['error'].startswith('refused: PVC name') and 'DNS-1123' in t['error'] and '\n' not in t['error']
    pvcs = os.path.join(root, 'pvcs')
    assert not os.path.exists(pvcs) or os.listdir(pvcs) == []
    assert sorted(os.listdir(tmp_path)) == ['pvc.yaml', 'root', 'sentinel']
    sentinel.assert_unchanged()


def test_delete_pvc_never_removes_a_folder_mapped_with_pvc(sentinel, root, tmp_path):
    claim = tmp_path / 'claim'
    claim.mkdir()
    (claim / 'data.txt').write_text('the user keeps this')
    pipeline = compile_to(delete_pipeline, tmp_path / 'pvc.yaml')
    rc, result, proc = run(pipeline, root, '-p', 'name=mapped', '--pvc', f'mapped={claim}')
    assert rc == 0, proc.stdout + proc.stderr
    assert task(result, 'deletepvc')['state'] == 'SUCCEEDED'
    assert (claim / 'data.txt').read_text() == 'the user keeps this'
    sentinel.assert_unchanged()


def test_a_claim_under_the_root_is_made_and_deleted_there(sentinel, root, tmp_path):
    pipeline = compile_to(create_pipeline, tmp_path / 'c.yaml')
    rc, result, proc = run(pipeline, root, '-p', 'name=good-claim')
    assert rc == 0, proc.stdout + proc.stderr
    assert os.path.isdir(os.path.join(root, 'pvcs', 'good-claim'))
    pipeline = compile_to(delete_pipeline, tmp_path / 'd.yaml')
    rc, result, proc = run(pipeline, root, '-p', 'name=good-claim')
    assert rc == 0, proc.stdout + proc.stderr
    assert not os.path.exists(os.path.join(root, 'pvcs', 'good-claim'))
    sentinel.assert_unchanged()
