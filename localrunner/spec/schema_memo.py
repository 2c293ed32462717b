"""Memos of pipeline files, so that a re-run of an unchanged file skips work that depends on
its text alone:
- SchemaMemo: the file passed KFP's own schema check (spec/__init__.py, check 3): no importing
  protobuf and KFP's PipelineSpec (~30 ms of each start), no check. Only that check: the
  shape, name, reference and placeholder checks run on every load.
- ParseMemo: what PyYAML parsed the file into, as JSON: no importing PyYAML (~15-25 ms of each
  start) and no parse. Kept only when JSON holds it exactly (no dates, binaries, NaN or
  non-string keys: those texts are parsed every time). Its key adds PyYAML's installed files
  (found without importing it), localrunner's version and PARSE_FORMAT to the text.

Each memo is a JSON file under the user's cache dir (`validated/<key>`, `parsed/<key>`),
written tmp -> fsync -> rename, named by its key and holding it (TextMemo). A schema
marker's key is a digest of everything the check's outcome depends on: the file's text exactly as it is parsed, the schema itself (the bytes of
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

from localrunner.user_cache import TextMemo, user_cache_path

# Bump when what spec/__init__.py's schema check accepts changes (old markers then miss).
MEMO_FORMAT = 1
# Bump when what spec/__init__.py's YAML loader makes of a text changes.
PARSE_FORMAT = 1
_SCHEMA_FILE = os.path.join('kfp', 'pipeline_spec', 'pipeline_spec_pb2.py')


def _on_sys_path(relative: str) -> Optional[str]:
    """The first file RELATIVE names under a sys.path entry, in the order an import searches
    them; None when there is none."""
    for entry in sys.path:
        candidate = os.path.join(entry or os.curdir, relative)
        if os.path.isfile(candidate):
            return candidate
    return None


def schema_file() -> Optional[str]:
    """The pipeline_spec_pb2.py an import would find: kfp is a pkgutil namespace package,
    whose portions are searched in sys.path order. None when there is no such source file."""
    return _on_sys_path(_SCHEMA_FILE)


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


class SchemaMemo(TextMemo):
    """The marker for one pipeline text; `for_text` is None when nothing can be memoized."""

    def __init__(self, environment: str, text: str, schema: str):
        super().__init__(environment, text, user_cache_path('validated'))
        self.schema = schema                    # the file fingerprinted: the check must use it

    @classmethod
    def for_text(cls, text: str) -> Optional['SchemaMemo']:
        schema = schema_file()
        environment = _environment(schema) if schema else None
        return None if environment is None else cls(environment, text, schema)

    def passed(self) -> bool:
        """A marker holding this key exists (a marker is tiny: no more of a file is read)."""
        return self._read(4096) is not None

    def record(self, checked_with: str) -> None:
        """Mark the check passed, if it ran against the schema file fingerprinted (an import
        that found another one says nothing about this key)."""
        try:
            if not os.path.samefile(checked_with, self.schema):
                return
        except (OSError, TypeError):            # TypeError: a module without a file
            return
        self._write({})


def yaml_identity() -> Optional[str]:
    """PyYAML as an import would find it, without importing it: its folder, its __init__.py's
    size and time, and its C extension's (libyaml's loader, when built). None when there is
    no such folder (then nothing is memoized)."""
    init_path = _on_sys_path(os.path.join('yaml', '__init__.py'))
    if init_path is None:
        return None
    folder = os.path.dirname(init_path)
    try:
        init = os.stat(init_path)
        with os.scandir(folder) as entries:
            native = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries
                            if e.name.startswith('_yaml'))
    except OSError:
        return None
    return json.dumps([os.path.abspath(folder), init.st_size, init.st_mtime_ns, native])


class ParseMemo(TextMemo):
    """What one pipeline text parsed into; `for_text` is None when nothing can be memoized."""

    @classmethod
    def for_text(cls, text: str) -> Optional['ParseMemo']:
        identity = yaml_identity()
        if identity is None:
            return None
        from localrunner import __version__
        return cls(json.dumps([PARSE_FORMAT, __version__, identity]), text, user_cache_path('parsed'))

    def load(self) -> Optional[list]:
        """The documents, or None (absent, unreadable, damaged, another key's)."""
        data = self._read()
        return data['docs'] if data is not None and isinstance(data.get('docs'), list) else None

    def record(self, docs: list) -> None:
        """Keeps DOCS when JSON gives them back exactly."""
        try:
            if json.loads(json.dumps(docs, allow_nan=False)) != docs:     # a key that was not a string
                return
        except (TypeError, ValueError, RecursionError):     # a date, a binary, NaN
            return
        self._write({'docs': docs})
