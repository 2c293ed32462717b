"""Maintenance of a CAS + ActionCache: garbage collection (mark and sweep), size/age
pruning, and verification. Safe to run while runs use the store: objects younger than
``grace_s`` and everything a live run holds a lease on (leases.py) are kept."""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter

from .errors import CacheError
from .leases import sweeping

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


def gc(cas, ac, keep=frozenset(), grace_s: float = 0.0, leases_dir=None) -> dict:
    """Delete every object not reachable from a live action result, ``keep`` or (with
    ``leases_dir``) a live run's lease.

    Objects younger than ``grace_s`` seconds (by mtime, which puts refresh) are spared:
    pass a grace period when runs may be writing to the store at the same time, since a
    writer stores objects before it records the action that references them. With
    ``leases_dir``, the sweep holds the gc lock (leases.sweeping): live leases are read
    and no run adds to them until it ends; stale leases are removed. Also removes temp
    files older than an hour and unheld lock files.
    """
    marker = _Marker(cas)
    roots = set(keep)
    actions = 0
    for _key, result in ac.entries():
        actions += 1
        roots |= result.digests
    live = marker.mark(roots, set())

    deleted = freed = remaining = remaining_bytes = 0
    leases = sweeping(leases_dir) if leases_dir is not None else contextlib.nullcontext((set(), 0))
    with leases as (leased, stale_leases):
        marker.mark(leased, live)
        cutoff = time.time() - grace_s
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
        "leased": len(leased),
        "deleted": deleted,
        "freed_bytes": freed,
        "objects": remaining,
        "bytes": remaining_bytes,
        "tmp_removed": cas.clean_tmp(STALE_TMP_S),
        "locks_removed": ac.clean_locks(),
        "leases_removed": stale_leases,
    }


def prune(cas, ac, older_than_s: float | None = None, max_size_bytes: int | None = None,
          keep=frozenset(), grace_s: float = 0.0, leases_dir=None) -> dict:
    """Drop action results older than ``older_than_s``, then the oldest results until
    what the rest (and ``keep``) reference fits in ``max_size_bytes``; then gc() (which
    still keeps young and leased objects)."""
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

    stats = gc(cas, ac, keep=keep, grace_s=grace_s, leases_dir=leases_dir)
    stats["actions_dropped"] = dropped
    return stats


def verify(cas, ac, repair: bool = False, indexes=()) -> dict:
    """Check everything: re-hash every object (corrupt ones go to quarantine/), run an
    integrity check of the action index and of each (name, index) in ``indexes`` (a
    damaged one is quarantined and rebuilt, see damage.py; one rebuilt when it was
    opened counts too: each has ``check()`` and ``repairs``), then find the action entries
    that do not parse or reference objects the CAS lacks, and with ``repair`` drop them.
    ``damaged`` counts all of it: 0 means the store is sound."""
    report = cas.verify_all()
    problems = {}
    for name, index in (("actions", ac), *indexes):
        problem = index.check() or next(iter(index.repairs), None)  # found now, or when opened
        if problem:
            problems[name] = problem
    actions, incomplete, unreadable = 0, [], []
    for key, result, _why in ac.scan():
        actions += 1
        if result is None:
            unreadable.append(key)
        elif ac.missing(result, cas):
            incomplete.append(key)
    dropped = sum(ac.delete(key) for key in incomplete + unreadable) if repair else 0
    report.update({
        "actions": actions,
        "incomplete": incomplete,
        "unreadable": unreadable,
        "damaged_indexes": problems,
        "dropped": dropped,
        "damaged": len(report["corrupt"]) + len(incomplete) + len(unreadable) + len(problems),
    })
    return report
