"""A full disk (a 1 MiB tmpfs) gives a clear CacheError, no partial object, no entry."""

import os
import subprocess
import uuid

import pytest

from lrcache_helpers import write_tree
from localrunner_cache import CAS, ActionCache, ActionResult, CacheError, digest_bytes


@pytest.fixture
def small_disk(tmp_path):
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)],
                              capture_output=True, text=True)
    except OSError as exc:
        pytest.skip(f"cannot run mount: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def _objects(cas):
    return list(cas.iter_digests())


def _assert_clean(cas):
    assert os.listdir(cas.tmp_dir) == []
    assert cas.verify_all()["corrupt"] == []


def test_put_bytes_on_full_disk(small_disk):
    cas = CAS(small_disk / "store")
    with pytest.raises(CacheError, match="disk full"):
        cas.put_bytes(os.urandom(2 << 20))
    assert _objects(cas) == []
    _assert_clean(cas)
    assert cas.put_bytes(b"small") == digest_bytes(b"small")  # still usable afterwards


def test_put_file_on_full_disk(small_disk, tmp_path):
    cas = CAS(small_disk / "store")
    big = tmp_path / "big"
    big.write_bytes(os.urandom(2 << 20))
    with pytest.raises(CacheError, match="disk full") as err:
        cas.put_file(big)
    assert str(small_disk) in str(err.value)
    assert _objects(cas) == []
    _assert_clean(cas)


def test_task_outputs_on_full_disk_record_no_action(small_disk, tmp_path):
    store = small_disk / "store"
    cas, ac = CAS(store), ActionCache(store)
    out = write_tree(tmp_path / "out", {"a_small": b"fits", "b_big": os.urandom(2 << 20)})
    key = uuid.uuid4().hex
    with pytest.raises(CacheError, match="disk full"):
        # the engine's order: objects first, the action entry only when they are all in
        digest = cas.put_tree(out)
        ac.put(key, ActionResult(digests=[digest]), cas=cas)
    assert ac.get(key) is None and len(ac) == 0
    assert _objects(cas) == [digest_bytes(b"fits")]  # whole objects only, and no tree
    _assert_clean(cas)


def test_action_put_on_full_disk(small_disk):
    store = small_disk / "store"
    cas, ac = CAS(store), ActionCache(store)
    d = cas.put_bytes(b"result")
    filler = small_disk / "filler"
    with pytest.raises(OSError):
        with open(filler, "wb") as f:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
    with pytest.raises(CacheError, match="disk full|database or disk is full"):
        ac.put("k", ActionResult(outputs={"blob": "x" * 300000}, digests=[d]), cas=cas)
    assert ac.get("k") is None
    leftovers = [f for _, _, files in os.walk(store / "actions") for f in files if not f.startswith("cache.db")]
    assert leftovers == []
    filler.unlink()
    ac.put("k", ActionResult(digests=[d]), cas=cas)  # room again: works
    assert ac.get("k", cas) is not None
