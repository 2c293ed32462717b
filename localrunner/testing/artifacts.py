"""Input artifacts for tests: made from a path, bytes, text or a pandas DataFrame."""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import uuid
from typing import Any, Optional

from localrunner.engine.model import Artifact

DEFAULT_VERSION = '0.0.1'
GENERIC = 'system.Artifact'


def schema_of(type_: Any) -> tuple[Optional[str], str]:
    """(schema_title, schema_version) of a kfp artifact class (dsl.Dataset), an instance of one,
    a schema title string ('system.Dataset', or 'Dataset' for short), or None (untyped)."""
    if type_ is None:
        return None, DEFAULT_VERSION
    if isinstance(type_, str):
        title = type_ if '.' in type_ else f'system.{type_}'
        return title, DEFAULT_VERSION
    title = getattr(type_, 'schema_title', None)
    if isinstance(title, str):
        return title, str(getattr(type_, 'schema_version', DEFAULT_VERSION) or DEFAULT_VERSION)
    raise TypeError(f'artifact type {type_!r}: expected a kfp artifact class such as dsl.Dataset, '
                    f'or a schema title such as "system.Dataset"')


@dataclasses.dataclass
class InputArtifact:
    """An artifact to pass to a component or pipeline input. `schema_title` None means
    'whatever type the input declares'."""
    path: str
    schema_title: Optional[str] = None
    schema_version: str = DEFAULT_VERSION
    metadata: dict = dataclasses.field(default_factory=dict)
    name: Optional[str] = None

    @property
    def uri(self) -> str:
        return self.path

    def __fspath__(self) -> str:
        return self.path

    def read_bytes(self) -> bytes:
        with open(self.path, 'rb') as f:
            return f.read()

    def read_text(self, encoding: str = 'utf-8') -> str:
        with open(self.path, encoding=encoding) as f:
            return f.read()


def _safe(name: str) -> str:
    return re.sub(r'[^A-Za-z0-9_.-]+', '-', name).strip('-.') or 'artifact'


def make_artifact(directory: str, path: Any = None, *, bytes: Optional[bytes] = None,  # noqa: A002
                  text: Optional[str] = None, dataframe: Any = None, type: Any = None,  # noqa: A002
                  name: Optional[str] = None, metadata: Optional[dict] = None, format: str = 'csv',  # noqa: A002
                  copy: bool = False) -> InputArtifact:
    """Makes an InputArtifact from exactly one of `path` (a file or folder, used in place unless
    copy=True), `bytes`, `text` or `dataframe` (written as CSV without the index, or
    format='parquet' / 'json'); the latter three are written under `directory`."""
    given = [k for k, v in (('path', path), ('bytes', bytes), ('text', text), ('dataframe', dataframe))
             if v is not None]
    if len(given) != 1:
        raise TypeError('artifact(): give exactly one of path=, bytes=, text=, dataframe= '
                        f'(got {", ".join(given) or "none"})')
    title, version = schema_of(type)
    label = _safe(name or (os.path.basename(os.fspath(path)) if path is not None else given[0]))
    target = os.path.join(directory, f'{uuid.uuid4().hex[:8]}-{label}')
    if path is not None:
        source = os.path.abspath(os.fspath(path))
        if not os.path.exists(source):
            raise FileNotFoundError(f'artifact(path={os.fspath(path)!r}): no such file or directory')
        if copy:
            os.makedirs(directory, exist_ok=True)
            if os.path.isdir(source):
                shutil.copytree(source, target, symlinks=True)
            else:
                shutil.copyfile(source, target)
        else:
            target = source
    else:
        os.makedirs(directory, exist_ok=True)
        if bytes is not None:
            with open(target, 'wb') as f:
                f.write(bytes)
        elif text is not None:
            with open(target, 'w', encoding='utf-8') as f:
                f.write(text)
        else:
            if format == 'csv':
                dataframe.to_csv(target, index=False)
            elif format == 'parquet':
                dataframe.to_parquet(target, index=False)
            elif format == 'json':
                dataframe.to_json(target, orient='records')
            else:
                raise ValueError(f"artifact(format={format!r}): use 'csv', 'parquet' or 'json'")
    return InputArtifact(path=target, schema_title=title, schema_version=version,
                         metadata=dict(metadata or {}), name=name)


def to_engine(value: Any, input_name: str, declared_title: str, declared_version: str) -> Artifact:
    """The engine Artifact for one value given to an input artifact: an InputArtifact, an
    OutputArtifact of an earlier result, or a path (str / os.PathLike)."""
    from localrunner_cache import digest_file, digest_tree

    from localrunner.testing.results import OutputArtifact

    if isinstance(value, OutputArtifact):
        title, version, path, metadata = value.type, value.schema_version, value.path, value.metadata
        if path is None:
            raise ValueError(f'input {input_name!r}: artifact {value.uri} is not a local file')
    elif isinstance(value, InputArtifact):
        title, version, path, metadata = value.schema_title, value.schema_version, value.path, value.metadata
    elif isinstance(value, (str, os.PathLike)):
        path = os.path.abspath(os.fspath(value))
        if not os.path.exists(path):
            raise FileNotFoundError(f'input artifact {input_name!r}: {os.fspath(value)!r} does not exist')
        title, version, metadata = None, declared_version, {}
    else:
        raise TypeError(f'input artifact {input_name!r}: got {type(value).__name__}; pass '
                        f'localrunner.artifact(...), an artifact of an earlier result, or a path')
    if title is None:
        title, version = declared_title, declared_version
    elif title != declared_title and GENERIC not in (title, declared_title):
        raise TypeError(f'input artifact {input_name!r} is a {declared_title}; got a {title}')
    if os.path.isdir(path):
        digest, kind = digest_tree(path), 'tree'
    elif os.path.isfile(path):
        digest, kind = digest_file(path), 'file'
    else:
        raise FileNotFoundError(f'input artifact {input_name!r}: {path} does not exist')
    return Artifact(name=input_name, schema_title=title, schema_version=version, uri=path,
                    metadata=dict(metadata or {}), digest=digest, kind=kind)
