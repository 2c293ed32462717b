"""Leases: the CAS objects a live run relies on, which maintenance must not delete.

A run holds an exclusive flock on ``<leases_dir>/<run>.lease`` for its whole life and
appends to it, one per line, the digests it relies on: results it is restoring, objects
it has stored but not yet recorded in an action. gc treats the digests of every live
lease (and everything below them) as roots.

Liveness is "someone holds the flock": the kernel drops it when the holder exits, however
it exits (kill -9 included), and it cannot be fooled by a reused pid. A lease file nobody
holds is stale (a crashed runner); gc removes it. A lease file appears already locked
(made under a temporary name, locked, then linked into place), so it is never seen
unheld while its run is alive.

gc and hold() exclude each other through the flock on ``<leases_dir>/gc.lock``: gc holds
it exclusively from reading the leases to the end of its sweep, hold() shared while it
appends. A digest is then either read by gc before its sweep, or recorded after the
sweep, when the caller's check that the object is (still) there tells the truth.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
import time

from .action_cache import safe_name
from .damage import unlink_planted
from .digest import DIGEST_RE
from .errors import CacheError, LockTimeout
from .locks import flock_until, same_file, try_lock

LEASE_SUFFIX = ".lease"
_GC_LOCK = "gc.lock"
_NEW_PREFIX = ".new-"


def _make_dir(leases_dir: str) -> list[str]:
    """The leases folder made, never through a link planted in its place (the gc lock and
    the leases would be written, and stale ones deleted, out of the store): such a link is
    removed, and said in what this returns."""
    said = unlink_planted([leases_dir])
    os.makedirs(leases_dir, exist_ok=True)
    return said


def lease_path(leases_dir, run_id: str) -> str:
    return os.path.join(os.fspath(leases_dir), safe_name(run_id) + LEASE_SUFFIX)


def _held(path: str) -> bool | None:
    """Whether someone holds the flock on ``path``; None when there is no such file."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def is_live(leases_dir, run_id: str) -> bool:
    """Whether the run ``run_id`` is alive: a process holds its lease."""
    return bool(_held(lease_path(leases_dir, run_id)))



def remove_stale(leases_dir, run_id: str) -> bool:
    """Remove run ``run_id``'s lease when nobody holds it (its runner died)."""
    return _remove_if_unheld(lease_path(leases_dir, run_id))


def _remove_if_unheld(path: str) -> bool:
    """Unlink ``path`` when nobody holds its flock (a stale lease, a crashed creator's
    temp file). Never removes a file someone holds."""
    fd = try_lock(path)
    if fd is None:          # held, or gone
        return False
    try:
        os.unlink(path)
        return True
    finally:
        os.close(fd)


def _lock_with_timeout(fd: int, how: int, timeout: float | None, what: str) -> None:
    if not flock_until(fd, how, None if timeout is None else time.monotonic() + timeout):
        raise LockTimeout(f"timed out after {timeout:g}s waiting for {what}")


class Lease:
    """A live run's lease: ``with Lease(dir, run_id) as lease: lease.hold(digests)``.

    ``timeout``: how long hold() waits for a gc in progress before LockTimeout."""

    def __init__(self, leases_dir, run_id: str, timeout: float | None = 60.0):
        self.leases_dir = os.path.abspath(os.fspath(leases_dir))
        self.run_id = run_id
        self.path = lease_path(self.leases_dir, run_id)
        self.timeout = timeout
        self.digests: set[str] = set()
        self._fd: int | None = None
        # one hold at a time in this process: the gc lock is an flock on one descriptor,
        # and one thread's unlock would otherwise end another's shared hold
        self._mutex = threading.Lock()
        try:
            self.repairs = _make_dir(self.leases_dir)
            self._gc_fd = os.open(os.path.join(self.leases_dir, _GC_LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise CacheError(f"cannot take a lease in {self.leases_dir}: {exc}") from exc
        try:
            self._fd = self._create()
        except BaseException:
            os.close(self._gc_fd)
            raise

    def __repr__(self) -> str:
        return f"Lease({self.path!r})"

    def _create(self) -> int:
        """A new lease file at self.path, already locked when it appears there."""
        while True:
            try:
                fd, tmp = tempfile.mkstemp(dir=self.leases_dir, prefix=_NEW_PREFIX, suffix=".tmp")
            except OSError as exc:
                raise CacheError(f"cannot take a lease in {self.leases_dir}: {exc}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody else knows this file
                if self.digests:
                    os.write(fd, "".join(d + "\n" for d in sorted(self.digests)).encode())
                try:
                    os.link(tmp, self.path)
                    return fd
                except FileExistsError:
                    if _held(self.path):
                        raise CacheError(f"run {self.run_id} already holds a lease at {self.path}") from None
                    _remove_if_unheld(self.path)  # left by a crashed run of the same id
                except FileNotFoundError:
                    pass  # a gc took the temp file for a crashed creator's before we locked it
                os.close(fd)
            except BaseException:
                os.close(fd)
                raise
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

    def hold(self, digests) -> None:
        """Record ``digests`` as relied on, before relying on them. Waits (up to
        ``timeout``, then LockTimeout) while a gc is sweeping. Check afterwards that the
        objects are there: a gc that swept before this call may have removed them."""
        with self._mutex:
            self._hold(list(digests))

    def _hold(self, digests: list) -> None:
        new = [d for d in dict.fromkeys(digests) if d not in self.digests]
        if not new:
            return
        if self._fd is None:
            raise CacheError(f"lease {self.path} was released")
        for d in new:
            if not isinstance(d, str) or not DIGEST_RE.fullmatch(d):
                raise CacheError(f"not a digest: {d!r}")
        try:
            _lock_with_timeout(self._gc_fd, fcntl.LOCK_SH, self.timeout, "a cache gc to finish")
            try:
                self.digests.update(new)
                if same_file(self._fd, self.path):
                    os.write(self._fd, "".join(d + "\n" for d in new).encode())
                else:  # removed behind our back (by hand): put it back, whole
                    old, self._fd = self._fd, self._create()
                    os.close(old)
            finally:
                fcntl.flock(self._gc_fd, fcntl.LOCK_UN)
        except LockTimeout:
            raise
        except OSError as exc:
            raise CacheError(f"cannot write the lease {self.path}: {exc}") from exc

    def release(self) -> None:
        """The run is over: remove the lease (idempotent)."""
        with self._mutex:
            if self._fd is None:
                return
            if same_file(self._fd, self.path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
            os.close(self._fd)
            os.close(self._gc_fd)
            self._fd = None

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_digests(path: str) -> set[str]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return set()
    return {line for line in data.decode("ascii", "replace").splitlines() if DIGEST_RE.fullmatch(line)}


@contextlib.contextmanager
def sweeping(leases_dir):
    """For gc: hold the gc lock exclusively (no lease grows meanwhile) and yield
    (digests of every live lease, number of stale files removed)."""
    leases_dir = os.path.abspath(os.fspath(leases_dir))
    _make_dir(leases_dir)
    fd = os.open(os.path.join(leases_dir, _GC_LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        leased: set[str] = set()
        removed = 0
        for entry in os.scandir(leases_dir):
            if entry.name.endswith(LEASE_SUFFIX):
                if _held(entry.path):
                    leased |= _read_digests(entry.path)
                elif _remove_if_unheld(entry.path):
                    removed += 1
            elif entry.name.startswith(_NEW_PREFIX):
                _remove_if_unheld(entry.path)  # a creator killed before linking its lease
        yield leased, removed
    finally:
        os.close(fd)
