"""Damaged sqlite files (random bytes, truncation, garbage side files): every index is
set aside in quarantine/ with one warning and rebuilt; nothing raises; what is read back
is never another entry's data."""

import os
import subprocess
import sys

import pytest

from lrcache_helpers import run_worker, write_tree
from localrunner_cache import CAS, ActionCache, ActionResult, StatMemo, digest_bytes, digest_file, verify

N = 300


def _fill(root, count=N, abandon=False):
    """Entries k0..k{count-1}, written by another process; with ``abandon`` it exits
    without closing, leaving the -wal and -shm a crashed process leaves."""
    proc = run_worker("fill", root, count, *(["abandon"] if abandon else []), stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and b"filled" in out


def _damage(path, how):
    size = os.path.getsize(path)
    if how == "random":
        with open(path, "r+b") as f:
            f.write(os.urandom(max(size, 4096)))
    elif how == "truncated-half":
        os.truncate(path, size // 2)
    elif how == "truncated-header":
        os.truncate(path, 100)
    elif how == "random-middle":
        with open(path, "r+b") as f:
            f.seek(size // 2)
            f.write(os.urandom(16384))
    else:
        raise AssertionError(how)


def _db(store):
    return os.path.join(store, "actions", "cache.db")


def _quarantined(store):
    folder = os.path.join(store, "quarantine")
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def _assert_entries_are_their_own(ac):
    """Whatever survived belongs to its key: k<i> -> {"n": i}."""
    entries = dict(ac.entries())
    for key, result in entries.items():
        assert result.outputs["n"] == int(key[1:]), key
    return entries


def _assert_usable(store, cas=None):
    cas = cas or CAS(store)
    ac = ActionCache(store)
    d = cas.put_bytes(b"after the damage")
    ac.put("fresh", ActionResult(outputs={"n": -1}, digests=[d]), cas=cas)
    assert ac.get("fresh", cas).outputs == {"n": -1}
    ac.close()


@pytest.mark.parametrize("abandon", [False, True], ids=["closed", "crashed-writer"])
@pytest.mark.parametrize("how", ["random", "truncated-half", "truncated-header"])
def test_damaged_action_index_is_quarantined_and_rebuilt(store, how, abandon):
    _fill(store, abandon=abandon)
    _damage(_db(store), how)
    warnings = []
    ac = ActionCache(store, warnings=warnings)
    entries = _assert_entries_are_their_own(ac)   # damage may only show once pages are read
    assert ac.get("k0") is None or ac.get("k0").outputs["n"] == 0
    assert len(warnings) == 1 and "damaged" in warnings[0], warnings
    [folder] = _quarantined(store)
    assert folder.startswith("actions.")
    assert "cache.db" in os.listdir(os.path.join(store, "quarantine", folder))
    assert len(entries) < N
    ac.close()
    _assert_usable(store)
    again = ActionCache(store)
    assert again.warnings == [] and _quarantined(store) == [folder]
    assert again.get("fresh") is not None
    again.close()


def test_salvage_keeps_the_readable_entries(store):
    _fill(store, count=2000)
    _damage(_db(store), "truncated-half")
    ac = ActionCache(store)
    entries = _assert_entries_are_their_own(ac)
    assert 0 < len(entries) < 2000, len(entries)
    assert "salvaged" in ac.warnings[0]
    ac.close()


@pytest.mark.parametrize("side", ["-wal", "-shm"])
def test_garbage_side_file_is_quarantined(store, side):
    _fill(store, abandon=True)
    assert os.path.exists(_db(store) + side)
    _damage(_db(store) + side, "random")
    warnings = []
    ac = ActionCache(store, warnings=warnings)
    entries = _assert_entries_are_their_own(ac)
    assert len(warnings) == 1 and "side file" in warnings[0], warnings
    [folder] = _quarantined(store)
    assert os.listdir(os.path.join(store, "quarantine", folder)) == ["cache.db" + side]
    if side == "-shm":
        assert len(entries) == N, "the wal-index is rebuilt from the log: nothing is lost"
    ac.close()
    _assert_usable(store)


@pytest.mark.parametrize("side", ["-wal", "-shm"])
def test_truncated_side_file_is_recovered_by_sqlite(store, side):
    """A torn log is what a crash leaves: sqlite keeps the committed prefix, no warning."""
    _fill(store, abandon=True)
    _damage(_db(store) + side, "truncated-half")
    ac = ActionCache(store)
    _assert_entries_are_their_own(ac)
    assert ac.warnings == [] and _quarantined(store) == []
    ac.close()
    _assert_usable(store)


def test_check_finds_damage_that_queries_do_not_reach(store):
    _fill(store, count=2000)
    _damage(_db(store), "random-middle")
    ac = ActionCache(store)
    assert ac.get("k1").outputs["n"] == 1, "the damaged pages are not on this path"
    assert ac.check() is not None
    assert len(_quarantined(store)) == 1 and len(ac.warnings) == 1
    _assert_entries_are_their_own(ac)
    assert ac.check() is None
    ac.close()


def test_processes_meeting_the_same_damage_repair_it_once(store, tmp_path):
    _fill(store)
    _damage(_db(store), "random")
    workdir = tmp_path / "work"
    workdir.mkdir()
    procs = [run_worker("openput", store, f"p{i}", workdir, stdout=subprocess.PIPE) for i in range(4)]
    for p in procs:
        assert p.stdout.readline().strip() == b"ready"
    (workdir / "go").touch()
    warned = [int(p.communicate(timeout=120)[0]) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4
    assert sum(warned) == 1, "one process repairs, the others open the rebuilt index"
    assert len(_quarantined(store)) == 1
    ac = ActionCache(store)
    assert sorted(k for k, _ in ac.entries()) == ["p0", "p1", "p2", "p3"]
    ac.close()


def test_entry_of_another_key_is_a_miss(store, cas):
    ac = ActionCache(store)
    d = cas.put_bytes(b"x")
    ac.put("a", ActionResult(outputs={"n": 1}, digests=[d]), cas=cas)
    ac._index.set("b", ac._index.get("a"))  # what a damaged page could hand back
    assert ac.get("b", cas) is None
    assert "another key" in ac.warnings[0]
    assert ac.get("a", cas).outputs == {"n": 1}
    ac.close()


@pytest.mark.parametrize("how", ["random", "truncated-half", "truncated-header", "wal-garbage"])
def test_damaged_stat_memo_is_rebuilt(tmp_path, how):
    files = write_tree(tmp_path / "files", {f"f{i}": os.urandom(5000) for i in range(50)})
    db = str(tmp_path / "memo.db")
    code = (f"import os, sys; sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))!r});"
            "from localrunner_cache import StatMemo;"
            f"m = StatMemo({db!r}); [m.digest_file(os.path.join({files!r}, n)) for n in os.listdir({files!r})];"
            # a garbage -wal needs one left behind (a crash); else close: the rows reach the file
            + ("os._exit(0)" if how == "wal-garbage" else "m.close()"))
    subprocess.run([sys.executable, "-c", code], check=True)
    if how == "wal-garbage":
        _damage(db + "-wal", "random")
    else:
        _damage(db, how)
    warnings = []
    memo = StatMemo(db, quarantine_dir=tmp_path / "quarantine", warnings=warnings)
    for name in os.listdir(files):
        path = os.path.join(files, name)
        assert memo.digest_file(path) == digest_file(path)
    assert len(warnings) == 1 and "stat memo" in warnings[0], warnings
    assert len(os.listdir(tmp_path / "quarantine")) == 1
    memo.close()
    again = StatMemo(db, quarantine_dir=tmp_path / "quarantine")
    assert len(again) == 50 and again.warnings == []
    again.close()


def test_verify_reports_damage_and_repair_drops_broken_entries(store, cas, tmp_path):
    ac = ActionCache(store)
    good, rotten, gone = (cas.put_bytes(x) for x in (b"good", b"rotten", b"gone"))
    tree = cas.put_tree(write_tree(tmp_path / "t", {"a": b"gone"}))
    for key, d in (("good", good), ("rotten", rotten), ("gone", tree)):
        ac.put(key, ActionResult(outputs={"d": d}, digests=[d]), cas=cas)
    ac._index.set("garbage", "{not json")
    os.chmod(cas.path_of(rotten), 0o644)
    with open(cas.path_of(rotten), "wb") as f:
        f.write(b"bit rot")
    cas.delete(gone)
    report = verify(cas, ac)
    assert report["corrupt"] == [rotten]
    assert sorted(report["incomplete"]) == ["gone", "rotten"]
    assert report["unreadable"] == ["garbage"]
    assert report["damaged"] == 4 and report["dropped"] == 0
    assert len(ac) == 4, "verify alone changes no entry"
    repaired = verify(cas, ac, repair=True)
    assert repaired["dropped"] == 3
    assert [k for k, _ in ac.entries()] == ["good"] and len(ac) == 1
    assert verify(cas, ac)["damaged"] == 0
    assert cas.is_complete(good) and digest_bytes(b"good") == good
    ac.close()


def test_verify_counts_an_index_rebuilt_when_opened(store):
    _fill(store)
    _damage(_db(store), "random")
    cas, ac = CAS(store), ActionCache(store)
    report = verify(cas, ac)
    assert "actions" in report["damaged_indexes"] and report["damaged"] >= 1
    ac.close()


def test_get_many_reads_what_get_reads_and_meets_damage_as_get_does(tmp_path):
    from localrunner_cache.index import Index
    index = Index(tmp_path / "last", "last")
    index.set_many([(f"k{i}", f"v{i}") for i in range(1200)])      # more than one statement's worth
    asked = [f"k{i}" for i in range(0, 1300, 3)] + ["missing", 7]
    got = index.get_many(asked)
    assert got == {f"k{i}": f"v{i}" for i in range(0, 1200, 3)}
    assert all(index.get(k) == v for k, v in got.items()) and index.get_many([]) == {}
    index.close()
    _damage(str(tmp_path / "last" / "cache.db"), "random")
    warnings = []
    index = Index(tmp_path / "last", "last", warnings=warnings)
    assert index.get_many(asked) == {} and warnings          # set aside and rebuilt: nothing raises
    index.close()
