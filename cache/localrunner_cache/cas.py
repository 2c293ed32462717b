"""CAS: a content-addressed store of blobs and tree objects on the local disk.

Layout under ``root``::

    objects/ab/cdef...   every object (file blobs, symlink targets, tree objects), read-only
    tmp/                 objects being written; renamed into objects/ only when complete
    quarantine/          objects that failed verification, kept for inspection

An object's name is always the digest of its bytes, so one check verifies anything.
Writes go temp file -> fsync -> rename: a killed writer leaves at worst a stray temp file
(removed by gc), never a partial object. Objects are copied in and copied (or reflinked)
out, never hardlinked: a task running as root ignores read-only bits and would corrupt
the store through a shared inode. Every copy out is verified against the digest, cloned
or not.

Objects are read-only and never more readable than what they were made from: a file's
object keeps only its read bits (a 0600 output is a 0400 object, a 0644 one 0444), other
objects (trees, symlink targets, downloads) get 0444; the umask applies to both, and the
owner can always read. Storing content that exists already only ever narrows the existing
object's mode, and a copy out is no more readable than its object.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
import tempfile
import time
from typing import Iterator

import xxhash

from .damage import unlink_planted
from .digest import DIGEST_RE, TREE_MAGIC, _buffer, decode_tree, digest_bytes, digest_fileobj, walk_tree
from .errors import CacheError, DigestMismatch, Stopped

_FICLONE = 0x40049409  # ioctl number of FICLONE on Linux (reflink a whole file)
_STALE_TMP_S = 3600.0


def _reflink(src_fd: int, dst_fd: int) -> bool:
    """Make dst share src's extents (copy-on-write). False where the FS cannot."""
    try:
        fcntl.ioctl(dst_fd, _FICLONE, src_fd)
        return True
    except OSError:
        return False


def _copy_in_kernel(src_fd: int, dst_fd: int) -> bool:
    """copy_file_range the whole of src into an empty dst (no user-space copy, about
    twice as fast as read/write); False where the kernel or FS cannot, before any write."""
    remaining = os.fstat(src_fd).st_size
    offset = 0
    try:
        while remaining > 0:
            n = os.copy_file_range(src_fd, dst_fd, remaining, offset, offset)
            if n == 0:
                break
            offset += n
            remaining -= n
        return True
    except OSError as exc:
        if offset == 0 and exc.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            return False
        raise


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _umask() -> int:
    """The process umask, read without changing it (os.umask would, racing threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _object_mode(source_mode: int, umask: int) -> int:
    """Read bits only: those of the source (0o444 for content of no file), minus the
    umask, and always the owner's (the store must read its own objects)."""
    return (source_mode & 0o444 & ~umask) | 0o400


def _copy_mode(mode: int, object_mode: int) -> int:
    """A copy out with ``mode`` (0644 or 0755), no more readable than its object: each
    class keeps x and r only where the object is readable to it; the owner keeps w."""
    readable = object_mode & 0o444
    return mode & (readable | readable >> 2 | 0o200)


def _hash_fd(fd: int) -> str:
    with os.fdopen(os.dup(fd), "rb", buffering=0) as f:
        f.seek(0)
        return digest_fileobj(f)


def _stop_if_asked(stop, path: str) -> None:
    if stop is not None and stop():
        raise Stopped(f"storing {path} stopped: its run was canceled")


def _describe(exc: OSError, what: str, root: str) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"disk full: no space left to store {what} in the cache at {root} ({exc.strerror})"
    return f"cannot store {what} in the cache at {root}: {exc}"


class CAS:
    def __init__(self, root, warnings: list | None = None):
        """``warnings``: a list the store appends to what it repaired (a planted link removed)."""
        self.root = os.path.abspath(os.fspath(root))
        self.warnings = warnings if warnings is not None else []
        self.objects_dir = os.path.join(self.root, "objects")
        self.tmp_dir = os.path.join(self.root, "tmp")
        self.quarantine_dir = os.path.join(self.root, "quarantine")
        # a link planted in place of one of the store's folders would take what is written,
        # moved or read there out of the store: the link goes (unlink_planted), said here
        self.warnings.extend(unlink_planted((self.root, self.objects_dir, self.tmp_dir, self.quarantine_dir)))
        for d in (self.objects_dir, self.tmp_dir, self.quarantine_dir):
            os.makedirs(d, exist_ok=True)
        self._umask = _umask()

    def __repr__(self) -> str:
        return f"CAS({self.root!r})"

    # ---- addressing -------------------------------------------------------------------

    def path_of(self, digest: str) -> str:
        """Path of the object (which may be absent: check has()). Read it, never write it."""
        if not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest):
            raise CacheError(f"not a digest: {digest!r}")
        return os.path.join(self.objects_dir, digest[:2], digest[2:])

    def has(self, digest: str) -> bool:
        return os.path.lexists(self.path_of(digest))

    def _open(self, digest: str):
        """The object, opened to read it: a regular file of the store, never through a link
        (one planted at the object or its shard folder would lead out of the store). Anything
        else is damage: moved aside, CacheError. FileNotFoundError when absent."""
        path = self.path_of(digest)
        shard = os.path.dirname(path)
        if os.path.islink(shard):
            self.warnings.extend(unlink_planted([shard]))
            raise CacheError(f"object {digest}: its folder was a link, not the cache's own")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            fd = None
        if fd is None or not stat.S_ISREG(os.fstat(fd).st_mode):
            if fd is not None:
                os.close(fd)
            self.quarantine(digest)
            why = f"object {digest} is {'a link' if fd is None else 'no regular file'}, not the cache's own; quarantined"
            self.warnings.append(why)
            raise CacheError(why)
        return os.fdopen(fd, "rb", buffering=0)

    def kind(self, digest: str) -> str | None:
        """"tree" for a tree object, "file" for any other blob, None when absent."""
        try:
            with self._open(digest) as f:
                head = f.read(len(TREE_MAGIC))
        except FileNotFoundError:
            return None
        return "tree" if head == TREE_MAGIC else "file"

    # ---- writing ----------------------------------------------------------------------

    def _touch_existing(self, digest: str, mode: int) -> bool:
        """True when the object exists; refreshes its mtime so a gc with a grace period
        spares objects a writer has just relied on, and narrows its mode to ``mode``
        (the same content from a less readable source makes the object less readable)."""
        path = self.path_of(digest)
        try:
            os.utime(path)
        except FileNotFoundError:
            return False
        except OSError:
            return os.path.exists(path)  # e.g. a shared store owned by another user
        try:
            current = stat.S_IMODE(os.stat(path).st_mode)
            if current & ~mode:
                os.chmod(path, current & mode)
        except OSError:
            pass  # gone meanwhile, or not ours to change
        return True

    def _new_tmp(self, what: str) -> tuple[int, str]:
        try:
            return tempfile.mkstemp(dir=self.tmp_dir, prefix="obj-")
        except OSError as exc:
            raise CacheError(_describe(exc, what, self.root)) from exc

    def _commit(self, tmp: str, digest: str, mode: int) -> None:
        final = self.path_of(digest)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        os.chmod(tmp, mode)
        os.rename(tmp, final)  # atomic: readers see nothing or the whole object

    def _ingest(self, what: str, fill, mode: int) -> str:
        """Create a temp object, let ``fill(fd) -> digest`` write it, fsync, rename it in
        with ``mode``. Any failure removes the temp file and surfaces as CacheError."""
        fd, tmp = self._new_tmp(what)
        try:
            try:
                digest = fill(fd)
                os.fsync(fd)
            finally:
                os.close(fd)
            if self._touch_existing(digest, mode):
                os.unlink(tmp)
            else:
                self._commit(tmp, digest, mode)
            return digest
        except BaseException as exc:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            if isinstance(exc, OSError):
                raise CacheError(_describe(exc, what, self.root)) from exc
            raise

    @property
    def _plain_mode(self) -> int:
        """Mode of objects that are not copies of a file: trees, symlink targets, downloads."""
        return _object_mode(0o444, self._umask)

    def put_bytes(self, data: bytes) -> str:
        digest = digest_bytes(data)
        if self._touch_existing(digest, self._plain_mode):
            return digest

        def fill(fd: int) -> str:
            _write_all(fd, memoryview(data))
            return digest

        return self._ingest(f"a {len(data)}-byte blob", fill, self._plain_mode)

    def put_file(self, path, memo=None, stop=None) -> str:
        """Copy the file's content in (reflink where possible). The stored object is
        hashed as copied, so it matches its name even if the source changes meanwhile;
        it is no more readable than the file. ``stop()``, asked before each MiB copied:
        True gives up (Stopped, nothing stored), so a canceled run never waits on a copy
        of gigabytes."""
        path = os.fspath(path)
        _stop_if_asked(stop, path)
        if memo is not None:
            digest = memo.digest_file(path)
            try:
                mode = _object_mode(os.stat(path).st_mode, self._umask)
            except OSError as exc:
                raise CacheError(f"cannot read {path}: {exc}") from exc
            if self._touch_existing(digest, mode):
                return digest
        try:
            src = open(path, "rb", buffering=0)
            mode = _object_mode(os.fstat(src.fileno()).st_mode, self._umask)
        except OSError as exc:
            raise CacheError(f"cannot read {path}: {exc}") from exc

        def fill(fd: int) -> str:
            if _reflink(src.fileno(), fd):
                return _hash_fd(fd)
            hasher = xxhash.xxh3_128()
            view = _buffer()
            # no more than stat says: a file still growing, or one that never ends or blocks
            # (/proc/kmsg: size 0), must not hold the copy, or the run, forever
            remaining = os.fstat(src.fileno()).st_size
            while remaining > 0:
                n = src.readinto(view[:remaining] if remaining < len(view) else view)
                if not n:
                    break
                remaining -= n
                hasher.update(view[:n])
                _write_all(fd, view[:n])
                _stop_if_asked(stop, path)
            return hasher.hexdigest()

        with src:
            return self._ingest(f"file {path}", fill, mode)

    def put_stream(self, reader, expected: str | None = None) -> str:
        """Store everything ``reader.read(n)`` yields; CacheError (nothing stored) when
        ``expected`` is given and the content does not match it."""

        def fill(fd: int) -> str:
            hasher = xxhash.xxh3_128()
            while True:
                chunk = reader.read(1 << 20)
                if not chunk:
                    break
                hasher.update(chunk)
                _write_all(fd, memoryview(chunk))
            digest = hasher.hexdigest()
            if expected is not None and digest != expected:
                raise DigestMismatch(f"content does not match its digest: expected {expected}, got {digest}")
            return digest

        return self._ingest(f"object {expected or 'stream'}", fill, self._plain_mode)

    def put_tree(self, dirpath, memo=None, stop=None) -> str:
        """Store every file, symlink target and tree object under ``dirpath``, children
        before parents; returns the root tree digest (== digest_tree(dirpath)). ``stop``:
        as put_file's, for each file."""
        dirpath = os.fspath(dirpath)
        if not os.path.isdir(dirpath):
            raise CacheError(f"not a directory: {dirpath}")
        return walk_tree(dirpath, lambda p: self.put_file(p, memo, stop), self.put_bytes)

    def put_path(self, path, memo=None, stop=None) -> tuple[str, str]:
        path = os.fspath(path)
        if os.path.isdir(path):
            return self.put_tree(path, memo, stop), "tree"
        if os.path.isfile(path):
            return self.put_file(path, memo, stop), "file"
        raise CacheError(f"not a file or directory: {path}")

    # ---- reading ----------------------------------------------------------------------

    def read_bytes(self, digest: str) -> bytes:
        """Whole content of a (small) object, verified; quarantines it on mismatch."""
        try:
            with self._open(digest) as f:
                data = f.read()
        except FileNotFoundError:
            raise CacheError(f"object {digest} is missing from the cache at {self.root}") from None
        if digest_bytes(data) != digest:
            self.quarantine(digest)
            raise CacheError(f"object {digest} is corrupt (content does not match); quarantined")
        return data

    def read_tree(self, digest: str) -> list[dict]:
        """Entries [{"name", "mode", "digest"}] of a tree object."""
        return decode_tree(self.read_bytes(digest))

    def is_complete(self, digest: str, _seen: set | None = None) -> bool:
        """The object is present and, for a tree, so is everything below it (stat only,
        apart from reading the small tree objects)."""
        seen = set() if _seen is None else _seen
        if digest in seen:
            return True
        kind = self.kind(digest)
        if kind is None:
            return False
        seen.add(digest)
        if kind == "file":
            return True
        try:
            entries = self.read_tree(digest)
        except CacheError:
            return False
        for e in entries:
            if e["mode"] == "dir":
                if not self.is_complete(e["digest"], seen):
                    return False
            elif e["digest"] not in seen:
                if not self.has(e["digest"]):
                    return False
                seen.add(e["digest"])
        return True

    def materialize(self, digest: str, dest, kind: str | None = None, verify: bool = True) -> None:
        """Recreate the file or tree ``digest`` at ``dest`` (replacing what is there).

        Built at a temp name beside ``dest`` and renamed into place. Files are reflinked
        where the FS supports it, else copied; with ``verify`` (the default) every file
        written is re-hashed, cloned or copied: a mismatch quarantines the object and
        raises CacheError. Never a hardlink.
        """
        dest = os.path.abspath(os.fspath(dest))
        kind = kind or self.kind(digest)
        if kind is None:
            raise CacheError(f"object {digest} is missing from the cache at {self.root}")
        if kind not in ("file", "tree"):
            raise CacheError(f"unknown kind {kind!r} (expected 'file' or 'tree')")
        parent, name = os.path.split(dest)
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, f".{name}.lr-tmp-{os.getpid()}-{time.time_ns()}")
        try:
            if kind == "file":
                self._copy_out(digest, tmp, 0o644, verify)
            else:
                os.mkdir(tmp)
                self._materialize_tree(digest, tmp, verify)
            self._install(tmp, dest)
        except BaseException as exc:
            if os.path.isdir(tmp) and not os.path.islink(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
            elif os.path.lexists(tmp):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise CacheError(f"cannot materialize {digest} at {dest}: {exc}") from exc
            raise

    @staticmethod
    def _install(tmp: str, dest: str) -> None:
        if os.path.isdir(dest) and not os.path.islink(dest):
            aside = f"{tmp}.old"
            os.rename(dest, aside)
            os.rename(tmp, dest)
            shutil.rmtree(aside, ignore_errors=True)
        elif os.path.isdir(tmp) and os.path.lexists(dest):
            os.unlink(dest)  # a file or symlink in the way of a tree
            os.rename(tmp, dest)
        else:
            os.replace(tmp, dest)

    def _copy_out(self, digest: str, target: str, mode: int, verify: bool) -> None:
        """Clone or copy the object to ``target`` (a new file), re-hashing what was
        written when ``verify``: a clone shares the object's blocks, so a damaged object
        is caught either way. A mismatch quarantines the object and raises CacheError."""
        try:
            src = self._open(digest)
        except FileNotFoundError:
            raise CacheError(f"object {digest} is missing from the cache at {self.root}") from None
        actual = None
        with src:
            mode = _copy_mode(mode, os.fstat(src.fileno()).st_mode)
            fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
            try:
                os.fchmod(fd, mode)  # exact mode, whatever the umask
                if _reflink(src.fileno(), fd):
                    actual = _hash_fd(fd) if verify else None
                elif not verify and _copy_in_kernel(src.fileno(), fd):
                    pass
                else:
                    hasher = xxhash.xxh3_128() if verify else None
                    view = _buffer()
                    while True:
                        n = src.readinto(view)
                        if not n:
                            break
                        if hasher is not None:
                            hasher.update(view[:n])
                        _write_all(fd, view[:n])
                    actual = hasher.hexdigest() if hasher is not None else None
            finally:
                os.close(fd)
        if verify and actual != digest:
            self.quarantine(digest)
            raise CacheError(f"object {digest} is corrupt (content does not match); quarantined")

    def _materialize_tree(self, digest: str, dirpath: str, verify: bool) -> None:
        for e in self.read_tree(digest):
            target = os.path.join(dirpath, e["name"])
            mode = e["mode"]
            if mode == "dir":
                os.mkdir(target)
                self._materialize_tree(e["digest"], target, verify)
            elif mode == "symlink":
                os.symlink(os.fsdecode(self.read_bytes(e["digest"])), target)
            else:
                self._copy_out(e["digest"], target, 0o755 if mode == "exec" else 0o644, verify)

    # ---- integrity and housekeeping ---------------------------------------------------

    def quarantine(self, digest: str) -> None:
        try:
            os.rename(self.path_of(digest), os.path.join(self.quarantine_dir, f"{digest}.{time.time_ns()}"))
        except FileNotFoundError:
            pass  # already moved (or healed and moved) by someone else

    def _check(self, digest: str) -> str:
        try:
            with self._open(digest) as f:
                actual = digest_fileobj(f)
        except FileNotFoundError:
            return "missing"
        except CacheError:           # a link or no regular file: quarantined
            return "corrupt"
        if actual != digest:
            self.quarantine(digest)
            return "corrupt"
        return "ok"

    def verify(self, digest: str) -> bool:
        """Re-hash the object; a mismatch moves it to quarantine/. False when absent."""
        return self._check(digest) == "ok"

    def verify_all(self) -> dict:
        """Re-hash every object: {"checked": n, "corrupt": [digests moved to quarantine/]}."""
        checked, corrupt = 0, []
        for digest in self.iter_digests():
            outcome = self._check(digest)
            if outcome != "missing":  # deleted meanwhile: nothing to check
                checked += 1
            if outcome == "corrupt":
                corrupt.append(digest)
        return {"checked": checked, "corrupt": corrupt}

    def iter_digests(self) -> Iterator[str]:
        try:
            shards = sorted(os.scandir(self.objects_dir), key=lambda e: e.name)
        except FileNotFoundError:
            return
        for shard in shards:
            if len(shard.name) != 2 or not shard.is_dir(follow_symlinks=False):     # a link leads out
                continue
            for entry in os.scandir(shard.path):
                digest = shard.name + entry.name
                if DIGEST_RE.fullmatch(digest):
                    yield digest

    def size_of(self, digest: str) -> int:
        try:
            return os.lstat(self.path_of(digest)).st_size
        except FileNotFoundError:
            return 0

    def total_size(self) -> int:
        return sum(self.size_of(d) for d in self.iter_digests())

    def delete(self, digest: str) -> bool:
        try:
            os.unlink(self.path_of(digest))
            return True
        except FileNotFoundError:
            return False

    def clean_tmp(self, older_than_s: float = _STALE_TMP_S) -> int:
        """Remove temp files left by killed writers (only old ones: young ones may still
        be being written)."""
        cutoff = time.time() - older_than_s
        removed = 0
        for entry in os.scandir(self.tmp_dir):
            try:
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path)
                    else:
                        os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                pass
        return removed
