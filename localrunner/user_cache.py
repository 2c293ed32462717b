"""What localrunner keeps under the user's cache folder (platformdirs: $XDG_CACHE_HOME/localrunner
on Linux): where each thing lives, and the memo file that several of them share.

Standard library only at import (platformdirs is imported when a path is first asked for):
the CLI's warm-start pre-start reads a memo here before it imports the engine.

- envs/                     venvs of components (LOCALRUNNER_ENV_DIR overrides: default_env_dir)
- validated/, parsed/       memos of pipeline texts (spec/schema_memo.py)
- warm/                     the zygotes a pipeline's last run served (backends/warm_prestart.py)
- environments/, k8s-image-digests.json   image build locks, the cluster's image digests
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Optional

# Memos kept in one folder: past this many, a new one makes room by removing the oldest half
# (each edit of a pipeline leaves a memo of its previous text behind).
MAX_MARKERS = 512


def user_cache_path(*parts: str) -> str:
    """PARTS under the user's cache folder for localrunner: the one place it is named."""
    import platformdirs
    return os.path.join(platformdirs.user_cache_dir('localrunner'), *parts)


def default_env_dir() -> str:
    """Where components' venvs are built: $LOCALRUNNER_ENV_DIR, else the user cache's envs/."""
    return os.environ.get('LOCALRUNNER_ENV_DIR') or user_cache_path('envs')


class TextMemo:
    """A memo file for one pipeline text: named by a digest of ENVIRONMENT (what else the
    memoized outcome depends on) and the text, and counted only when it holds that digest
    as its 'key'. Anything else (absent, unreadable, damaged, planted) is no memo.
    Written tmp -> fsync -> rename."""

    def __init__(self, environment: str, text: str, directory: str):
        digest = hashlib.sha256(environment.encode() + b'\0')
        # the text as read (universal newlines): what is parsed, so what the outcome follows
        digest.update(text.encode('utf-8', 'surrogatepass'))
        self.key = digest.hexdigest()
        self.path = os.path.join(directory, self.key)

    def _read(self, limit: int = -1) -> Optional[dict]:
        try:
            with open(self.path, encoding='utf-8') as f:
                data = json.loads(f.read(limit))
        except (OSError, ValueError, RecursionError):
            return None
        return data if isinstance(data, dict) and data.get('key') == self.key else None

    def _write(self, fields: dict) -> None:
        """Best effort: a cache dir that cannot be written only means the work is done again."""
        from localrunner.engine.assembly import write_json_atomic
        try:
            write_json_atomic(self.path, {'key': self.key, **fields})
            _trim(os.path.dirname(self.path), keep=self.path)
        except OSError:
            pass


def _trim(directory: str, keep: str) -> None:
    """Past MAX_MARKERS memos, remove the oldest half (never KEEP): a memo removed only
    means its work is done again."""
    with os.scandir(directory) as entries:
        markers = [e for e in entries if not e.name.startswith('.') and e.is_file(follow_symlinks=False)]
    if len(markers) <= MAX_MARKERS:
        return
    markers.sort(key=lambda e: e.stat(follow_symlinks=False).st_mtime)
    for entry in markers[:len(markers) // 2]:
        if entry.path != keep:
            try:
                os.unlink(entry.path)
            except OSError:
                pass
