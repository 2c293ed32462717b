"""Damaged cache state never takes the tool down: every index the cache keeps can be
overwritten or truncated (side files too), and a run, `cache ...` and `envs ...` still
answer, without a traceback; the damaged file is kept under <root>/quarantine/."""
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


@dsl.component
def produce(data: Input[Dataset], folder: str, seconds: float, out: Output[Dataset]) -> int:
    import os
    import time
    open(os.path.join(folder, 'runs'), 'a').write('x\n')
    time.sleep(seconds)
    with open(out.path, 'w') as f:
        f.write(open(data.path).read() * 2)
    return len(open(data.path).read())


@dsl.pipeline(name='damage')
def damage_pipeline(uri: str, folder: str, seconds: float = 0.0) -> int:
    imp = dsl.importer(artifact_uri=uri, artifact_class=Dataset)
    return produce(data=imp.output, folder=folder, seconds=seconds).outputs['Output']


INDEXES = {                    # what the cache keeps in sqlite, relative to the root
    'actions': 'cache/actions/actions/cache.db',
    'memo': 'cache/memo.db',
    'last': 'cache/last/cache.db',
}


def _damage(path: str, how: str) -> None:
    size = os.path.getsize(path) if os.path.exists(path) else 0
    if how == 'random':
        with open(path, 'r+b' if size else 'wb') as f:
            f.write(os.urandom(max(size, 4096)))
    elif how == 'truncated':
        os.truncate(path, min(size // 2, 100))
    else:
        raise AssertionError(how)


def _clean(proc) -> str:
    out = proc.stdout + proc.stderr
    assert 'Traceback' not in out, out
    return out


def _quarantined(root) -> list[str]:
    folder = os.path.join(str(root), 'quarantine')
    found = []
    for dirpath, _, files in os.walk(folder):
        found += [os.path.join(os.path.relpath(dirpath, folder), f) for f in files]
    return sorted(found)


@pytest.fixture
def pipeline(tmp_path):
    folder = tmp_path / 'counts'
    folder.mkdir()
    data = tmp_path / 'data.txt'
    data.write_text('abc')
    path = compile_pipeline(damage_pipeline, tmp_path / 'damage.yaml')
    root = tmp_path / 'root'

    def run(*extra):
        rc, result, proc = run_pipeline_file(path, root, '-p', f'uri={data}', '-p', f'folder={folder}', *extra)
        _clean(proc)
        assert rc == 0, proc.stdout + proc.stderr
        assert result['outputs']['parameters']['Output'] == 3
        return result, proc.stdout + proc.stderr

    def runs() -> int:
        return len(open(folder / 'runs').read().split())
    return run, runs, root, path, folder, data


@pytest.mark.parametrize('how', ['random', 'truncated'])
@pytest.mark.parametrize('index', sorted(INDEXES))
def test_a_run_survives_a_damaged_index(pipeline, index, how):
    run, runs, root, *_ = pipeline
    run()
    _damage(os.path.join(str(root), INDEXES[index]), how)
    result, out = run()
    assert 'warning' in out and 'was damaged' in out, out
    quarantined = _quarantined(root)
    assert any(q.endswith(os.path.basename(INDEXES[index])) for q in quarantined), quarantined
    if index == 'actions':
        assert states(result)['produce'] == 'SUCCEEDED' and runs() == 2, 'an entry lost is a task run again'
    else:
        assert states(result)['produce'] == 'CACHED' and runs() == 1, 'the results themselves were intact'
    again, out = run()
    assert states(again)['produce'] == 'CACHED' and 'was damaged' not in out
    assert _quarantined(root) == quarantined


def test_a_run_survives_garbage_side_files_left_by_a_killed_run(pipeline, tmp_path):
    run, runs, root, path, folder, data = pipeline
    run()
    # a second run killed while its task runs leaves its sqlite logs (-wal, -shm) behind
    proc = subprocess.Popen([sys.executable, '-m', 'localrunner.cli', 'run', path, '--root', str(root),
                             '-p', f'uri={data}', '-p', f'folder={folder}', '-p', 'seconds=60', '--no-cache'],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while runs() < 2:
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # (the `last` index is written only when a run ends: a killed run leaves the memo's logs)
    sides = [os.path.join(str(root), INDEXES['memo']) + s for s in ('-wal', '-shm')]
    assert all(os.path.exists(p) for p in sides), [p for p in sides if not os.path.exists(p)]
    # and a crash while the last keys were being written leaves theirs: planted the same way
    sides += [os.path.join(str(root), INDEXES['last']) + s for s in ('-wal', '-shm')]
    for side in sides:
        _damage(side, 'random')
    result, out = run()
    assert states(result)['produce'] == 'CACHED', out
    assert out.count('was damaged') == 2, out
    quarantined = _quarantined(root)
    assert sorted(os.path.basename(q) for q in quarantined) == sorted(os.path.basename(p) for p in sides)
    again, out = run()
    assert states(again)['produce'] == 'CACHED' and 'was damaged' not in out


COMMANDS = [('stats',), ('ls',), ('gc',), ('prune', '--older-than', '30d'), ('verify',)]


@pytest.mark.parametrize('how', ['random', 'truncated'])
@pytest.mark.parametrize('command', COMMANDS, ids=lambda c: c[0])
def test_cache_commands_answer_over_a_damaged_action_index(pipeline, command, how):
    run, runs, root, *_ = pipeline
    run()
    _damage(os.path.join(str(root), INDEXES['actions']), how)
    proc = run_cli('cache', *command, '--root', str(root))
    _clean(proc)
    if command[0] == 'verify':
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert len(proc.stdout.strip().splitlines()) == 1 and 'damaged indexes (quarantined, rebuilt): actions' \
            in proc.stdout, proc.stdout
        assert proc.stderr == ''
    else:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert 'warning:' in proc.stderr and 'was damaged' in proc.stderr
    assert any(q.endswith('cache.db') for q in _quarantined(root))
    after = run_cli('cache', 'verify', '--root', str(root))
    assert after.returncode == 0, after.stdout + after.stderr
    result, _ = run()
    assert states(result)['produce'] == 'SUCCEEDED' and runs() == 2


def test_cache_show_of_a_key_lost_to_damage_says_so(pipeline):
    run, runs, root, *_ = pipeline
    run()
    listing = run_cli('cache', 'ls', '--json', '--root', str(root))
    key = json.loads(listing.stdout)[0]['key']
    _damage(os.path.join(str(root), INDEXES['actions']), 'random')
    proc = run_cli('cache', 'show', key, '--root', str(root))
    _clean(proc)
    assert proc.returncode == 2
    assert [line for line in proc.stderr.splitlines() if not line.startswith('warning:')] == \
        [f'localrunner: error: cache show {key}: no such action key']


@pytest.mark.parametrize('index', ['memo', 'last'])
def test_verify_finds_the_other_indexes_damaged(pipeline, index):
    run, runs, root, *_ = pipeline
    run()
    _damage(os.path.join(str(root), INDEXES[index]), 'random')
    for command in COMMANDS[:-1]:       # these never open them
        assert run_cli('cache', *command, '--root', str(root)).returncode == 0
    proc = run_cli('cache', 'verify', '--root', str(root))
    _clean(proc)
    assert proc.returncode == 1 and f'damaged indexes (quarantined, rebuilt): {index}' in proc.stdout, proc.stdout
    assert len(proc.stdout.strip().splitlines()) == 1
    assert any(q.endswith(os.path.basename(INDEXES[index])) for q in _quarantined(root))
    assert run_cli('cache', 'verify', '--root', str(root)).returncode == 0
    result, _ = run()
    assert states(result)['produce'] == 'CACHED'


def test_verify_repair_drops_entries_whose_objects_are_gone(pipeline):
    run, runs, root, *_ = pipeline
    first, _ = run()
    [out] = [t for t in first['tasks'] if t['name'] == 'produce'][0]['outputs']['artifacts']['out']
    digest = out['digest']
    os.remove(os.path.join(str(root), 'cache', 'cas', 'objects', digest[:2], digest[2:]))
    proc = run_cli('cache', 'verify', '--root', str(root))
    _clean(proc)
    assert proc.returncode == 1 and 'entries missing objects: 1' in proc.stdout, proc.stdout
    assert 'with --repair' in proc.stdout
    repaired = run_cli('cache', 'verify', '--repair', '--root', str(root))
    assert repaired.returncode == 1 and 'entries dropped: 1' in repaired.stdout, repaired.stdout
    assert run_cli('cache', 'verify', '--root', str(root)).returncode == 0
    result, _ = run()
    assert states(result)['produce'] == 'SUCCEEDED'


def test_envs_commands_survive_damaged_venv_folders(tmp_path):
    env_dir = tmp_path / 'envs'
    env_dir.mkdir()
    (env_dir / ('a' * 20)).mkdir()                                  # a crashed build: no marker
    (env_dir / ('b' * 20)).mkdir()
    (env_dir / ('b' * 20) / '.complete').write_bytes(os.urandom(300))  # a marker of garbage
    (env_dir / ('c' * 20)).mkdir()
    (env_dir / ('c' * 20) / '.complete').mkdir()                    # a marker that is a folder
    (env_dir / ('d' * 20)).write_bytes(b'not a folder')             # a venv that is a file
    (env_dir / ('e' * 20)).mkdir()
    (env_dir / ('e' * 20) / '.complete').write_text('ok')
    (env_dir / ('e' * 20 + '.lock')).mkdir()                        # its lock file is a folder
    os.symlink(str(tmp_path / 'nowhere'), str(env_dir / ('f' * 20)))  # dangling link
    (env_dir / 'my-notes').mkdir()                                  # not ours
    env = {'LOCALRUNNER_ENV_DIR': str(env_dir)}
    listing = run_cli('envs', 'ls', '--kind', 'venv', env=env)
    _clean(listing)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert len(lines) == 4 and sum('(incomplete)' in line for line in lines) == 2, listing.stdout
    pruned = run_cli('envs', 'prune', '--kind', 'venv', '--all', env=env)
    _clean(pruned)
    assert pruned.returncode == 0 and 'removed 3 environment(s)' in pruned.stdout, pruned.stdout
    assert sorted(os.listdir(env_dir)) == sorted(['d' * 20, 'e' * 20, 'e' * 20 + '.lock', 'f' * 20, 'my-notes'])
    assert os.path.exists(env_dir / ('e' * 20) / '.complete'), 'a venv whose lock cannot be taken is kept'
