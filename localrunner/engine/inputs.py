"""Resolve a task's inputs in its DAG's scope, as KFP's driver does."""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Union

from localrunner.engine.expressions import ExpressionError, select
from localrunner.engine.model import Artifact, Outcome, State
from localrunner.engine.placeholders import RunContext, substitute_run_metadata
from localrunner.spec.views import ArtifactInput, Component, ParameterInput, Task


class InputError(Exception):
    pass


# MLMD execution states, which is what the KFP backend puts into PipelineTaskFinalStatus.state
_FINAL_STATE = {State.SUCCEEDED: 'COMPLETE', State.CACHED: 'CACHED', State.FAILED: 'FAILED',
                State.SKIPPED: 'SKIPPED', State.CANCELED: 'CANCELED'}


@dataclasses.dataclass
class Scope:
    """What a DAG's tasks can see: the DAG's inputs and its finished tasks' outcomes."""
    parameters: dict[str, Any]
    artifacts: dict[str, list[Artifact]]
    outcomes: dict[str, Outcome]
    prefix: str                       # '/'-joined path of the DAG, with a trailing '/'


def final_status(outcome: Optional[Outcome], producer: str, job_name: str) -> dict:
    state = outcome.state if outcome else State.SKIPPED
    error = {}
    if outcome and outcome.state == State.FAILED:
        error = {'code': 2, 'message': outcome.error or 'task failed'}
    return {'state': _FINAL_STATE[state], 'pipelineJobResourceName': job_name,
            'pipelineTaskName': producer, 'error': error}


def input_value(ref: ParameterInput, scope: Scope, ctx: RunContext) -> tuple[bool, Any]:
    """(present, value) of a parameter reference in its DAG's scope (before its selector)."""
    if ref.kind == 'component_input':
        return ref.name in scope.parameters, scope.parameters.get(ref.name)
    if ref.kind == 'task_output':
        outcome = scope.outcomes.get(ref.producer)
        if outcome is None or ref.name not in outcome.parameters:
            return False, None
        return True, outcome.parameters[ref.name]
    if ref.kind == 'constant':
        return True, substitute_run_metadata(ref.constant, ctx)
    if ref.kind == 'final_status':
        return True, final_status(scope.outcomes.get(ref.producer), ref.producer, ctx.job_name)
    return False, None


def parameter_value(spec: dict, scope: Scope, ctx: RunContext) -> tuple[bool, Any]:
    """input_value of a reference in a kfp-kubernetes setting (a *NameParameter: the platform
    config stays the dict the IR holds), read as the IR's task input parameters are
    (spec/reader.py); a reference naming no value is not present."""
    ref = None
    if 'componentInputParameter' in spec:
        ref = ParameterInput('component_input', name=spec['componentInputParameter'])
    elif 'taskOutputParameter' in spec:
        out = spec['taskOutputParameter']
        ref = ParameterInput('task_output', name=out['outputParameterKey'], producer=out['producerTask'])
    elif 'runtimeValue' in spec:
        ref = ParameterInput('constant', constant=spec['runtimeValue'].get('constant'))
    elif 'taskFinalStatus' in spec:
        ref = ParameterInput('final_status', producer=spec['taskFinalStatus']['producerTask'])
    return (False, None) if ref is None else input_value(ref, scope, ctx)


def _artifacts(ref: ArtifactInput, scope: Scope) -> Optional[list[Artifact]]:
    if ref.kind == 'component_input':
        return scope.artifacts.get(ref.name)
    outcome = scope.outcomes.get(ref.producer)
    return None if outcome is None else outcome.artifacts.get(ref.name)


def resolve(task: Task, component: Component, scope: Scope, ctx: RunContext,
            check_required: bool, exempt: frozenset = frozenset()) -> tuple[dict, dict]:
    """Returns (parameters, artifacts) for the task; defaults from the component fill gaps.
    InputError when a required input has no value (e.g. its producer failed or was skipped)."""
    params: dict[str, Any] = {}
    for name, ref in task.parameters.items():
        present, value = input_value(ref, scope, ctx)
        if not present:
            continue
        if ref.selector:
            try:
                value = select(ref.selector, value)
            except ExpressionError as e:
                raise InputError(f'input {name!r}: {e}') from None
        params[name] = value
    arts: dict[str, list[Artifact]] = {}
    for name, aref in task.artifacts.items():
        value = _artifacts(aref, scope)
        declared = component.inputs.artifacts.get(name)
        # a list input's value may be empty (dsl.Collected of a loop that ran no iteration, as
        # a collected parameter list is []): the task runs with {"artifacts": []}, and what
        # the function gets is KFP's executor's to say (kfp/dsl/executor.py: None for it)
        if value or (value is not None and declared is not None and declared.is_list):
            arts[name] = value

    for name, d in component.inputs.parameters.items():
        if params.get(name) is not None:
            continue
        if d.has_default:
            params[name] = d.default
        elif check_required and not d.optional and name not in exempt and d.type != 'TASK_FINAL_STATUS':
            raise InputError(f'required input parameter {name!r} has no value'
                             + _why(task.parameters.get(name), scope))
    if check_required:
        for name, a in component.inputs.artifacts.items():
            if name not in arts and not a.optional and name not in exempt:
                raise InputError(f'required input artifact {name!r} has no value'
                                 + _why(task.artifacts.get(name), scope))
    return params, arts


def _why(ref: Union[ParameterInput, ArtifactInput, None], scope: Scope) -> str:
    """Why an input has no value: its producer task did not give one."""
    if ref is None or ref.kind != 'task_output':
        return ''
    outcome = scope.outcomes.get(ref.producer)
    state = outcome.state.value if outcome else 'not run'
    return f' (its producer {scope.prefix}{ref.producer} is {state})'
