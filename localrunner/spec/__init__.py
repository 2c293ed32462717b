"""Load a compiled KFP v2 pipeline (IR YAML or JSON), validate it, and read it once.

Loading checks, in order, before anything runs (each failure is one UsageError line
`FILE: IR.PATH: what is wrong (value)`):
1. the shape of every section the engine reads (a mapping where a mapping is expected, a
   string where a string is, ...), while the typed views below are built;
2. names that become paths (task keys, component names, executor labels, output names, the
   pipeline name) are single path components (layout.check_name);
3. KFP's own schema (the protobuf PipelineSpec; unknown fields rejected), skipped for a
   text that passed it before with the same schema (spec/schema_memo.py);
4. references: components, executors, producer tasks and their outputs, component inputs,
   loop inputs, DAG output selectors; no dependency cycle;
5. every placeholder in an executor is one KFP defines and names a declared input/output.

`Pipeline.view` is the document as frozen, typed views with every section present (empty
when absent): what the engine reads. The plain dict (`Pipeline.spec`, `.root`,
`.component(name)`, `.executors`) stays for the faces that show the IR as written.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
from typing import Optional

from localrunner.errors import UsageError
from localrunner.spec.checks import check_references
from localrunner.spec.reader import Reader, build_view
from localrunner.spec.views import (Accelerator, ArtifactDef, ArtifactInput, Component, Container,
                                    ContainerResources, Dag, Executor, Importer, Interface, Loop, OutputSelector,
                                    ParameterDef, ParameterInput, PipelineView, Retry, Task)

__all__ = ['Pipeline', 'load_pipeline', 'task_upstreams', 'build_view', 'PipelineView', 'Component', 'Dag', 'Task',
           'Interface', 'ParameterDef', 'ArtifactDef', 'ParameterInput', 'ArtifactInput', 'Loop', 'Retry',
           'OutputSelector', 'Executor', 'Container', 'ContainerResources', 'Accelerator', 'Importer']


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
    view: Optional[PipelineView] = None   # built (and so validated) when not given

    def __post_init__(self):
        if self.view is None:
            self.view = build_view(self.path, self.spec, self.platform)

    @property
    def name(self) -> str:
        return self.view.name

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
    from localrunner.user_files import read_text
    try:
        text = read_text(path)
    except UnicodeDecodeError:
        raise UsageError(f'{path}: cannot read: not UTF-8 text') from None
    except (OSError, ValueError) as e:
        raise UsageError(f'{path}: cannot read: {_one_line(e)}') from None
    docs = _parse_documents(path, text)
    if not docs or not isinstance(docs[0], dict):
        raise UsageError(f'{path}: not a KFP pipeline: expected a mapping with pipelineInfo, root and components')
    spec = docs[0]
    if 'pipelineInfo' not in spec and 'root' not in spec:
        if isinstance(spec.get('pipelineSpec'), dict):      # a PipelineJob wrapper
            spec = spec['pipelineSpec']
        else:
            raise UsageError(f'{path}: not a KFP pipeline: missing field "root" (and "pipelineInfo")')
    platform = _platform_document(path, docs[1:])
    view = build_view(path, spec, platform)
    _validate_with_schema(path, spec, text)
    check_references(path, view)
    return Pipeline(path=path, spec=spec, platform=platform, view=view)


@functools.lru_cache(maxsize=1)
def _no_alias_loader():
    """libyaml's safe loader (it parses a compiled pipeline ~10x faster than the pure-Python
    one), refusing YAML aliases: the compiler writes none, and a few nested aliases make a
    small file expand into billions of nodes ("billion laughs") that every later walk would
    visit. A node constructed twice is one that an alias repeats. Made at first use: PyYAML
    is imported only when a text is parsed (an unchanged pipeline's is memoized)."""
    import yaml

    class NoAliasLoader(getattr(yaml, 'CSafeLoader', yaml.SafeLoader)):
        def construct_object(self, node, deep=False):
            if node in self.constructed_objects:
                raise yaml.constructor.ConstructorError(
                    None, None, 'a YAML alias (*name) repeats an anchored node; aliases are not accepted',
                    node.start_mark)
            return super().construct_object(node, deep)

        def construct_mapping(self, node, deep=False):
            # a key written twice: the last would silently win (KFP's Go YAML reader refuses it)
            seen = set()
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    if key_node.value in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None, f'the key {key_node.value!r} appears twice in one mapping', key_node.start_mark)
                    seen.add(key_node.value)
            return super().construct_mapping(node, deep)
    return NoAliasLoader


def load_yaml_documents(text: str) -> list:
    """The non-empty YAML documents of TEXT, aliases refused (yaml.YAMLError)."""
    import yaml
    return [d for d in yaml.load_all(text, Loader=_no_alias_loader()) if d is not None]


def unique_keys(pairs: list) -> dict:
    """A JSON object, refused when a key is written twice (the last would silently win)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f'the key {twice!r} appears twice in one object')
    return out


def _parse_documents(path: str, text: str) -> list:
    stripped = text.lstrip()
    if stripped.startswith('{'):
        try:
            return [json.loads(text, object_pairs_hook=unique_keys)]
        except json.JSONDecodeError as e:
            raise UsageError(f'{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}') from None
        except ValueError as e:             # a key twice (unique_keys)
            raise UsageError(f'{path}: malformed JSON: {e}') from None
        except RecursionError:
            raise UsageError(f'{path}: malformed JSON: nested too deeply') from None
    from localrunner.spec.schema_memo import ParseMemo
    memo = ParseMemo.for_text(text)
    docs = memo.load() if memo is not None else None
    if docs is not None:
        return docs
    import yaml
    try:
        docs = load_yaml_documents(text)
    except yaml.YAMLError as e:
        mark = getattr(e, 'problem_mark', None)
        where = f' at line {mark.line + 1} column {mark.column + 1}' if mark else ''
        problem = getattr(e, 'problem', None) or str(e)
        raise UsageError(f'{path}: malformed YAML{where}: {_one_line(problem)}') from None
    except RecursionError:
        raise UsageError(f'{path}: malformed YAML: nested too deeply') from None
    if memo is not None:
        memo.record(docs)
    return docs


def _platform_document(path: str, extras: list) -> dict:
    """platforms.kubernetes.deploymentSpec of the second YAML document (kfp-kubernetes)."""
    read = Reader(path)
    platform: dict = {}
    for extra in extras:
        where = 'platforms'
        if not isinstance(extra, dict):
            raise read.fail('(second document)', 'expected a mapping with "platforms"', extra)
        platforms = read.mapping(extra, 'platforms', where='')
        kubernetes = read.mapping(platforms, 'kubernetes', where)
        platform = read.mapping(kubernetes, 'deploymentSpec', f'{where}.kubernetes')
    return platform


def _validate_with_schema(path: str, spec: dict, text: str) -> None:
    """SPEC (parsed from TEXT) against KFP's PipelineSpec, unless this text passed before."""
    from localrunner.spec.schema_memo import SchemaMemo
    memo = SchemaMemo.for_text(text)
    if memo is not None and memo.passed():
        return
    from google.protobuf import json_format
    pb2 = _pipeline_spec_pb2()
    try:
        json_format.ParseDict(spec, pb2.PipelineSpec(), ignore_unknown_fields=False)
    except (json_format.ParseError, TypeError, ValueError, AttributeError, RecursionError, OverflowError) as e:
        # protobuf names the field path, e.g. 'Failed to parse root field: ...'
        raise UsageError(f'{path}: invalid pipeline spec: {_one_line(e)}') from None
    if memo is not None:
        memo.record(checked_with=pb2.__file__)


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
