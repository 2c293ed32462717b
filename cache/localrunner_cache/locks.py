"""The one per-key lock: an exclusive flock on a lock file, across processes and threads.

Each acquisition opens its own descriptor, and flock locks belong to the open file
description, so two threads of one process exclude each other exactly as two processes do:
no thread lock is needed beside it. A lock file may be removed by a cleaner while nobody
holds it (ActionCache.clean_locks); a lock taken on a file that was unlinked meanwhile
excludes nobody, so the acquisition starts again on the file now at that path.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from typing import Iterator, Optional

from .errors import LockTimeout


def same_file(fd: int, path: str) -> bool:
    """Whether descriptor ``fd`` is still the file at ``path`` (not unlinked, not replaced)."""
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)


def flock_until(fd: int, how: int, deadline: Optional[float]) -> bool:
    """flock(fd, how), waiting until ``deadline`` (time.monotonic(); None: as long as it
    takes) with a backoff from 1 to 50 ms. False when the deadline passed first."""
    if deadline is None:
        fcntl.flock(fd, how)
        return True
    delay = 0.001
    while True:
        try:
            fcntl.flock(fd, how | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


def _acquire(path: str, deadline: Optional[float], what: str) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            if not flock_until(fd, fcntl.LOCK_EX, deadline):
                raise LockTimeout(f"timed out waiting for the lock on {what}")
            if same_file(fd, path):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


@contextlib.contextmanager
def file_lock(path: str, timeout: Optional[float] = None, what: Optional[str] = None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created when missing; its folder must exist).
    Not re-entrant. LockTimeout after ``timeout`` seconds when given."""
    deadline = None if timeout is None else time.monotonic() + timeout
    fd = _acquire(path, deadline, what or path)
    try:
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def try_lock(path: str) -> Optional[int]:
    """The descriptor holding ``path``'s lock when it is free now, else None (never waits,
    never creates the file). Close the descriptor to release it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)      # flock needs no write access
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    if not same_file(fd, path):
        os.close(fd)
        return None
    return fd
