"""RemoteStore: the CAS + action cache layout in an S3 bucket, through the minio client.

    <prefix>objects/ab/cdef...    objects, named by digest exactly as on disk
    <prefix>actions/<key>.json    action results (ActionResult.to_json())

The local invariants hold remotely too: push uploads children before their tree and all
objects before the caller puts the action, so a remote tree that exists is complete and
an action that exists points at objects that exist. Every object is verified before it
is uploaded and while it is downloaded: corruption never crosses the wire.
"""

from __future__ import annotations

import io

import urllib3
from minio.error import S3Error

from .action_cache import ActionResult, safe_name
from .digest import TREE_MAGIC, decode_tree, digest_bytes
from .errors import CacheError

_NOT_FOUND = {"NoSuchKey", "NotFound", "ResourceNotFound", "NoSuchObject"}
_REMOTE_ERRORS = (S3Error, urllib3.exceptions.HTTPError, OSError)


class _Prepended:
    """A reader that yields ``head`` and then the rest of ``body``."""

    def __init__(self, head: bytes, body):
        self._head, self._body = head, body

    def read(self, n: int = -1) -> bytes:
        if self._head:
            out, self._head = self._head, b""
            return out
        return self._body.read(n)


class RemoteStore:
    def __init__(self, client, bucket: str, prefix: str = ""):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"

    def __repr__(self) -> str:
        return f"RemoteStore(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def object_name(self, digest: str) -> str:
        return f"{self.prefix}objects/{digest[:2]}/{digest[2:]}"

    def action_name(self, key: str) -> str:
        return f"{self.prefix}actions/{safe_name(key)}.json"

    def _fail(self, what: str, exc: Exception) -> CacheError:
        return CacheError(f"remote store s3://{self.bucket}/{self.prefix}: cannot {what}: {exc}")

    def _exists(self, name: str) -> bool:
        try:
            self.client.stat_object(self.bucket, name)
            return True
        except S3Error as exc:
            if exc.code in _NOT_FOUND:
                return False
            raise self._fail(f"stat {name}", exc) from exc
        except _REMOTE_ERRORS as exc:
            raise self._fail(f"stat {name}", exc) from exc

    def has(self, digest: str) -> bool:
        return self._exists(self.object_name(digest))

    def push(self, cas, digest: str, _seen: set | None = None) -> int:
        """Upload ``digest`` (a tree with everything below it) unless already there;
        returns the number of objects uploaded."""
        seen = set() if _seen is None else _seen
        if digest in seen:
            return 0
        seen.add(digest)
        if self.has(digest):
            return 0  # pushed bottom-up, so a present tree is a complete tree
        kind = cas.kind(digest)
        if kind is None:
            raise CacheError(f"cannot push {digest}: not in the local cache at {cas.root}")
        uploaded = 0
        if kind == "tree":
            for entry in cas.read_tree(digest):
                uploaded += self.push(cas, entry["digest"], seen)
        if not cas.verify(digest):
            raise CacheError(f"cannot push {digest}: the local object is corrupt (quarantined)")
        try:
            self.client.fput_object(self.bucket, self.object_name(digest), cas.path_of(digest))
        except _REMOTE_ERRORS as exc:
            raise self._fail(f"upload {digest}", exc) from exc
        return uploaded + 1

    def pull(self, cas, digest: str, _seen: set | None = None) -> int:
        """Download ``digest`` (a tree with everything below it) into ``cas``, children
        before their tree; returns the number of objects downloaded. CacheError when the
        remote lacks it or holds a corrupt copy (nothing corrupt is stored locally)."""
        seen = set() if _seen is None else _seen
        if digest in seen:
            return 0
        seen.add(digest)
        kind = cas.kind(digest)
        if kind == "file":
            return 0
        if kind == "tree":  # present locally, but a child may have been quarantined
            return sum(self.pull(cas, e["digest"], seen) for e in cas.read_tree(digest))
        name = self.object_name(digest)
        try:
            response = self.client.get_object(self.bucket, name)
        except S3Error as exc:
            if exc.code in _NOT_FOUND:
                raise CacheError(f"object {digest} is not in the remote store s3://{self.bucket}/{self.prefix}") from exc
            raise self._fail(f"download {digest}", exc) from exc
        except _REMOTE_ERRORS as exc:
            raise self._fail(f"download {digest}", exc) from exc
        try:
            head = response.read(len(TREE_MAGIC))
            if head != TREE_MAGIC:
                cas.put_stream(_Prepended(head, response), expected=digest)
                return 1
            data = head + response.read()
        except _REMOTE_ERRORS as exc:
            raise self._fail(f"download {digest}", exc) from exc
        finally:
            response.close()
            response.release_conn()
        if digest_bytes(data) != digest:
            raise CacheError(f"remote object {digest} is corrupt (content does not match); not stored")
        downloaded = sum(self.pull(cas, e["digest"], seen) for e in decode_tree(data))
        cas.put_bytes(data)  # the tree last: a local tree is complete once it exists
        return downloaded + 1

    def get_action(self, key: str) -> ActionResult | None:
        try:
            response = self.client.get_object(self.bucket, self.action_name(key))
        except S3Error as exc:
            if exc.code in _NOT_FOUND:
                return None
            raise self._fail(f"read action {key}", exc) from exc
        except _REMOTE_ERRORS as exc:
            raise self._fail(f"read action {key}", exc) from exc
        try:
            raw = response.read()
        except _REMOTE_ERRORS as exc:
            raise self._fail(f"read action {key}", exc) from exc
        finally:
            response.close()
            response.release_conn()
        try:
            return ActionResult.from_json(raw)
        except (ValueError, KeyError, TypeError):
            return None

    def put_action(self, key: str, result: ActionResult) -> None:
        """Publish ``result``; CacheError unless every object it references was pushed."""
        missing = [d for d in sorted(result.digests) if not self.has(d)]
        if missing:
            raise CacheError(f"action {key}: objects not pushed to the remote store: {', '.join(missing[:5])}")
        data = result.to_json().encode()
        try:
            self.client.put_object(self.bucket, self.action_name(key), io.BytesIO(data), len(data),
                                   content_type="application/json")
        except _REMOTE_ERRORS as exc:
            raise self._fail(f"write action {key}", exc) from exc

    def delete_action(self, key: str) -> None:
        try:
            self.client.remove_object(self.bucket, self.action_name(key))
        except _REMOTE_ERRORS as exc:
            raise self._fail(f"delete action {key}", exc) from exc
