"""Executor input (what KFP's executor reads) and executor output (what it writes back)."""
from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from localrunner.engine.model import Artifact

if TYPE_CHECKING:
    from localrunner.layout import TaskLayout


class OutputError(Exception):
    pass


def output_artifacts(component: dict, layout: 'TaskLayout') -> dict[str, list[Artifact]]:
    """Where each declared output artifact goes: <out>/artifacts/<name> (uri == path)."""
    out = {}
    for name, d in component.get('outputDefinitions', {}).get('artifacts', {}).items():
        schema = d.get('artifactType', {})
        out[name] = [Artifact(name=name, schema_title=schema.get('schemaTitle', 'system.Artifact'),
                              schema_version=schema.get('schemaVersion', '0.0.1'),
                              uri=layout.artifact(name), metadata={})]
    return out


def output_parameter_files(component: dict, layout: 'TaskLayout') -> dict[str, str]:
    return {name: layout.parameter(name) for name in component.get('outputDefinitions', {}).get('parameters', {})}


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


def _copy_into(source: str, target: str) -> None:
    import shutil
    if os.path.isdir(source):
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target, symlinks=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(source, target)


def coerce_inputs(params: dict, definitions: dict) -> dict:
    """KFP carries numbers as doubles (YAML defaults say 5.0 for an int): give each input the
    type its component declares, as the KFP driver does."""
    for name, d in definitions.items():
        value = params.get(name)
        ptype = d.get('parameterType')
        if ptype == 'NUMBER_INTEGER' and isinstance(value, float) and value.is_integer():
            params[name] = int(value)
        elif ptype == 'NUMBER_DOUBLE' and isinstance(value, int) and not isinstance(value, bool):
            params[name] = float(value)
    return params


def _convert_text(text: str, ptype: str) -> Any:
    if ptype == 'STRING':
        return text
    if ptype == 'NUMBER_INTEGER':
        return int(float(text.strip()))
    if ptype == 'NUMBER_DOUBLE':
        return float(text.strip())
    if ptype == 'BOOLEAN':
        t = text.strip().lower()
        if t in ('true', '1'):
            return True
        if t in ('false', '0'):
            return False
        raise ValueError(f'not a boolean: {text!r}')
    return json.loads(text)


def read_outputs(component: dict, out_arts: dict[str, list[Artifact]], out_param_files: dict[str, str],
                 output_file: str) -> dict[str, Any]:
    """Reads executor output (if any) and output parameter files; updates out_arts in place
    (custom URIs, metadata). Returns the output parameters."""
    declared = component.get('outputDefinitions', {}).get('parameters', {})
    executor_output = {}
    if os.path.exists(output_file):
        try:
            with open(output_file) as f:
                executor_output = json.load(f) or {}
        except ValueError as e:
            raise OutputError(f'executor output {output_file} is not JSON: {e}') from None
    params = dict(executor_output.get('parameterValues', {}) or {})
    for name, path in out_param_files.items():
        if name in params:
            continue
        if os.path.exists(path):
            with open(path, encoding='utf-8', errors='replace') as f:
                text = f.read()
            ptype = declared.get(name, {}).get('parameterType', 'STRING')
            try:
                params[name] = _convert_text(text, ptype)
            except ValueError:
                raise OutputError(f'output parameter {name!r}: {text[:60]!r} is not a valid {ptype}') from None
    missing = [n for n, d in declared.items() if n not in params and not d.get('isOptional')]
    if missing:
        raise OutputError(f'output parameter {missing[0]!r} was not written '
                          f'(expected in {out_param_files.get(missing[0])} or the executor output)')
    for name, entry in (executor_output.get('artifacts', {}) or {}).items():
        if name not in out_arts:
            continue
        produced = entry.get('artifacts', []) or []
        template = out_arts[name][0]
        updated = []
        for i, a in enumerate(produced):
            base = out_arts[name][i] if i < len(out_arts[name]) else template
            custom = a.get('custom_path')
            if custom and os.path.lexists(custom):
                # set_path(): the component wrote elsewhere; KFP's launcher moves it to the uri
                _copy_into(custom, base.path)
            updated.append(Artifact(name=base.name, schema_title=base.schema_title,
                                    schema_version=base.schema_version,
                                    uri=base.uri if custom else (a.get('uri') or base.uri),
                                    metadata=a.get('metadata') or {}))
        if updated:
            out_arts[name] = updated
    return params
