import os
import time

from lrcache_helpers import write_tree
from localrunner_cache import ActionResult, digest_bytes, gc, prune


def test_gc_keeps_referenced_and_kept_objects_and_tree_children(cas, ac, tmp_path):
    t = cas.put_tree(write_tree(tmp_path / "t", {"a": b"in tree", "d/b": b"deep", "l": ("symlink", "tgt")}))
    referenced = cas.put_bytes(b"referenced")
    kept = cas.put_bytes(b"kept by a run record")
    garbage = [cas.put_bytes(b"garbage %d" % i) for i in range(3)]
    ac.put("k", ActionResult(digests=[t, referenced]), cas=cas)

    stats = gc(cas, ac, keep={kept})
    assert stats["deleted"] == 3
    assert stats["freed_bytes"] == sum(len(b"garbage %d" % i) for i in range(3))
    assert stats["actions"] == 1
    for d in garbage:
        assert not cas.has(d)
    for d in (t, referenced, kept, digest_bytes(b"in tree"), digest_bytes(b"deep"), digest_bytes(b"tgt")):
        assert cas.has(d)
    assert cas.is_complete(t)
    assert ac.get("k", cas) is not None


def test_gc_keeps_children_of_kept_trees(cas, ac, tmp_path):
    t = cas.put_tree(write_tree(tmp_path / "t", {"x/y/z": b"leaf"}))
    assert gc(cas, ac, keep={t})["deleted"] == 0
    assert cas.is_complete(t)
    assert gc(cas, ac, keep=set())["deleted"] == 4
    assert list(cas.iter_digests()) == []


def test_gc_grace_period_spares_young_objects(cas, ac):
    young = cas.put_bytes(b"young")
    old = cas.put_bytes(b"old")
    os.utime(cas.path_of(old), (0, 0))
    stats = gc(cas, ac, keep=set(), grace_s=3600)
    assert stats["deleted"] == 1 and cas.has(young) and not cas.has(old)


def test_gc_removes_stale_tmp_files(cas, ac, store):
    stale = os.path.join(store, "tmp", "obj-crashed-writer")
    fresh = os.path.join(store, "tmp", "obj-being-written")
    for p in (stale, fresh):
        with open(p, "wb") as f:
            f.write(b"partial")
    os.utime(stale, (time.time() - 7200,) * 2)
    assert gc(cas, ac, keep=set())["tmp_removed"] == 1
    assert os.listdir(os.path.join(store, "tmp")) == ["obj-being-written"]


def test_gc_survives_corrupt_tree_objects(cas, ac, tmp_path):
    t = cas.put_tree(write_tree(tmp_path / "t", {"a": b"1"}))
    os.chmod(cas.path_of(t), 0o644)
    with open(cas.path_of(t), "ab") as f:
        f.write(b"junk")
    stats = gc(cas, ac, keep={t})
    assert stats["deleted"] == 1  # the child is unreachable; the corrupt tree went to quarantine


def test_prune_older_than(cas, ac):
    old = cas.put_bytes(b"old")
    new = cas.put_bytes(b"new")
    ac.put("old", ActionResult(digests=[old], created=time.time() - 1000), cas=cas)
    ac.put("new", ActionResult(digests=[new]), cas=cas)
    stats = prune(cas, ac, older_than_s=500)
    assert stats["actions_dropped"] == 1 and stats["deleted"] == 1
    assert ac.get("old") is None and ac.get("new", cas) is not None
    assert not cas.has(old) and cas.has(new)


def test_prune_to_size_drops_oldest_first(cas, ac):
    now = time.time()
    shared = cas.put_bytes(b"s" * 1000)
    for i in range(5):
        d = cas.put_bytes(bytes([i]) * 1000)
        ac.put(f"k{i}", ActionResult(digests=[d, shared], created=now - 100 + i), cas=cas)
    garbage = cas.put_bytes(b"g" * 5000)
    assert cas.total_size() == 11000
    stats = prune(cas, ac, max_size_bytes=3500)  # room for the shared blob and two results
    assert stats["actions_dropped"] == 3
    assert sorted(k for k, _ in ac.entries()) == ["k3", "k4"]
    assert cas.total_size() == 3000 and cas.has(shared) and not cas.has(garbage)
    assert all(ac.get(k, cas) for k in ("k3", "k4"))


def test_prune_respects_keep(cas, ac):
    pinned = cas.put_bytes(b"p" * 4000)
    d = cas.put_bytes(b"d" * 1000)
    ac.put("k", ActionResult(digests=[d]), cas=cas)
    prune(cas, ac, max_size_bytes=1000, keep={pinned})
    assert cas.has(pinned) and len(ac) == 0 and not cas.has(d)
