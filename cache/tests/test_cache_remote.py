"""RemoteStore against a real S3 server (moto_server) through the minio client."""

import io
import os

import pytest

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
