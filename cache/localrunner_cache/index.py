"""Index: a string -> string map in a diskcache folder (sqlite) that survives damage.

A damaged database (random bytes, a truncated file, a garbage -wal/-shm), found at open
or at any later call, is moved to the quarantine folder with one warning and rebuilt;
the rows that can still be read from the damaged copy are put back (salvage). A call
never raises for damage: it is answered from the rebuilt index. Warnings go to the
``warnings`` list (the library never prints); the caller drains it.
"""

from __future__ import annotations

import os
import sqlite3
import threading

import diskcache

from .damage import (damaged_side_files, inode_of, integrity_problem, is_damage, quarantine,
                     repair_lock, salvage, sqlite_files, unlink_planted)
from .errors import CacheError

_DB_NAME = "cache.db"  # diskcache's file name
# Values diskcache stored inline as text (mode 1 = MODE_RAW, raw key): what this class writes.
_SALVAGE_SQL = "SELECT key, value FROM Cache WHERE raw = 1 AND mode = 1 ORDER BY rowid"
_MANY_SQL = "SELECT key, value FROM Cache WHERE raw = 1 AND mode = 1 AND key IN ({})"
_MANY_CHUNK = 500  # host parameters a statement (SQLite allows 999 before 3.32)


class Index:
    def __init__(self, directory, name: str, quarantine_dir=None, warnings: list | None = None,
                 salvage_rows: bool = True):
        self.directory = os.path.abspath(os.fspath(directory))
        self.db_path = os.path.join(self.directory, _DB_NAME)
        self.name = name
        self.quarantine_dir = os.path.abspath(os.fspath(
            quarantine_dir or os.path.join(os.path.dirname(self.directory), "quarantine")))
        self.warnings = warnings if warnings is not None else []
        self.salvage_rows = salvage_rows
        self.repairs: list[str] = []  # why this object rebuilt the index, in order
        self._swap = threading.Lock()
        self._cache, self._inode = None, None
        self._open()

    def __repr__(self) -> str:
        return f"Index({self.directory!r})"

    # ---- opening and repairing --------------------------------------------------------

    def _new(self) -> diskcache.Cache:
        # No eviction: what leaves the cache is decided by prune()/gc(), never silently.
        # Every value inside sqlite (no side files): a failed write, e.g. on a full disk,
        # then rolls back whole instead of leaving an orphaned value file.
        return diskcache.Cache(self.directory, eviction_policy="none", disk_min_file_size=1 << 30)

    def _open(self) -> None:
        # a link in place of its folder, database or side files would lead out of the store
        self.warnings.extend(unlink_planted([self.directory] + sqlite_files(self.db_path)))
        try:
            os.makedirs(self.directory, exist_ok=True)
            bad = damaged_side_files(self.db_path)
            if bad:  # sqlite would ignore them silently; say so and set them aside
                self._repair(inode_of(self.db_path), "a side file holds no sqlite data", only=bad)
                return
            inode = inode_of(self.db_path)
            try:
                self._cache, self._inode = self._new(), inode_of(self.db_path)
            except sqlite3.DatabaseError as exc:
                if not is_damage(exc):
                    raise
                self._repair(inode, str(exc))
        except (OSError, sqlite3.Error) as exc:
            raise CacheError(f"cannot open the cache index at {self.directory}: {exc}") from exc

    def _repair(self, damaged_inode, reason: str, only=None) -> None:
        """Quarantine the damaged files (unless another thread or process already did),
        rebuild, salvage. Leaves a fresh diskcache in self._cache."""
        with self._swap:
            if self._cache is not None and self._inode != damaged_inode:
                return  # another thread already rebuilt it
            old, self._cache = self._cache, None
            if old is not None:
                try:
                    old.close()
                except sqlite3.Error:
                    pass
            rows, folder = [], None
            with repair_lock(self.db_path):
                # only what we saw damaged: another process may have rebuilt it already
                if only is not None or inode_of(self.db_path) == damaged_inode:
                    folder = quarantine(self.db_path, self.quarantine_dir, self.name, only)
                    if folder and only is None and self.salvage_rows:
                        rows = salvage(os.path.join(folder, _DB_NAME), _SALVAGE_SQL)
                cache = self._new()
                kept = self._put_back(cache, rows)
            self._cache, self._inode = cache, inode_of(self.db_path)
        if folder:
            self.repairs.append(reason)
            self.warnings.append(
                f"cache index {self.directory} was damaged ({reason}); moved to {folder} and rebuilt"
                + (f", {kept} entries salvaged" if rows else ""))

    @staticmethod
    def _put_back(cache: diskcache.Cache, rows: list[tuple]) -> int:
        kept = 0
        try:
            for key, value in rows:
                if isinstance(key, str) and isinstance(value, str):
                    cache.set(key, value)
                    kept += 1
        except (OSError, sqlite3.Error):
            pass  # salvage is best effort (e.g. a full disk)
        return kept

    def _call(self, what: str, fn):
        """fn(diskcache) once; on damage, repair and run it once more on the rebuilt index."""
        for attempt in (1, 2):
            with self._swap:  # never the None of a repair in progress in another thread
                cache, inode = self._cache, self._inode
            try:
                return fn(cache)
            except sqlite3.DatabaseError as exc:
                if not is_damage(exc) or attempt == 2:
                    raise CacheError(f"cannot {what} the cache index at {self.directory}: {exc}") from exc
                self._repair(inode, str(exc))
            except OSError as exc:
                raise CacheError(f"cannot {what} the cache index at {self.directory}: {exc}") from exc

    # ---- the map ----------------------------------------------------------------------

    def get(self, key: str):
        def read(cache):
            try:
                return cache.get(key)
            except sqlite3.DatabaseError:
                raise
            except Exception:  # an undecodable value (e.g. an old pickle): as absent
                return None
        return self._call("read", read)

    def get_many(self, keys) -> dict:
        """{key: value} of those KEYS present, in one statement per 500 keys where get() is a
        statement and a trip through diskcache each (a run's 1,000 tasks: ~1 ms, not ~20).
        Reads only what this class writes (text under a text key); anything else is absent."""
        keys = [k for k in keys if isinstance(k, str)]

        def read(cache):
            found = {}
            for i in range(0, len(keys), _MANY_CHUNK):
                chunk = keys[i:i + _MANY_CHUNK]
                sql = _MANY_SQL.format(", ".join("?" * len(chunk)))
                found.update((k, v) for k, v in cache._sql(sql, chunk).fetchall()
                             if isinstance(k, str) and isinstance(v, str))
            return found
        return self._call("read", read) if keys else {}

    def set(self, key: str, value: str) -> None:
        self._call("write", lambda cache: cache.set(key, value))

    def set_many(self, items) -> None:
        """Several keys in one transaction (one fsync instead of one per key)."""
        items = list(items)

        def write(cache):
            with cache.transact():
                for key, value in items:
                    cache.set(key, value)
        if items:
            self._call("write", write)

    def delete(self, key: str) -> bool:
        return bool(self._call("write", lambda cache: cache.delete(key)))

    def keys(self) -> list:
        """A snapshot of the keys (damage met while listing: the rebuilt index's keys)."""
        return self._call("list", lambda cache: list(cache.iterkeys()))

    def __len__(self) -> int:
        return self._call("count", len)

    def check(self) -> str | None:
        """Full integrity check (PRAGMA quick_check, reads every page). On damage: repair
        (quarantine, rebuild, salvage) and say what was wrong; None when sound. (Damage
        met earlier, e.g. at open, is in ``repairs``.)"""
        bad = damaged_side_files(self.db_path)
        if bad:
            self._repair(self._inode, "a side file holds no sqlite data", only=bad)
            return f"{', '.join(bad)}: not sqlite data"
        try:
            problem = integrity_problem(self.db_path)
        except sqlite3.Error as exc:
            raise CacheError(f"cannot check the cache index at {self.directory}: {exc}") from exc
        if problem:
            self._repair(self._inode, problem)
        return problem

    def close(self) -> None:
        cache = self._cache
        if cache is not None:
            try:
                cache.close()
            except sqlite3.Error:
                pass
