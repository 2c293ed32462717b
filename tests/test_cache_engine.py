"""The content-addressed cache as the engine uses it: real files, real processes."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from tests.helpers import compile_pipeline, run_cli, run_pipeline_file, states


def _count(folder, name):
    path = os.path.join(folder, name)
    return len(open(path).read().split()) if os.path.exists(path) else 0


# Each component appends a line to <folder>/<its name> when it really runs.
@dsl.component
def load(data: Input[Dataset], folder: str, out: Output[Dataset]):
    import os
    open(os.path.join(folder, 'load'), 'a').write('x\n')
    with open(out.path, 'w') as f:
        f.write(open(data.path).read().upper())


@dsl.component
def scale(data: Input[Dataset], factor: int, folder: str) -> int:
    import os
    open(os.path.join(folder, 'scale'), 'a').write('x\n')
    return len(open(data.path).read()) * factor


@dsl.component
def other(folder: str) -> str:
    import os
    open(os.path.join(folder, 'other'), 'a').write('x\n')
    return 'independent'


@dsl.pipeline(name='cache-chain')
def chain(uri: str, folder: str, factor: int = 2) -> int:
    imp = dsl.importer(artifact_uri=uri, artifact_class=Dataset)
    loaded = load(data=imp.output, folder=folder)
    other(folder=folder)
    return scale(data=loaded.outputs['out'], factor=factor, folder=folder).output


@pytest.fixture
def setup(tmp_path):
    folder = tmp_path / 'counts'
    folder.mkdir()
    data = tmp_path / 'data.txt'
    data.write_text('abc')
    path = compile_pipeline(chain, tmp_path / 'chain.yaml')
    root = tmp_path / 'root'

    def run(*extra, uri=None, env=None, pipeline=None):
        rc, result, proc = run_pipeline_file(pipeline or path, root, '-p', f'uri={uri or data}',
                                             '-p', f'folder={folder}', *extra, env=env)
        assert rc == 0, proc.stdout + proc.stderr
        return result
    return run, folder, data, tmp_path


def test_unchanged_rerun_is_all_cached_and_starts_no_process(setup):
    run, folder, data, _ = setup
    first = run()
    assert first['outputs']['parameters']['Output'] == 6
    second = run()
    st = states(second)
    assert st == {'importer': 'SUCCEEDED', 'load': 'CACHED', 'other': 'CACHED', 'scale': 'CACHED'}
    assert second['outputs']['parameters']['Output'] == 6
    assert [_count(folder, n) for n in ('load', 'scale', 'other')] == [1, 1, 1]
    cached = [t for t in second['tasks'] if t['state'] == 'CACHED']
    assert all(t['cached_from']['run'] == first['run_id'] for t in cached)
    # a hit materializes outputs into the new run's folder
    [out] = [t for t in second['tasks'] if t['name'] == 'load'][0]['outputs']['artifacts']['out']
    assert out['path'].startswith(second['run_dir']) and open(out['path']).read() == 'ABC'
    assert not os.path.exists(os.path.join(second['run_dir'], 'tasks', 'load', 'logs'))   # nothing ran


def test_content_not_path_decides(setup):
    run, folder, data, tmp_path = setup
    run()
    data.write_text('abcd')                     # same path, new content: load and scale re-run
    st = states(run())
    assert (st['load'], st['scale'], st['other']) == ('SUCCEEDED', 'SUCCEEDED', 'CACHED')
    copy = tmp_path / 'elsewhere' / 'same.txt'
    copy.parent.mkdir()
    copy.write_text('abcd')                     # identical bytes at another path: all hits
    st = states(run(uri=str(copy)))
    assert (st['load'], st['scale'], st['other']) == ('CACHED', 'CACHED', 'CACHED')
    assert [_count(folder, n) for n in ('load', 'scale', 'other')] == [2, 2, 1]


def test_parameter_change_reruns_consumer_only(setup):
    run, folder, *_ = setup
    run()
    result = run('-p', 'factor=3')
    st = states(result)
    assert (st['load'], st['scale'], st['other']) == ('CACHED', 'SUCCEEDED', 'CACHED')
    assert result['outputs']['parameters']['Output'] == 9


def test_code_change_reruns_component_and_dependents(setup):
    run, folder, data, tmp_path = setup
    run()

    @dsl.component
    def load(data: Input[Dataset], folder: str, out: Output[Dataset]):   # noqa: F811  (new code)
        import os
        open(os.path.join(folder, 'load'), 'a').write('x\n')
        with open(out.path, 'w') as f:
            f.write(open(data.path).read().upper() + '!')

    @dsl.pipeline(name='cache-chain')
    def chain_v2(uri: str, folder: str, factor: int = 2) -> int:
        imp = dsl.importer(artifact_uri=uri, artifact_class=Dataset)
        loaded = load(data=imp.output, folder=folder)
        other(folder=folder)
        return scale(data=loaded.outputs['out'], factor=factor, folder=folder).output

    v2 = compile_pipeline(chain_v2, tmp_path / 'chain2.yaml')
    result = run(pipeline=v2)
    st = states(result)
    assert (st['load'], st['scale'], st['other']) == ('SUCCEEDED', 'SUCCEEDED', 'CACHED')
    assert result['outputs']['parameters']['Output'] == 8


def test_no_cache_runs_all_and_records_nothing(setup):
    run, folder, *_ = setup
    st = states(run('--no-cache'))
    assert set(st.values()) == {'SUCCEEDED'}
    assert _count(folder, 'scale') == 1
    assert states(run())['scale'] == 'SUCCEEDED'      # nothing was recorded: it runs again
    assert _count(folder, 'scale') == 2
    assert states(run())['scale'] == 'CACHED'


def test_expiry(setup):
    run, folder, *_ = setup
    run()
    time.sleep(1.2)
    assert states(run('--cache-max-age', '1s'))['scale'] == 'SUCCEEDED'
    assert states(run('--cache-max-age', '1h'))['scale'] == 'CACHED'


def test_env_var_disables_caching(setup):
    run, folder, *_ = setup
    run()
    st = states(run(env={'KFP_DISABLE_EXECUTION_CACHING_BY_DEFAULT': 'true'}))
    assert st['scale'] == 'SUCCEEDED' and st['load'] == 'SUCCEEDED'


def test_explain_cache_names_what_changed(setup, tmp_path):
    run, folder, data, _ = setup
    run()
    data.write_text('zzz')
    proc = run_cli('explain-cache', os.path.join(str(tmp_path), 'chain.yaml'), '-p', f'uri={data}',
                   '-p', f'folder={folder}', '-p', 'factor=5', '--root', str(tmp_path / 'root'))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert 'cached  other' in out
    assert 'would run load: changed: input artifact data' in out
    assert 'may run scale: reads outputs of load, which would run' in out
    assert 'would run importer: imports' in out                  # an importer runs every time
    assert '1 task(s) would be served from the cache, 3 would run' in out
    assert _count(folder, 'load') == 1, 'explain runs nothing'


def _remembered(root):
    """The 'last' index as the engine keeps it: task -> (key, run that first had that key)."""
    from localrunner.engine.caching import CacheSettings, TaskCache
    cache = TaskCache(str(root), CacheSettings())
    try:
        found = {t: cache.previous('cache-chain', t) for t in ('load', 'scale', 'other')}
        return {t: (v['key'], v['run']) for t, v in found.items() if v}
    finally:
        cache.close()


def test_a_key_already_remembered_is_not_written_again(setup, tmp_path):
    """A cached rerun rewrites none of its tasks' remembered keys (each row names the run that
    first had that key); a task whose key changed is written, and explained from there."""
    run, folder, data, _ = setup
    first = run()
    kept = _remembered(tmp_path / 'root')
    assert set(kept) == {'load', 'scale', 'other'} and {r for _, r in kept.values()} == {first['run_id']}
    assert kept['scale'][0] == [t for t in first['tasks'] if t['name'] == 'scale'][0]['cache_key']
    run()
    assert _remembered(tmp_path / 'root') == kept
    third = run('-p', 'factor=3')
    now = _remembered(tmp_path / 'root')
    assert now['load'] == kept['load'] and now['other'] == kept['other']
    assert now['scale'][1] == third['run_id'] and now['scale'][0] != kept['scale'][0]
    proc = run_cli('explain-cache', os.path.join(str(tmp_path), 'chain.yaml'), '-p', f'uri={data}',
                   '-p', f'folder={folder}', '-p', 'factor=4', '--root', str(tmp_path / 'root'))
    assert 'would run scale: changed: input parameter factor' in proc.stdout, proc.stdout


def test_a_run_without_the_cache_remembers_no_key(setup, tmp_path):
    """--no-cache reads and writes nothing of the cache, the keys that explain a miss
    included: a later explain-cache still explains from the last run that could have left an
    entry (the no-cache run's key has none: "same key as the last run" would say nothing)."""
    run, folder, data, _ = setup
    run()
    kept = _remembered(tmp_path / 'root')
    nocache = run('--no-cache', '-p', 'factor=3')
    assert set(states(nocache).values()) == {'SUCCEEDED'}
    assert _remembered(tmp_path / 'root') == kept
    proc = run_cli('explain-cache', os.path.join(str(tmp_path), 'chain.yaml'), '-p', f'uri={data}',
                   '-p', f'folder={folder}', '-p', 'factor=3', '--root', str(tmp_path / 'root'))
    assert 'would run scale: changed: input parameter factor' in proc.stdout, proc.stdout


def test_a_garbage_remembered_row_is_written_again(setup, tmp_path):
    """A row of the 'last' index that is not what the engine writes (tampered, truncated) is
    not taken for the task's key: the next run writes it afresh, and says nothing of it."""
    from localrunner.engine.caching import CacheSettings, TaskCache
    run, *_ = setup
    first = run()
    kept = _remembered(tmp_path / 'root')
    cache = TaskCache(str(tmp_path / 'root'), CacheSettings())
    try:
        cache.last.set('cache-chain\0scale', '{"key": [1, 2], not json')
        cache.last.set('cache-chain\0load', '["a list"]')
    finally:
        cache.close()
    second = run()
    assert not any('cannot remember' in w for w in second['warnings'])
    now = _remembered(tmp_path / 'root')
    assert now['other'] == kept['other']                               # untouched: already right
    assert now['scale'] == (kept['scale'][0], second['run_id'])        # garbage: written again
    assert now['load'] == (kept['load'][0], second['run_id'])
    assert first['run_id'] != second['run_id']


def test_corrupt_object_is_a_miss_not_a_wrong_result(setup, tmp_path):
    run, folder, *_ = setup
    first = run()
    [out] = [t for t in first['tasks'] if t['name'] == 'load'][0]['outputs']['artifacts']['out']
    digest = out['digest']
    obj = os.path.join(str(tmp_path / 'root'), 'cache', 'cas', 'objects', digest[:2], digest[2:])
    os.chmod(obj, 0o644)
    with open(obj, 'w') as f:
        f.write('CORRUPTED')
    result = run()
    st = states(result)
    assert st['load'] == 'SUCCEEDED', 'a corrupt object must not be served'
    assert result['outputs']['parameters']['Output'] == 6


@dsl.component
def slow(folder: str, seconds: float) -> str:
    import os
    import time
    open(os.path.join(folder, 'slow'), 'a').write('x\n')
    time.sleep(seconds)
    return 'ok'


@dsl.pipeline(name='slow-one')
def slow_pipeline(folder: str, seconds: float = 3.0):
    slow(folder=folder, seconds=seconds)


def _start(path, root, folder, result):
    return subprocess.Popen([sys.executable, '-m', 'localrunner.cli', 'run', path, '-p', f'folder={folder}',
                             '--root', str(root), '--result-json', str(result)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_concurrent_runs_share_the_cache_single_flight(tmp_path):
    folder = tmp_path / 'c'
    folder.mkdir()
    path = compile_pipeline(slow_pipeline, tmp_path / 's.yaml')
    run_cli('run', path, '-p', f'folder={folder}', '-p', 'seconds=0.0', '--root', str(tmp_path / 'warm'))
    procs = [_start(path, tmp_path / 'root', folder, tmp_path / f'r{i}.json') for i in range(2)]
    outs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    got = sorted(states(json.load(open(tmp_path / f'r{i}.json')))['slow'] for i in range(2))
    assert got == ['CACHED', 'SUCCEEDED']
    assert _count(folder, 'slow') == 2     # one from the warm-up (other root), one from the pair


def test_kill_9_leaves_a_usable_cache(tmp_path):
    folder = tmp_path / 'c'
    folder.mkdir()
    path = compile_pipeline(slow_pipeline, tmp_path / 's.yaml')
    root = tmp_path / 'root'
    proc = _start(path, root, folder, tmp_path / 'r.json')
    deadline = time.time() + 120
    while _count(folder, 'slow') == 0:
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    verify = run_cli('cache', 'verify', '--root', str(root))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    rc, result, p2 = run_pipeline_file(path, root, '-p', f'folder={folder}', '-p', 'seconds=0.1')
    assert rc == 0 and states(result)['slow'] == 'SUCCEEDED', p2.stdout
    rc, result, _ = run_pipeline_file(path, root, '-p', f'folder={folder}', '-p', 'seconds=0.1')
    assert states(result)['slow'] == 'CACHED'


def test_cache_commands(setup, tmp_path):
    run, *_ = setup
    first = run()
    root = str(tmp_path / 'root')
    stats = json.loads(run_cli('cache', 'stats', '--json', '--root', root).stdout)
    assert stats['actions'] == 3 and stats['objects'] >= 2
    listing = json.loads(run_cli('cache', 'ls', '--json', '--root', root).stdout)
    key = [e['key'] for e in listing if e['producer']['task'] == 'scale'][0]
    shown = json.loads(run_cli('cache', 'show', key[:12], '--root', root).stdout)
    assert shown['outputs']['parameters']['Output'] == 6 and shown['producer']['run'] == first['run_id']
    pruned = run_cli('cache', 'prune', '--older-than', '0s', '--root', root)
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(run_cli('cache', 'stats', '--json', '--root', root).stdout)['actions'] == 0
    assert states(run())['scale'] == 'SUCCEEDED'


def _with_packages(packages):
    @dsl.component(packages_to_install=packages)
    def pkg_user(folder: str) -> str:
        import os
        import six
        open(os.path.join(folder, 'pkg'), 'a').write('x\n')
        return six.__version__

    @dsl.pipeline(name='packages')
    def pipeline(folder: str) -> str:
        return pkg_user(folder=folder).output
    return pipeline


def test_changed_package_set_misses(tmp_path):
    folder = tmp_path / 'c'
    folder.mkdir()
    root = tmp_path / 'root'
    a = compile_pipeline(_with_packages(['six']), tmp_path / 'a.yaml')
    b = compile_pipeline(_with_packages(['six>=1.10']), tmp_path / 'b.yaml')
    for path, expected in ((a, 'SUCCEEDED'), (a, 'CACHED'), (b, 'SUCCEEDED'), (b, 'CACHED')):
        rc, result, proc = run_pipeline_file(path, root, '-p', f'folder={folder}')
        assert rc == 0, proc.stdout + proc.stderr
        assert states(result)['pkg-user'] == expected


@dsl.component
def stamp_value(folder: str, value: int) -> int:
    import os
    open(os.path.join(folder, 'custom'), 'a').write('x\n')
    return value


@dsl.pipeline(name='custom-key')
def custom_key_pipeline(folder: str, value: int):
    stamp_value(folder=folder, value=value).set_caching_options(True, cache_key='model-v1')


def test_custom_cache_key_replaces_the_computed_one(tmp_path):
    folder = tmp_path / 'c'
    folder.mkdir()
    path = compile_pipeline(custom_key_pipeline, tmp_path / 'ck.yaml')
    rc, first, _ = run_pipeline_file(path, tmp_path / 'root', '-p', f'folder={folder}', '-p', 'value=1')
    rc, second, _ = run_pipeline_file(path, tmp_path / 'root', '-p', f'folder={folder}', '-p', 'value=2')
    assert states(second)['stamp-value'] == 'CACHED'
    assert [t for t in second['tasks'] if t['name'] == 'stamp-value'][0]['outputs']['parameters']['Output'] == 1
    assert _count(folder, 'custom') == 1
    # the same custom key with other parts: what is remembered (to explain a later miss) is
    # this run's parts, not the first run's, though the key did not change
    from localrunner.engine.caching import CacheSettings, TaskCache
    cache = TaskCache(str(tmp_path / 'root'), CacheSettings())
    try:
        kept = cache.previous('custom-key', 'stamp-value')
    finally:
        cache.close()
    assert kept['run'] == second['run_id'] and kept['parts']['inputs']['parameters']['value'] == 2


@dsl.component
def big_output(out: Output[Dataset]):
    with open(out.path, 'wb') as f:
        f.write(b'x' * 600_000)


@dsl.pipeline(name='full-disk')
def full_disk_pipeline():
    big_output()


def test_full_disk_fails_the_task_cleanly(tmp_path):
    mount = tmp_path / 'small'
    mount.mkdir()
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(mount)]).returncode != 0:
        pytest.skip('cannot mount a tmpfs here')
    try:
        path = compile_pipeline(full_disk_pipeline, tmp_path / 'fd.yaml')
        # the run folder fits the output once; the store then has no room for its copy
        rc, result, proc = run_pipeline_file(path, mount / 'root')
        assert rc == 1, proc.stdout + proc.stderr
        t = [t for t in result['tasks'] if t['name'] == 'big-output'][0]
        assert t['state'] == 'FAILED' and ('disk full' in t['error'].lower() or 'no space' in t['error'].lower()), t
        stats = json.loads(run_cli('cache', 'stats', '--json', '--root', str(mount / 'root')).stdout)
        assert stats['actions'] == 0
        assert run_cli('cache', 'verify', '--root', str(mount / 'root')).returncode == 0
    finally:
        subprocess.run(['umount', str(mount)])


@dsl.container_component
def chatty(marker: str):
    # 3 MB of output into its log on a 1 MB disk (its reader must keep draining it)
    return dsl.ContainerSpec(image='alpine', command=['sh', '-c', 'head -c 3000000 /dev/zero | tr "\\0" x; '
                                                      'exec sleep 1', marker])


@dsl.pipeline(name='full-log')
def full_log_pipeline(marker: str):
    chatty(marker=marker)


def test_a_log_that_fills_the_disk_fails_the_task_and_the_run_is_recorded(tmp_path):
    """The task's log can't be written: the attempt fails saying so (not 'internal error'),
    the task's process is ended, and the run, whose final record could not be saved either,
    is left to recovery (recorded CANCELED by the next command), never RUNNING forever."""
    mount = tmp_path / 'small'
    mount.mkdir()
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(mount)]).returncode != 0:
        pytest.skip('cannot mount a tmpfs here')
    marker = f'full-log-{os.getpid()}-{time.time_ns()}'
    try:
        path = compile_pipeline(full_log_pipeline, tmp_path / 'fl.yaml')
        proc = run_cli('run', path, '--root', str(mount / 'root'), '-p', f'marker={marker}',
                       '--result-json', str(tmp_path / 'result.json'))
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert 'Traceback' not in proc.stdout + proc.stderr
        [task] = json.loads((tmp_path / 'result.json').read_text())['tasks']
        assert task['state'] == 'FAILED' and 'cannot write its log' in task['error'], task
        assert 'No space left on device' in task['error'], task
        assert subprocess.run(['pgrep', '-f', marker], capture_output=True).returncode == 1   # none left
        if "the run's record could not be saved" in proc.stderr:
            listed = run_cli('runs', 'ls', '--root', str(mount / 'root'))
            assert 'CANCELED' in listed.stdout and 'RUNNING' not in listed.stdout, listed.stdout
        else:                      # the final record fitted: it says FAILED
            assert 'FAILED' in run_cli('runs', 'ls', '--root', str(mount / 'root')).stdout
    finally:
        subprocess.run(['pkill', '-f', marker])
        subprocess.run(['umount', str(mount)])


@dsl.component
def uses_secret() -> str:
    import os
    return str(len(os.environ['API_TOKEN']))


@dsl.pipeline(name='secret-key')
def secret_key_pipeline():
    from kfp import kubernetes
    kubernetes.use_secret_as_env(uses_secret(), secret_name='api', secret_key_to_env={'token': 'API_TOKEN'})


def test_secret_values_never_stored_in_the_cache(tmp_path):
    secret = tmp_path / 'api'
    secret.mkdir()
    (secret / 'token').write_text('hunter2-very-secret')
    path = compile_pipeline(secret_key_pipeline, tmp_path / 'sk.yaml')
    root = tmp_path / 'root'
    rc, result, proc = run_pipeline_file(path, root, '--secret', f'api={secret}')
    assert rc == 0, proc.stdout + proc.stderr
    assert states(result)['uses-secret'] == 'SUCCEEDED'
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), 'rb') as f:
                assert b'hunter2-very-secret' not in f.read(), os.path.join(folder, name)
    rc, result, _ = run_pipeline_file(path, root, '--secret', f'api={secret}')
    assert states(result)['uses-secret'] == 'CACHED'
    (secret / 'token').write_text('rotated')                    # a new secret value is a new action
    rc, result, _ = run_pipeline_file(path, root, '--secret', f'api={secret}')
    assert states(result)['uses-secret'] == 'SUCCEEDED'


def test_runs_prune_then_gc_keeps_live_results(setup, tmp_path):
    run, folder, *_ = setup
    run()
    run('--no-cache')
    root = str(tmp_path / 'root')
    pruned = run_cli('runs', 'prune', '--keep', '1', '--root', root)
    assert 'removed 1 run(s), kept 1' in pruned.stdout, pruned.stdout + pruned.stderr
    assert run_cli('cache', 'gc', '--root', root).returncode == 0
    result = run()
    assert states(result)['scale'] == 'CACHED'
    [out] = [t for t in result['tasks'] if t['name'] == 'load'][0]['outputs']['artifacts']['out']
    assert open(out['path']).read() == 'ABC'
