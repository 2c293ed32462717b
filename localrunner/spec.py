"""Load a compiled KFP v2 pipeline (IR YAML or JSON) and validate it against KFP's own schema.

The protobuf (kfp-pipeline-spec) is the schema; after validation we keep working on the
plain dict, which is what the engine reads. The optional second YAML document is the
kfp-kubernetes platform spec.
"""
from __future__ import annotations

import dataclasses
import json
import os

import graphlib
import sys

import yaml
from google.protobuf import json_format

from localrunner.errors import UsageError


def _pipeline_spec_pb2():
    """KFP's own schema. Importing `kfp.pipeline_spec` runs kfp/__init__, which pulls in the
    KFP client and the kubernetes package (about a second); KFP's own runtime flag makes it
    skip those, so we set it for that import alone."""
    if 'kfp' in sys.modules:
        from kfp.pipeline_spec import pipeline_spec_pb2
        return pipeline_spec_pb2
    previous = os.environ.get('_KFP_RUNTIME')
    os.environ['_KFP_RUNTIME'] = 'true'
    try:
        from kfp.pipeline_spec import pipeline_spec_pb2
    finally:
        if previous is None:
            os.environ.pop('_KFP_RUNTIME', None)
        else:
            os.environ['_KFP_RUNTIME'] = previous
    return pipeline_spec_pb2


@dataclasses.dataclass
class Pipeline:
    path: str
    spec: dict                      # the PipelineSpec as a dict (camelCase keys, as in the file)
    platform: dict                  # platforms.kubernetes.deploymentSpec (may be empty)

    @property
    def name(self) -> str:
        return self.spec.get('pipelineInfo', {}).get('name', 'pipeline')

    @property
    def components(self) -> dict:
        return self.spec.get('components', {})

    @property
    def executors(self) -> dict:
        return self.spec.get('deploymentSpec', {}).get('executors', {})

    def component(self, name: str) -> dict:
        return self.components[name]

    @property
    def root(self) -> dict:
        return self.spec['root']

    def k8s_executor_config(self, executor_label: str) -> dict:
        return self.platform.get('executors', {}).get(executor_label, {}) or {}


def _one_line(text: str) -> str:
    return ' '.join(str(text).split())


def load_pipeline(path: str) -> Pipeline:
    if not os.path.exists(path):
        raise UsageError(f'{path}: no such file')
    if os.path.isdir(path):
        raise UsageError(f'{path}: is a directory, expected a compiled pipeline YAML/JSON file')
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f'{path}: cannot read: {_one_line(e)}') from None
    docs = _parse_documents(path, text)
    if not docs or not isinstance(docs[0], dict):
        raise UsageError(f'{path}: not a KFP pipeline: expected a mapping with pipelineInfo, root and components')
    spec = docs[0]
    if 'pipelineInfo' not in spec and 'root' not in spec:
        if 'pipelineSpec' in spec:      # a PipelineJob wrapper
            spec = spec['pipelineSpec']
        else:
            raise UsageError(f'{path}: not a KFP pipeline: missing field "root" (and "pipelineInfo")')
    _validate_with_schema(path, spec)
    platform = {}
    for extra in docs[1:]:
        if isinstance(extra, dict):
            platform = (extra.get('platforms', {}).get('kubernetes', {}) or {}).get('deploymentSpec', {}) or {}
    pipeline = Pipeline(path=path, spec=spec, platform=platform)
    _check_references(pipeline)
    return pipeline


def _parse_documents(path: str, text: str) -> list:
    stripped = text.lstrip()
    if stripped.startswith('{'):
        try:
            return [json.loads(text)]
        except json.JSONDecodeError as e:
            raise UsageError(f'{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}') from None
    try:
        # libyaml's loader parses a compiled pipeline ~10x faster than the pure-Python one
        loader = getattr(yaml, 'CSafeLoader', yaml.SafeLoader)
        return [d for d in yaml.load_all(text, Loader=loader) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, 'problem_mark', None)
        where = f' at line {mark.line + 1} column {mark.column + 1}' if mark else ''
        problem = getattr(e, 'problem', None) or str(e)
        raise UsageError(f'{path}: malformed YAML{where}: {_one_line(problem)}') from None


def _validate_with_schema(path: str, spec: dict) -> None:
    try:
        json_format.ParseDict(spec, _pipeline_spec_pb2().PipelineSpec(), ignore_unknown_fields=False)
    except json_format.ParseError as e:
        # protobuf names the field path, e.g. 'Failed to parse root field: ...'
        raise UsageError(f'{path}: invalid pipeline spec: {_one_line(e)}') from None
    for field in ('root', 'pipelineInfo'):
        if field not in spec:
            raise UsageError(f'{path}: invalid pipeline spec: missing field "{field}"')
    if 'dag' not in spec['root']:
        raise UsageError(f'{path}: invalid pipeline spec: root.dag is missing')


def _check_references(p: Pipeline) -> None:
    """Every componentRef, executorLabel and producer must exist; no DAG may have a cycle."""
    for cname, comp in p.components.items():
        label = comp.get('executorLabel')
        if label and label not in p.executors:
            raise UsageError(f'{p.path}: components.{cname}.executorLabel: no executor named {label!r}')
    dags = [('root', p.root)] + [(f'components.{n}', c) for n, c in p.components.items() if 'dag' in c]
    for where, comp in dags:
        tasks = comp['dag'].get('tasks', {})
        graph: dict[str, set[str]] = {name: set() for name in tasks}
        for tname, task in tasks.items():
            ref = task.get('componentRef', {}).get('name')
            if ref not in p.components:
                raise UsageError(f'{p.path}: {where}.dag.tasks.{tname}.componentRef.name: no component named {ref!r}')
            for up in task_upstreams(task):
                if up not in tasks:
                    raise UsageError(f'{p.path}: {where}.dag.tasks.{tname}: depends on unknown task {up!r}')
                graph[tname].add(up)
        try:
            graphlib.TopologicalSorter(graph).prepare()
        except graphlib.CycleError as e:
            names = ' -> '.join(reversed(e.args[1]))
            raise UsageError(f'{p.path}: {where}.dag: dependency cycle: {names}') from None


def task_upstreams(task: dict) -> set[str]:
    """Tasks of the same DAG this task waits for: dependentTasks and data producers."""
    ups = set(task.get('dependentTasks', []) or [])
    inputs = task.get('inputs', {})
    for spec in inputs.get('parameters', {}).values():
        for key in ('taskOutputParameter', 'taskFinalStatus'):
            if key in spec:
                ups.add(spec[key]['producerTask'])
    for spec in inputs.get('artifacts', {}).values():
        if 'taskOutputArtifact' in spec:
            ups.add(spec['taskOutputArtifact']['producerTask'])
    return ups

