"""Leases: gc and prune keep what a live run (a real process) holds; kill -9 frees it."""

import os
import signal
import subprocess

import pytest

from lrcache_helpers import run_worker, write_tree
from localrunner_cache import ActionResult, CacheError, Lease, LockTimeout, gc, is_live, prune
from localrunner_cache.leases import lease_path, sweeping


@pytest.fixture
def leases(tmp_path):
    return str(tmp_path / "leases")


def _age(cas, *digests):
    """Make objects look a day old: no grace period protects them."""
    for d in digests:
        os.utime(cas.path_of(d), (0, 0))


def _start(*args):
    proc = run_worker(*args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    first = proc.stdout.readline().strip()
    assert first in (b"held", b"sweeping"), first
    return proc


def _stop(proc):
    proc.stdin.close()
    proc.wait(timeout=30)


def test_a_live_lease_keeps_objects_and_kill_9_releases_them(cas, ac, leases, tmp_path):
    tree = cas.put_tree(write_tree(tmp_path / "t", {"a": b"inside", "sub/b": b"deeper"}))
    blob = cas.put_bytes(b"restored by a live run")
    loose = cas.put_bytes(b"nobody's")
    everything = set(cas.iter_digests())
    _age(cas, *everything)
    child = _start("lease", leases, "run-1", tree, blob)
    try:
        assert is_live(leases, "run-1") and not is_live(leases, "run-2")
        stats = gc(cas, ac, leases_dir=leases)
        assert stats["leased"] == 2 and stats["deleted"] == 1
        assert set(cas.iter_digests()) == everything - {loose}
        assert cas.is_complete(tree), "a leased tree keeps everything below it"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert not is_live(leases, "run-1")
    assert os.path.exists(lease_path(leases, "run-1")), "a crashed run leaves its lease file"
    stats = gc(cas, ac, leases_dir=leases)
    assert stats["leases_removed"] == 1 and stats["leased"] == 0
    assert list(cas.iter_digests()) == []
    assert not os.path.exists(lease_path(leases, "run-1"))


def test_prune_keeps_leased_objects_of_dropped_entries(cas, ac, leases):
    d = cas.put_bytes(b"result being restored")
    ac.put("k", ActionResult(outputs={}, digests=[d], created=1.0), cas=cas)
    _age(cas, d)
    child = _start("lease", leases, "run-1", d)
    try:
        stats = prune(cas, ac, older_than_s=60, leases_dir=leases)
        assert stats["actions_dropped"] == 1 and len(ac) == 0
        assert cas.has(d)
    finally:
        _stop(child)
    prune(cas, ac, older_than_s=60, leases_dir=leases)
    assert not cas.has(d)


def test_one_lease_per_run_id_and_a_stale_one_is_replaced(leases):
    child = _start("lease", leases, "run-1")
    try:
        with pytest.raises(CacheError, match="already holds a lease"):
            Lease(leases, "run-1")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    with Lease(leases, "run-1") as lease:
        assert is_live(leases, "run-1") and lease.path == lease_path(leases, "run-1")
    assert not is_live(leases, "run-1") and not os.path.exists(lease_path(leases, "run-1"))


def test_hold_waits_while_a_gc_sweeps(cas, leases):
    d = cas.put_bytes(b"wanted")
    lease = Lease(leases, "run-1", timeout=0.3)
    sweeper = _start("sweep", leases)
    try:
        with pytest.raises(LockTimeout):
            lease.hold([d])
        assert d not in open(lease.path).read(), "nothing recorded while the sweep runs"
    finally:
        _stop(sweeper)
    lease.hold([d])
    assert open(lease.path).read().split() == [d]
    lease.release()


def test_a_gc_waits_for_nothing_once_a_run_has_recorded(cas, leases):
    d1, d2 = cas.put_bytes(b"one"), cas.put_bytes(b"two")
    with Lease(leases, "run-1") as lease:
        lease.hold([d1])
        with sweeping(leases) as (leased, stale):
            assert leased == {d1} and stale == 0
        lease.hold([d1, d2])
        assert open(lease.path).read().split() == [d1, d2], "each digest once"


def test_a_lease_removed_by_hand_is_put_back_whole(cas, leases):
    d1, d2 = cas.put_bytes(b"one"), cas.put_bytes(b"two")
    with Lease(leases, "run-1") as lease:
        lease.hold([d1])
        os.unlink(lease.path)
        lease.hold([d2])
        assert is_live(leases, "run-1")
        assert sorted(open(lease.path).read().split()) == sorted([d1, d2])


def test_a_killed_creators_temp_file_is_removed(leases):
    os.makedirs(leases)
    stray = os.path.join(leases, ".new-crashed.tmp")
    open(stray, "w").close()
    with sweeping(leases):
        pass
    assert not os.path.exists(stray)


def test_hold_refuses_what_is_not_a_digest(leases):
    with Lease(leases, "run-1") as lease:
        with pytest.raises(CacheError, match="not a digest"):
            lease.hold(["../../etc/passwd"])


def test_holds_from_many_threads_are_all_recorded(cas, leases):
    from concurrent.futures import ThreadPoolExecutor

    digests = [cas.put_bytes(b"%d" % i) for i in range(400)]
    with Lease(leases, "run-1") as lease:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda d: lease.hold([d]), digests))
        with sweeping(leases) as (leased, _stale):
            assert leased == set(digests)
        assert sorted(open(lease.path).read().split()) == sorted(digests)
