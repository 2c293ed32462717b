"""ActionCache: action key -> ActionResult, with a cross-process single-flight lock.

Entries live in a diskcache.Cache under root/actions (sqlite, process- and thread-safe)
as JSON. An entry is only ever written after every object it references is in the CAS,
and reading it with a CAS re-checks that, so a missing or quarantined object turns a hit
into a miss, never into a wrong result.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Iterator

import diskcache

from .digest import digest_bytes
from .errors import CacheError, LockTimeout

_SCHEMA_VERSION = 1
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}")


def safe_name(key: str) -> str:
    """A file/object name for ``key``: the key itself when harmless, else its digest."""
    if _SAFE_NAME.fullmatch(key):
        return key
    return "h-" + digest_bytes(key.encode("utf-8", "surrogatepass"))


@dataclass
class ActionResult:
    """What an action produced. ``outputs`` is free-form JSON for the caller; ``digests``
    are the CAS objects it references (kept alive by gc, checked by get); ``key_parts``
    is the caller's description of the action, kept to explain a later miss by diffing."""

    outputs: dict = field(default_factory=dict)
    digests: set = field(default_factory=set)
    created: float = field(default_factory=time.time)
    producer: dict = field(default_factory=dict)
    key_parts: dict = field(default_factory=dict)

    def __post_init__(self):
        self.digests = set(self.digests)  # accept any iterable (list, tuple, set)

    def to_json(self) -> str:
        return json.dumps(
            {
                "schema": _SCHEMA_VERSION,
                "outputs": self.outputs,
                "digests": sorted(self.digests),
                "created": self.created,
                "producer": self.producer,
                "key_parts": self.key_parts,
            },
            sort_keys=True, separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, data: str | bytes) -> "ActionResult":
        obj = json.loads(data)
        if not isinstance(obj, dict) or obj.get("schema") != _SCHEMA_VERSION:
            raise ValueError(f"not an action result of schema {_SCHEMA_VERSION}")
        return cls(
            outputs=obj.get("outputs") or {},
            digests=obj.get("digests") or (),
            created=float(obj["created"]),
            producer=obj.get("producer") or {},
            key_parts=obj.get("key_parts") or {},
        )


def _all_complete(cas, digests) -> list[str]:
    """The digests (or trees) that are not wholly present in ``cas``."""
    seen: set = set()
    missing = []
    for d in sorted(digests):
        try:
            ok = cas.is_complete(d, seen)
        except CacheError:  # not even a digest
            ok = False
        if not ok:
            missing.append(d)
    return missing


class ActionCache:
    def __init__(self, root):
        self.root = os.path.abspath(os.fspath(root))
        self.locks_dir = os.path.join(self.root, "locks")
        try:
            os.makedirs(self.locks_dir, exist_ok=True)
            # No eviction: what leaves the cache is decided by prune()/gc(), never silently.
            # Every value inside sqlite (no side files): a failed write, e.g. on a full
            # disk, then rolls back whole instead of leaving an orphaned value file.
            self._cache = diskcache.Cache(os.path.join(self.root, "actions"), eviction_policy="none",
                                          disk_min_file_size=1 << 30)
        except (OSError, sqlite3.Error) as exc:
            raise CacheError(f"cannot open the action cache at {self.root}: {exc}") from exc

    def __repr__(self) -> str:
        return f"ActionCache({self.root!r})"

    def get(self, key: str, cas=None, max_age_s: float | None = None) -> ActionResult | None:
        """The result for ``key``, or None when absent, unreadable, older than
        ``max_age_s`` or (with ``cas``) referencing anything the CAS lacks."""
        try:
            raw = self._cache.get(key)
        except (OSError, sqlite3.Error) as exc:
            raise CacheError(f"cannot read the action cache at {self.root}: {exc}") from exc
        if raw is None:
            return None
        try:
            result = ActionResult.from_json(raw)
        except (ValueError, KeyError, TypeError):
            return None
        if max_age_s is not None and time.time() - result.created > max_age_s:
            return None
        if cas is not None and _all_complete(cas, result.digests):
            return None
        return result

    def put(self, key: str, result: ActionResult, cas=None) -> None:
        """Record ``result``. With ``cas``, refuse (CacheError) unless every referenced
        object is already complete in it: an entry must never point at nothing."""
        if cas is not None:
            missing = _all_complete(cas, result.digests)
            if missing:
                raise CacheError(f"action {key}: objects not in the CAS: {', '.join(missing[:5])}")
        try:
            self._cache.set(key, result.to_json())
        except (OSError, sqlite3.Error) as exc:
            full = getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "full" in str(exc)
            what = "disk full: no space left to record" if full else "cannot record"
            raise CacheError(f"{what} action {key} in the action cache at {self.root}: {exc}") from exc

    def delete(self, key: str) -> bool:
        return bool(self._cache.delete(key))

    def entries(self) -> Iterator[tuple[str, ActionResult]]:
        for key in self._cache.iterkeys():
            raw = self._cache.get(key)
            if raw is None:
                continue  # deleted meanwhile
            try:
                yield key, ActionResult.from_json(raw)
            except (ValueError, KeyError, TypeError):
                continue

    def __len__(self) -> int:
        return len(self._cache)

    def close(self) -> None:
        self._cache.close()

    # ---- single flight ----------------------------------------------------------------

    def lock_path(self, key: str) -> str:
        return os.path.join(self.locks_dir, safe_name(key) + ".lock")

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float | None = None):
        """Hold an exclusive lock on ``key`` across processes and threads (flock on
        root/locks/<key>.lock). Pattern: ``with ac.lock(k): r = ac.get(k, cas) or work()``.
        Not re-entrant. LockTimeout after ``timeout`` seconds when given."""
        path = self.lock_path(key)
        deadline = None if timeout is None else time.monotonic() + timeout
        fd = self._acquire(path, deadline, key)
        try:
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def _acquire(self, path: str, deadline: float | None, key: str) -> int:
        delay = 0.001
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                if deadline is None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                else:
                    while True:
                        try:
                            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                            break
                        except BlockingIOError:
                            if time.monotonic() >= deadline:
                                raise LockTimeout(f"timed out waiting for the lock on action {key}") from None
                            time.sleep(delay)
                            delay = min(delay * 2, 0.05)
                # clean_locks() may have unlinked the file we waited on; a lock on an
                # unlinked inode excludes nobody, so start again on the current file.
                if self._still_linked(fd, path):
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    @staticmethod
    def _still_linked(fd: int, path: str) -> bool:
        try:
            a, b = os.fstat(fd), os.stat(path)
        except FileNotFoundError:
            return False
        return (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)

    def clean_locks(self) -> int:
        """Remove lock files nobody holds (safe against concurrent lock())."""
        removed = 0
        for entry in os.scandir(self.locks_dir):
            if not entry.name.endswith(".lock"):
                continue
            try:
                fd = os.open(entry.path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if self._still_linked(fd, entry.path):
                    os.unlink(entry.path)
                    removed += 1
            except BlockingIOError:
                pass  # held: in use
            finally:
                os.close(fd)
        return removed
