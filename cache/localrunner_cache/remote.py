"""RemoteStore: the CAS + action cache layout in an S3 bucket, through the minio client.

    <prefix>objects/ab/cdef...    objects, named by digest exactly as on disk
    <prefix>actions/<key>.json    action results (ActionResult.to_json(key))

The local invariants hold remotely too: push uploads children before their tree and all
objects before the caller puts the action, so a remote tree that exists is complete and
an action that exists points at objects that exist. Every object is verified before it
is uploaded and while it is downloaded: corruption never crosses the wire. A remote
object found corrupt, or missing below a tree, is deleted remotely together with the
trees above it, so the next upload of it is not skipped as "already there".

A remote that fails (a timeout, a refused connection, an S3 error other than "no such
key") is not asked again by this store: a circuit breaker opens, one warning goes to
``warnings`` and every later call raises RemoteUnavailable at once. A slow or dead
remote then costs one timeout per run, not one per task. (The timeouts themselves are
the client's: see how localrunner's open_remote builds it.)
"""

from __future__ import annotations

import io
import threading

import urllib3
from minio.error import S3Error

from .action_cache import ActionResult, safe_name
from .digest import TREE_MAGIC, decode_tree, digest_bytes
from .errors import CacheError, DigestMismatch, RemoteDamaged, RemoteUnavailable

_NOT_FOUND = {"NoSuchKey", "NotFound", "ResourceNotFound", "NoSuchObject"}
_REMOTE_ERRORS = (S3Error, urllib3.exceptions.HTTPError, OSError)


class _Missing(CacheError):
    """The remote has no such object (a plain miss, unless a tree above it exists)."""


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
    def __init__(self, client, bucket: str, prefix: str = "", warnings: list | None = None):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.warnings = warnings if warnings is not None else []
        self.down: str | None = None  # why the breaker opened; None while the remote is used
        self._breaker = threading.Lock()

    def __repr__(self) -> str:
        return f"RemoteStore(bucket={self.bucket!r}, prefix={self.prefix!r})"

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def object_name(self, digest: str) -> str:
        return f"{self.prefix}objects/{digest[:2]}/{digest[2:]}"

    def action_name(self, key: str) -> str:
        return f"{self.prefix}actions/{safe_name(key)}.json"

    # ---- the circuit breaker ----------------------------------------------------------

    def _fail(self, what: str, exc: Exception) -> RemoteUnavailable:
        """Open the breaker (one warning, the first time) and describe the failure."""
        message = f"remote store {self.url}: cannot {what}: {exc}"
        with self._breaker:
            first = self.down is None
            if first:
                self.down = message
        if first:
            self.warnings.append(f"{message}; the remote cache is not used for the rest of this run")
        return RemoteUnavailable(message)

    def _call(self, what: str, fn, missing_ok: bool = False):
        """One request; raises RemoteUnavailable while the breaker is open, _Missing for
        "no such key" when ``missing_ok``; any other failure opens the breaker."""
        if self.down is not None:
            raise RemoteUnavailable(f"remote store {self.url} skipped: {self.down}")
        try:
            return fn()
        except S3Error as exc:
            if missing_ok and exc.code in _NOT_FOUND:
                raise _Missing(f"{what}: not in the remote store {self.url}") from exc
            raise self._fail(what, exc) from exc
        except _REMOTE_ERRORS as exc:
            raise self._fail(what, exc) from exc

    # ---- objects ----------------------------------------------------------------------

    def has(self, digest: str) -> bool:
        name = self.object_name(digest)
        try:
            self._call(f"stat {name}", lambda: self.client.stat_object(self.bucket, name), missing_ok=True)
            return True
        except _Missing:
            return False

    def _delete_object(self, digest: str) -> None:
        name = self.object_name(digest)
        self._call(f"delete {name}", lambda: self.client.remove_object(self.bucket, name))

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
        path = cas.path_of(digest)
        self._call(f"upload {digest}", lambda: self.client.fput_object(self.bucket, self.object_name(digest), path))
        return uploaded + 1

    def pull(self, cas, digest: str, _seen: set | None = None) -> int:
        """Download ``digest`` (a tree with everything below it) into ``cas``, children
        before their tree; returns the number of objects downloaded. CacheError when the
        remote lacks it; RemoteDamaged when it holds a corrupt copy or a tree missing a
        child (deleted remotely; nothing corrupt is stored locally)."""
        seen = set() if _seen is None else _seen
        if digest in seen:
            return 0
        seen.add(digest)
        kind = cas.kind(digest)
        if kind == "file":
            return 0
        if kind == "tree":  # present locally, but a child may have been quarantined
            return self._pull_children(cas, digest, cas.read_tree(digest), seen)
        name = self.object_name(digest)
        response = self._call(f"download {digest}", lambda: self.client.get_object(self.bucket, name),
                              missing_ok=True)
        try:
            head = self._call(f"download {digest}", lambda: response.read(len(TREE_MAGIC)))
            if head != TREE_MAGIC:  # a file: streamed to disk, verified on the way
                try:
                    cas.put_stream(_Prepended(head, response), expected=digest)
                except DigestMismatch as exc:
                    self._delete_object(digest)
                    raise RemoteDamaged(f"remote object {digest} is corrupt ({exc}); deleted remotely") from exc
                except _REMOTE_ERRORS as exc:
                    raise self._fail(f"download {digest}", exc) from exc
                return 1
            data = head + self._call(f"download {digest}", response.read)
        finally:
            response.close()
            response.release_conn()
        if digest_bytes(data) != digest:
            self._delete_object(digest)
            raise RemoteDamaged(f"remote object {digest} is corrupt (content does not match); deleted remotely")
        try:
            entries = decode_tree(data)
        except CacheError as exc:  # right digest, but no tree: someone uploaded garbage bytes under it
            self._delete_object(digest)
            raise RemoteDamaged(f"remote object {digest} is a malformed tree; deleted remotely") from exc
        downloaded = self._pull_children(cas, digest, entries, seen)
        cas.put_bytes(data)  # the tree last: a local tree is complete once it exists
        return downloaded + 1

    def _pull_children(self, cas, tree: str, entries: list[dict], seen: set) -> int:
        downloaded = 0
        for entry in entries:
            try:
                downloaded += self.pull(cas, entry["digest"], seen)
            except (_Missing, RemoteDamaged) as exc:
                # a remote tree must be complete: drop it, so the next push uploads it again
                self._delete_object(tree)
                raise RemoteDamaged(f"remote tree {tree} is incomplete ({exc}); deleted remotely") from exc
        return downloaded

    # ---- actions ----------------------------------------------------------------------

    def get_action(self, key: str) -> ActionResult | None:
        """The remote result for ``key``; None when absent. ValueError-free: an entry
        that does not parse (or is another key's) is reported as CacheError."""
        name = self.action_name(key)
        try:
            response = self._call(f"read action {key}", lambda: self.client.get_object(self.bucket, name),
                                  missing_ok=True)
        except _Missing:
            return None
        try:
            raw = self._call(f"read action {key}", response.read)
        finally:
            response.close()
            response.release_conn()
        try:
            return ActionResult.from_json(raw, key=key)
        except ValueError as exc:
            raise CacheError(f"remote action {key} in {self.url} is unreadable: {exc}") from None

    def put_action(self, key: str, result: ActionResult) -> None:
        """Publish ``result``; CacheError unless every object it references was pushed."""
        missing = [d for d in sorted(result.digests) if not self.has(d)]
        if missing:
            raise CacheError(f"action {key}: objects not pushed to the remote store: {', '.join(missing[:5])}")
        data = result.to_json(key=key).encode()
        self._call(f"write action {key}", lambda: self.client.put_object(
            self.bucket, self.action_name(key), io.BytesIO(data), len(data), content_type="application/json"))

    def delete_action(self, key: str) -> None:
        self._call(f"delete action {key}", lambda: self.client.remove_object(self.bucket, self.action_name(key)))
