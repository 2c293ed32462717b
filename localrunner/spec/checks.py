"""What the IR's names point at must exist: components, executors, producer tasks and their
outputs, inputs of the enclosing DAG, loop inputs, DAG output selectors; no dependency
cycle; every placeholder in an executor is one KFP defines and names something declared."""
from __future__ import annotations

import graphlib
from typing import Any, Iterator, Mapping

from localrunner.engine.placeholders import Declared, check_item, check_text
from localrunner.spec.reader import Reader
from localrunner.spec.views import Component, Executor, PipelineView, Task


def check_references(file: str, view: PipelineView) -> None:
    """Every name the IR uses must exist where it points; no DAG may have a cycle."""
    read = Reader(file)
    for comp in view.components.values():
        if comp.executor_label and comp.executor_label not in view.executors:
            raise read.fail(f'{comp.path}.executorLabel', f'no executor named {comp.executor_label!r}')
    users: dict[str, list[Task]] = {}
    for dag_comp in view.dags():
        _check_dag(read, view, dag_comp)
        for task in dag_comp.dag.tasks.values():
            users.setdefault(task.component, []).append(task)
    for comp in view.components.values():
        executor = view.executor_of(comp)
        if executor is not None:
            _check_executor(read, executor, _declared(comp, users.get(comp.name, [])))


def _check_dag(read: Reader, view: PipelineView, owner: Component) -> None:
    tasks = owner.dag.tasks
    graph: dict[str, set[str]] = {}
    for key, task in tasks.items():
        if task.component not in view.components:
            raise read.fail(f'{task.path}.componentRef.name', f'no component named {task.component!r}')
        for up in task.upstreams:
            if up not in tasks:
                raise read.fail(task.path, f'depends on unknown task {up!r}')
        graph[key] = set(task.upstreams)
    for task in tasks.values():         # every producer exists now
        _check_task_inputs(read, view, owner, task, view.components[task.component])
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as e:
        names = ' -> '.join(reversed(e.args[1]))
        raise read.fail(f'{owner.path}.dag', f'dependency cycle: {names}') from None
    for kind, selectors in (('parameter', owner.dag.output_parameters), ('artifact', owner.dag.output_artifacts)):
        for out, sels in selectors.items():
            for sel in sels:
                producer = tasks.get(sel.producer)
                where = f'{owner.path}.dag.outputs.{kind}s.{out}'
                if producer is None:
                    raise read.fail(where, f'selects from unknown task {sel.producer!r}')
                _check_output(read, view, producer, kind, sel.key, where)


def _check_output(read: Reader, view: PipelineView, producer: Task, kind: str, key: str, where: str) -> None:
    outputs = view.components[producer.component].outputs
    declared = outputs.parameters if kind == 'parameter' else outputs.artifacts
    if key not in declared:
        listing = ', '.join(sorted(declared)) or 'none'
        raise read.fail(where, f'task {producer.key!r} has no output {kind} {key!r} (it has: {listing})')


def _check_task_inputs(read: Reader, view: PipelineView, owner: Component, task: Task, comp: Component) -> None:
    """Each task input comes from something that exists: an input of the enclosing DAG, or
    an output of a sibling task. (A task may pass inputs its component does not declare: KFP
    adds the pipeline channels of f-string constants and of resource placeholders.)"""
    tasks = owner.dag.tasks
    for kind, given, scope in (('parameter', task.parameters, owner.inputs.parameters),
                               ('artifact', task.artifacts, owner.inputs.artifacts)):
        for name, source in given.items():
            where = f'{task.path}.inputs.{kind}s.{name}'
            if source.kind == 'component_input' and source.name not in scope:
                listing = ', '.join(sorted(scope)) or 'none'
                raise read.fail(where, f'{owner.path} has no input {kind} {source.name!r} (it has: {listing})')
            if source.kind == 'task_output':
                _check_output(read, view, tasks[source.producer], kind, source.name, where)
    if task.loop is not None:
        body_inputs = comp.inputs.artifacts if task.loop.over_artifacts else comp.inputs.parameters
        kind = 'artifact' if task.loop.over_artifacts else 'parameter'
        loop_key = 'artifactIterator' if task.loop.over_artifacts else 'parameterIterator'
        if task.loop.item_input not in body_inputs:
            raise read.fail(f'{task.path}.{loop_key}.itemInput',
                            f'component {comp.name!r} has no input {kind} {task.loop.item_input!r}')
        if task.loop.raw_items is None and task.loop.items_input not in (
                task.artifacts if task.loop.over_artifacts else task.parameters):
            raise read.fail(f'{task.path}.{loop_key}.items', f'the task has no input {kind} '
                                                             f'{task.loop.items_input!r} to iterate over')


def _declared(comp: Component, tasks: list[Task]) -> Declared:
    """What an executor's placeholders may name: the component's inputs and outputs, and the
    inputs every task using it passes beyond those (KFP's pipeline channels, e.g. a resource
    limit set from a task output: `{{$.inputs.parameters['accelerator_count']}}`)."""
    def passed(kind: str) -> frozenset:
        sets = [frozenset(getattr(t, kind)) for t in tasks]
        return frozenset.intersection(*sets) if sets else frozenset()
    return Declared(frozenset(comp.inputs.parameters) | passed('parameters'),
                    frozenset(comp.inputs.artifacts) | passed('artifacts'),
                    frozenset(comp.outputs.parameters), frozenset(comp.outputs.artifacts))


def _check_executor(read: Reader, executor: Executor, declared: Declared) -> None:
    """Placeholders resolve: each is one KFP defines, naming what the component declares."""
    where = f'deploymentSpec.executors.{executor.label}'
    if executor.container is None and executor.importer is None:
        raise read.fail(where, 'neither a container nor an importer (the executors KFP v2 IR has)')
    if executor.container is not None:
        c = executor.container
        texts = [(f'{where}.container.image', c.image)]
        texts += [(f'{where}.container.command[{i}]', t) for i, t in enumerate(c.command)]
        texts += [(f'{where}.container.args[{i}]', t) for i, t in enumerate(c.args)]
        texts += [(f'{where}.container.env.{k}', v) for k, v in c.env.items()]
        r = c.resources
        quantities = {'resourceCpuLimit': r.cpu_limit, 'resourceCpuRequest': r.cpu_request,
                      'resourceMemoryLimit': r.memory_limit, 'resourceMemoryRequest': r.memory_request}
        if r.accelerator is not None:
            quantities.update(resourceType=r.accelerator.type, resourceCount=r.accelerator.count_text)
        texts += [(f'{where}.container.resources.{k}', v) for k, v in quantities.items() if v]
        for here, text in texts:
            why = check_item(text, declared)
            if why:
                raise read.fail(here, why, text)
    if executor.importer is not None:
        for here, text in _strings(executor.importer.metadata, f'{where}.importer.metadata'):
            why = check_text(text, declared)
            if why:
                raise read.fail(here, why, text)


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(k, where)
            yield from _strings(v, f'{where}.{k}')
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f'{where}[{i}]')
