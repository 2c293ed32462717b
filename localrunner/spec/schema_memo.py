"""A memo of pipeline files that passed KFP's own schema check (spec/__init__.py, check 3), so
a re-run of an unchanged file skips importing protobuf and KFP's PipelineSpec (~30 ms of each
start) and the check itself. Only that check: the shape, name, reference and placeholder
checks run on every load.

A marker is a small JSON file under the user's cache dir (`validated/<key>`), written
tmp -> fsync -> rename once the check passed. Its key is a digest of everything the check's
outcome depends on: the file's text exactly as it is parsed, the schema itself (the bytes of
kfp-pipeline-spec's pipeline_spec_pb2.py), the protobuf version, localrunner's version and
MEMO_FORMAT. A marker that is missing, unreadable or does not hold its own key only costs a
re-validation; when the schema file cannot be found, nothing is memoized.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import Optional

# Bump when what spec/__init__.py's schema check accepts changes (old markers then miss).
MEMO_FORMAT = 1
# Markers kept: past this many, a new one makes room by removing the oldest half (each
# edit of a pipeline leaves a marker of its previous text behind).
MAX_MARKERS = 512
_SCHEMA_FILE = os.path.join('kfp', 'pipeline_spec', 'pipeline_spec_pb2.py')


def memo_dir() -> str:
    import platformdirs
    return os.path.join(platformdirs.user_cache_dir('localrunner'), 'validated')


def schema_file() -> Optional[str]:
    """The pipeline_spec_pb2.py an import would find: kfp is a pkgutil namespace package,
    whose portions are searched in sys.path order. None when there is no such source file."""
    for entry in sys.path:
        candidate = os.path.join(entry or os.curdir, _SCHEMA_FILE)
        if os.path.isfile(candidate):
            return candidate
    return None


def _environment(schema: str) -> Optional[str]:
    """What the check's outcome depends on besides the pipeline itself."""
    from localrunner import __version__
    try:
        import google.protobuf                  # its __init__ only: the version string
        with open(schema, 'rb') as f:
            schema_digest = hashlib.sha256(f.read()).hexdigest()
    except (ImportError, OSError):              # the check itself will say what is missing
        return None
    return json.dumps([MEMO_FORMAT, __version__, google.protobuf.__version__, schema_digest])


class SchemaMemo:
    """The marker for one pipeline text; `for_text` is None when nothing can be memoized."""

    def __init__(self, key: str, schema: str, directory: str):
        self.key = key
        self.schema = schema                    # the file fingerprinted: the check must use it
        self.path = os.path.join(directory, key)

    @classmethod
    def for_text(cls, text: str) -> Optional['SchemaMemo']:
        schema = schema_file()
        environment = _environment(schema) if schema else None
        if environment is None:
            return None
        digest = hashlib.sha256(environment.encode() + b'\0')
        # the text as read (universal newlines): what is parsed, so what the outcome follows
        digest.update(text.encode('utf-8', 'surrogatepass'))
        return cls(digest.hexdigest(), schema, memo_dir())

    def passed(self) -> bool:
        """A marker holding this key exists; anything else (absent, unreadable, damaged) is no."""
        try:
            with open(self.path, encoding='utf-8') as f:
                data = json.loads(f.read(4096))
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and data.get('key') == self.key

    def record(self, checked_with: str) -> None:
        """Mark the check passed, if it ran against the schema file fingerprinted (an import
        that found another one says nothing about this key). Best effort: a cache dir that
        cannot be written only means the next load checks again."""
        try:
            if not os.path.samefile(checked_with, self.schema):
                return
            from localrunner.engine.assembly import write_json_atomic
            write_json_atomic(self.path, {'key': self.key})
            _trim(os.path.dirname(self.path), keep=self.path)
        except (OSError, TypeError):            # TypeError: a module without a file
            pass


def _trim(directory: str, keep: str) -> None:
    """Past MAX_MARKERS markers, remove the oldest half (never KEEP): a marker removed only
    means its text is checked again."""
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
