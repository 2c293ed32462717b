"""Worker processes for the multi-process tests (run as a script, never imported by name).

    cache_worker.py writer ROOT SEED [KILL_AFTER_OPS]
        store random trees and record actions forever; with KILL_AFTER_OPS, SIGKILL itself
        at that write/fsync/rename/record operation (a crash at an exact point)
    cache_worker.py share ROOT ID N        store N trees overlapping with other ids, record them
    cache_worker.py singleflight ROOT KEY WORKDIR
        wait for WORKDIR/go, then the single-flight pattern; appends to WORKDIR/ran and
        WORKDIR/log, prints the result's digest
    cache_worker.py hold ROOT KEY          hold the lock until stdin closes
    cache_worker.py fill ROOT N [abandon]  record N entries k0..k{N-1} (outputs {"n": i});
        with "abandon", exit without closing (the -wal and -shm stay, as after a crash)
    cache_worker.py openput ROOT KEY WORKDIR
        wait for WORKDIR/go, open the (damaged) action cache, record KEY, print the warnings
    cache_worker.py lease LEASES_DIR RUN_ID DIGEST...   hold a lease on the digests until stdin closes
    cache_worker.py sweep LEASES_DIR      hold the gc lock (as a gc sweeping) until stdin closes
    cache_worker.py key PATH WORKDIR       wait for WORKDIR/go, print the cache secret key at PATH
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from localrunner_cache import CAS, ActionCache, ActionResult, Lease, load_or_create_key  # noqa: E402
from localrunner_cache.leases import sweeping  # noqa: E402


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode() + b"\n")
    finally:
        os.close(fd)


def _make_tree(dirpath: str, rng: random.Random, shared: bool = False) -> None:
    os.makedirs(os.path.join(dirpath, "sub"), exist_ok=True)
    for i in range(rng.randint(1, 4)):
        size = rng.choice([0, 10, 4096, 1 << 20, (1 << 20) + 17, 3 << 20])
        with open(os.path.join(dirpath, "sub" if i % 2 else "", f"f{i}"), "wb") as f:
            f.write(rng.randbytes(size))
    if shared:  # identical content in every process: concurrent puts of one object
        with open(os.path.join(dirpath, "common"), "wb") as f:
            f.write(b"common content\n" * 70000)


def _install_crash_point(ac: ActionCache, kill_after: int) -> None:
    counter = [0]

    def tick():
        counter[0] += 1
        if counter[0] >= kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    def wrap(fn):
        def wrapped(*a, **kw):
            tick()
            result = fn(*a, **kw)
            tick()
            return result
        return wrapped

    for name in ("write", "fsync", "rename", "replace", "chmod", "utime"):
        setattr(os, name, wrap(getattr(os, name)))
    ac._index.set = wrap(ac._index.set)


def writer(root: str, seed: str, kill_after: str | None = None) -> None:
    cas, ac = CAS(root), ActionCache(root)
    rng = random.Random(int(seed))
    scratch = os.path.join(root, "..", f"scratch-{seed}")
    if kill_after is not None:
        _install_crash_point(ac, int(kill_after))
    n = 0
    while True:
        tree = os.path.join(scratch, str(n))
        _make_tree(tree, rng)
        digest = cas.put_tree(tree)
        single = cas.put_bytes(rng.randbytes(rng.randint(0, 300000)))
        ac.put(f"{seed}-{n}", ActionResult(outputs={"n": n}, digests={digest, single}), cas=cas)
        if n == 0:
            print("ready", flush=True)
        n += 1


def share(root: str, ident: str, count: str) -> None:
    cas, ac = CAS(root), ActionCache(root)
    for n in range(int(count)):
        rng = random.Random(n)  # the same trees in every process ...
        tree = os.path.join(root, "..", f"share-{ident}-{n}")
        _make_tree(tree, rng, shared=True)
        with open(os.path.join(tree, "who"), "w") as f:  # ... plus one file of its own
            f.write(ident)
        digest = cas.put_tree(tree)
        ac.put(f"{ident}-{n}", ActionResult(outputs={"tree": digest}, digests=[digest]), cas=cas)
        other = ac.get(f"{1 - int(ident)}-{n}", cas)
        assert other is None or cas.is_complete(other.outputs["tree"])
    print("done", flush=True)


def singleflight(root: str, key: str, workdir: str) -> None:
    cas, ac = CAS(root), ActionCache(root)
    _append(os.path.join(workdir, "ready"), str(os.getpid()))
    while not os.path.exists(os.path.join(workdir, "go")):
        time.sleep(0.01)
    with ac.lock(key):
        _append(os.path.join(workdir, "log"), f"enter {os.getpid()}")
        result = ac.get(key, cas)
        if result is None:
            _append(os.path.join(workdir, "ran"), str(os.getpid()))
            time.sleep(0.5)  # a slow task: the others pile up on the lock meanwhile
            digest = cas.put_bytes(b"expensive result")
            result = ActionResult(outputs={"value": digest}, digests=[digest])
            ac.put(key, result, cas=cas)
        _append(os.path.join(workdir, "log"), f"exit {os.getpid()}")
    print(result.outputs["value"], flush=True)


def hold(root: str, key: str) -> None:
    ac = ActionCache(root)
    with ac.lock(key):
        print("held", flush=True)
        sys.stdin.read()


def fill(root: str, count: str, abandon: str = "") -> None:
    cas, ac = CAS(root), ActionCache(root)
    for i in range(int(count)):
        d = cas.put_bytes(f"output {i}".encode())
        ac.put(f"k{i}", ActionResult(outputs={"n": i, "pad": "x" * 400}, digests=[d]), cas=cas)
    print("filled", flush=True)
    if abandon:
        os._exit(0)  # no close, no checkpoint: what a killed process leaves
    ac.close()


def _wait_for_go(workdir: str) -> None:
    while not os.path.exists(os.path.join(workdir, "go")):
        time.sleep(0.005)


def openput(root: str, key: str, workdir: str) -> None:
    print("ready", flush=True)
    _wait_for_go(workdir)
    cas = CAS(root)
    ac = ActionCache(root)
    d = cas.put_bytes(key.encode())
    ac.put(key, ActionResult(outputs={"who": key}, digests=[d]), cas=cas)
    print(len(ac.warnings), flush=True)


def lease(leases_dir: str, run_id: str, *digests: str) -> None:
    with Lease(leases_dir, run_id) as held:
        held.hold(digests)
        print("held", flush=True)
        sys.stdin.read()


def sweep(leases_dir: str) -> None:
    with sweeping(leases_dir):
        print("sweeping", flush=True)
        sys.stdin.read()


def key(path: str, workdir: str) -> None:
    print("ready", flush=True)
    _wait_for_go(workdir)
    print(load_or_create_key(path).decode(), flush=True)


if __name__ == "__main__":
    {"writer": writer, "share": share, "singleflight": singleflight, "hold": hold, "fill": fill,
     "openput": openput, "lease": lease, "sweep": sweep, "key": key}[sys.argv[1]](*sys.argv[2:])
