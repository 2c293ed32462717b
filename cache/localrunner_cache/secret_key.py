"""A per-cache secret key, and keyed digests of secret values.

Whatever goes into an action's description is stored, and pushed to a shared remote
cache. A secret value must still change the key when it changes, but a plain hash of it
would let anyone who can read the cache test guesses of the value offline. An HMAC under
a key that never leaves the machine (or the team, with a shared key file) cannot be.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile

from .damage import quarantine, repair_lock, unlink_planted
from .errors import CacheError

MIN_KEY_BYTES = 16
_PREFIX = "hmac-sha256:"


def secret_digest(key: bytes, value: bytes) -> str:
    """The keyed digest of a secret ``value``: 'hmac-sha256:<hex>'."""
    return _PREFIX + hmac.new(key, value, hashlib.sha256).hexdigest()


def read_key(path) -> bytes:
    """The key material in ``path`` (its bytes, surrounding whitespace removed);
    CacheError when it cannot be read or is shorter than MIN_KEY_BYTES."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            key = f.read().strip()
    except OSError as exc:
        raise CacheError(f"secret key file {path}: cannot read it ({exc.strerror or exc})") from exc
    if len(key) < MIN_KEY_BYTES:
        raise CacheError(f"secret key file {path}: holds {len(key)} bytes, needs at least {MIN_KEY_BYTES}")
    return key


def _create(path: str) -> None:
    """Write a new random key to ``path`` unless one appears there first: made under a
    temp name (mode 0600 from mkstemp), fsynced, then linked into place, so concurrent
    creators all end up reading the one that won."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".secret-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)


def load_or_create_key(path, quarantine_dir=None, warnings: list | None = None) -> bytes:
    """The cache's own key at ``path``, created on first use. A damaged one (too short,
    unreadable as a file) is moved to ``quarantine_dir`` with a warning and replaced:
    only the keys of tasks that read a secret change, and those run again."""
    path = os.path.abspath(os.fspath(path))
    said = unlink_planted([path])       # the store's own file: a link would read a key from outside
    if warnings is not None:
        warnings.extend(said)
    try:
        return read_key(path)
    except CacheError:
        pass
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with repair_lock(path):
            if not os.path.lexists(path):
                _create(path)
                return read_key(path)
            try:
                return read_key(path)  # another process replaced it meanwhile
            except CacheError as exc:
                problem = str(exc)
            folder = quarantine(path, quarantine_dir or os.path.join(os.path.dirname(path), "quarantine"),
                                "secret-key", only=[path])
            _create(path)
            key = read_key(path)
    except OSError as exc:
        raise CacheError(f"cannot create the secret key {path}: {exc}") from exc
    if warnings is not None:
        warnings.append(f"{problem}; moved to {folder} and replaced by a new key "
                        "(tasks that read a secret run again)")
    return key
