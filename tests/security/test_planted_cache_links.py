"""Links planted in the cache's own store are never followed (item 2): a link in place of an
object, of a shard folder, of the store's folders (quarantine, tmp, the action index, the
locks, the leases) or of its sqlite files. Whoever could write the root planted it, pointing
at the sentinel folder outside: the next run removes the link (never its target), says so,
serves nothing read through it (the task runs again, with the right output), and `cache
verify` / `gc` / `prune` write, move or delete nothing outside the root.
"""
import glob
import os
import shutil

import pytest
from kfp import dsl

from tests.security.conftest import cli, compile_to, run, task


@dsl.component
def make(text: str, out: dsl.Output[dsl.Dataset]) -> str:
    with open(out.path, 'w') as f:
        f.write(text * 2)
    return text * 2


@dsl.pipeline(name='planted-cache')
def planted_cache_pipeline(text: str = 'ab'):
    make(text=text)


def _object(root: str) -> str:
    [path] = glob.glob(os.path.join(root, 'cache', 'cas', 'objects', '*', '*'))
    return path


def _as_link(path: str, target: str) -> None:
    """PATH (file or folder) moved to TARGET in the sentinel, PATH now a link to it."""
    shutil.move(path, target)
    os.symlink(target, path)


PLANTS = {
    'object': lambda root, s: _as_link(_object(root), s.path('object')),
    'shard folder': lambda root, s: _as_link(os.path.dirname(_object(root)), s.path('shard')),
    'quarantine': lambda root, s: _as_link(os.path.join(root, 'cache', 'cas', 'quarantine'), s.path('q')),
    'tmp': lambda root, s: _as_link(os.path.join(root, 'cache', 'cas', 'tmp'), s.path('tmp')),
    'action index folder': lambda root, s: _as_link(os.path.join(root, 'cache', 'actions', 'actions'),
                                                    s.path('actions')),
    'action database': lambda root, s: _as_link(os.path.join(root, 'cache', 'actions', 'actions', 'cache.db'),
                                                s.path('cache.db')),
    'locks': lambda root, s: _as_link(os.path.join(root, 'cache', 'actions', 'locks'), s.path('locks')),
    'leases': lambda root, s: _as_link(os.path.join(root, 'cache', 'leases'), s.path('leases')),
    'stat memo': lambda root, s: _as_link(os.path.join(root, 'cache', 'memo.db'), s.path('memo.db')),
}


@pytest.mark.parametrize('what', list(PLANTS))
def test_a_link_planted_in_the_store_is_removed_not_followed(what, sentinel, root, tmp_path):
    path = compile_to(planted_cache_pipeline, tmp_path / 'p.yaml')
    rc, first, proc = run(path, root)
    assert rc == 0, proc.stdout + proc.stderr
    PLANTS[what](root, sentinel)
    sentinel.before = sentinel.snapshot()           # what is outside now must stay as it is
    rc, second, proc = run(path, root)
    assert rc == 0, proc.stdout + proc.stderr
    made = task(second, 'make')
    assert made['outputs']['parameters']['Output'] == 'abab'
    with open(made['outputs']['artifacts']['out'][0]['path']) as f:
        assert f.read() == 'abab'                   # restored or made again: the right bytes
    if what in ('object', 'shard folder'):
        assert task(second, 'make')['state'] == 'SUCCEEDED', second     # ran again: nothing read through it
        assert any('link' in w for w in second['warnings']), second['warnings']
    elif what not in ('action database', 'stat memo'):
        assert any('was a link' in w for w in second['warnings']), second['warnings']
    for args in (('cache', 'verify'), ('cache', 'gc'), ('cache', 'prune', '--max-size', '0')):
        cli(*args, '--root', root)
    for base, dirs, files in os.walk(os.path.join(root, 'cache')):
        for name in dirs + files:
            full = os.path.join(base, name)
            if os.path.islink(full):      # only a quarantined one (moved aside, never followed) is left
                assert os.path.dirname(full).endswith(os.path.join('cas', 'quarantine')), full


@pytest.mark.parametrize('command', [('cache', 'gc'), ('cache', 'prune', '--max-size', '0'), ('cache', 'verify')])
def test_a_cache_command_alone_never_follows_a_planted_link(command, sentinel, root, tmp_path):
    """Without a run in between: the maintenance commands make the leases folder, the CAS's
    and the index's their own way, and each removes a link planted in its place first."""
    path = compile_to(planted_cache_pipeline, tmp_path / 'p.yaml')
    rc, _, proc = run(path, root)
    assert rc == 0, proc.stdout + proc.stderr
    PLANTS['leases'](root, sentinel)
    PLANTS['tmp'](root, sentinel)
    PLANTS['locks'](root, sentinel)
    sentinel.before = sentinel.snapshot()
    cli(*command, '--root', root)
    used = [('cas', 'tmp'), ('actions', 'locks')] + ([('leases',)] if command[1] != 'verify' else [])
    for folder in used:                 # each folder the command works in (the sentinel: nothing outside changed)
        full = os.path.join(root, 'cache', *folder)
        assert not os.path.islink(full), full
