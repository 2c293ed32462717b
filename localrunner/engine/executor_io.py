"""Executor input (what KFP's executor reads) and executor output (what it writes back).

What a task leaves behind is read as docs/security.md says: everything in its out folder
through layout.open_beneath (no link followed, links inside folder outputs must stay in the
out folder); a path the executor output names (an artifact's `uri`, KFP's `custom_path`)
only where the task could have written it (Collect): on an isolated backend its out folder
and the writable folders the engine mounted for it, never a file of the host's.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import stat
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Optional

from localrunner.engine.model import Artifact, local_path
from localrunner.units import DECIMAL_TEXT, INTEGER_TEXT, NOT_FINITE_TEXT
from localrunner.layout import (PathEscape, check_links, fd_path, is_inside, open_beneath, printable,
                                read_beneath)

if TYPE_CHECKING:
    from localrunner.layout import TaskLayout
    from localrunner.spec.views import Component, ParameterDef


class OutputError(Exception):
    pass


def output_artifacts(component: 'Component', layout: 'TaskLayout') -> dict[str, list[Artifact]]:
    """Where each declared output artifact goes: <out>/artifacts/<name> (uri == path)."""
    return {name: [Artifact(name=name, schema_title=d.schema_title, schema_version=d.schema_version,
                            uri=layout.artifact(name), metadata={})]
            for name, d in component.outputs.artifacts.items()}


def output_parameter_files(component: 'Component', layout: 'TaskLayout') -> dict[str, str]:
    return {name: layout.parameter(name) for name in component.outputs.parameters}


def build(params: dict, arts: dict[str, list[Artifact]], out_arts: dict[str, list[Artifact]],
          out_param_files: dict[str, str], output_file: str) -> dict:
    return {
        'inputs': {
            'parameterValues': params,
            'artifacts': {name: {'artifacts': [a.runtime() for a in lst]} for name, lst in arts.items()},
        },
        'outputs': {
            'parameters': {name: {'outputFile': path} for name, path in out_param_files.items()},
            'artifacts': {name: {'artifacts': [a.runtime() for a in lst]} for name, lst in out_arts.items()},
            'outputFile': output_file,
        },
    }


def coerce_inputs(params: dict, definitions: Mapping[str, 'ParameterDef']) -> dict:
    """KFP carries numbers as doubles (YAML defaults say 5.0 for an int): give each input the
    type its component declares, as the KFP driver does. Inside a LIST or STRUCT, a number
    is what the driver's executor input says of that double (protojson, as Go's encoding/json
    writes one): a whole one below 1e21 without a fraction, so [1.0, 2.5] reaches the
    component as [1, 2.5] (kfp.local passes the YAML's 1.0 on)."""
    for name, d in definitions.items():
        value = params.get(name)
        if d.type == 'NUMBER_INTEGER' and isinstance(value, float) and value.is_integer():
            params[name] = int(value)
        elif d.type == 'NUMBER_DOUBLE' and isinstance(value, int) and not isinstance(value, bool):
            params[name] = float(value)
        elif d.type in ('LIST', 'STRUCT') and isinstance(value, (list, dict)):
            params[name] = _as_protojson(value)
    return params


def _as_protojson(value: Any) -> Any:
    kind = type(value)
    if kind is float:
        return int(value) if value.is_integer() and abs(value) < 1e21 else value
    if kind is list:
        return [_as_protojson(v) for v in value]
    if kind is dict:
        return {k: _as_protojson(v) for k, v in value.items()}
    return value


# strconv.ParseBool's spellings
_BOOLEANS = {'1': True, 't': True, 'T': True, 'TRUE': True, 'true': True, 'True': True,
             '0': False, 'f': False, 'F': False, 'FALSE': False, 'false': False, 'False': False}


def _convert_text(text: str, ptype: str) -> Any:
    """An output parameter file's text as KFP's launcher reads it (kubeflow/pipelines
    backend/src/v2/metadata/converter.go TextToPbValue): surrounding blanks trimmed, an
    integer strictly an integer ('3.7' and '3.0' are refused), a boolean in strconv.ParseBool's
    spellings, a LIST a JSON list and a STRUCT a JSON object. ValueError otherwise."""
    if ptype == 'STRING':
        return text
    t = text.strip()
    if ptype == 'NUMBER_INTEGER':
        if not INTEGER_TEXT.fullmatch(t):
            raise ValueError(f'not an integer: {text!r}')
        return int(t)
    if ptype == 'NUMBER_DOUBLE':
        if not DECIMAL_TEXT.fullmatch(t) and t.lower().lstrip('+-') not in NOT_FINITE_TEXT:
            raise ValueError(f'not a number: {text!r}')
        return float(t)
    if ptype == 'BOOLEAN':
        if t not in _BOOLEANS:
            raise ValueError(f'not a boolean: {text!r}')
        return _BOOLEANS[t]
    value = json.loads(text)
    wanted = {'LIST': list, 'STRUCT': dict}.get(ptype)
    if wanted is not None and not isinstance(value, wanted):
        raise ValueError(f'not a JSON {"list" if wanted is list else "object"}: {text[:60]!r}')
    return value


# ---------------------------------------------------------------------------- where outputs come from
MAX_OUTPUT_FILE_BYTES = 64 << 20      # an executor output or parameter file is read into memory


@dataclasses.dataclass(frozen=True)
class Collect:
    """Where the host may read what a task handed over (docs/security.md).

    `out` is the task's out folder (the same path in the task and on the host). On an
    `isolated` backend the task sees only its mounts, so a path it names is read only in
    `out` or in a writable folder the engine mounted for it (`mounted`: path in the task
    -> host folder: its /tmp, empty dirs, PVCs); anything else is refused, never resolved
    on the host. Not isolated (the subprocess backend), the task runs as the user: a path
    outside `out` is read as named, as kfp's local runner reads it; never written nor
    removed."""
    out: str
    isolated: bool = False
    mounted: dict = dataclasses.field(default_factory=dict)

    def source(self, path: str) -> Optional[tuple[str, str]]:
        """(folder, host path) where the host reads `path` (a path in the task) below
        `folder` without following links; None when it lies in no such folder."""
        path = os.path.normpath(path)
        if _inside(path, self.out):
            return self.out, path
        for target, host in sorted(self.mounted.items(), key=lambda kv: -len(kv[0])):
            if _inside(path, target):
                return host, os.path.join(host, os.path.relpath(path, target))
        return None

    def places(self) -> str:
        return ', '.join([f'its out folder {self.out}'] + sorted(self.mounted))


def _inside(path: str, base: str) -> bool:
    return is_inside(os.path.normpath(path), os.path.normpath(base))


def _read_text(base: str, path: str, what: str) -> Optional[str]:
    """A file the task wrote, read without following links; None when it isn't there."""
    try:
        data = read_beneath(base, path, what, MAX_OUTPUT_FILE_BYTES)
    except FileNotFoundError:
        return None
    except (PathEscape, ValueError) as e:
        raise OutputError(str(e)) from None
    return data.decode('utf-8', errors='replace')


@contextlib.contextmanager
def readable(path: str, collect: Collect, what: str) -> Iterator[Optional[str]]:
    """A path through which the host may read the output at `path` (for the CAS), or None
    when nothing is there: in the out folder (or, isolated, a folder mounted for the task)
    /proc/self/fd/N of it opened without following links, a folder's inner links checked to
    stay inside; elsewhere only when the task is not isolated (read_outputs refused the rest)."""
    source = collect.source(path)
    if source is not None and (collect.isolated or source[0] == collect.out):
        with _checked(*source, what) as checked:
            yield checked
        return
    if collect.isolated:
        raise OutputError(f'{what}: {printable(path)} is outside {collect.places()}')
    yield path if os.path.lexists(path) else None


@contextlib.contextmanager
def _checked(base: str, host: str, what: str) -> Iterator[Optional[str]]:
    try:
        fd = open_beneath(base, host, what)
    except FileNotFoundError:
        yield None
        return
    except PathEscape as e:
        raise OutputError(str(e)) from None
    try:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            try:
                check_links(fd, host, base, what)
            except PathEscape as e:
                raise OutputError(str(e)) from None
        yield fd_path(fd)
    finally:
        os.close(fd)


def _replace_with(target: str, collect: Collect, source: str, what: str) -> None:
    """Copies the file or folder at `source` (a checked /proc/self/fd path, or on a
    backend that isn't isolated a path of the user's) to `target` in the out folder, in
    place of whatever the task left there: a link there is removed, never written through."""
    try:
        _ensure_folder(collect.out, os.path.dirname(target), what)
    except PathEscape as e:
        raise OutputError(str(e)) from None
    if os.path.isdir(target) and not os.path.islink(target):
        shutil.rmtree(target)
    elif os.path.lexists(target):
        os.unlink(target)
    if os.path.isdir(source):
        shutil.copytree(source, target, symlinks=True)
        return
    with open(source, 'rb') as src:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, 'wb') as dst:
            shutil.copyfileobj(src, dst, 1 << 20)


def _ensure_folder(out: str, folder: str, what: str) -> None:
    """`folder` (below `out`) is a real folder: made when missing; PathEscape when a link
    (or a file) is in its way. `out` is checked before anything is made below it."""
    try:
        os.close(open_beneath(out, folder, what))
        return
    except FileNotFoundError:
        pass
    os.close(open_beneath(out, out, what))
    os.makedirs(folder, exist_ok=True)
    os.close(open_beneath(out, folder, what))


def _take_custom_path(name: str, custom: str, target: str, collect: Collect) -> None:
    """KFP's Artifact.set_path(): the component wrote its output at `custom` and KFP's
    launcher uploads it from there (kfp/dsl/executor.py writes `custom_path` into the
    executor output; kfp/dsl/types/artifact_types.py set_path). Here it is copied to the
    artifact's uri in the out folder, from where the task could write it."""
    what = f'output artifact {name!r}'
    if os.path.normpath(custom) == os.path.normpath(target):
        return
    source = collect.source(custom)
    if source is None:
        if collect.isolated:
            raise OutputError(f'{what}: custom_path {printable(custom)} is outside what this task may hand over '
                              f'({collect.places()}); its outputs come only from what it wrote there')
        if os.path.lexists(custom):        # the user's own file, named by a task running as the user
            _replace_with(target, collect, custom, what)
        return
    with _checked(*source, f'{what} (custom_path)') as path:
        if path is not None:
            _replace_with(target, collect, path, what)


def _checked_uri(name: str, uri: str, collect: Collect) -> str:
    """An artifact uri the executor output sets: a remote URI passes as a URI only; a
    local one must lie in the out folder on an isolated backend."""
    path = local_path(uri)
    if path is None or not collect.isolated or _inside(path, collect.out):
        return uri
    raise OutputError(f'output artifact {name!r}: the executor output names uri {printable(uri)}, outside the task\'s '
                      f'out folder {collect.out}; its outputs come only from what it wrote there')


def read_outputs(component: 'Component', out_arts: dict[str, list[Artifact]], out_param_files: dict[str, str],
                 output_file: str, collect: Optional[Collect] = None) -> dict[str, Any]:
    """Reads executor output (if any) and output parameter files; updates out_arts in place
    (custom URIs, metadata). Returns the output parameters. `collect` says where outputs may
    come from (default: the folder of `output_file`, not isolated)."""
    collect = collect or Collect(out=os.path.dirname(output_file))
    declared = component.outputs.parameters
    executor_output: Any = {}
    text = _read_text(collect.out, output_file, 'executor output')
    if text is not None:
        try:
            executor_output = json.loads(text) or {}
        except ValueError as e:
            raise OutputError(f'executor output {output_file} is not JSON: {e}') from None
    if not isinstance(executor_output, dict) or not isinstance(executor_output.get('parameterValues') or {}, dict) \
            or not isinstance(executor_output.get('artifacts') or {}, dict):
        raise OutputError(f'executor output {output_file} is not an ExecutorOutput object '
                          f'({{"parameterValues": {{...}}, "artifacts": {{...}}}})')
    params = dict(executor_output.get('parameterValues', {}) or {})
    for name, path in out_param_files.items():
        if name in params:
            continue
        text = _read_text(collect.out, path, f'output parameter {name!r}')
        if text is not None:
            ptype = declared[name].type if name in declared else 'STRING'
            try:
                params[name] = _convert_text(text, ptype)
            except ValueError:
                raise OutputError(f'output parameter {name!r}: {text[:60]!r} is not a valid {ptype}') from None
    missing = [n for n, d in declared.items() if n not in params and not d.optional]
    if missing:
        raise OutputError(f'output parameter {missing[0]!r} was not written '
                          f'(expected in {out_param_files.get(missing[0])} or the executor output)')
    for name, entry in (executor_output.get('artifacts', {}) or {}).items():
        if name not in out_arts:
            continue
        produced = entry.get('artifacts', []) if isinstance(entry, dict) else None
        if not isinstance(produced, list) or not all(isinstance(a, dict) for a in produced):
            raise OutputError(f'executor output: artifacts of {name!r} are not a list of artifacts')
        template = out_arts[name][0]
        updated = []
        for i, a in enumerate(produced):
            base = out_arts[name][i] if i < len(out_arts[name]) else template
            custom = a.get('custom_path')
            if custom:
                _take_custom_path(name, str(custom), base.path, collect)
                uri = base.uri
            else:
                uri = _checked_uri(name, str(a.get('uri') or base.uri), collect)
            metadata = a.get('metadata') or {}
            if not isinstance(metadata, dict):
                raise OutputError(f'executor output: metadata of artifact {name!r} is not an object')
            updated.append(Artifact(name=base.name, schema_title=base.schema_title,
                                    schema_version=base.schema_version, uri=uri, metadata=metadata))
        if updated:
            out_arts[name] = updated
    return params
