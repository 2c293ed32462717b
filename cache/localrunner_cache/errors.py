"""Exceptions raised by localrunner_cache."""

from __future__ import annotations


class CacheError(Exception):
    """Anything the cache cannot do safely: a full disk, a missing or corrupt object,
    an unsupported file type. Callers treat it as "no cache", never as a wrong result."""


class LockTimeout(CacheError, TimeoutError):
    """ActionCache.lock() gave up waiting for another holder."""
