"""Host files never enter the store through outputs (item 3).

An executor output may name where an artifact is: its `uri`, or KFP's `custom_path`
(Artifact.set_path). On an isolated backend (docker) the host reads only what the task
wrote: its out folder, and what it wrote at a custom_path in a folder the engine mounted for
it (its /tmp); a path naming a host file fails the task, and the host's own file of that
name is never read into the CAS. On the subprocess backend the task runs as the user: a
path it names is read as named (kfp's local runner reads it too), never written or removed.
"""
import json
import os
import secrets

import pytest
from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from tests.security.conftest import assert_nowhere, compile_to, run, task
from tests.support.docker_image import DEFAULT_TAG as IMAGE

SCRIPT = r'''
mode="$0"; target="$1"; scratch="$2"; art="$3"
out=$(dirname "$(dirname "$art")"); mkdir -p "$(dirname "$art")" "$scratch"
case "$mode" in
  uri)
    printf '{"artifacts": {"art": {"artifacts": [{"name": "art", "uri": "%s", "metadata": {}}]}}}' \
      "$target" > "$out/executor_output.json";;
  custom)
    printf '{"artifacts": {"art": {"artifacts": [{"name": "art", "uri": "%s", "metadata": {}, "custom_path": "%s"}]}}}' \
      "$art" "$target" > "$out/executor_output.json";;
  custom-over-link)
    echo from-the-task > "$scratch/written"
    ln -s "$target" "$art"
    printf '{"artifacts": {"art": {"artifacts": [{"name": "art", "uri": "%s", "metadata": {}, "custom_path": "%s"}]}}}' \
      "$art" "$scratch/written" > "$out/executor_output.json";;
esac
'''


@dsl.container_component
def names_a_path(mode: str, target: str, scratch: str, art: dsl.Output[dsl.Artifact]):
    return dsl.ContainerSpec(image=IMAGE, command=['sh', '-c', SCRIPT], args=[mode, target, scratch, art.path])


@dsl.pipeline(name='names-a-path')
def names_a_path_pipeline(mode: str, target: str, scratch: str):
    names_a_path(mode=mode, target=target, scratch=scratch).set_caching_options(False)


def _run(tmp_path, root, backend, mode, target, scratch):
    pipeline = compile_to(names_a_path_pipeline, tmp_path / 'p.yaml')
    return run(pipeline, root, '--backend', backend, '-p', f'mode={mode}', '-p', f'target={target}',
               '-p', f'scratch={scratch}')


@pytest.fixture
def outside_tmp():
    """A host file outside /tmp (where the tests' roots are), named by a task: a second sentinel."""
    path = f'/var/tmp/lr-security-{secrets.token_hex(6)}'
    token = f'HOST-FILE-{secrets.token_hex(6)}'
    with open(path, 'w') as f:
        f.write(token)
    yield path, token
    with open(path) as f:
        assert f.read() == token
    os.remove(path)


@pytest.mark.docker
@pytest.mark.parametrize('mode', ['uri', 'custom'])
def test_an_isolated_task_naming_a_host_file_fails(mode, docker_image, sentinel, root, tmp_path, outside_tmp):
    path, token = outside_tmp
    rc, result, proc = _run(tmp_path, root, 'docker', mode, path, '/tmp/scratch')
    assert rc == 1, proc.stdout + proc.stderr
    t = task(result, 'names-a-path')
    assert t['state'] == 'FAILED' and "output artifact 'art'" in t['error'] and path in t['error'], t
    assert ('uri ' + path if mode == 'uri' else 'custom_path ' + path) in t['error']
    assert_nowhere(token.encode(), root)
    sentinel.assert_unchanged()


@pytest.mark.docker
def test_an_isolated_task_naming_the_sentinel_under_its_tmp_gets_its_own_file(docker_image, sentinel, root,
                                                                              tmp_path):
    """The sentinel lies under /tmp: in the container that is the task's own /tmp (a folder
    the engine mounted), so custom_path names what the task wrote there, never the host's."""
    script_target = sentinel.secret
    pipeline = compile_to(set_path_pipeline, tmp_path / 'sp.yaml')
    rc, result, proc = run(pipeline, root, '--backend', 'docker', '-p', f'where={script_target}')
    assert rc == 0, proc.stdout + proc.stderr
    assert task(result, 'reads')['outputs']['parameters']['Output'] == 'from-the-task'
    assert_nowhere(sentinel.bytes, root)
    sentinel.assert_unchanged()


@dsl.component(base_image=IMAGE)
def sets_path(where: str, out: Output[Dataset]):
    import os
    out.set_path(where)                  # kfp's Artifact.set_path: the launcher uploads from there
    os.makedirs(os.path.dirname(out.path), exist_ok=True)
    with open(out.path, 'w') as f:
        f.write('from-the-task')


@dsl.component(base_image=IMAGE)
def reads(data: Input[Dataset]) -> str:
    with open(data.path) as f:
        return f.read()


@dsl.pipeline(name='set-path')
def set_path_pipeline(where: str):
    reads(data=sets_path(where=where).outputs['out'])


@pytest.mark.docker
def test_set_path_to_tmp_is_collected_from_the_container(docker_image, sentinel, root, tmp_path):
    """kfp's set_path('/tmp/...') keeps working in a container: the host's /tmp file of the
    same name (a decoy here) is neither read nor touched."""
    where = f'/tmp/lr-set-path-{secrets.token_hex(6)}'
    with open(where, 'w') as f:
        f.write(sentinel.token)
    try:
        pipeline = compile_to(set_path_pipeline, tmp_path / 'sp.yaml')
        rc, result, proc = run(pipeline, root, '--backend', 'docker', '-p', f'where={where}')
        assert rc == 0, proc.stdout + proc.stderr
        assert task(result, 'reads')['outputs']['parameters']['Output'] == 'from-the-task'
        with open(where) as f:
            assert f.read() == sentinel.token
        assert_nowhere(sentinel.bytes, root)
    finally:
        os.remove(where)
    sentinel.assert_unchanged()


@pytest.mark.parametrize('mode', ['uri', 'custom'])
def test_a_host_task_naming_a_file_of_the_user_reads_it_as_named(mode, sentinel, root, tmp_path):
    rc, result, proc = _run(tmp_path, root, 'subprocess', mode, sentinel.secret, str(tmp_path / 'scratch'))
    assert rc == 0, proc.stdout + proc.stderr
    [art] = task(result, 'names-a-path')['outputs']['artifacts']['art']
    if mode == 'uri':
        assert art['path'] == sentinel.secret           # the artifact is the user's file, read where it is
    else:
        assert art['path'].startswith(root) and open(art['path']).read() == sentinel.token + '\n'
    sentinel.assert_unchanged()                          # read, never written nor removed


@pytest.mark.parametrize('backend', ['subprocess', pytest.param('docker', marks=pytest.mark.docker)])
def test_a_custom_path_copy_replaces_a_planted_link_never_writes_through_it(backend, sentinel, root, tmp_path,
                                                                           request):
    if backend == 'docker':
        request.getfixturevalue('docker_image')
    scratch = '/tmp/scratch' if backend == 'docker' else str(tmp_path / 'scratch')
    rc, result, proc = _run(tmp_path, root, backend, 'custom-over-link', sentinel.secret, scratch)
    assert rc == 0, proc.stdout + proc.stderr
    [art] = task(result, 'names-a-path')['outputs']['artifacts']['art']
    assert not os.path.islink(art['path']) and open(art['path']).read() == 'from-the-task\n'
    sentinel.assert_unchanged()


def test_executor_output_names_a_uri_outside_for_an_isolated_task(tmp_path, sentinel):
    """The rule itself (executor_io.read_outputs with an isolated Collect), on real files."""
    from localrunner.engine.executor_io import Collect, OutputError, output_artifacts, read_outputs
    from localrunner.layout import RootLayout
    from tests.ir_views import component_view
    component = component_view({'outputDefinitions': {'artifacts': {'art': {'artifactType': {'schemaTitle': 'system.Artifact'}}}}})
    layout = RootLayout(str(tmp_path / 'root')).run('r').task('t')
    os.makedirs(layout.out)
    arts = output_artifacts(component, layout)
    with open(layout.executor_output, 'w') as f:
        json.dump({'artifacts': {'art': {'artifacts': [{'uri': sentinel.secret}]}}}, f)
    with pytest.raises(OutputError, match='outside the task'):
        read_outputs(component, arts, {}, layout.executor_output, Collect(out=layout.out, isolated=True))
    read_outputs(component, arts, {}, layout.executor_output, Collect(out=layout.out))   # as the user: allowed
    assert arts['art'][0].uri == sentinel.secret
    sentinel.assert_unchanged()


def test_a_custom_path_folder_in_a_mounted_folder_is_copied_and_its_links_checked(tmp_path, sentinel):
    """custom_path /tmp/model (a folder) of an isolated task: read from the host folder the
    engine mounted at /tmp, links inside kept when they stay there, refused when they leave."""
    from localrunner.engine.executor_io import Collect, OutputError, output_artifacts, read_outputs
    from localrunner.layout import RootLayout
    from tests.ir_views import component_view
    component = component_view({'outputDefinitions': {'artifacts': {'art': {'artifactType': {'schemaTitle': 'system.Model'}}}}})
    layout = RootLayout(str(tmp_path / 'root')).run('r').task('t')
    os.makedirs(os.path.join(layout.out, 'artifacts'))
    model = os.path.join(layout.tmp(), 'model')
    os.makedirs(os.path.join(model, 'v1'))
    with open(os.path.join(model, 'v1', 'weights'), 'w') as f:
        f.write('w1')
    os.symlink('v1', os.path.join(model, 'latest'))
    with open(layout.executor_output, 'w') as f:
        json.dump({'artifacts': {'art': {'artifacts': [{'uri': '', 'custom_path': '/tmp/model'}]}}}, f)
    collect = Collect(out=layout.out, isolated=True, mounted={'/tmp': layout.tmp()})
    arts = output_artifacts(component, layout)
    read_outputs(component, arts, {}, layout.executor_output, collect)
    copied = arts['art'][0].path
    assert copied.startswith(layout.out) and open(os.path.join(copied, 'latest', 'weights')).read() == 'w1'
    assert os.readlink(os.path.join(copied, 'latest')) == 'v1'
    os.symlink(sentinel.secret, os.path.join(model, 'leak'))
    with pytest.raises(OutputError, match=r"custom_path.*model/leak is a link to .*sentinel/secret.txt"):
        read_outputs(component, output_artifacts(component, layout), {}, layout.executor_output, collect)
    sentinel.assert_unchanged()
