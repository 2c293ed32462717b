"""KFP placeholders in a container's command and args, resolved as KFP's launcher does.

Forms: {{$}} (executor input JSON), {{$.inputs.parameters['x']}}, input/output artifact
.uri/.path/.metadata, {{$.outputs.parameters['x'].output_file}}, {{$.outputs.output_file}},
run metadata ({{$.pipeline_job_name}}, ..._uuid, {{$.pipeline_task_name}}, ...), and the
structured forms serialised into one arg: {"Concat": [...]}, {"IfPresent": {...}}.
A `.json_escape` suffix gives the value JSON-escaped (to embed inside a JSON string).

One grammar serves both readings: `parse()` is what resolution uses at run time and what
`check_item()` uses when the pipeline is loaded, so a placeholder that loads resolves.
"""
from __future__ import annotations

import dataclasses
import decimal
import json
import math
import re
from typing import Any, Iterator, Optional

_PLACEHOLDER = re.compile(r"\{\{\$(\.[^{}]*?)?\}\}")
_ACCESS = re.compile(r"""^\.(inputs|outputs)\.(parameters|artifacts)\[['"]{1,2}(.+?)['"]{1,2}\]((?:\.[a-z_]+)*)"""
                     r"""((?:\[['"]{1,2}.+?['"]{1,2}\])?)$""")
# attributes each kind of reference may carry (kfp/dsl/placeholders.py emits these)
_ATTRIBUTES = {('inputs', 'parameters'): {''}, ('outputs', 'parameters'): {'', 'output_file'},
               ('inputs', 'artifacts'): {'', 'uri', 'path', 'metadata'},
               ('outputs', 'artifacts'): {'', 'uri', 'path', 'metadata'}}
# {{$.outputMetadataUri}} is the executor output file under another name (kfp/local/placeholder_utils.py)
_OUTPUT_FILE = ('outputs.output_file', 'outputMetadataUri')
RUN_METADATA = ('pipeline_job_name', 'pipeline_job_resource_name', 'pipeline_job_uuid', 'pipeline_task_name',
                'pipeline_task_uuid', 'pipeline_job_create_time_utc', 'pipeline_job_schedule_time_utc',
                'pipeline_root', 'workspace_path')


@dataclasses.dataclass
class RunContext:
    """Values of the run-metadata placeholders."""
    job_name: str
    job_id: str
    task_name: str
    task_id: str
    create_time: str
    pipeline_root: str
    workspace: str

    def lookup(self, name: str) -> Optional[str]:
        return {
            'pipeline_job_name': self.job_name,
            'pipeline_job_resource_name': self.job_name,
            'pipeline_job_uuid': self.job_id,
            'pipeline_task_name': self.task_name,
            'pipeline_task_uuid': self.task_id,
            'pipeline_job_create_time_utc': self.create_time,
            'pipeline_job_schedule_time_utc': self.create_time,
            'pipeline_root': self.pipeline_root,
            'workspace_path': self.workspace,
        }.get(name)


class PlaceholderError(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class Reference:
    """One placeholder, parsed. kind: 'executor_input' ({{$}}), 'output_file', 'run' (run
    metadata, `name` says which) or an input/output access: side 'inputs'|'outputs', kind
    'parameters'|'artifacts', `name` the input/output, `attr` uri/path/metadata/output_file or
    '', `key` a metadata subscript."""
    kind: str
    name: str = ''
    side: str = ''
    attr: str = ''
    key: str = ''
    json_escape: bool = False


def parse(body: str) -> Reference:
    """The placeholder {{$BODY}}; PlaceholderError when it is none KFP defines."""
    if body == '':
        return Reference('executor_input')
    name = body[1:]
    if name in _OUTPUT_FILE:
        return Reference('output_file')
    if name in RUN_METADATA:
        return Reference('run', name=name)
    m = _ACCESS.match(body)
    if not m:
        raise PlaceholderError(f'unsupported placeholder {{{{${body}}}}}')
    side, kind, key, attrs, subscript = m.groups()
    attributes = [a for a in attrs.split('.') if a]
    json_escape = 'json_escape' in attributes
    attributes = [a for a in attributes if a != 'json_escape']
    attr = attributes[0] if attributes else ''
    if len(attributes) > 1 or attr not in _ATTRIBUTES[side, kind] or (subscript and attr != 'metadata'):
        raise PlaceholderError(f'unsupported {side[:-1]} {kind[:-1]} attribute in {{{{${body}}}}}')
    return Reference(kind, name=key, side=side, attr=attr, key=subscript.strip("[]'\""), json_escape=json_escape)


def _as_text(value: Any) -> str:
    """A parameter value as KFP's launcher writes it into a command line
    (kubeflow/pipelines backend/src/v2/metadata/converter.go PbValueToText): a number with
    strconv.FormatFloat(v, 'f', -1, 64) -- every number is a double there: 5.0 is "5", 1e-05
    is "0.00001", never an exponent -- a boolean as true/false, lists and structs as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isfinite(value):
        text = format(decimal.Decimal(repr(value)), 'f')
        return text.rstrip('0').rstrip('.') if '.' in text else text
    return json.dumps(value)


def _lookup(executor_input: dict, ctx: Optional[RunContext], body: str) -> str:
    ref = parse(body)
    if ref.kind == 'executor_input':
        return json.dumps(executor_input)
    if ref.kind == 'output_file':
        return executor_input['outputs']['outputFile']
    if ref.kind == 'run':
        value = ctx.lookup(ref.name) if ctx is not None else None
        if value is None:
            raise PlaceholderError(f'placeholder {{{{${body}}}}} has no value here')
        return value
    section = executor_input.get(ref.side, {})
    if ref.kind == 'parameters':
        if ref.side == 'inputs':
            text = _as_text(section.get('parameterValues', {}).get(ref.name))
        else:
            text = section.get('parameters', {}).get(ref.name, {}).get('outputFile', '')
    else:
        arts = section.get('artifacts', {}).get(ref.name, {}).get('artifacts', [])
        if not ref.attr:
            # the artifact (list) itself, as the runtime artifacts' JSON: [{name, type, uri, metadata}]
            text = json.dumps(arts)
        elif not arts:
            text = ''
        elif ref.attr in ('uri', 'path'):
            text = arts[0].get('uri', '')     # local execution: path == uri
        else:
            md = arts[0].get('metadata', {}) or {}
            text = _as_text(md.get(ref.key)) if ref.key else json.dumps(md)
    if ref.json_escape:
        text = json.dumps(text)[1:-1]
    return text


def substitute(text: str, executor_input: dict, ctx: Optional[RunContext]) -> str:
    return _PLACEHOLDER.sub(lambda m: _lookup(executor_input, ctx, m.group(1) or ''), text)


def substitute_run_metadata(value: Any, ctx: RunContext) -> Any:
    """Run-metadata placeholders inside constant parameter values (the driver resolves these)."""
    if isinstance(value, str) and '{{$.' in value:
        return _PLACEHOLDER.sub(lambda m: ctx.lookup((m.group(1) or '.')[1:]) or m.group(0), value)
    return value


def _provided(executor_input: dict) -> set[str]:
    inputs = executor_input.get('inputs', {})
    names = {k for k, v in inputs.get('parameterValues', {}).items() if v is not None}
    names |= {k for k, v in inputs.get('artifacts', {}).items() if v and v.get('artifacts')}
    return names


def _is_structured(item: str) -> bool:
    return item.startswith('{"Concat"') or item.startswith('{"IfPresent"')


def _resolve_struct(node: Any, provided: set[str], executor_input: dict, ctx) -> Any:
    """Returns a string, a list of strings, or None (IfPresent false with no Else)."""
    if isinstance(node, str):
        return substitute(node, executor_input, ctx)
    if isinstance(node, list):
        out = []
        for item in node:
            r = _resolve_struct(item, provided, executor_input, ctx)
            if r is None:
                continue
            out.extend(r if isinstance(r, list) else [r])
        return out
    if isinstance(node, dict) and 'Concat' in node:
        parts = [_resolve_struct(p, provided, executor_input, ctx) for p in node['Concat']]
        flat = []
        for p in parts:
            if p is None:
                continue
            flat.extend(p if isinstance(p, list) else [p])
        return ''.join(flat)
    if isinstance(node, dict) and 'IfPresent' in node:
        spec = node['IfPresent']
        branch = spec.get('Then') if spec.get('InputName') in provided else spec.get('Else')
        if branch is None:
            return None
        return _resolve_struct(branch, provided, executor_input, ctx)
    raise PlaceholderError(f'unsupported structured placeholder {json.dumps(node)[:80]}')


def resolve_argv(items: list[str], executor_input: dict, ctx: Optional[RunContext]) -> list[str]:
    provided = _provided(executor_input)
    argv: list[str] = []
    for item in items:
        if _is_structured(item):
            try:
                node = json.loads(item)
            except ValueError:
                argv.append(substitute(item, executor_input, ctx))
                continue
            r = _resolve_struct(node, provided, executor_input, ctx)
            if r is None:
                continue
            argv.extend(r if isinstance(r, list) else [r])
        else:
            argv.append(substitute(item, executor_input, ctx))
    return argv


# ---------------------------------------------------------------------------- checked at load
@dataclasses.dataclass(frozen=True)
class Declared:
    """The names a component declares: what its executor's placeholders may refer to."""
    input_parameters: frozenset = frozenset()
    input_artifacts: frozenset = frozenset()
    output_parameters: frozenset = frozenset()
    output_artifacts: frozenset = frozenset()

    def has(self, ref: Reference) -> bool:
        return ref.name in getattr(self, f'{ref.side[:-1]}_{ref.kind}')


def _struct_strings(node: Any, declared: Declared) -> Iterator[str]:
    """The strings inside a structured placeholder; PlaceholderError for a shape
    `_resolve_struct` cannot resolve or an IfPresent on an input the component lacks."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from _struct_strings(item, declared)
    elif isinstance(node, dict) and isinstance(node.get('Concat'), list):
        for item in node['Concat']:
            yield from _struct_strings(item, declared)
    elif isinstance(node, dict) and isinstance(node.get('IfPresent'), dict):
        spec = node['IfPresent']
        name = spec.get('InputName')
        if not isinstance(name, str) or name not in declared.input_parameters | declared.input_artifacts:
            raise PlaceholderError(f'IfPresent names no input of this component ({name!r})')
        for branch in ('Then', 'Else'):
            if spec.get(branch) is not None:
                yield from _struct_strings(spec[branch], declared)
    else:
        raise PlaceholderError(f'unsupported structured placeholder {json.dumps(node)[:80]}')


def check_text(text: str, declared: Declared) -> Optional[str]:
    """Why `text` would not resolve (a placeholder KFP does not define, or one naming an input
    or output the component does not declare: it would silently become "null"); None if fine."""
    for m in _PLACEHOLDER.finditer(text):
        try:
            ref = parse(m.group(1) or '')
        except PlaceholderError as e:
            return str(e)
        if ref.side and not declared.has(ref):
            return (f'{m.group(0)} names no {ref.side[:-1]} {ref.kind[:-1]} of this component '
                    f'(it has: {", ".join(sorted(getattr(declared, f"{ref.side[:-1]}_{ref.kind}"))) or "none"})')
    return None


def check_item(item: str, declared: Declared) -> Optional[str]:
    """check_text for one command/args item, structured placeholders included."""
    if _is_structured(item):
        try:
            node = json.loads(item)
        except ValueError:
            return check_text(item, declared)      # resolved as plain text, as at run time
        try:
            strings = list(_struct_strings(node, declared))
        except PlaceholderError as e:
            return str(e)
        return next((why for why in (check_text(s, declared) for s in strings) if why), None)
    return check_text(item, declared)
