import os
import stat

import pytest

from lrcache_helpers import write_tree
from localrunner_cache import CacheError, Stopped, digest_bytes, digest_tree

SPEC = {
    "a.txt": b"alpha",
    "run.sh": ("exec", b"#!/bin/sh\necho hi\n"),
    "nested/deeper/big.bin": os.urandom(3 * (1 << 20) + 5),
    "nested/same.txt": b"alpha",  # deduplicated with a.txt
    "empty": {},
    "link": ("symlink", "a.txt"),
    "dangling": ("symlink", "../outside/nowhere"),
    "ünïcode name.txt": b"u",
}


def _corrupt(cas, digest, data=b"garbage"):
    path = cas.path_of(digest)
    os.chmod(path, 0o644)
    with open(path, "wb") as f:
        f.write(data)


def _assert_same_tree(a, b):
    for dirpath, dirnames, filenames in os.walk(a):
        rel = os.path.relpath(dirpath, a)
        other = os.path.join(b, rel)
        assert sorted(os.listdir(dirpath)) == sorted(os.listdir(other))
        for name in filenames + dirnames:
            pa, pb = os.path.join(dirpath, name), os.path.join(other, name)
            if os.path.islink(pa):
                assert os.readlink(pa) == os.readlink(pb)
            elif os.path.isfile(pa):
                assert open(pa, "rb").read() == open(pb, "rb").read()
                assert bool(os.stat(pa).st_mode & stat.S_IXUSR) == bool(os.stat(pb).st_mode & stat.S_IXUSR)
                assert os.stat(pa).st_ino != os.stat(pb).st_ino


def test_layout_and_put_bytes(cas, store):
    d = cas.put_bytes(b"hello")
    assert d == digest_bytes(b"hello")
    assert cas.path_of(d) == os.path.join(store, "objects", d[:2], d[2:])
    assert open(cas.path_of(d), "rb").read() == b"hello"
    assert cas.has(d) and cas.kind(d) == "file"
    assert not os.stat(cas.path_of(d)).st_mode & 0o222  # read-only objects
    assert cas.put_bytes(b"hello") == d
    assert list(cas.iter_digests()) == [d]
    assert os.listdir(os.path.join(store, "tmp")) == []


def test_missing_and_invalid_digests(cas):
    d = digest_bytes(b"absent")
    assert not cas.has(d) and cas.kind(d) is None
    for bad in ["../../etc/passwd", "ABCDEF" * 6, "0" * 31, "", None]:
        with pytest.raises(CacheError):
            cas.path_of(bad)


def test_put_file_copies_never_links(cas, tmp_path):
    src = tmp_path / "src"
    src.write_bytes(b"original")
    d = cas.put_file(src)
    assert os.stat(cas.path_of(d)).st_ino != os.stat(src).st_ino
    assert os.stat(src).st_nlink == 1
    src.write_bytes(b"modified by a task later")
    assert cas.verify(d)
    assert open(cas.path_of(d), "rb").read() == b"original"


def test_put_file_large_streams_and_dedups(cas, tmp_path):
    data = os.urandom(5 * (1 << 20) + 3)
    (tmp_path / "a").write_bytes(data)
    (tmp_path / "b").write_bytes(data)
    assert cas.put_file(tmp_path / "a") == cas.put_file(tmp_path / "b") == digest_bytes(data)
    assert len(list(cas.iter_digests())) == 1
    assert cas.total_size() == len(data)


def test_a_copy_stops_when_asked_and_stores_nothing(cas, tmp_path):
    """stop() is asked before each MiB: a run canceled in the middle of storing gigabytes
    does not wait for the copy; no object, no temp file is left (Stopped is a CacheError)."""
    (tmp_path / "big").write_bytes(os.urandom(5 * (1 << 20)))
    asked = []

    def stop():
        asked.append(1)
        return len(asked) > 2               # the start, one MiB, then give up
    with pytest.raises(Stopped, match="stopped"):
        cas.put_file(tmp_path / "big", stop=stop)
    assert len(asked) == 3
    assert list(cas.iter_digests()) == [] and cas.total_size() == 0
    assert not os.path.isdir(cas.tmp_dir) or os.listdir(cas.tmp_dir) == []
    tree = write_tree(tmp_path / "src", SPEC)
    with pytest.raises(CacheError):
        cas.put_path(tree, stop=lambda: True)
    assert list(cas.iter_digests()) == []
    assert cas.put_file(tmp_path / "big", stop=lambda: False) == digest_bytes((tmp_path / "big").read_bytes())


def test_a_copy_reads_no_more_than_stat_says(cas, tmp_path):
    """A file that never ends or blocks its reader (/proc/kmsg says size 0) is copied as stat
    saw it: at once, never read past that."""
    assert cas.put_file("/proc/self/status") == digest_bytes(b"")
    if os.access("/proc/kmsg", os.R_OK):          # root: a read of it waits for the next kernel message
        assert cas.put_file("/proc/kmsg") == digest_bytes(b"")


def test_put_file_missing_source_raises_cache_error(cas, tmp_path):
    with pytest.raises(CacheError, match="cannot read"):
        cas.put_file(tmp_path / "nope")


def test_put_tree_matches_digest_tree_and_stores_everything(cas, tmp_path):
    src = write_tree(tmp_path / "src", SPEC)
    t = cas.put_tree(src)
    assert t == digest_tree(src)
    assert cas.kind(t) == "tree" and cas.is_complete(t)
    names = {e["name"]: e for e in cas.read_tree(t)}
    assert names["run.sh"]["mode"] == "exec" and names["link"]["mode"] == "symlink"
    assert names["empty"]["mode"] == "dir" and cas.kind(names["empty"]["digest"]) == "tree"
    assert all(cas.verify(d) for d in cas.iter_digests())
    assert cas.put_path(src) == (t, "tree")
    assert cas.put_path(os.path.join(src, "a.txt")) == (digest_bytes(b"alpha"), "file")
    with pytest.raises(CacheError):
        cas.put_path(tmp_path / "nope")


def test_materialize_tree_round_trip(cas, tmp_path):
    src = write_tree(tmp_path / "src", SPEC)
    t = cas.put_tree(src)
    dest = tmp_path / "out" / "restored"
    cas.materialize(t, dest)
    _assert_same_tree(src, str(dest))
    _assert_same_tree(str(dest), src)
    assert digest_tree(dest) == t
    for dirpath, _, filenames in os.walk(dest):  # never sharing an inode with the store
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                assert os.stat(p).st_nlink == 1
                assert os.stat(p).st_mode & stat.S_IWUSR
    assert [n for n in os.listdir(tmp_path / "out") if n != "restored"] == []


def test_materialize_file_is_an_independent_copy(cas, tmp_path):
    d = cas.put_bytes(b"content")
    dest = tmp_path / "x" / "file"
    cas.materialize(d, dest)
    assert dest.read_bytes() == b"content"
    assert os.stat(dest).st_ino != os.stat(cas.path_of(d)).st_ino
    dest.write_bytes(b"a task writes to its input")
    assert cas.verify(d)


def test_materialize_replaces_existing_destination(cas, tmp_path):
    t1 = cas.put_tree(write_tree(tmp_path / "one", {"a": b"1", "old": b"x"}))
    t2 = cas.put_tree(write_tree(tmp_path / "two", {"a": b"2"}))
    f = cas.put_bytes(b"file")
    dest = tmp_path / "dest"
    cas.materialize(t1, dest)
    cas.materialize(t2, dest)
    assert sorted(os.listdir(dest)) == ["a"] and (dest / "a").read_bytes() == b"2"
    cas.materialize(f, dest)
    assert dest.read_bytes() == b"file"
    cas.materialize(t1, dest)
    assert sorted(os.listdir(dest)) == ["a", "old"]
    assert sorted(os.listdir(tmp_path)) == ["dest", "one", "store", "two"]


def test_materialize_kind_hint_wins_over_content(cas, tmp_path):
    # A file whose bytes happen to be a tree object: the caller's kind decides.
    t = cas.put_tree(write_tree(tmp_path / "src", {"a": b"1"}))
    raw = open(cas.path_of(t), "rb").read()
    cas.materialize(t, tmp_path / "as_file", kind="file")
    assert (tmp_path / "as_file").read_bytes() == raw
    with pytest.raises(CacheError):
        cas.materialize(t, tmp_path / "bad", kind="blob")


def test_materialize_missing_object_raises(cas, tmp_path):
    with pytest.raises(CacheError, match="missing"):
        cas.materialize(digest_bytes(b"never stored"), tmp_path / "d")
    assert not os.path.lexists(tmp_path / "d")


def test_materialize_corrupt_blob_raises_quarantines_and_leaves_nothing(cas, store, tmp_path):
    src = write_tree(tmp_path / "src", {"a": b"good", "b": b"also good"})
    t = cas.put_tree(src)
    bad = digest_bytes(b"also good")
    _corrupt(cas, bad, b"evil bits")
    dest = tmp_path / "dest"
    with pytest.raises(CacheError, match="corrupt"):
        cas.materialize(t, dest)
    assert not os.path.lexists(dest)
    assert sorted(os.listdir(tmp_path)) == ["src", "store"]
    assert not cas.has(bad)
    assert any(n.startswith(bad) for n in os.listdir(os.path.join(store, "quarantine")))
    assert not cas.is_complete(t)


def test_verify_and_verify_all_quarantine_corrupt_objects(cas, store):
    good = cas.put_bytes(b"good")
    bad = cas.put_bytes(b"bad")
    _corrupt(cas, bad)
    assert cas.verify(good)
    report = cas.verify_all()
    assert report == {"checked": 2, "corrupt": [bad]}
    assert not cas.has(bad) and cas.has(good)
    assert len(os.listdir(os.path.join(store, "quarantine"))) == 1
    assert cas.verify(bad) is False
    assert cas.put_bytes(b"bad") == bad and cas.verify(bad)  # a later put heals it


def test_corrupt_tree_object_is_detected(cas, tmp_path):
    t = cas.put_tree(write_tree(tmp_path / "src", {"a": b"1"}))
    _corrupt(cas, t, open(cas.path_of(t), "rb").read().replace(b'"a"', b'"b"'))
    with pytest.raises(CacheError, match="corrupt"):
        cas.read_tree(t)
    assert not cas.has(t)


def test_delete_total_size_iter(cas):
    ds = [cas.put_bytes(b"x" * n) for n in (1, 10, 100)]
    assert sorted(cas.iter_digests()) == sorted(ds)
    assert cas.total_size() == 111
    assert cas.delete(ds[0]) and not cas.delete(ds[0])
    assert cas.total_size() == 110


def test_incomplete_tree_is_reported(cas, tmp_path):
    t = cas.put_tree(write_tree(tmp_path / "src", {"d/a": b"1", "b": b"2"}))
    assert cas.is_complete(t)
    cas.delete(digest_bytes(b"1"))
    assert cas.has(t) and not cas.is_complete(t)


def test_clean_tmp_removes_only_stale_files(cas, store):
    stale = os.path.join(store, "tmp", "obj-stale")
    fresh = os.path.join(store, "tmp", "obj-fresh")
    for p in (stale, fresh):
        open(p, "wb").close()
    os.utime(stale, (0, 0))
    assert cas.clean_tmp() == 1
    assert os.listdir(os.path.join(store, "tmp")) == ["obj-fresh"]


def test_cas_usable_from_threads(cas, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    blobs = [os.urandom(200000) for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        digests = list(pool.map(cas.put_bytes, blobs * 4))
    assert digests == [digest_bytes(b) for b in blobs] * 4
    assert cas.verify_all() == {"checked": 8, "corrupt": []}


def test_reflink_path(cas, tmp_path, monkeypatch):
    """Where FICLONE works (btrfs, XFS) objects are cloned in and out; this disk cannot,
    so stand in a clone that copies, and check the logic around it: the stored object is
    hashed as cloned, and clones out are independent files."""
    from localrunner_cache import cas as cas_module

    clones = []

    def fake_reflink(src_fd, dst_fd):
        size = os.fstat(src_fd).st_size
        os.lseek(src_fd, 0, os.SEEK_SET)
        while size > 0:
            size -= os.copy_file_range(src_fd, dst_fd, size)
        clones.append(1)
        return True

    monkeypatch.setattr(cas_module, "_reflink", fake_reflink)
    src = write_tree(tmp_path / "src", SPEC)
    t = cas.put_tree(src)
    assert t == digest_tree(src) and clones
    assert cas.verify_all()["corrupt"] == []
    cas.materialize(t, tmp_path / "out")
    _assert_same_tree(src, str(tmp_path / "out"))


def test_reflink_unsupported_falls_back_to_copy(cas, tmp_path):
    from localrunner_cache.cas import _reflink

    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"x")
    with open(a, "rb") as fa, open(b, "wb") as fb:
        assert _reflink(fa.fileno(), fb.fileno()) in (True, False)  # never raises


def test_materialize_without_verify_copies_in_kernel(cas, tmp_path):
    src = write_tree(tmp_path / "src", SPEC)
    t = cas.put_tree(src)
    cas.materialize(t, tmp_path / "out", verify=False)
    _assert_same_tree(src, str(tmp_path / "out"))
    assert digest_tree(tmp_path / "out") == t


# ---- modes: never more readable than the source ---------------------------------------

def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("source, expected", [(0o644, 0o444), (0o600, 0o400), (0o640, 0o440),
                                              (0o755, 0o444), (0o700, 0o400), (0o200, 0o400)])
def test_object_keeps_only_the_read_bits_of_its_source(cas, tmp_path, source, expected):
    path = tmp_path / "f"
    path.write_bytes(b"content %o" % source)
    os.chmod(path, source)
    d = cas.put_file(path)
    assert _mode(cas.path_of(d)) == expected


def test_same_content_from_a_private_file_narrows_the_object(cas, tmp_path):
    public, private = tmp_path / "public", tmp_path / "private"
    public.write_bytes(b"same bytes")
    private.write_bytes(b"same bytes")
    os.chmod(private, 0o600)
    d = cas.put_file(public)
    assert _mode(cas.path_of(d)) == 0o444
    assert cas.put_file(private) == d
    assert _mode(cas.path_of(d)) == 0o400
    assert cas.put_file(public) == d
    assert _mode(cas.path_of(d)) == 0o400, "modes only ever narrow"


def test_a_private_file_in_a_tree_stays_private_when_restored(cas, tmp_path):
    src = write_tree(tmp_path / "src", {"open.txt": b"hello", "key.pem": b"-----BEGIN", "tool": ("exec", b"#!")})
    os.chmod(os.path.join(src, "key.pem"), 0o600)
    os.chmod(os.path.join(src, "tool"), 0o700)
    t = cas.put_tree(src)
    cas.materialize(t, tmp_path / "out")
    assert _mode(tmp_path / "out" / "open.txt") == 0o644
    assert _mode(tmp_path / "out" / "key.pem") == 0o600
    assert _mode(tmp_path / "out" / "tool") == 0o700
    assert _mode(cas.path_of(t)) == 0o444, "a tree object is no file of the task's"


def test_umask_applies_to_objects(tmp_path):
    from localrunner_cache import CAS

    old = os.umask(0o077)
    try:
        private = CAS(tmp_path / "store")
        d = private.put_bytes(b"made under umask 077")
        (tmp_path / "f").write_bytes(b"a 0644 file")
        os.chmod(tmp_path / "f", 0o644)
        f = private.put_file(tmp_path / "f")
    finally:
        os.umask(old)
    assert _mode(private.path_of(d)) == 0o400 and _mode(private.path_of(f)) == 0o400


# ---- reflink: restores are verified like copies ---------------------------------------

@pytest.fixture
def reflink_store(tmp_path):
    """A CAS on a real copy-on-write file system (a btrfs image on a loop device)."""
    import shutil
    import subprocess

    from localrunner_cache import CAS
    from localrunner_cache.cas import _reflink

    mkfs = shutil.which("mkfs.btrfs")
    if mkfs is None:
        pytest.skip("mkfs.btrfs is not installed (apt-get install btrfs-progs)")
    image, mnt = tmp_path / "btrfs.img", tmp_path / "mnt"
    with open(image, "wb") as f:
        f.truncate(160 << 20)  # sparse
    mnt.mkdir()
    if subprocess.run([mkfs, "-q", str(image)], capture_output=True).returncode != 0:
        pytest.skip("mkfs.btrfs failed here")
    done = subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a loop device here: {done.stderr.strip()}")
    try:
        a, b = mnt / "probe-a", mnt / "probe-b"
        a.write_bytes(b"probe")
        with open(a, "rb") as fa, open(b, "wb") as fb:
            assert _reflink(fa.fileno(), fb.fileno()), "btrfs clones files"
        yield CAS(mnt / "store"), mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_reflinked_restore_is_verified(reflink_store):
    cas, mnt = reflink_store
    src = write_tree(mnt / "src", SPEC)
    t = cas.put_tree(src)
    cas.materialize(t, mnt / "out")
    _assert_same_tree(src, str(mnt / "out"))
    big = digest_bytes(open(os.path.join(src, "nested/deeper/big.bin"), "rb").read())
    path = cas.path_of(big)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:  # rot in place: same size, same inode, one byte off
        f.seek(1 << 20)
        f.write(b"\0" if f.read(1) != b"\0" else b"\1")
    with pytest.raises(CacheError, match="corrupt"):
        cas.materialize(t, mnt / "again")
    assert not cas.has(big) and os.listdir(cas.quarantine_dir)
    assert not os.path.exists(mnt / "again")
