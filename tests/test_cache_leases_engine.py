"""Maintenance never breaks a live run: `cache prune` / `cache gc` keep what a running
`localrunner run` (a real process) holds, and a killed run's lease is stale and removed."""
import json
import os
import signal
import subprocess
import sys
import time

from localrunner.engine.caching import run_is_live
from localrunner.layout import RootLayout
from localrunner_cache import digest_bytes
from tests.helpers import compile_pipeline, run_cli, run_pipeline_file, states
from tests.test_damaged_state import damage_pipeline


def _objects(root):
    base = os.path.join(str(root), 'cache', 'cas', 'objects')
    return {shard + name for shard in os.listdir(base) for name in os.listdir(os.path.join(base, shard))}


def _age_everything(root):
    base = os.path.join(str(root), 'cache', 'cas', 'objects')
    for d in _objects(root):
        os.utime(os.path.join(base, d[:2], d[2:]), (0, 0))


def test_prune_during_a_run_keeps_what_the_run_holds(tmp_path):
    folder, root = tmp_path / 'counts', tmp_path / 'root'
    folder.mkdir()
    data = tmp_path / 'data.txt'
    data.write_text('abc')
    path = compile_pipeline(damage_pipeline, tmp_path / 'p.yaml')
    rc, first, proc = run_pipeline_file(path, root, '-p', f'uri={data}', '-p', f'folder={folder}')
    assert rc == 0, proc.stdout + proc.stderr
    imported, produced = digest_bytes(b'abc'), digest_bytes(b'abcabc')
    assert {imported, produced} <= _objects(root)
    # a second run: its task (a new parameter: a miss) runs for a while; the importer's
    # input is stored and held by the run's lease
    live = subprocess.Popen([sys.executable, '-m', 'localrunner.cli', 'run', path, '--root', str(root),
                             '-p', f'uri={data}', '-p', f'folder={folder}', '-p', 'seconds=120'],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while len(open(folder / 'runs').read().split()) < 2:
            assert time.time() < deadline and live.poll() is None
            time.sleep(0.05)
        [lease] = [n for n in os.listdir(RootLayout(str(root)).leases_dir) if n.endswith('.lease')]
        _age_everything(root)                 # no grace period protects anything now
        pruned = run_cli('cache', 'prune', '--older-than', '0s', '--json', '--root', str(root))
        assert pruned.returncode == 0, pruned.stdout + pruned.stderr
        stats = json.loads(pruned.stdout)
        assert stats['actions_dropped'] == 1 and stats['leased'] >= 1
        assert imported in _objects(root), 'the live run relies on it'
        assert produced not in _objects(root), 'nobody holds the first run\'s output any more'
        assert live.poll() is None
    finally:
        live.send_signal(signal.SIGKILL)
        live.wait()
    run_id = lease[:-len('.lease')]
    assert not run_is_live(str(root), run_id)
    gc = run_cli('cache', 'gc', '--json', '--root', str(root))
    # the dead runner's run is recovered first (recorded CANCELED, its stale lease removed),
    # then gc: either way no stale lease is left
    assert gc.returncode == 0, gc.stdout + gc.stderr
    assert 'recorded CANCELED' in gc.stderr or json.loads(gc.stdout)['leases_removed'] == 1, gc.stdout + gc.stderr
    assert [n for n in os.listdir(RootLayout(str(root)).leases_dir) if n.endswith('.lease')] == []
    rc, result, proc = run_pipeline_file(path, root, '-p', f'uri={data}', '-p', f'folder={folder}')
    assert rc == 0 and states(result)['produce'] == 'SUCCEEDED', proc.stdout + proc.stderr
