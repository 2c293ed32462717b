"""KFP placeholders in a container's command and args, resolved as KFP's launcher does.

Forms: {{$}} (executor input JSON), {{$.inputs.parameters['x']}}, input/output artifact
.uri/.path/.metadata, {{$.outputs.parameters['x'].output_file}}, {{$.outputs.output_file}},
run metadata ({{$.pipeline_job_name}}, ..._uuid, {{$.pipeline_task_name}}, ...), and the
structured forms serialised into one arg: {"Concat": [...]}, {"IfPresent": {...}}.
A `.json_escape` suffix gives the value JSON-escaped (to embed inside a JSON string).
"""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Optional

_PLACEHOLDER = re.compile(r"\{\{\$(\.[^{}]*?)?\}\}")
_ACCESS = re.compile(r"""^\.(inputs|outputs)\.(parameters|artifacts)\[['"]{1,2}(.+?)['"]{1,2}\]((?:\.[a-z_]+)*)"""
                     r"""((?:\[['"]{1,2}.+?['"]{1,2}\])?)$""")


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


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _lookup(executor_input: dict, ctx: Optional[RunContext], body: str) -> str:
    if body == '':
        return json.dumps(executor_input)
    name = body[1:]
    if name == 'outputs.output_file':
        return executor_input['outputs']['outputFile']
    if ctx is not None and ctx.lookup(name) is not None:
        return ctx.lookup(name)
    m = _ACCESS.match(body)
    if not m:
        raise PlaceholderError(f'unsupported placeholder {{{{${body}}}}}')
    side, kind, key, attrs, subscript = m.groups()
    attrs = [a for a in attrs.split('.') if a]
    json_escape = 'json_escape' in attrs
    attrs = [a for a in attrs if a != 'json_escape']
    section = executor_input.get(side, {})
    if kind == 'parameters':
        if side == 'inputs':
            value = section.get('parameterValues', {}).get(key)
            text = _as_text(value)
        else:
            text = section.get('parameters', {}).get(key, {}).get('outputFile', '')
    else:
        arts = section.get('artifacts', {}).get(key, {}).get('artifacts', [])
        if not attrs and not subscript:
            # the artifact (list) itself, as the runtime artifacts' JSON: [{name, type, uri, metadata}]
            text = json.dumps(arts)
        elif not arts:
            text = ''
        else:
            art = arts[0]
            attr = attrs[0] if attrs else 'uri'
            if attr in ('uri', 'path'):
                text = art.get('uri', '')     # local execution: path == uri
            elif attr == 'metadata':
                md = art.get('metadata', {}) or {}
                if subscript:
                    mkey = subscript.strip("[]'\"")
                    text = _as_text(md.get(mkey))
                else:
                    text = json.dumps(md)
            else:
                raise PlaceholderError(f'unsupported artifact attribute {attr!r} in {{{{${body}}}}}')
    if json_escape:
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
        if item.startswith('{"Concat"') or item.startswith('{"IfPresent"'):
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
