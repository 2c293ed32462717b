"""Several real processes on one store: crashes, sharing, single flight."""

import os
import random
import signal
import subprocess
import time

import pytest

from lrcache_helpers import run_worker
from localrunner_cache import CAS, ActionCache


def assert_store_consistent(store):
    """Every object is whole and every entry points at complete objects."""
    cas, ac = CAS(store), ActionCache(store)
    assert cas.verify_all()["corrupt"] == []
    entries = list(ac.entries())
    for key, result in entries:
        for d in result.digests:
            assert cas.is_complete(d), f"entry {key} points at an incomplete object {d}"
        assert ac.get(key, cas) is not None
    ac.close()
    return entries


def _kill_when_running(proc, delay):
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL


def test_kill_9_at_random_moments_leaves_a_consistent_store(store):
    rng = random.Random(1234)
    for round_ in range(8):
        proc = run_worker("writer", store, round_, stdout=subprocess.PIPE, text=True)
        _kill_when_running(proc, rng.uniform(0, 0.3))
        assert_store_consistent(store)
    entries = assert_store_consistent(store)
    assert len(entries) >= 8  # each round recorded at least its first action


@pytest.mark.parametrize("kill_after", [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144])
def test_kill_9_at_exact_write_points(store, kill_after):
    """The writer SIGKILLs itself before/after its n-th write, fsync, chmod, rename,
    utime or action record: whatever n hits, the store stays consistent."""
    proc = run_worker("writer", store, 7, kill_after, stdout=subprocess.PIPE)
    assert proc.wait(timeout=120) == -signal.SIGKILL
    assert_store_consistent(store)


def test_two_processes_sharing_one_store(store):
    procs = [run_worker("share", store, ident, 6, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for ident in (0, 1)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert out.strip() == "done"
    entries = dict(assert_store_consistent(store))
    assert sorted(entries) == sorted(f"{i}-{n}" for i in (0, 1) for n in range(6))
    cas = CAS(store)
    assert os.listdir(cas.tmp_dir) == []
    for key, result in entries.items():
        names = {e["name"] for e in cas.read_tree(result.outputs["tree"])}
        assert "who" in names and "common" in names


def test_single_flight_across_processes(store, tmp_path):
    workdir = tmp_path / "sf"
    workdir.mkdir()
    n = 4
    procs = [run_worker("singleflight", store, "the-key", workdir, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True) for _ in range(n)]
    try:
        deadline = time.monotonic() + 120  # wait until all are started, then release them at once
        while not (workdir / "ready").exists() or len((workdir / "ready").read_text().split()) < n:
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.01)
        (workdir / "go").touch()
        outputs = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            outputs.append(out.strip())
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert len((workdir / "ran").read_text().split()) == 1  # the work ran exactly once
    assert len(set(outputs)) == 1  # everyone got the first one's result
    log = (workdir / "log").read_text().split("\n")[:-1]
    assert len(log) == 2 * n
    for enter, exit_ in zip(log[::2], log[1::2]):  # critical sections never interleave
        assert enter.split()[0] == "enter" and exit_ == "exit " + enter.split()[1]
