"""Damaged sqlite files: how to recognise them, set them aside and rebuild.

Every index the cache keeps (the action cache, the stat memo, a caller's own diskcache)
is only an accelerator over the CAS, whose objects verify themselves. So a damaged index
is never a reason to fail: its files are moved to a quarantine folder (kept for
inspection), an empty one is created in their place, and what can still be read from the
damaged copy may be salvaged into it. Callers get one warning per repair.

Damage is recognised three ways:
- sqlite says so (SQLITE_CORRUPT "database disk image is malformed", SQLITE_NOTADB "file
  is not a database"), at open or at any later query (a truncated file may open fine and
  fail only on the page that is gone);
- a side file (-wal, -shm) starts with bytes no sqlite ever writes there: sqlite would
  quietly ignore such a file, but it is no crash leftover, it is damage worth reporting;
- ``PRAGMA quick_check`` (``cache verify``) finds it.

Repairs of one file are serialised across processes by an flock beside it, and a repair
only moves the file it saw damaged (same inode): two processes that hit the same damage
rebuild it once, and the second never quarantines the first one's fresh, empty file.
Moving files another connection still has open is safe with sqlite >= 3.22: a connection
whose database file has moved skips the checkpoint at close and never deletes the -wal /
-shm by name (pager.c databaseIsUnmoved), so it cannot touch the rebuilt index's files.
"""

from __future__ import annotations

import os
import sqlite3
import time
import urllib.parse

from .locks import file_lock

# sqlite primary result codes (the low byte of an extended code)
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26
_SIDE_SUFFIXES = ("-wal", "-shm", "-journal")
# What the first four bytes of a side file are when sqlite wrote them (or zeros: a file
# being created). WAL: the big-endian magic of https://sqlite.org/fileformat2.html#walformat;
# shm: the wal-index header's iVersion 3007000 in native byte order (sqlite's wal.c).
_SIDE_HEADERS = {
    "-wal": (b"\x37\x7f\x06\x82", b"\x37\x7f\x06\x83"),
    "-shm": ((3007000).to_bytes(4, "little"), (3007000).to_bytes(4, "big")),
}


def is_damage(exc: BaseException) -> bool:
    """Whether ``exc`` says the database file itself is damaged (not busy, not full)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return (code & 0xFF) in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


def damaged_side_files(db_path: str) -> list[str]:
    """The -wal / -shm files of ``db_path`` whose header no sqlite wrote."""
    bad = []
    for suffix, valid in _SIDE_HEADERS.items():
        try:
            with open(db_path + suffix, "rb") as f:
                head = f.read(4)
        except OSError:
            continue  # absent (the usual case), or not ours to judge
        if len(head) == 4 and head != b"\0\0\0\0" and head not in valid:
            bad.append(db_path + suffix)
    return bad


def inode_of(path: str):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def repair_lock(db_path: str):
    """An exclusive lock that serialises repairs of ``db_path`` across processes."""
    directory, name = os.path.split(db_path)
    return file_lock(os.path.join(directory, f".{name}.repair-lock"), what=f"repairs of {db_path}")


def quarantine(db_path: str, quarantine_dir: str, label: str, only=None) -> str | None:
    """Move ``db_path`` and its side files (or just the paths in ``only``) into a new
    folder ``quarantine_dir/<label>.<time_ns>/``; returns that folder (None if nothing was
    there to move). Call it under repair_lock()."""
    paths = list(only) if only is not None else sqlite_files(db_path)
    present = [p for p in paths if os.path.lexists(p)]
    if not present:
        return None
    folder = os.path.join(quarantine_dir, f"{label}.{time.time_ns()}")
    os.makedirs(folder, exist_ok=True)
    for path in present:
        try:
            os.rename(path, os.path.join(folder, os.path.basename(path)))
        except FileNotFoundError:
            pass  # sqlite removed a side file meanwhile
    return folder


def integrity_problem(db_path: str) -> str | None:
    """None when ``PRAGMA quick_check`` passes (or there is no file), else what it says."""
    if not os.path.exists(db_path):
        return None
    try:
        con = sqlite3.connect(db_path, timeout=60)
        try:
            rows = con.execute("PRAGMA quick_check").fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        if is_damage(exc):
            return str(exc)
        raise
    verdict = "; ".join(str(r[0]) for r in rows[:3])
    return None if verdict == "ok" else verdict


def salvage(db_path: str, query: str) -> list[tuple]:
    """Rows of ``query`` that can still be read from a damaged database file, in order,
    up to the first unreadable page. Opened immutable: nothing is written, no side file
    is read or created."""
    rows: list[tuple] = []
    try:
        con = sqlite3.connect(f"file:{urllib.parse.quote(db_path)}?immutable=1", uri=True)
    except sqlite3.Error:
        return rows
    try:
        # a truncated file is shorter than its header says; sqlite refuses to open such a
        # file as corrupt unless the schema is "writable" (btree.c lockBtree). Immutable:
        # nothing is written either way.
        con.execute("PRAGMA writable_schema=ON")
        cursor = con.execute(query)
        while True:
            row = cursor.fetchone()
            if row is None:
                break
            rows.append(row)
    except sqlite3.Error:
        pass  # the rest is gone
    finally:
        con.close()
    return rows


def sqlite_files(db_path: str) -> list[str]:
    """The database file and the side files sqlite may keep beside it."""
    return [db_path] + [db_path + s for s in _SIDE_SUFFIXES]


def unlink_planted(paths) -> list[str]:
    """Each of PATHS (the store's own folders and files) that is a symbolic link is removed --
    the link, never what it points to -- so nothing is read, written or deleted through it
    outside the store; the caller makes them anew. One message per link removed."""
    said = []
    for path in paths:
        if os.path.islink(path):
            try:
                target = os.readlink(path)
                os.unlink(path)
            except OSError:
                continue
            said.append(f"{path} was a link (to {target!r}), not the cache's own: removed, made anew")
    return said
