"""localrunner_cache: digests, a content-addressed store, an action cache and a remote
store, modelled on Bazel's CAS + action cache. Knows nothing of KFP."""

from .action_cache import ActionCache, ActionResult
from .cas import CAS
from .digest import digest_bytes, digest_file, digest_tree
from .errors import CacheError, DigestMismatch, LockTimeout, RemoteDamaged, RemoteUnavailable, Stopped
from .gc import gc, prune, verify
from .index import Index
from .leases import Lease, is_live
from .memo import StatMemo
from .secret_key import load_or_create_key, secret_digest

__all__ = [
    "digest_bytes", "digest_file", "digest_tree", "StatMemo", "CAS", "ActionCache",
    "ActionResult", "CacheError", "LockTimeout", "DigestMismatch", "RemoteUnavailable",
    "RemoteDamaged", "Stopped", "gc", "prune", "verify", "Index", "Lease", "is_live",
    "load_or_create_key", "secret_digest", "RemoteStore",
]


def __getattr__(name):
    # the S3 client (minio, urllib3) costs a quarter second to import: only when asked for
    if name == "RemoteStore":
        from .remote import RemoteStore
        return RemoteStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
