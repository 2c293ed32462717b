"""ActionCache: action key -> ActionResult, with a cross-process single-flight lock.

Entries live in an Index (a diskcache folder, sqlite) under root/actions as JSON. An entry
is only ever written after every object it references is in the CAS, and reading it with
a CAS re-checks that, so a missing or quarantined object turns a hit into a miss, never
into a wrong result. An entry names its own key: a damaged index that hands back another
key's row is a miss too. A damaged index is quarantined and rebuilt (see index.py);
entries that do not parse are dropped with a warning in ``warnings``.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Iterator

from .digest import DIGEST_RE, digest_bytes
from .errors import CacheError
from .index import Index
from .damage import unlink_planted
from .locks import file_lock, try_lock

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

    def to_json(self, key: str | None = None) -> str:
        """The stored form; with ``key``, the entry names its key (checked when read)."""
        obj = {
            "schema": _SCHEMA_VERSION,
            "outputs": self.outputs,
            "digests": sorted(self.digests),
            "created": self.created,
            "producer": self.producer,
            "key_parts": self.key_parts,
        }
        if key is not None:
            obj["key"] = key
        return json.dumps(obj, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: str | bytes, key: str | None = None) -> "ActionResult":
        """Parse a stored entry; ValueError unless every field has its shape (and, with
        ``key``, unless the entry is that key's or names no key: entries written before
        keys were stored)."""
        try:
            obj = json.loads(data)
        except (ValueError, TypeError) as exc:  # also bytes that are not UTF-8
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(obj, dict) or obj.get("schema") != _SCHEMA_VERSION:
            raise ValueError(f"not an action result of schema {_SCHEMA_VERSION}")
        if key is not None and obj.get("key", key) != key:
            raise ValueError(f"entry of another key ({str(obj.get('key'))[:40]!r})")
        digests = obj.get("digests") or []
        if not isinstance(digests, list) or not all(isinstance(d, str) and DIGEST_RE.fullmatch(d) for d in digests):
            raise ValueError("digests: not a list of digests")
        created = obj.get("created")
        if isinstance(created, bool) or not isinstance(created, (int, float)) or not math.isfinite(created):
            raise ValueError(f"created: not a time ({str(created)[:40]!r})")
        fields = {name: obj.get(name) or {} for name in ("outputs", "producer", "key_parts")}
        for name, value in fields.items():
            if not isinstance(value, dict):
                raise ValueError(f"{name}: not a JSON object")
        return cls(digests=digests, created=float(created), **fields)


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
    def __init__(self, root, quarantine_dir=None, warnings: list | None = None):
        """``quarantine_dir``: where a damaged index goes (default root/quarantine);
        ``warnings``: a list the cache appends its warnings to (default its own)."""
        self.root = os.path.abspath(os.fspath(root))
        self.locks_dir = os.path.join(self.root, "locks")
        self.warnings = warnings if warnings is not None else []
        self.warnings.extend(unlink_planted((self.root, self.locks_dir)))    # links out of the store go
        try:
            os.makedirs(self.locks_dir, exist_ok=True)
        except OSError as exc:
            raise CacheError(f"cannot open the action cache at {self.root}: {exc}") from exc
        self._index = Index(os.path.join(self.root, "actions"), "actions",
                            quarantine_dir or os.path.join(self.root, "quarantine"), self.warnings)

    def __repr__(self) -> str:
        return f"ActionCache({self.root!r})"

    def _parse(self, key: str, raw) -> ActionResult | None:
        """The entry, or None (dropped, with a warning) when it does not parse."""
        try:
            return ActionResult.from_json(raw, key=key)
        except ValueError as exc:
            self.warnings.append(f"action cache entry {key[:16]} is unreadable ({exc}); dropped")
            try:
                self._index.delete(key)
            except CacheError:
                pass
            return None

    def get(self, key: str, cas=None, max_age_s: float | None = None) -> ActionResult | None:
        """The result for ``key``, or None when absent, unreadable, older than
        ``max_age_s`` or (with ``cas``) referencing anything the CAS lacks."""
        raw = self._index.get(key)
        if raw is None:
            return None
        result = self._parse(key, raw)
        if result is None:
            return None
        if max_age_s is not None and time.time() - result.created > max_age_s:
            return None
        if cas is not None and self.missing(result, cas):
            return None
        return result

    def get_many(self, keys) -> dict[str, ActionResult]:
        """The entries present for ``keys``, read in one statement per 500 keys
        (Index.get_many) where get() reads one each; an unreadable entry is dropped as get()
        drops it. No age or CAS check: a caller makes them per entry, as get() would."""
        found = {}
        for key, raw in self._index.get_many(keys).items():
            result = self._parse(key, raw)
            if result is not None:
                found[key] = result
        return found

    @staticmethod
    def missing(result: ActionResult, cas) -> list[str]:
        """The digests of ``result`` not wholly present in ``cas`` (stat only)."""
        return _all_complete(cas, result.digests)

    def put(self, key: str, result: ActionResult, cas=None) -> None:
        """Record ``result``. With ``cas``, refuse (CacheError) unless every referenced
        object is already complete in it: an entry must never point at nothing."""
        if cas is not None:
            missing = _all_complete(cas, result.digests)
            if missing:
                raise CacheError(f"action {key}: objects not in the CAS: {', '.join(missing[:5])}")
        try:
            self._index.set(key, result.to_json(key=key))
        except CacheError as exc:
            cause = exc.__cause__
            full = getattr(cause, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "full" in str(cause)
            what = "disk full: no space left to record" if full else "cannot record"
            raise CacheError(f"{what} action {key} in the action cache at {self.root}: {cause or exc}") from exc

    def delete(self, key: str) -> bool:
        return self._index.delete(key)

    def scan(self) -> Iterator[tuple[str, ActionResult | None, str | None]]:
        """Every entry as (key, result, None), or (key, None, why) when it does not parse."""
        for key in self._index.keys():
            raw = self._index.get(key)
            if raw is None:
                continue  # deleted meanwhile
            try:
                yield key, ActionResult.from_json(raw, key=key), None
            except ValueError as exc:
                yield key, None, str(exc)

    def entries(self) -> Iterator[tuple[str, ActionResult]]:
        for key, result, _problem in self.scan():
            if result is not None:
                yield key, result

    def check(self) -> str | None:
        """Integrity check of the index (reads every page); a damaged one is repaired."""
        return self._index.check()

    @property
    def repairs(self) -> list[str]:
        """Why the index was rebuilt since this object opened it (damage met in use)."""
        return self._index.repairs

    def __len__(self) -> int:
        return len(self._index)

    def close(self) -> None:
        self._index.close()

    # ---- single flight ----------------------------------------------------------------

    def lock_path(self, key: str) -> str:
        return os.path.join(self.locks_dir, safe_name(key) + ".lock")

    def lock(self, key: str, timeout: float | None = None):
        """Hold an exclusive lock on ``key`` across processes and threads (locks.file_lock
        on root/locks/<key>.lock). Pattern: ``with ac.lock(k): r = ac.get(k, cas) or work()``.
        Not re-entrant. LockTimeout after ``timeout`` seconds when given."""
        return file_lock(self.lock_path(key), timeout, what=f"action {key}")

    def clean_locks(self) -> int:
        """Remove lock files nobody holds (safe against concurrent lock())."""
        removed = 0
        for entry in os.scandir(self.locks_dir):
            if not entry.name.endswith(".lock"):
                continue
            fd = try_lock(entry.path)
            if fd is None:
                continue  # held: in use (or gone)
            try:
                os.unlink(entry.path)
                removed += 1
            finally:
                os.close(fd)
        return removed
