"""localrunner_cache: digests, a content-addressed store, an action cache and a remote
store, modelled on Bazel's CAS + action cache. Knows nothing of KFP."""

from .action_cache import ActionCache, ActionResult
from .cas import CAS
from .digest import digest_bytes, digest_file, digest_tree
from .errors import CacheError, LockTimeout
from .gc import gc, prune
from .memo import StatMemo
from .remote import RemoteStore

__all__ = [
    "digest_bytes", "digest_file", "digest_tree", "StatMemo", "CAS", "ActionCache",
    "ActionResult", "CacheError", "LockTimeout", "gc", "prune", "RemoteStore",
]
