"""Garbage collection (mark and sweep) and size/age pruning of a CAS + ActionCache."""

from __future__ import annotations

import os
import time
from collections import Counter

from .errors import CacheError

STALE_TMP_S = 3600.0


class _Marker:
    """Computes the closure of digests (a tree and everything below it), reading each
    tree object once per gc."""

    def __init__(self, cas):
        self.cas = cas
        self._children: dict[str, list[str]] = {}

    def children(self, digest: str) -> list[str]:
        if digest not in self._children:
            kids: list[str] = []
            try:
                if self.cas.kind(digest) == "tree":
                    kids = [e["digest"] for e in self.cas.read_tree(digest)]
            except CacheError:
                pass  # invalid or corrupt: nothing below it can be reached
            self._children[digest] = kids
        return self._children[digest]

    def mark(self, roots, into: set) -> set:
        stack = list(roots)
        while stack:
            d = stack.pop()
            if d not in into:
                into.add(d)
                stack.extend(self.children(d))
        return into


def gc(cas, ac, keep=frozenset(), grace_s: float = 0.0) -> dict:
    """Delete every object not reachable from a live action result or ``keep``.

    Objects younger than ``grace_s`` seconds (by mtime, which puts refresh) are spared:
    pass a grace period when runs may be writing to the store at the same time, since a
    writer stores objects before it records the action that references them. Also
    removes temp files older than an hour and unheld lock files.
    """
    marker = _Marker(cas)
    roots = set(keep)
    actions = 0
    for _key, result in ac.entries():
        actions += 1
        roots |= result.digests
    live = marker.mark(roots, set())

    cutoff = time.time() - grace_s
    deleted = freed = remaining = remaining_bytes = 0
    for digest in list(cas.iter_digests()):
        try:
            st = os.stat(cas.path_of(digest))
        except FileNotFoundError:
            continue
        if digest in live or (grace_s > 0 and st.st_mtime > cutoff):
            remaining += 1
            remaining_bytes += st.st_size
        elif cas.delete(digest):
            deleted += 1
            freed += st.st_size
    return {
        "actions": actions,
        "marked": len(live),
        "deleted": deleted,
        "freed_bytes": freed,
        "objects": remaining,
        "bytes": remaining_bytes,
        "tmp_removed": cas.clean_tmp(STALE_TMP_S),
        "locks_removed": ac.clean_locks(),
    }


def prune(cas, ac, older_than_s: float | None = None, max_size_bytes: int | None = None,
          keep=frozenset(), grace_s: float = 0.0) -> dict:
    """Drop action results older than ``older_than_s``, then the oldest results until
    what the rest (and ``keep``) reference fits in ``max_size_bytes``; then gc()."""
    now = time.time()
    dropped = 0
    entries = list(ac.entries())
    if older_than_s is not None:
        young = []
        for key, result in entries:
            if now - result.created > older_than_s:
                dropped += ac.delete(key)
            else:
                young.append((key, result))
        entries = young

    if max_size_bytes is not None:
        marker = _Marker(cas)
        pinned = marker.mark(keep, set())
        closures = {key: marker.mark(result.digests, set()) for key, result in entries}
        refs = Counter(d for closure in closures.values() for d in closure)
        size = sum(cas.size_of(d) for d in pinned | set(refs))
        for key, _result in sorted(entries, key=lambda kr: kr[1].created):
            if size <= max_size_bytes:
                break
            dropped += ac.delete(key)
            for d in closures[key]:
                refs[d] -= 1
                if refs[d] == 0 and d not in pinned:
                    size -= cas.size_of(d)

    stats = gc(cas, ac, keep=keep, grace_s=grace_s)
    stats["actions_dropped"] = dropped
    return stats
