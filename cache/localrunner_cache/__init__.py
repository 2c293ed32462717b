"""localrunner_cache: digests, a content-addressed store, an action cache and a remote
store, modelled on Bazel's CAS + action cache. Knows nothing of KFP."""

from .action_cache import ActionCache, ActionResult
from .cas import CAS
from .digest import digest_bytes, digest_file, digest_tree
from .errors import CacheError, LockTimeout
from .gc import gc, prune
from .memo import StatMemo

__all__ = [
    "digest_bytes", "digest_file", "digest_tree", "StatMemo", "CAS", "ActionCache",
    "ActionResult", "CacheError", "LockTimeout", "gc", "prune", "RemoteStore",
]


def __getattr__(name):
    # the S3 client (minio, urllib3) costs a quarter second to import: only when asked for
    if name == "RemoteStore":
        from .remote import RemoteStore
        return RemoteStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
