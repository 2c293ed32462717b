"""Exceptions raised by localrunner_cache."""

from __future__ import annotations


class CacheError(Exception):
    """Anything the cache cannot do safely: a full disk, a missing or corrupt object,
    an unsupported file type. Callers treat it as "no cache", never as a wrong result."""


class LockTimeout(CacheError, TimeoutError):
    """ActionCache.lock() gave up waiting for another holder."""


class Stopped(CacheError):
    """The caller's stop() asked to give up (its run was canceled): nothing was stored."""


class DigestMismatch(CacheError):
    """Content read (a download, a stream) does not match the digest it was stored under."""


class RemoteUnavailable(CacheError):
    """The remote store failed (this call, or an earlier one) and is skipped from then on:
    its circuit breaker is open. Already reported, once, in the store's warnings."""


class RemoteDamaged(CacheError):
    """A remote object is corrupt, or missing below a tree that exists: it was deleted
    remotely (with the trees above it), so the next upload puts a good copy back."""
