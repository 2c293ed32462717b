"""StatMemo: a persistent (path, stat) -> digest memo, so unchanged files are hashed once.

Backed by sqlite3 in WAL mode: many readers and one writer at a time across processes.
A lookup is one primary-key query. An entry is trusted only while the file's size,
mtime_ns, ctime_ns, inode and device are unchanged, and only when the file was last
modified clearly before it was hashed (the "racily clean" case: a write in the same
timestamp tick as the hash would otherwise go unnoticed).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

from .digest import digest_fileobj
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
    def __init__(self, db_path):
        self.db_path = os.fspath(db_path)
        parent = os.path.dirname(os.path.abspath(self.db_path))
        os.makedirs(parent, exist_ok=True)
        self._local = threading.local()
        self._connect()  # create the schema eagerly so errors show here

    def _connect(self) -> sqlite3.Connection:
        # One connection per thread and per process (a forked child must not reuse its
        # parent's sqlite handle).
        con = getattr(self._local, "con", None)
        if con is not None and self._local.pid == os.getpid():
            return con
        con = sqlite3.connect(self.db_path, timeout=60, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute(_SCHEMA)
        self._local.con, self._local.pid = con, os.getpid()
        return con

    def lookup(self, realpath: str, st: os.stat_result) -> str | None:
        row = self._connect().execute(
            "SELECT size, mtime_ns, ctime_ns, inode, dev, hashed_ns, digest FROM memo WHERE path = ?",
            (realpath,),
        ).fetchone()
        if row is None or tuple(row[:5]) != _stat_key(st):
            return None
        if row[5] - st.st_mtime_ns < RACY_WINDOW_NS:
            return None
        return row[6]

    def record(self, realpath: str, st: os.stat_result, hashed_ns: int, digest: str) -> None:
        try:
            self._connect().execute(
                "INSERT OR REPLACE INTO memo VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (realpath, *_stat_key(st), hashed_ns, digest),
            )
        except sqlite3.OperationalError:
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
        self._connect().execute("DELETE FROM memo WHERE path = ?", (os.path.realpath(path),))

    def __len__(self) -> int:
        return self._connect().execute("SELECT COUNT(*) FROM memo").fetchone()[0]

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None and self._local.pid == os.getpid():
            con.close()
        self._local.con = None
