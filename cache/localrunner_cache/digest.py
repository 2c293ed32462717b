"""Content digests: xxh3-128 of bytes, files (streamed) and directory trees.

A directory is described by a *tree object*: TREE_MAGIC followed by the canonical JSON of
its entries sorted by name, ``[{"name", "mode", "digest"}]`` with mode one of
"file" | "exec" | "dir" | "symlink". A symlink's digest is that of its target path bytes;
a dir's digest is the digest of its own tree object. The magic prefix makes a tree object
recognisable in the store (CAS.kind) while its name stays the plain digest of its bytes,
so every object in the store is verified the same way.
"""

from __future__ import annotations

import json
import os
import re
import stat
import threading
from typing import Callable

import xxhash

from .errors import CacheError

CHUNK_SIZE = 1 << 20
TREE_MAGIC = b"localrunner-tree/1\n"
MODES = ("file", "exec", "dir", "symlink")
DIGEST_RE = re.compile(r"[0-9a-f]{32}")  # what every digest looks like (xxh3-128, hex)

_local = threading.local()


def _buffer() -> memoryview:
    # One reusable 1 MiB buffer per thread: hashing many files allocates nothing per file.
    view = getattr(_local, "view", None)
    if view is None:
        view = _local.view = memoryview(bytearray(CHUNK_SIZE))
    return view


def digest_bytes(data: bytes) -> str:
    """xxh3-128 of ``data`` as 32 lowercase hex characters."""
    return xxhash.xxh3_128_hexdigest(data)


def digest_fileobj(f) -> str:
    """Digest of everything readable from a binary file object (streamed)."""
    hasher = xxhash.xxh3_128()
    view = _buffer()
    readinto = f.readinto
    update = hasher.update
    while True:
        n = readinto(view)
        if not n:
            break
        update(view[:n])
    return hasher.hexdigest()


def hash_file_uncached(path) -> str:
    with open(path, "rb", buffering=0) as f:
        return digest_fileobj(f)


def digest_file(path, memo=None) -> str:
    """Digest of a file's content, streamed in 1 MiB chunks; ``memo`` (a StatMemo) skips
    re-reading files whose stat is unchanged."""
    if memo is not None:
        return memo.digest_file(path)
    return hash_file_uncached(path)


def encode_tree(entries: list[dict]) -> bytes:
    """Canonical bytes of a tree object (entries need not be sorted yet)."""
    ordered = sorted(entries, key=lambda e: e["name"])
    # ensure_ascii keeps non-UTF-8 names (surrogate-escaped by os.scandir) representable.
    body = json.dumps(
        [{"name": e["name"], "mode": e["mode"], "digest": e["digest"]} for e in ordered],
        sort_keys=True, separators=(",", ":"), ensure_ascii=True,
    )
    return TREE_MAGIC + body.encode("ascii")


def decode_tree(data: bytes) -> list[dict]:
    """Entries of a tree object; CacheError when ``data`` is not one."""
    if not data.startswith(TREE_MAGIC):
        raise CacheError("not a tree object (missing tree header)")
    try:
        entries = json.loads(data[len(TREE_MAGIC):])
        for e in entries:
            if e["mode"] not in MODES or not isinstance(e["name"], str) or not isinstance(e["digest"], str):
                raise ValueError(e)
            if e["name"] in ("", ".", "..") or "/" in e["name"] or "\0" in e["name"]:
                raise ValueError(f"unsafe entry name {e['name']!r}")
    except (ValueError, KeyError, TypeError) as exc:
        raise CacheError(f"malformed tree object: {exc}") from exc
    return entries


def walk_tree(path, file_digest: Callable[[str], str], blob_digest: Callable[[bytes], str]) -> str:
    """Describe the directory ``path`` bottom-up and return its tree digest.

    ``file_digest(path)`` digests (and maybe stores) a regular file; ``blob_digest(bytes)``
    digests (and maybe stores) symlink targets and tree objects. Children are handled
    before their parent, so a store never holds a tree whose children are missing.
    """
    entries = []
    with os.scandir(path) as it:
        children = sorted(it, key=lambda e: e.name)
    for entry in children:
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            mode, digest = "symlink", blob_digest(os.fsencode(os.readlink(entry.path)))
        elif stat.S_ISDIR(st.st_mode):
            mode, digest = "dir", walk_tree(entry.path, file_digest, blob_digest)
        elif stat.S_ISREG(st.st_mode):
            mode = "exec" if st.st_mode & stat.S_IXUSR else "file"
            digest = file_digest(entry.path)
        else:
            raise CacheError(f"unsupported file type (not file, dir or symlink): {entry.path}")
        entries.append({"name": entry.name, "mode": mode, "digest": digest})
    return blob_digest(encode_tree(entries))


def digest_tree(path, memo=None) -> str:
    """Digest of the directory ``path`` (its root tree object)."""
    return walk_tree(path, lambda p: digest_file(p, memo), digest_bytes)
