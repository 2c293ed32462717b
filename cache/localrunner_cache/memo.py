"""StatMemo: a persistent (path, stat) -> digest memo, so unchanged files are hashed once.

Backed by sqlite3 in WAL mode: many readers and one writer at a time across processes.
A lookup is one primary-key query. An entry is trusted only while the file's size,
mtime_ns, ctime_ns, inode and device are unchanged, and only when the file was last
modified clearly before it was hashed (the "racily clean" case: a write in the same
timestamp tick as the hash would otherwise go unnoticed).

The memo never fails a hash: a busy or full database is skipped, and a damaged one is
moved to the quarantine folder with one warning (in ``warnings``) and rebuilt empty.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

from .damage import (damaged_side_files, inode_of, integrity_problem, is_damage, quarantine, repair_lock,
                     sqlite_files, unlink_planted)
from .digest import DIGEST_RE, digest_fileobj
from .errors import CacheError

# A file modified less than this before it was hashed may change again without its
# mtime moving (coarse kernel/FS timestamps); such entries are re-hashed on next use.
RACY_WINDOW_NS = 2_000_000_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS memo (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    dev INTEGER NOT NULL,
    hashed_ns INTEGER NOT NULL,
    digest TEXT NOT NULL
) WITHOUT ROWID
"""


def _stat_key(st: os.stat_result) -> tuple:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


class StatMemo:
    def __init__(self, db_path, quarantine_dir=None, warnings: list | None = None):
        """``quarantine_dir``: where a damaged database goes (default beside it, in
        quarantine/); ``warnings``: a list the memo appends its warnings to."""
        self.db_path = os.path.abspath(os.fspath(db_path))
        parent = os.path.dirname(self.db_path)
        self.quarantine_dir = os.path.abspath(os.fspath(quarantine_dir or os.path.join(parent, "quarantine")))
        self.warnings = warnings if warnings is not None else []
        self._local = threading.local()
        self._mutex = threading.Lock()
        self._generation = 0  # bumped by a repair: every thread then reconnects
        self.repairs: list[str] = []  # why this object rebuilt the database, in order
        # sqlite follows a link in the database's place, or its side files': out of the store
        self.warnings.extend(unlink_planted(sqlite_files(self.db_path)))
        try:
            os.makedirs(parent, exist_ok=True)
            bad = damaged_side_files(self.db_path)
            if bad:  # sqlite would ignore them silently; say so and set them aside
                self._repair(None, "a side file holds no sqlite data", only=bad)
            self._run(lambda con: None)  # create the schema eagerly so errors show here
        except (OSError, sqlite3.Error) as exc:
            raise CacheError(f"cannot open the stat memo at {self.db_path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        # One connection per thread and per process (a forked child must not reuse its
        # parent's sqlite handle), and a new one after a repair.
        local = self._local
        con = getattr(local, "con", None)
        if con is not None and local.pid == os.getpid() and local.generation == self._generation:
            return con
        if con is not None and local.pid == os.getpid():
            con.close()
        local.con = None
        local.generation, local.inode = self._generation, inode_of(self.db_path)
        con = sqlite3.connect(self.db_path, timeout=60, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute(_SCHEMA)
        except BaseException:
            con.close()
            raise
        local.con, local.pid = con, os.getpid()
        return con

    def _run(self, fn):
        """fn(connection); on damage, repair and run it once more on the rebuilt file.
        Other sqlite errors (busy, full) are raised for the caller to skip."""
        for attempt in (1, 2):
            try:
                return fn(self._connect())
            except sqlite3.DatabaseError as exc:
                if not is_damage(exc) or attempt == 2:
                    raise
                self._repair(getattr(self._local, "inode", None), str(exc))

    def _repair(self, damaged_inode, reason: str, only=None) -> None:
        folder = None
        with self._mutex:
            con = getattr(self._local, "con", None)
            if con is not None and self._local.pid == os.getpid():
                con.close()
            self._local.con = None
            with repair_lock(self.db_path):
                # only what we saw damaged: another thread or process may have rebuilt it
                if only is not None or inode_of(self.db_path) == damaged_inode:
                    folder = quarantine(self.db_path, self.quarantine_dir, "memo", only)
            self._generation += 1
        if folder:
            self.repairs.append(reason)
            self.warnings.append(f"stat memo {self.db_path} was damaged ({reason}); "
                                 f"moved to {folder} and rebuilt empty")

    def lookup(self, realpath: str, st: os.stat_result) -> str | None:
        try:
            row = self._run(lambda con: con.execute(
                "SELECT size, mtime_ns, ctime_ns, inode, dev, hashed_ns, digest FROM memo WHERE path = ?",
                (realpath,),
            ).fetchone())
        except sqlite3.Error:
            return None  # busy, or still unusable: hash the file
        try:
            if row is None or tuple(row[:5]) != _stat_key(st):
                return None
            if row[5] - st.st_mtime_ns < RACY_WINDOW_NS:
                return None
        except TypeError:  # a row of the wrong types: not ours to trust
            return None
        return row[6] if isinstance(row[6], str) and DIGEST_RE.fullmatch(row[6]) else None

    def record(self, realpath: str, st: os.stat_result, hashed_ns: int, digest: str) -> None:
        try:
            self._run(lambda con: con.execute(
                "INSERT OR REPLACE INTO memo VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (realpath, *_stat_key(st), hashed_ns, digest),
            ))
        except sqlite3.Error:
            # The memo is only an accelerator: a busy or full database must not fail a hash.
            pass

    def digest_file(self, path) -> str:
        realpath = os.path.realpath(path)
        try:
            st = os.stat(realpath)
        except OSError as exc:
            raise CacheError(f"cannot stat {path}: {exc}") from exc
        digest = self.lookup(realpath, st)
        if digest is not None:
            return digest
        hashed_ns = time.time_ns()
        with open(realpath, "rb", buffering=0) as f:
            before = os.fstat(f.fileno())
            digest = digest_fileobj(f)
            after = os.fstat(f.fileno())
        # Remember only when nothing changed while reading; otherwise the digest may
        # describe a state the file never had as a whole.
        if _stat_key(before) == _stat_key(after):
            self.record(realpath, after, hashed_ns, digest)
        return digest

    def forget(self, path) -> None:
        try:
            self._run(lambda con: con.execute("DELETE FROM memo WHERE path = ?", (os.path.realpath(path),)))
        except sqlite3.Error as exc:
            raise CacheError(f"cannot update the stat memo at {self.db_path}: {exc}") from exc

    def __len__(self) -> int:
        try:
            return self._run(lambda con: con.execute("SELECT COUNT(*) FROM memo").fetchone()[0])
        except sqlite3.Error as exc:
            raise CacheError(f"cannot read the stat memo at {self.db_path}: {exc}") from exc

    def check(self) -> str | None:
        """Full integrity check (PRAGMA quick_check); a damaged file is quarantined and
        rebuilt. What was wrong, or None when sound."""
        bad = damaged_side_files(self.db_path)
        if bad:
            self._repair(None, "a side file holds no sqlite data", only=bad)
            return f"{', '.join(bad)}: not sqlite data"
        try:
            problem = integrity_problem(self.db_path)
        except sqlite3.Error as exc:
            raise CacheError(f"cannot check the stat memo at {self.db_path}: {exc}") from exc
        if problem:
            self._repair(inode_of(self.db_path), problem)
        return problem

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None and self._local.pid == os.getpid():
            con.close()
        self._local.con = None
