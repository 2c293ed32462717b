"""Names from the IR become paths (item 1): a task key, a pipeline name, an output parameter
or output artifact name holding '/', '..', an absolute path or NUL never makes the engine
create, write or delete anything outside the root.

The names are planted by hand-editing a compiled pipeline. Loading will refuse them (exit 2,
one line: branch validation); until then, and as defence in depth after, the engine refuses
them at run time: that task FAILS with a one-line reason. Either way nothing outside the
root changes, and no traceback reaches the user.
"""

import os

import pytest
from kfp import dsl

from tests.security.conftest import compile_to, load_docs, replace_everywhere, run, save_docs, task

@dsl.container_component
def zztask(zzparam: dsl.OutputPath(str), zzart: dsl.Output[dsl.Artifact]):
    return dsl.ContainerSpec(
        image='alpine',
        command=['sh', '-c', 'mkdir -p "$(dirname "$0")" "$(dirname "$1")"; echo p > "$0"; echo a > "$1"'],
        args=[zzparam, zzart.path])


@dsl.pipeline(name='zzpipe')
def names_pipeline():
    zztask()


def _escape(sentinel, ups: int) -> str:
    """A relative name that climbs `ups` folders and lands in the sentinel folder."""
    return os.path.join(*(['..'] * ups), os.path.basename(sentinel.dir), 'pwned')


# where the name is used -> folders between its base and the root's parent (tmp_path):
#   task key:        <root>/runs/<id>/tasks/<key>                  -> tasks, id, runs, root
#   parameter/artifact: <root>/runs/<id>/tasks/<t>/out/{parameters,artifacts}/<name>
UPS = {'task': 4, 'parameter': 7, 'artifact': 7, 'pipeline': 2}
HOSTILE = ['relative', 'absolute', 'nul', 'dotdot']


def _hostile(kind: str, where: str, sentinel) -> str:
    return {'relative': _escape(sentinel, UPS[where]), 'absolute': sentinel.path('pwned'),
            'nul': 'a\x00b', 'dotdot': '..'}[kind]


def _plant(where: str, name: str, source: str, target) -> str:
    docs = load_docs(source)
    spec = docs[0]
    if where == 'task':
        tasks = spec['root']['dag']['tasks']
        body = tasks.pop('zztask')
        body['taskInfo']['name'] = name
        tasks[name] = body
    elif where == 'parameter':
        docs = replace_everywhere(docs, 'zzparam', name)
    elif where == 'artifact':
        docs = replace_everywhere(docs, 'zzart', name)
    else:
        spec['pipelineInfo']['name'] = name
    return save_docs(docs, target)


def _check_refused(rc: int, result, proc, where: str, name: str) -> None:
    """Refused, in one line: at load (exit 2) or by the engine (the task FAILED)."""
    if rc == 2:
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        return
    assert rc == 1, proc.stdout + proc.stderr
    failed = [t for t in result['tasks'] if t['state'] == 'FAILED']
    assert failed, result
    error = failed[0]['error']
    assert error.startswith('refused:') and '\n' not in error, error


# '..' as a pipeline name is harmless: the run id it starts ('..-<time>-<hex>') is one plain name
@pytest.mark.parametrize('where,kind', [(w, k) for w in ('task', 'parameter', 'artifact', 'pipeline')
                                        for k in HOSTILE if (w, k) != ('pipeline', 'dotdot')])
def test_a_hostile_name_touches_nothing_outside_the_root(where, kind, sentinel, root, tmp_path):
    source = compile_to(names_pipeline, tmp_path / 'names.yaml')
    name = _hostile(kind, where, sentinel)
    pipeline = _plant(where, name, source, tmp_path / 'hostile.yaml')
    rc, result, proc = run(pipeline, root)
    _check_refused(rc, result, proc, where, name)
    assert sorted(os.listdir(tmp_path)) == ['hostile.yaml', 'names.yaml', 'root', 'sentinel']
    assert not os.path.lexists(sentinel.path('pwned'))
    sentinel.assert_unchanged()


@pytest.mark.parametrize('where', ['task', 'parameter', 'artifact'])
def test_a_hostile_name_is_refused_at_load(where, sentinel, root, tmp_path):
    source = compile_to(names_pipeline, tmp_path / 'names.yaml')
    pipeline = _plant(where, _escape(sentinel, UPS[where]), source, tmp_path / 'hostile.yaml')
    rc, result, proc = run(pipeline, root)
    assert rc == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stdout + proc.stderr
    assert not os.path.exists(os.path.join(root, 'runs'))
    sentinel.assert_unchanged()


def test_a_pipeline_name_that_cannot_name_a_run_folder_is_bad_input(sentinel, root, tmp_path):
    source = compile_to(names_pipeline, tmp_path / 'names.yaml')
    pipeline = _plant('pipeline', _escape(sentinel, UPS['pipeline']), source, tmp_path / 'hostile.yaml')
    rc, result, proc = run(pipeline, root)
    assert rc == 2 and result is None, proc.stdout + proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert 'pipeline name' in line or 'pipelineInfo' in line, line
    sentinel.assert_unchanged()


@dsl.pipeline(name='zzimport')
def importer_pipeline(uri: str):
    dsl.importer(artifact_uri=uri, artifact_class=dsl.Dataset, reimport=False)


def test_an_importer_with_a_hostile_key_downloading_to_the_workspace(sentinel, root, tmp_path):
    data = tmp_path / 'data.txt'
    data.write_text('importable')
    docs = load_docs(compile_to(importer_pipeline, tmp_path / 'imp.yaml'))
    tasks = docs[0]['root']['dag']['tasks']
    body = tasks.pop('importer')
    hostile = _escape(sentinel, 5)          # workspace/imports/<key>: imports, workspace, id, runs, root
    tasks[hostile] = body
    for comp in docs[0]['deploymentSpec']['executors'].values():
        if 'importer' in comp:
            comp['importer']['downloadToWorkspace'] = True
    pipeline = save_docs(docs, tmp_path / 'hostile.yaml')
    rc, result, proc = run(pipeline, root, '-p', f'uri={data}')
    _check_refused(rc, result, proc, 'task', hostile)
    assert not os.path.lexists(sentinel.path('pwned'))
    assert data.read_text() == 'importable'
    sentinel.assert_unchanged()


def test_a_hostile_name_read_from_a_cache_entry_is_a_miss(sentinel, root, tmp_path):
    """An action entry naming an output artifact '../../..' (a tampered or hostile remote
    cache) is never restored there: the entry is unusable, the task runs again."""
    from localrunner_cache import ActionCache
    pipeline = compile_to(names_pipeline, tmp_path / 'names.yaml')
    rc, first, proc = run(pipeline, root)
    assert rc == 0, proc.stdout + proc.stderr
    key = task(first, 'zztask')['cache_key']
    actions = ActionCache(os.path.join(root, 'cache', 'actions'))
    entry = actions.get(key)
    arts = entry.outputs['artifacts']
    arts[_escape(sentinel, 7)] = arts.pop('zzart')
    actions.put(key, entry)
    actions.close()
    rc, second, proc = run(pipeline, root)
    assert rc == 0, proc.stdout + proc.stderr
    assert task(second, 'zztask')['state'] == 'SUCCEEDED'       # a miss, run again
    assert not os.path.lexists(sentinel.path('pwned'))
    sentinel.assert_unchanged()
