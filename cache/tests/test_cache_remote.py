"""RemoteStore against a real S3 server (moto_server) through the minio client."""

import io
import os

import pytest
from minio.commonconfig import CopySource

from lrcache_helpers import write_tree
from localrunner_cache import CAS, ActionResult, CacheError, RemoteStore, digest_bytes, digest_tree


def _names(client, bucket, prefix=""):
    return sorted(o.object_name for o in client.list_objects(bucket, prefix=prefix, recursive=True))


def test_push_and_pull_a_file(s3_client, bucket, tmp_path):
    here, there = CAS(tmp_path / "a"), CAS(tmp_path / "b")
    data = os.urandom(7 * (1 << 20) + 3)  # big enough for a multipart upload
    d = here.put_bytes(data)
    remote = RemoteStore(s3_client, bucket)
    assert not remote.has(d)
    assert remote.push(here, d) == 1
    assert remote.has(d)
    assert _names(s3_client, bucket) == [f"objects/{d[:2]}/{d[2:]}"]
    assert remote.push(here, d) == 0
    assert remote.pull(there, d) == 1
    assert there.verify(d) and open(there.path_of(d), "rb").read() == data
    assert remote.pull(there, d) == 0


def test_push_and_pull_a_tree(s3_client, bucket, tmp_path):
    src = write_tree(tmp_path / "src", {"a": b"1", "x/y/b": ("exec", b"2"), "l": ("symlink", "a"), "e": {}})
    here, there = CAS(tmp_path / "a"), CAS(tmp_path / "b")
    t = here.put_tree(src)
    remote = RemoteStore(s3_client, bucket, prefix="team/cache")
    uploaded = remote.push(here, t)
    assert uploaded == len(list(here.iter_digests()))
    assert all(n.startswith("team/cache/objects/") for n in _names(s3_client, bucket))
    assert remote.pull(there, t) == uploaded
    assert there.is_complete(t)
    there.materialize(t, tmp_path / "out")
    assert digest_tree(tmp_path / "out") == t


def test_pull_repairs_a_partially_missing_local_tree(s3_client, bucket, tmp_path):
    cas = CAS(tmp_path / "a")
    t = cas.put_tree(write_tree(tmp_path / "src", {"a": b"lost", "b": b"kept"}))
    remote = RemoteStore(s3_client, bucket)
    remote.push(cas, t)
    cas.delete(digest_bytes(b"lost"))
    assert not cas.is_complete(t)
    assert remote.pull(cas, t) == 1
    assert cas.is_complete(t)


def test_actions_round_trip(s3_client, bucket, tmp_path):
    cas = CAS(tmp_path / "a")
    d = cas.put_bytes(b"output")
    remote = RemoteStore(s3_client, bucket, prefix="p/")
    r = ActionResult(outputs={"o": d}, digests=[d], producer={"run": "r"}, key_parts={"k": 1})
    assert remote.get_action("key") is None
    with pytest.raises(CacheError, match="not pushed"):
        remote.put_action("key", r)
    assert remote.get_action("key") is None
    remote.push(cas, d)
    remote.put_action("key", r)
    assert "p/actions/key.json" in _names(s3_client, bucket)
    assert remote.get_action("key") == r
    remote.delete_action("key")
    assert remote.get_action("key") is None


def test_pull_of_a_missing_object_raises(s3_client, bucket, tmp_path):
    cas = CAS(tmp_path / "a")
    with pytest.raises(CacheError, match="not in the remote store"):
        RemoteStore(s3_client, bucket).pull(cas, digest_bytes(b"nowhere"))


@pytest.mark.parametrize("payload", [b"tampered", b"localrunner-tree/1\n[]"])
def test_corrupt_remote_object_is_never_stored(s3_client, bucket, tmp_path, payload):
    cas = CAS(tmp_path / "a")
    remote = RemoteStore(s3_client, bucket)
    d = digest_bytes(b"the real content")
    s3_client.put_object(bucket, remote.object_name(d), io.BytesIO(payload), len(payload))
    with pytest.raises(CacheError, match="does not match"):
        remote.pull(cas, d)
    assert not cas.has(d) and os.listdir(cas.tmp_dir) == []


def test_corrupt_local_object_is_never_pushed(s3_client, bucket, tmp_path):
    cas = CAS(tmp_path / "a")
    d = cas.put_bytes(b"fine")
    os.chmod(cas.path_of(d), 0o644)
    with open(cas.path_of(d), "wb") as f:
        f.write(b"rot")
    remote = RemoteStore(s3_client, bucket)
    with pytest.raises(CacheError, match="corrupt"):
        remote.push(cas, d)
    assert not remote.has(d)


def test_unreachable_server_raises_cache_error(tmp_path):
    import urllib3
    from minio import Minio

    client = Minio("127.0.0.1:1", access_key="x", secret_key="y", secure=False, region="us-east-1",
                   http_client=urllib3.PoolManager(retries=urllib3.Retry(total=0)))
    with pytest.raises(CacheError):
        RemoteStore(client, "bucket").has(digest_bytes(b"x"))


# ---- a dead remote costs one timeout: the circuit breaker -----------------------------

def _short_timeout_client(endpoint):
    import urllib3
    from minio import Minio

    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=1, read=1), retries=urllib3.Retry(total=0))
    return Minio(endpoint, access_key="x", secret_key="y", secure=False, region="us-east-1", http_client=http)


def test_a_dead_remote_is_asked_once(black_hole, tmp_path):
    import time

    from localrunner_cache import RemoteUnavailable

    cas = CAS(tmp_path / "a")
    warnings = []
    remote = RemoteStore(_short_timeout_client(black_hole.endpoint), "bucket", warnings=warnings)
    started = time.monotonic()
    errors = []
    for i in range(10):  # a run's worth of lookups and uploads
        for call in (lambda: remote.get_action(f"key{i}"), lambda: remote.push(cas, cas.put_bytes(b"%d" % i)),
                     lambda: remote.pull(cas, digest_bytes(b"elsewhere %d" % i))):
            with pytest.raises(CacheError) as info:
                call()
            errors.append(info.value)
    elapsed = time.monotonic() - started
    assert all(isinstance(e, RemoteUnavailable) for e in errors)
    assert len(warnings) == 1 and "not used for the rest of this run" in warnings[0], warnings
    assert remote.down is not None
    if black_hole.kind == "silent":
        assert black_hole.accepted == 1, "one request reached the remote, none after it"
    assert elapsed < 20, f"a safety bound only (measured: {elapsed:.1f}s)"


def test_a_not_found_is_an_answer_not_a_failure(s3_client, bucket, tmp_path):
    remote = RemoteStore(s3_client, bucket)
    assert remote.get_action("nothing") is None and not remote.has(digest_bytes(b"nothing"))
    with pytest.raises(CacheError, match="not in the remote store"):
        remote.pull(CAS(tmp_path / "a"), digest_bytes(b"nothing"))
    assert remote.down is None and remote.warnings == []


# ---- damage on the remote is repaired, not kept ---------------------------------------

def test_a_corrupt_remote_blob_is_deleted_and_the_next_upload_replaces_it(s3_client, bucket, tmp_path):
    from localrunner_cache import RemoteDamaged

    here, there = CAS(tmp_path / "a"), CAS(tmp_path / "b")
    d = here.put_bytes(b"the real content")
    remote = RemoteStore(s3_client, bucket)
    remote.push(here, d)
    s3_client.put_object(bucket, remote.object_name(d), io.BytesIO(b"rot"), 3)
    assert remote.push(here, d) == 0, "present remotely: push alone cannot tell"
    with pytest.raises(RemoteDamaged):
        remote.pull(there, d)
    assert not remote.has(d) and not there.has(d)
    assert remote.down is None, "a corrupt object is no reason to give the remote up"
    assert remote.push(here, d) == 1
    assert remote.pull(there, d) == 1 and there.verify(d)


def test_a_remote_tree_missing_a_child_is_deleted_with_its_parents(s3_client, bucket, tmp_path):
    from localrunner_cache import RemoteDamaged

    src = write_tree(tmp_path / "src", {"top": b"1", "sub/deep": b"lost remotely"})
    here, there = CAS(tmp_path / "a"), CAS(tmp_path / "b")
    t = here.put_tree(src)
    sub = [e["digest"] for e in here.read_tree(t) if e["name"] == "sub"][0]
    remote = RemoteStore(s3_client, bucket)
    remote.push(here, t)
    s3_client.remove_object(bucket, remote.object_name(digest_bytes(b"lost remotely")))
    with pytest.raises(RemoteDamaged):
        remote.pull(there, t)
    assert not remote.has(sub) and not remote.has(t), "an incomplete tree is no tree"
    assert not there.has(t), "nothing incomplete is stored locally"
    assert remote.push(here, t) == 3  # the blob, the subtree, the root
    remote.pull(there, t)
    there.materialize(t, tmp_path / "out")
    assert digest_tree(tmp_path / "out") == t


@pytest.mark.parametrize("payload", [b"{not json", b'{"schema": 1, "created": "yesterday"}',
                                     b'{"schema": 1, "created": 1, "digests": ["../../x"]}'])
def test_an_unreadable_remote_entry_is_an_error_not_an_outage(s3_client, bucket, payload):
    remote = RemoteStore(s3_client, bucket)
    s3_client.put_object(bucket, remote.action_name("k"), io.BytesIO(payload), len(payload))
    with pytest.raises(CacheError, match="unreadable"):
        remote.get_action("k")
    assert remote.down is None and remote.get_action("other") is None


def test_an_entry_moved_to_another_key_is_refused(s3_client, bucket, tmp_path):
    cas = CAS(tmp_path / "a")
    d = cas.put_bytes(b"out")
    remote = RemoteStore(s3_client, bucket)
    remote.push(cas, d)
    remote.put_action("a", ActionResult(outputs={"o": d}, digests=[d]))
    s3_client.copy_object(bucket, remote.action_name("b"), CopySource(bucket, remote.action_name("a")))
    with pytest.raises(CacheError, match="another key"):
        remote.get_action("b")


def test_pulled_objects_are_read_only_and_follow_the_umask(s3_client, bucket, tmp_path):
    here = CAS(tmp_path / "a")
    d = here.put_bytes(b"shared")
    remote = RemoteStore(s3_client, bucket)
    remote.push(here, d)
    old = os.umask(0o077)
    try:
        private = CAS(tmp_path / "private")
    finally:
        os.umask(old)
    remote.pull(private, d)
    assert os.stat(private.path_of(d)).st_mode & 0o777 == 0o400
    public = CAS(tmp_path / "public")
    remote.pull(public, d)
    assert os.stat(public.path_of(d)).st_mode & 0o777 == 0o444 & ~old | 0o400
