import os
import time

import pytest

from lrcache_helpers import run_worker, write_tree
from localrunner_cache import ActionCache, ActionResult, CacheError, LockTimeout, digest_bytes


def test_action_result_json_round_trip():
    r = ActionResult(outputs={"model": {"digest": "ab" * 16, "kind": "tree"}, "acc": 0.5},
                     digests=["ab" * 16, "cd" * 16, "ab" * 16], producer={"run": "r1", "task": "train"},
                     key_parts={"image": "python:3.11", "args": ["a", "b"]})
    assert r.digests == {"ab" * 16, "cd" * 16}
    back = ActionResult.from_json(r.to_json())
    assert back == r
    assert ActionResult.from_json(r.to_json().encode()) == r
    assert abs(ActionResult().created - time.time()) < 3600


def test_put_get_entries_delete_len(ac, cas):
    d = cas.put_bytes(b"out")
    r = ActionResult(outputs={"o": d}, digests={d}, producer={"run": "1"})
    assert ac.get("k1") is None and len(ac) == 0
    ac.put("k1", r, cas=cas)
    ac.put("k2", ActionResult(outputs={"x": 1}))
    assert ac.get("k1") == r and ac.get("k1", cas) == r
    assert len(ac) == 2
    assert dict(ac.entries()) == {"k1": r, "k2": ActionResult(outputs={"x": 1}, created=ac.get("k2").created)}
    assert ac.delete("k1") and not ac.delete("k1")
    assert ac.get("k1") is None and len(ac) == 1


def test_entries_visible_to_a_second_instance(store, cas):
    d = cas.put_bytes(b"x")
    ActionCache(store).put("k", ActionResult(digests=[d]), cas=cas)
    assert ActionCache(store).get("k", cas).digests == {d}


def test_max_age(ac):
    ac.put("old", ActionResult(created=time.time() - 100))
    assert ac.get("old", max_age_s=1000) is not None
    assert ac.get("old", max_age_s=50) is None
    assert ac.get("old") is not None


def test_missing_object_is_a_miss(ac, cas, tmp_path):
    t = cas.put_tree(write_tree(tmp_path / "t", {"deep/f": b"child"}))
    ac.put("k", ActionResult(digests=[t]), cas=cas)
    assert ac.get("k", cas) is not None
    cas.delete(digest_bytes(b"child"))  # a tree whose child is gone
    assert ac.get("k", cas) is None
    assert ac.get("k") is not None  # without a CAS nothing is checked


def test_corrupt_object_after_verify_is_a_miss(ac, cas):
    d = cas.put_bytes(b"precious")
    ac.put("k", ActionResult(digests=[d]), cas=cas)
    path = cas.path_of(d)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.write(b"P")
    assert cas.verify_all()["corrupt"] == [d]
    assert ac.get("k", cas) is None


def test_put_refuses_entries_pointing_at_missing_objects(ac, cas):
    with pytest.raises(CacheError, match="not in the CAS"):
        ac.put("k", ActionResult(digests=[digest_bytes(b"never stored")]), cas=cas)
    with pytest.raises(CacheError):
        ac.put("k", ActionResult(digests=["not-a-digest"]), cas=cas)
    assert ac.get("k") is None and len(ac) == 0


def test_unreadable_entry_is_a_miss(ac):
    ac._index.set("k", "{not json")
    assert [problem is not None for _k, _r, problem in ac.scan()] == [True]
    assert list(ac.entries()) == []
    assert ac.get("k") is None
    assert len(ac.warnings) == 1 and "unreadable" in ac.warnings[0]
    assert len(ac) == 0, "an unreadable entry is dropped when read"


def test_get_many_reads_what_get_reads(ac, cas):
    d = cas.put_bytes(b"out")
    entries = {f"k{i}": ActionResult(outputs={"i": i}, digests={d}, created=1000.0 + i) for i in range(700)}
    for key, result in entries.items():
        ac.put(key, result, cas=cas)
    ac._index.set("bad", "{not json")
    asked = [f"k{i}" for i in range(0, 800, 2)] + ["bad", "absent"]
    got = ac.get_many(asked)
    assert got == {k: entries[k] for k in asked if k in entries}           # over one statement's 500
    assert all(ac.get(k) == r for k, r in got.items())
    assert len(ac.warnings) == 1 and "unreadable" in ac.warnings[0]
    assert ac._index.get("bad") is None, "an unreadable entry is dropped when read, as get() drops it"
    assert ac.get_many([]) == {}


def test_lock_is_exclusive_between_threads(ac):
    import threading

    inside, overlaps = [], []

    def work():
        for _ in range(20):
            with ac.lock("key"):
                inside.append(1)
                if len(inside) > 1:
                    overlaps.append(1)
                time.sleep(0.001)
                inside.pop()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []


def test_lock_keys_with_odd_characters(ac):
    key = "a/b\\..:ü" * 40
    with ac.lock(key, timeout=5):
        pass
    assert all("/" not in n for n in os.listdir(ac.locks_dir))


def test_lock_timeout_while_another_process_holds_it(store):
    import subprocess

    holder = run_worker("hold", store, "key", stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        ac = ActionCache(store)
        with pytest.raises(LockTimeout):
            with ac.lock("key", timeout=0.2):
                pass
        with ac.lock("other", timeout=5):  # other keys are unaffected
            pass
        holder.stdin.close()
        assert holder.wait(timeout=60) == 0
        with ac.lock("key", timeout=60):
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_lock_released_when_holder_is_killed(store):
    import signal
    import subprocess

    holder = run_worker("hold", store, "key", stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with ActionCache(store).lock("key", timeout=60):
        pass


def test_clean_locks_spares_held_locks(ac):
    with ac.lock("busy"):
        with ac.lock("idle"):
            pass
        assert ac.clean_locks() == 1
        assert os.listdir(ac.locks_dir) == ["busy.lock"]
    with ac.lock("idle", timeout=5):  # recreated on demand
        pass
