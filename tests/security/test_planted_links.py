"""Links a task plants are never followed by the host (item 2).

A task replaces what the host will read — executor_output.json, an output parameter file, an
output artifact, the artifacts folder itself, a link inside a folder output, its NEXT
attempt's log and out folder (set_retry) — with a symlink to the sentinel folder outside the
root. The host must refuse (the task FAILS naming the output and where the link pointed),
never read the sentinel's bytes into the result or the CAS, never write or delete through
the link. The same pipeline runs on the subprocess backend and, marked docker, in a real
container (where the task can write only its out folder).
"""
import json
import os

import pytest
from kfp import dsl

from tests.security.conftest import assert_nowhere, compile_to, files_under, run, task
from tests.support.docker_image import DEFAULT_TAG as IMAGE

SCRIPT = r'''
mode="$0"; sentinel="$1"; state="$2"; param="$3"; art="$4"
outdir=$(dirname "$(dirname "$param")"); taskdir=$(dirname "$outdir")
mkdir -p "$(dirname "$param")" "$(dirname "$art")"
case "$mode" in
  executor-output)
    echo legit > "$param"; echo a > "$art"
    ln -s "$sentinel/executor_output.json" "$outdir/executor_output.json";;
  parameter)
    ln -s "$sentinel/secret.txt" "$param"; echo a > "$art";;
  artifact)
    echo legit > "$param"; ln -s "$sentinel/secret.txt" "$art";;
  folder)
    echo legit > "$param"; mkdir "$art"; echo ok > "$art/a"; ln -s a "$art/latest"
    mkdir "$art/sub"; ln -s "$sentinel/secret.txt" "$art/sub/leak";;
  folder-relative)
    echo legit > "$param"; mkdir "$art"; echo ok > "$art/a"
    ln -s ../../../../../../../../sentinel/secret.txt "$art/leak";;
  folder-inside)
    echo legit > "$param"; mkdir -p "$art/sub"; echo ok > "$art/a"; ln -s a "$art/latest"; ln -s ../a "$art/sub/up";;
  artifacts-folder)
    echo legit > "$param"; rm -rf "$(dirname "$art")"; ln -s "$sentinel/inner" "$(dirname "$art")";;
  retry)
    if [ ! -e "$state/attempted" ]; then
      touch "$state/attempted"
      ln -s "$sentinel/executor_output.json" "$outdir/executor_output.json"
      rm -rf "$(dirname "$param")"; ln -s "$sentinel/inner" "$(dirname "$param")"
      rm -rf "$(dirname "$art")"; ln -s "$sentinel" "$(dirname "$art")"
      mkdir -p "$taskdir/logs"; ln -s "$sentinel/secret.txt" "$taskdir/logs/attempt-2.log"
      echo attempt-1-planted; exit 1
    fi
    echo attempt-2-output; echo legit > "$param"; echo a > "$art";;
esac
'''


@dsl.container_component
def planter(mode: str, sentinel: str, state: str, out: dsl.OutputPath(str), art: dsl.Output[dsl.Artifact]):
    return dsl.ContainerSpec(image=IMAGE, command=['sh', '-c', SCRIPT],
                             args=[mode, sentinel, state, out, art.path])


@dsl.pipeline(name='planted')
def planted_pipeline(mode: str, sentinel: str, state: str):
    from kfp import kubernetes
    t = planter(mode=mode, sentinel=sentinel, state=state).set_caching_options(False)
    t.set_retry(num_retries=1, backoff_duration='0s')
    # a folder that outlives an attempt (the task's only way to know it is retried in a container)
    kubernetes.empty_dir_mount(t, volume_name='state', mount_path='/state')


BACKENDS = ['subprocess', pytest.param('docker', marks=pytest.mark.docker)]


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path):
    if request.param == 'docker':
        request.getfixturevalue('docker_image')
        return request.param, '/state'
    state = tmp_path / 'state'
    state.mkdir()
    return request.param, str(state)


def _run(mode, backend, sentinel, root, tmp_path):
    name, state = backend
    pipeline = compile_to(planted_pipeline, tmp_path / 'planted.yaml')
    return run(pipeline, root, '--backend', name, '-p', f'mode={mode}', '-p', f'sentinel={sentinel.dir}',
               '-p', f'state={state}')


def _failed(result, *needles):
    t = task(result, 'planter')
    assert t['state'] == 'FAILED', t
    for needle in needles:
        assert needle in t['error'], t['error']
    assert '\n' not in t['error']
    return t


def _nothing_of_the_sentinel_taken(result, root, sentinel):
    assert sentinel.token not in json.dumps(result)
    assert_nowhere(sentinel.bytes, os.path.join(root, 'cache'))


@pytest.mark.parametrize('mode,needles', [
    ('executor-output', ['executor output', 'executor_output.json is a link to', 'sentinel/executor_output.json']),
    ('parameter', ["output parameter 'out'", 'is a link to', 'sentinel/secret.txt']),
    ('artifact', ["output artifact 'art'", 'is a link to', 'sentinel/secret.txt']),
    ('folder', ["output artifact 'art'", 'art/sub/leak is a link to', 'sentinel/secret.txt', 'out folder']),
    ('folder-relative', ["output artifact 'art'", 'art/leak is a link to ../', 'out folder']),
    ('artifacts-folder', ["output artifact 'art'", 'artifacts is a link to', 'sentinel/inner']),
])
def test_a_link_where_the_host_reads_fails_the_task(mode, needles, backend, sentinel, root, tmp_path):
    rc, result, proc = _run(mode, backend, sentinel, root, tmp_path)
    assert rc == 1, proc.stdout + proc.stderr
    t = _failed(result, *needles)
    assert t['attempts'] == 2            # retried (an output error is), refused again
    _nothing_of_the_sentinel_taken(result, root, sentinel)
    sentinel.assert_unchanged()


def test_links_that_stay_inside_a_folder_output_are_kept(backend, sentinel, root, tmp_path):
    rc, result, proc = _run('folder-inside', backend, sentinel, root, tmp_path)
    assert rc == 0, proc.stdout + proc.stderr
    [art] = task(result, 'planter')['outputs']['artifacts']['art']
    assert os.readlink(os.path.join(art['path'], 'latest')) == 'a'
    assert open(os.path.join(art['path'], 'sub', 'up')).read() == 'ok\n'
    sentinel.assert_unchanged()


def test_links_planted_for_the_next_attempt_are_not_followed(backend, sentinel, root, tmp_path):
    """Attempt 1 plants links where attempt 2's executor output, parameters, artifacts and log
    will be, then fails; attempt 2 starts from a fresh out folder and its own log."""
    rc, result, proc = _run('retry', backend, sentinel, root, tmp_path)
    assert rc == 0, proc.stdout + proc.stderr
    t = task(result, 'planter')
    assert t['state'] == 'SUCCEEDED' and t['attempts'] == 2, t
    assert t['outputs']['parameters']['out'].strip() == 'legit'
    [art] = t['outputs']['artifacts']['art']
    assert open(art['path']).read() == 'a\n'
    first, second = t['logs']
    for log in (first, second):
        assert not os.path.islink(log) and os.path.isfile(log)
    assert 'attempt-1-planted' in open(first).read()
    assert 'attempt-2-output' in open(second).read()
    _nothing_of_the_sentinel_taken(result, root, sentinel)
    sentinel.assert_unchanged()


WRITE_EVERYWHERE = r'''
sentinel="$0"; param="$1"; mark=PW; mark="${mark}NED"     # the mark itself is not in the IR
outdir=$(dirname "$(dirname "$param")"); taskdir=$(dirname "$outdir")
root=$(dirname "$(dirname "$(dirname "$(dirname "$taskdir")")")")         # tasks/<t> -> run -> runs -> root
for p in "$sentinel/secret.txt" "$sentinel/new" "$taskdir/executor_input.json" "$taskdir/logs/attempt-1.log" \
         "$taskdir/planted" "$root/cache/secret.key" "$root/planted"; do
  if (echo "$mark" > "$p") 2>/dev/null && [ -e "$p" ]; then echo "wrote-in-container $p"; fi
done
echo legit > "$param"
'''


@dsl.container_component
def writes_everywhere(sentinel: str, out: dsl.OutputPath(str)):
    return dsl.ContainerSpec(image=IMAGE, command=['sh', '-c', WRITE_EVERYWHERE], args=[sentinel, out])


@dsl.pipeline(name='write-everywhere')
def write_everywhere_pipeline(sentinel: str):
    writes_everywhere(sentinel=sentinel)


@pytest.mark.docker
def test_a_container_writes_only_its_out_folder(docker_image, sentinel, root, tmp_path):
    pipeline = compile_to(write_everywhere_pipeline, tmp_path / 'w.yaml')
    rc, result, proc = run(pipeline, root, '--backend', 'docker', '-p', f'sentinel={sentinel.dir}')
    assert rc == 0, proc.stdout + proc.stderr
    t = task(result, 'writes-everywhere')
    assert t['outputs']['parameters']['out'].strip() == 'legit'
    # whatever the container managed to write stayed in what it may write (its out folder and
    # its /tmp: here the root is under /tmp, so "$root/planted" is the container's /tmp/...)
    task_dir = os.path.dirname(os.path.dirname(t['logs'][0]))          # <task>/logs/attempt-1.log
    writable = (os.path.join(task_dir, 'out') + os.sep, os.path.join(task_dir, 'tmp') + os.sep)
    for path in files_under(root):
        if not path.startswith(writable):
            with open(path, 'rb') as f:
                assert b'PWNED' not in f.read(), path
    assert not os.path.exists(os.path.join(root, 'planted'))
    with open(os.path.join(task_dir, 'executor_input.json')) as f:
        assert json.load(f)['outputs']['parameters']['out']
    sentinel.assert_unchanged()
