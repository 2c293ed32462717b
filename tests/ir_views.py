"""Typed views (spec/views.py) of IR fragments, read by the engine's own reader
(spec/reader.build_view), for tests that state a task, component, container or retry policy
as the IR writes it."""
from __future__ import annotations

from typing import Optional

from localrunner.spec import Component, Container, PipelineView, Retry, Task, build_view


def pipeline_view(tasks: Optional[dict] = None, components: Optional[dict] = None,
                  executors: Optional[dict] = None) -> PipelineView:
    spec = {'pipelineInfo': {'name': 'test'}, 'root': {'dag': {'tasks': tasks or {}}},
            'components': components or {}, 'deploymentSpec': {'executors': executors or {}}}
    return build_view('<test>', spec, {})


def task_view(node: dict, key: str = 'task') -> Task:
    """The view of the DAG task `node` (a componentRef is added when it has none)."""
    return pipeline_view(tasks={key: {'componentRef': {'name': 'comp-x'}, **node}}).root.dag.tasks[key]


def component_view(node: dict, name: str = 'comp-x') -> Component:
    """The view of the component `node` (an executorLabel is added when it has no dag)."""
    if 'dag' not in node and 'executorLabel' not in node:
        node = {**node, 'executorLabel': 'exec-x'}
    return pipeline_view(components={name: node}).components[name]


def container_view(node: dict) -> Container:
    return pipeline_view(executors={'exec-x': {'container': node}}).executors['exec-x'].container


def retry_view(policy: Optional[dict]) -> Optional[Retry]:
    """The view of a task's retryPolicy (None: the task has none)."""
    return task_view({} if policy is None else {'retryPolicy': policy}).retry
