"""Resolve a task's inputs in its DAG's scope, as KFP's driver does."""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

from localrunner.engine.expressions import ExpressionError, select
from localrunner.engine.model import Artifact, Outcome, State
from localrunner.engine.placeholders import RunContext, substitute_run_metadata


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


def parameter_value(spec: dict, scope: Scope, ctx: RunContext) -> tuple[bool, Any]:
    if 'componentInputParameter' in spec:
        name = spec['componentInputParameter']
        return name in scope.parameters, scope.parameters.get(name)
    if 'taskOutputParameter' in spec:
        ref = spec['taskOutputParameter']
        outcome = scope.outcomes.get(ref['producerTask'])
        if outcome is None or ref['outputParameterKey'] not in outcome.parameters:
            return False, None
        return True, outcome.parameters[ref['outputParameterKey']]
    if 'runtimeValue' in spec:
        return True, substitute_run_metadata(spec['runtimeValue'].get('constant'), ctx)
    if 'taskFinalStatus' in spec:
        producer = spec['taskFinalStatus']['producerTask']
        return True, final_status(scope.outcomes.get(producer), producer, ctx.job_name)
    return False, None


def _artifacts(spec: dict, scope: Scope) -> Optional[list[Artifact]]:
    if 'componentInputArtifact' in spec:
        return scope.artifacts.get(spec['componentInputArtifact'])
    if 'taskOutputArtifact' in spec:
        ref = spec['taskOutputArtifact']
        outcome = scope.outcomes.get(ref['producerTask'])
        if outcome is None:
            return None
        return outcome.artifacts.get(ref['outputArtifactKey'])
    return None


def resolve(task: dict, component: dict, scope: Scope, ctx: RunContext,
            check_required: bool, exempt: frozenset = frozenset()) -> tuple[dict, dict]:
    """Returns (parameters, artifacts) for the task; defaults from the component fill gaps.
    InputError when a required input has no value (e.g. its producer failed or was skipped)."""
    inputs = task.get('inputs', {})
    params: dict[str, Any] = {}
    for name, spec in inputs.get('parameters', {}).items():
        present, value = parameter_value(spec, scope, ctx)
        if not present:
            continue
        selector = spec.get('parameterExpressionSelector')
        if selector:
            try:
                value = select(selector, value)
            except ExpressionError as e:
                raise InputError(f'input {name!r}: {e}') from None
        params[name] = value
    arts: dict[str, list[Artifact]] = {}
    for name, spec in inputs.get('artifacts', {}).items():
        value = _artifacts(spec, scope)
        if value:
            arts[name] = value

    defs = component.get('inputDefinitions', {})
    for name, d in defs.get('parameters', {}).items():
        if params.get(name) is not None:
            continue
        if 'defaultValue' in d:
            params[name] = d['defaultValue']
        elif check_required and not d.get('isOptional') and name not in exempt \
                and d.get('parameterType') != 'TASK_FINAL_STATUS':
            raise InputError(f'required input parameter {name!r} has no value'
                             + _why(inputs.get('parameters', {}).get(name), scope))
    if check_required:
        for name, d in defs.get('artifacts', {}).items():
            if name not in arts and not d.get('isOptional') and name not in exempt:
                raise InputError(f'required input artifact {name!r} has no value'
                                 + _why(inputs.get('artifacts', {}).get(name), scope))
    return params, arts


def _why(spec: Optional[dict], scope: Scope) -> str:
    if not spec:
        return ''
    ref = spec.get('taskOutputParameter') or spec.get('taskOutputArtifact')
    if ref:
        outcome = scope.outcomes.get(ref['producerTask'])
        state = outcome.state.value if outcome else 'not run'
        return f' (its producer {scope.prefix}{ref["producerTask"]} is {state})'
    return ''
