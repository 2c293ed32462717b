"""Reading the IR into views (spec/views.py): every section the engine reads is checked for
its shape, every name that becomes a path for being one path component, and every constant
quantity for parsing; UsageError names the IR path (`FILE: root.dag.tasks.x: ...`)."""
from __future__ import annotations

import json
from typing import Any, Iterator, Mapping, Optional

from localrunner.errors import UsageError
from localrunner.layout import MAX_NAME_BYTES, PathEscape, check_name
from localrunner.spec.views import (Accelerator, ArtifactDef, ArtifactInput, Component, Container, ContainerResources,
                                    Dag, Executor, Importer, Interface, Loop, OutputSelector, ParameterDef,
                                    ParameterInput, PipelineView, Retry, Task, frozen)
from localrunner.units import parse_bytes, parse_cpu, parse_duration

# set_retry(num_retries=...) has no bound in KFP; a huge count here is a typo, and each retry
# has its own planned delay
MAX_RETRIES = 10_000
# KFP's own limit (kfp/dsl/utils.py validate_pipeline_name: ^[a-z0-9][a-z0-9-]{0,127}$); the
# run id, a folder name, adds a time stamp to it
MAX_PIPELINE_NAME = 128
# a loop's iterations are folders named <loop task>.<index>
_LOOP_SUFFIX_BYTES = 11

_MISSING = object()


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + '...'


_KIND = {dict: 'a mapping', list: 'a list', str: 'a string', bool: 'a boolean', int: 'a number',
         float: 'a number', type(None): 'null'}


class Reader:
    """Typed reads of the IR that name the IR path when the document is not what KFP writes."""

    def __init__(self, file: str):
        self.file = file

    def fail(self, where: str, what: str, value: Any = _MISSING) -> UsageError:
        shown = '' if value is _MISSING else f' ({_show(value)})'
        return UsageError(f'{self.file}: {where}: {what}{shown}')

    @staticmethod
    def join(where: str, key: Any) -> str:
        return f'{where}.{key}' if where else str(key)

    def _get(self, node: dict, key: str, where: str, want: tuple, kind: str, required: bool, default: Any):
        if key not in node:
            if required:
                raise self.fail(self.join(where, key), 'missing')
            return default
        value = node[key]
        if not isinstance(value, want) or (bool not in want and isinstance(value, bool)):
            raise self.fail(self.join(where, key), f'expected {kind}, got {_KIND.get(type(value), type(value).__name__)}',
                            value)
        return value

    def mapping(self, node: dict, key: str, where: str, required: bool = False) -> dict:
        return self._get(node, key, where, (dict,), 'a mapping', required, {})

    def items(self, node: dict, key: str, where: str) -> Iterator[tuple[str, str, dict]]:
        """(name, IR path, mapping) for each entry of the mapping node[key] of mappings."""
        here = self.join(where, key)
        for name, value in self.mapping(node, key, where).items():
            if not isinstance(name, str):
                raise self.fail(here, 'expected a string key', name)
            if not isinstance(value, dict):
                raise self.fail(self.join(here, name), f'expected a mapping, got {_KIND.get(type(value), "a value")}',
                                value)
            yield name, self.join(here, name), value

    def string(self, node: dict, key: str, where: str, required: bool = False, default: str = '') -> str:
        """A string; a required one (a name, a reference, a path) may not be empty either."""
        value = self._get(node, key, where, (str,), 'a string', required, default)
        if required and not value:
            raise self.fail(self.join(where, key), 'empty')
        return value

    def boolean(self, node: dict, key: str, where: str) -> bool:
        return self._get(node, key, where, (bool,), 'true or false', False, False)

    def number(self, node: dict, key: str, where: str, default: Any = None) -> Any:
        return self._get(node, key, where, (int, float), 'a number', False, default)

    def integer(self, node: dict, key: str, where: str, default: int = 0) -> int:
        """A proto int32/int64: a JSON number or (int64 in proto JSON) a decimal string."""
        value = self._get(node, key, where, (int, float, str), 'an integer', False, default)
        try:
            number = int(value) if not isinstance(value, float) or value.is_integer() else None
        except ValueError:
            number = None
        if number is None:
            raise self.fail(self.join(where, key), 'expected an integer', value)
        return number

    def strings(self, node: dict, key: str, where: str) -> tuple[str, ...]:
        values = self._get(node, key, where, (list,), 'a list of strings', False, [])
        for i, v in enumerate(values):
            if not isinstance(v, str):
                raise self.fail(f'{self.join(where, key)}[{i}]', 'expected a string', v)
        return tuple(values)

    def mappings(self, node: dict, key: str, where: str) -> Iterator[tuple[str, dict]]:
        """(IR path, mapping) for each item of the list node[key] of mappings."""
        values = self._get(node, key, where, (list,), 'a list', False, [])
        for i, v in enumerate(values):
            here = f'{self.join(where, key)}[{i}]'
            if not isinstance(v, dict):
                raise self.fail(here, f'expected a mapping, got {_KIND.get(type(v), "a value")}', v)
            yield here, v

    def name(self, name: str, where: str, what: str) -> str:
        """A name that becomes a path component (a folder or file under the run)."""
        try:
            return check_name(name, what)
        except PathEscape as e:
            raise self.fail(where, f'{e}; it becomes a folder or file name') from None


def build_view(file: str, spec: dict, platform: dict) -> PipelineView:
    """The typed views of a pipeline; UsageError naming the IR path at the first section
    that is not what KFP writes, or a name that cannot be a path component."""
    read = Reader(file)
    if not isinstance(spec, dict):
        raise read.fail('(document)', 'expected a mapping', spec)
    info = read.mapping(spec, 'pipelineInfo', '', required=True)
    name = read.name(read.string(info, 'name', 'pipelineInfo', default='pipeline'), 'pipelineInfo.name', 'pipeline name')
    if len(name.encode()) > MAX_PIPELINE_NAME:
        raise read.fail('pipelineInfo.name', f'longer than {MAX_PIPELINE_NAME} bytes (KFP\'s limit)', name)
    root_node = read.mapping(spec, 'root', '', required=True)
    read.mapping(root_node, 'dag', 'root', required=True)
    executors = {label: _executor(read, label, where, node) for label, where, node in
                 read.items(read.mapping(spec, 'deploymentSpec', ''), 'executors', 'deploymentSpec')}
    components = {cname: _component(read, cname, where, node)
                  for cname, where, node in read.items(spec, 'components', '')}
    configs = {label: _k8s_config(read, where, node)
               for label, where, node in read.items(platform, 'executors', 'platforms.kubernetes.deploymentSpec')}
    return PipelineView(name=name, root=_component(read, 'root', 'root', root_node), components=frozen(components),
                        executors=frozen(executors), platform=frozen(configs))


def _interface(read: Reader, node: dict, key: str, where: str, names_are_paths: bool) -> Interface:
    section = read.mapping(node, key, where)
    here = read.join(where, key)
    params, arts = {}, {}
    for pname, pwhere, p in read.items(section, 'parameters', here):
        if names_are_paths:
            read.name(pname, f'{here}.parameters', 'output parameter')
        params[pname] = ParameterDef(pname, read.string(p, 'parameterType', pwhere, default='STRING'),
                                     optional=read.boolean(p, 'isOptional', pwhere), has_default='defaultValue' in p,
                                     default=p.get('defaultValue'))
    for aname, awhere, a in read.items(section, 'artifacts', here):
        if names_are_paths:
            read.name(aname, f'{here}.artifacts', 'output artifact')
        schema = read.mapping(a, 'artifactType', awhere)
        arts[aname] = ArtifactDef(aname, read.string(schema, 'schemaTitle', f'{awhere}.artifactType',
                                                     default='system.Artifact'),
                                  read.string(schema, 'schemaVersion', f'{awhere}.artifactType', default='0.0.1'),
                                  is_list=read.boolean(a, 'isArtifactList', awhere),
                                  optional=read.boolean(a, 'isOptional', awhere))
    return Interface(frozen(params), frozen(arts), as_written=section)


def _component(read: Reader, name: str, where: str, node: dict) -> Component:
    if where != 'root':
        read.name(name, 'components', 'component name')
    label = read.string(node, 'executorLabel', where)
    if 'dag' in node and label:
        raise read.fail(where, 'has both a dag and an executorLabel')
    if 'dag' not in node and not label:
        raise read.fail(where, 'has neither a dag nor an executorLabel')
    if label:
        read.name(label, f'{where}.executorLabel', 'executor label')
    dag = _dag(read, read.mapping(node, 'dag', where), f'{where}.dag') if 'dag' in node else None
    return Component(name=name, path=where, inputs=_interface(read, node, 'inputDefinitions', where, False),
                     outputs=_interface(read, node, 'outputDefinitions', where, True), executor_label=label, dag=dag)


def _dag(read: Reader, node: dict, where: str) -> Dag:
    tasks = {}
    for key, twhere, t in read.items(node, 'tasks', where):
        read.name(key, f'{where}.tasks', 'task name')
        tasks[key] = _task(read, key, twhere, t)
        if tasks[key].loop is not None and len(key.encode()) > MAX_NAME_BYTES - _LOOP_SUFFIX_BYTES:
            raise read.fail(f'{where}.tasks', f'loop task name longer than {MAX_NAME_BYTES - _LOOP_SUFFIX_BYTES} '
                                              f'bytes (its iterations are folders <name>.<index>)', key)
    outputs = read.mapping(node, 'outputs', where)
    owhere = f'{where}.outputs'
    params = {}
    for pname, pwhere, p in read.items(outputs, 'parameters', owhere):
        if 'valueFromParameter' in p:
            selectors = [(f'{pwhere}.valueFromParameter', read.mapping(p, 'valueFromParameter', pwhere))]
        else:
            oneof = read.mapping(p, 'valueFromOneof', pwhere, required=True)
            selectors = list(read.mappings(oneof, 'parameterSelectors', f'{pwhere}.valueFromOneof'))
        params[pname] = tuple(OutputSelector(read.string(s, 'producerSubtask', w, required=True),
                                             read.string(s, 'outputParameterKey', w, required=True))
                              for w, s in selectors)
    arts = {aname: tuple(OutputSelector(read.string(s, 'producerSubtask', w, required=True),
                                        read.string(s, 'outputArtifactKey', w, required=True))
                         for w, s in read.mappings(a, 'artifactSelectors', awhere))
            for aname, awhere, a in read.items(outputs, 'artifacts', owhere)}
    return Dag(frozen(tasks), frozen(params), frozen(arts))


def _task(read: Reader, key: str, where: str, node: dict) -> Task:
    ref = read.mapping(node, 'componentRef', where, required=True)
    inputs = read.mapping(node, 'inputs', where)
    iwhere = f'{where}.inputs'
    info = read.mapping(node, 'taskInfo', where)
    policy = read.mapping(node, 'triggerPolicy', where)
    caching = read.mapping(node, 'cachingOptions', where)
    # enableCache is a proto3 bool: the compiler writes `cachingOptions: {}` for
    # set_caching_options(False) (and for every task compiled with
    # KFP_DISABLE_EXECUTION_CACHING_BY_DEFAULT), and an absent field reads as false; KFP's driver
    # serves a cached result only when GetCachingOptions().GetEnableCache() is true
    # (kubeflow/pipelines backend/src/v2/driver/container.go; kfp/compiler/pipeline_spec_builder.py)
    cache_enabled = read.boolean(caching, 'enableCache', f'{where}.cachingOptions')
    cache_key = read.string(caching, 'cacheKey', f'{where}.cachingOptions')
    return Task(
        key=key, path=where, component=read.string(ref, 'name', f'{where}.componentRef', required=True),
        display_name=read.string(info, 'name', f'{where}.taskInfo'),
        parameters=frozen({n: _parameter_input(read, w, p) for n, w, p in read.items(inputs, 'parameters', iwhere)}),
        artifacts=frozen({n: _artifact_input(read, w, a) for n, w, a in read.items(inputs, 'artifacts', iwhere)}),
        dependent_tasks=read.strings(node, 'dependentTasks', where),
        condition=read.string(policy, 'condition', f'{where}.triggerPolicy'),
        strategy=read.string(policy, 'strategy', f'{where}.triggerPolicy'),
        caching=frozen(caching) if 'cachingOptions' in node else None,
        cache_enabled=cache_enabled, cache_key=cache_key,
        retry=_retry(read, read.mapping(node, 'retryPolicy', where), f'{where}.retryPolicy')
        if 'retryPolicy' in node else None,
        loop=_loop(read, node, where))


def _parameter_input(read: Reader, where: str, node: dict) -> ParameterInput:
    selector = read.string(node, 'parameterExpressionSelector', where)
    if 'componentInputParameter' in node:
        return ParameterInput('component_input', name=read.string(node, 'componentInputParameter', where),
                              selector=selector)
    if 'taskOutputParameter' in node:
        ref = read.mapping(node, 'taskOutputParameter', where)
        w = f'{where}.taskOutputParameter'
        return ParameterInput('task_output', name=read.string(ref, 'outputParameterKey', w, required=True),
                              producer=read.string(ref, 'producerTask', w, required=True), selector=selector)
    if 'runtimeValue' in node:
        return ParameterInput('constant', constant=read.mapping(node, 'runtimeValue', where).get('constant'),
                              selector=selector)
    if 'taskFinalStatus' in node:
        ref = read.mapping(node, 'taskFinalStatus', where)
        return ParameterInput('final_status', producer=read.string(ref, 'producerTask', f'{where}.taskFinalStatus',
                                                                   required=True), selector=selector)
    raise read.fail(where, 'names no value (componentInputParameter, taskOutputParameter, runtimeValue '
                           'or taskFinalStatus)')


def _artifact_input(read: Reader, where: str, node: dict) -> ArtifactInput:
    if 'componentInputArtifact' in node:
        return ArtifactInput('component_input', read.string(node, 'componentInputArtifact', where))
    if 'taskOutputArtifact' in node:
        ref = read.mapping(node, 'taskOutputArtifact', where)
        w = f'{where}.taskOutputArtifact'
        return ArtifactInput('task_output', read.string(ref, 'outputArtifactKey', w, required=True),
                             producer=read.string(ref, 'producerTask', w, required=True))
    raise read.fail(where, 'names no artifact (componentInputArtifact or taskOutputArtifact)')


def _duration(read: Reader, node: dict, key: str, where: str) -> Optional[float]:
    if key not in node:
        return None
    value = node[key]
    try:
        return parse_duration(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) \
            else parse_duration(None)
    except ValueError:
        raise read.fail(read.join(where, key), 'expected a duration such as "30s"', value) from None


def _retry(read: Reader, node: dict, where: str) -> Retry:
    count = read.integer(node, 'maxRetryCount', where)
    if not 0 <= count <= MAX_RETRIES:
        raise read.fail(f'{where}.maxRetryCount', f'expected 0 to {MAX_RETRIES}', count)
    factor = read.number(node, 'backoffFactor', where, default=2.0)
    if not 0 <= factor < float('inf'):
        raise read.fail(f'{where}.backoffFactor', 'expected a finite number >= 0', factor)
    return Retry(max_retries=count, backoff_s=_duration(read, node, 'backoffDuration', where) or 0.0,
                 factor=float(factor), max_backoff_s=_duration(read, node, 'backoffMaxDuration', where))


def _loop(read: Reader, node: dict, where: str) -> Optional[Loop]:
    if 'parameterIterator' in node and 'artifactIterator' in node:
        raise read.fail(where, 'has both a parameterIterator and an artifactIterator')
    key = 'parameterIterator' if 'parameterIterator' in node else 'artifactIterator'
    if key not in node:
        return None
    iterator = read.mapping(node, key, where)
    here = f'{where}.{key}'
    items = read.mapping(iterator, 'items', here, required=True)
    item_input = read.string(iterator, 'itemInput', here, required=True)
    policy = read.mapping(node, 'iteratorPolicy', where)
    parallelism = read.integer(policy, 'parallelismLimit', f'{where}.iteratorPolicy')
    if key == 'artifactIterator':
        return Loop(True, item_input, items_input=read.string(items, 'inputArtifact', f'{here}.items', required=True),
                    parallelism=parallelism)
    if 'raw' in items:
        raw = read.string(items, 'raw', f'{here}.items')
        try:
            is_list = isinstance(json.loads(raw), list)
        except (ValueError, RecursionError):
            is_list = False
        if not is_list:
            raise read.fail(f'{here}.items.raw', 'expected a JSON list', raw)
        return Loop(False, item_input, raw_items=raw, parallelism=parallelism)
    return Loop(False, item_input, items_input=read.string(items, 'inputParameter', f'{here}.items', required=True),
                parallelism=parallelism)


def _executor(read: Reader, label: str, where: str, node: dict) -> Executor:
    read.name(label, 'deploymentSpec.executors', 'executor label')
    container = importer = None
    if 'container' in node:
        container = _container(read, read.mapping(node, 'container', where), f'{where}.container')
    if 'importer' in node:
        importer = _importer(read, read.mapping(node, 'importer', where), f'{where}.importer')
    return Executor(label, container, importer)


def _container(read: Reader, node: dict, where: str) -> Container:
    env = {}
    for w, item in read.mappings(node, 'env', where):
        env[read.string(item, 'name', w, required=True)] = read.string(item, 'value', w)
    return Container(image=read.string(node, 'image', where), command=read.strings(node, 'command', where),
                     args=read.strings(node, 'args', where), env=frozen(env),
                     resources=_resources(read, read.mapping(node, 'resources', where), f'{where}.resources'))


def _quantity(read: Reader, node: dict, text_key: str, number_key: str, where: str, parse, giga: bool = False):
    """KFP writes a quantity twice: a string (may be a placeholder) and a legacy number (memory
    in GB); the string wins (kfp/compiler/pipeline_spec_builder.py). Constants must parse."""
    text = read.string(node, text_key, where) or None
    number = read.number(node, number_key, where)
    key = text_key if text else number_key
    if text is None and number is not None:
        text = f'{number}G' if giga else str(number)
    if text is not None and '{{$' not in text:
        try:
            parse(text)
        except ValueError as e:
            raise read.fail(read.join(where, key), str(e)) from None
    return text


def _resources(read: Reader, node: dict, where: str) -> ContainerResources:
    memory = lambda t: parse_bytes(t, 'memory quantity')  # noqa: E731
    acc_node = read.mapping(node, 'accelerator', where)
    acc = None
    awhere = f'{where}.accelerator'
    acc_type = read.string(acc_node, 'resourceType', awhere) or read.string(acc_node, 'type', awhere)
    if acc_type:
        count_key = 'resourceCount' if 'resourceCount' in acc_node else 'count'
        raw = acc_node.get(count_key)
        text = '' if raw is None else str(raw)
        count: Optional[int] = 1 if raw in (None, '') else None
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float, type(None))):
            raise read.fail(f'{awhere}.{count_key}', 'expected a GPU count', raw)
        if count is None and '{{$' not in text:
            try:
                count = int(text.strip())
            except ValueError:
                count = -1
            if count < 0:
                raise read.fail(f'{awhere}.{count_key}', 'expected a whole number of accelerators >= 0', raw)
        acc = Accelerator(type=acc_type, count=count, count_text=text)
    return ContainerResources(
        cpu_limit=_quantity(read, node, 'resourceCpuLimit', 'cpuLimit', where, parse_cpu),
        cpu_request=_quantity(read, node, 'resourceCpuRequest', 'cpuRequest', where, parse_cpu),
        memory_limit=_quantity(read, node, 'resourceMemoryLimit', 'memoryLimit', where, memory, giga=True),
        memory_request=_quantity(read, node, 'resourceMemoryRequest', 'memoryRequest', where, memory, giga=True),
        accelerator=acc)


def _importer(read: Reader, node: dict, where: str) -> Importer:
    source = read.mapping(node, 'artifactUri', where, required=True)
    uri = source.get('constant')
    if isinstance(uri, dict):              # {stringValue: ...} in older IR
        uri = read.string(uri, 'stringValue', f'{where}.artifactUri.constant')
    elif uri is not None and not isinstance(uri, str):
        raise read.fail(f'{where}.artifactUri.constant', 'expected a URI string', uri)
    schema = read.mapping(node, 'typeSchema', where)
    return Importer(uri=uri, uri_parameter=read.string(source, 'runtimeParameter', f'{where}.artifactUri'),
                    schema_title=read.string(schema, 'schemaTitle', f'{where}.typeSchema', default='system.Artifact'),
                    schema_version=read.string(schema, 'schemaVersion', f'{where}.typeSchema', default='0.0.1'),
                    metadata=frozen(read.mapping(node, 'metadata', where)),
                    reimport=read.boolean(node, 'reimport', where),
                    download_to_workspace=read.boolean(node, 'downloadToWorkspace', where))


# the kfp-kubernetes settings engine/k8s_local.py reads: list sections of mappings, and the
# fields of their items that must be given, as strings
_K8S_LISTS = {'secretAsEnv': (), 'secretAsVolume': ('mountPath',), 'configMapAsEnv': (),
              'configMapAsVolume': ('mountPath',), 'pvcMount': ('mountPath',), 'emptyDirMounts': ('mountPath',),
              'fieldPathAsEnv': ('name',), 'imagePullSecret': (), 'tolerations': (), 'nodeAffinity': (),
              'genericEphemeralVolume': ()}
_K8S_STRINGS = ('fieldPath', 'secretName', 'configMapName', 'volumeName', 'constant', 'secretKey', 'configMapKey')
_K8S_NAME_PARAMETERS = ('secretNameParameter', 'configMapNameParameter', 'pvcNameParameter', 'taskOutputParameter')


def _k8s_item(read: Reader, key: str, where: str, item: dict) -> None:
    for field in _K8S_LISTS[key]:
        read.string(item, field, where, required=True)
    for field in _K8S_STRINGS:
        read.string(item, field, where)
    for field in _K8S_NAME_PARAMETERS:
        if field in item and not isinstance(item[field], (str, dict)):
            raise read.fail(f'{where}.{field}', 'expected a mapping', item[field])
    for pair_where, pair in read.mappings(item, 'keyToEnv', where):
        read.string(pair, 'envVar', pair_where, required=True)
        for field in _K8S_STRINGS:
            read.string(pair, field, pair_where)
    if key == 'emptyDirMounts' and 'volumeName' in item:
        read.name(item['volumeName'], f'{where}.volumeName', 'empty_dir volume')


def _k8s_config(read: Reader, where: str, node: dict) -> Mapping:
    """One executor's kfp-kubernetes config, shape-checked where engine/k8s_local.py reads it."""
    for key in _K8S_LISTS:
        for item_where, item in read.mappings(node, key, where):
            _k8s_item(read, key, item_where, item)
    meta = read.mapping(node, 'podMetadata', where)
    read.mapping(meta, 'labels', f'{where}.podMetadata')
    read.mapping(meta, 'annotations', f'{where}.podMetadata')
    for key in ('nodeSelector', 'securityContext'):
        read.mapping(node, key, where)
    if 'activeDeadlineSeconds' in node and read.integer(node, 'activeDeadlineSeconds', where) < 0:
        raise read.fail(f'{where}.activeDeadlineSeconds', 'expected seconds >= 0', node['activeDeadlineSeconds'])
    return frozen(node)
