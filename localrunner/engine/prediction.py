"""The dry run: what a real run would do with every task it would reach, without running any.

Each leaf task gets a prediction (TaskRecord.prediction, the `prediction` field of the result
document, a TaskPredicted event):

    CACHED     its key hits: certain (the entry it would use is named)
    WOULD_RUN  its own key misses: the reason says which input, code or image changed
    MAY_RUN    its key depends on outputs of tasks that would run, or it sits under a condition
               or loop whose inputs can't be known yet: the reason names the upstream

How it works: the dry run is the real run with launches replaced by predictions. A task
predicted WOULD_RUN or MAY_RUN ends with an Outcome marked `pending` (its outputs are not
known), which the DAG passes on; a task that reads a pending outcome's outputs (parameters,
artifacts, final status, loop items, a condition's inputs) is MAY_RUN, and so is everything
under it — listed from the static IR, loop iterations of an unknown count named `<loop>.*`.
A task that only waits on a pending task (.after(), no data) is still predicted by its own
key. Predictions assume the tasks that would run succeed.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from localrunner.engine.caching import diff_parts
from localrunner.engine.model import Outcome, State, TaskRecord
from localrunner.spec.views import Task

if TYPE_CHECKING:
    from localrunner.engine.inputs import Scope
    from localrunner.engine.runtime import Run

CACHED, WOULD_RUN, MAY_RUN = 'CACHED', 'WOULD_RUN', 'MAY_RUN'
UNKNOWN_INDEX = '*'          # an iteration of a loop whose item count is not known yet

# key part -> what a person calls it
_PART_NAMES = (('executor.image', 'image'), ('environment', 'environment (image or packages)'),
               ('executor.command', 'code'), ('executor.args', 'code'), ('executor.env', 'environment variable'),
               ('inputs.parameters.', 'input parameter '), ('inputs.artifacts.', 'input artifact '),
               ('outputs', 'declared outputs'), ('accelerator', 'accelerator'), ('volumes', 'volumes'),
               ('custom_cache_key', 'cache key'), ('schema', 'key schema'))


def describe_change(old_parts: dict, new_parts: dict) -> str:
    """'changed: input parameter n, code' from two key documents."""
    said: list[str] = []
    for path in diff_parts(old_parts, new_parts):
        words = path
        for prefix, name in _PART_NAMES:
            if path.startswith(prefix):
                rest = path[len(prefix):].split('.')[0] if prefix.endswith('.') else ''
                words = name + rest
                break
        if words not in said:
            said.append(words)
    return 'changed: ' + (', '.join(said[:6]) if said else 'the key')


def pending_upstreams(task: Task, scope: 'Scope') -> list[str]:
    """Tasks of this DAG whose (unknown) outputs this task reads."""
    producers = [p.producer for p in task.parameters.values() if p.producer]     # outputs, final status
    producers += [a.producer for a in task.artifacts.values() if a.producer]
    pending = []
    for name in dict.fromkeys(producers):
        outcome = scope.outcomes.get(name)
        if outcome is not None and outcome.pending:
            pending.append(scope.prefix + name)
    return pending


def may_run(run: 'Run', name: str, task: Task, why: str) -> Outcome:
    """`task` (a leaf, a sub-DAG or a loop) and everything under it: MAY_RUN, because `why`."""
    kind = run.task_kind(task.component)
    if kind == 'dag':
        prefix = f'{name}.{UNKNOWN_INDEX}/' if task.loop is not None else name + '/'
        for key, inner in run.view.components[task.component].dag.tasks.items():
            may_run(run, prefix + key, inner, why)
    else:
        record = TaskRecord.of(name, task, kind, prediction=MAY_RUN, reason=why)
        run.end(record, Outcome(State.SUCCEEDED, pending=name))
    return Outcome(State.SUCCEEDED, pending=name)


def predicted_state(prediction: Optional[str], state: State) -> State:
    """What a predicted task's record shows: nothing ran, so SKIPPED unless served (CACHED)."""
    return State.SKIPPED if prediction in (WOULD_RUN, MAY_RUN) else state
