"""Memos of pipeline files, so that a re-run of an unchanged file skips work that depends on
its text alone:
- SchemaMemo: the file passed KFP's own schema check (spec/__init__.py, check 3): no importing
  protobuf and KFP's PipelineSpec (~30 ms of each start), no check. Only that check: the
  shape, name, reference and placeholder checks run on every load.
- ParseMemo: what PyYAML parsed the file into, as JSON: no importing PyYAML (~15-25 ms of each
  start) and no parse. Kept only when JSON holds it exactly (no dates, binaries, NaN or
  non-string keys: those texts are parsed every time). Its key adds PyYAML's installed files
  (found without importing it), localrunner's version and PARSE_FORMAT to the text.

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
# Bump when what spec/__init__.py's YAML loader makes of a text changes.
PARSE_FORMAT = 1
# Markers kept: past this many, a new one makes room by removing the oldest half (each
# edit of a pipeline leaves a marker of its previous text behind).
MAX_MARKERS = 512
_SCHEMA_FILE = os.path.join('kfp', 'pipeline_spec', 'pipeline_spec_pb2.py')


def memo_dir(kind: str = 'validated') -> str:
    import platformdirs
    return os.path.join(platformdirs.user_cache_dir('localrunner'), kind)


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


def yaml_identity() -> Optional[str]:
    """PyYAML as an import would find it, without importing it: its folder, its __init__.py's
    size and time, and its C extension's (libyaml's loader, when built). None when there is
    no such folder (then nothing is memoized)."""
    for entry in sys.path:
        folder = os.path.join(entry or os.curdir, 'yaml')
        try:
            init = os.stat(os.path.join(folder, '__init__.py'))
            with os.scandir(folder) as entries:
                native = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries
                                if e.name.startswith('_yaml'))
        except OSError:
            continue
        return json.dumps([os.path.abspath(folder), init.st_size, init.st_mtime_ns, native])
    return None


class ParseMemo:
    """What one pipeline text parsed into; `for_text` is None when nothing can be memoized."""

    def __init__(self, key: str, directory: str):
        self.key = key
        self.path = os.path.join(directory, key)

    @classmethod
    def for_text(cls, text: str) -> Optional['ParseMemo']:
        identity = yaml_identity()
        if identity is None:
            return None
        from localrunner import __version__
        digest = hashlib.sha256(json.dumps([PARSE_FORMAT, __version__, identity]).encode() + b'\0')
        digest.update(text.encode('utf-8', 'surrogatepass'))
        return cls(digest.hexdigest(), memo_dir('parsed'))

    def load(self) -> Optional[list]:
        """The documents, or None (absent, unreadable, damaged, another key's)."""
        try:
            with open(self.path, encoding='utf-8') as f:
                data = json.load(f)
        except (OSError, ValueError, RecursionError):
            return None
        if not isinstance(data, dict) or data.get('key') != self.key or not isinstance(data.get('docs'), list):
            return None
        return data['docs']

    def record(self, docs: list) -> None:
        """Keeps DOCS when JSON gives them back exactly; best effort, as SchemaMemo.record."""
        try:
            text = json.dumps(docs, allow_nan=False)
            if json.loads(text) != docs:            # a key that was not a string
                return
        except (TypeError, ValueError, RecursionError):     # a date, a binary, NaN
            return
        try:
            from localrunner.engine.assembly import write_json_atomic
            write_json_atomic(self.path, {'key': self.key, 'docs': docs})
            _trim(os.path.dirname(self.path), keep=self.path)
        except OSError:
            pass
