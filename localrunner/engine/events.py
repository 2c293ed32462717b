"""Events: the engine's only way to speak. The console, the history writer, the pytest
plugin and `--watch` subscribe to the same types.

One frozen record (records.py: a frozen dataclass's contract, cheaper to import) per thing
that happens; `task` is the '/'-joined task path (loop iterations as `<loop>.<i>`). Task
events are emitted for leaf tasks only (container and importer executors): DAG-level tasks
are summed up in the run's records. ALL lists every type, so a subscriber that must handle
each one can be checked for a missing case.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Optional

from localrunner.records import Record, record

if TYPE_CHECKING:
    from localrunner.engine.runtime import RunResult

_event = record(kw_only=True)


@_event
class Event(Record):
    time: float = dataclasses.field(default_factory=time.time)
    task: Optional[str] = None


@_event
class RunStarted(Event):
    run_id: str
    pipeline: str
    run_dir: str
    total: int                         # leaf tasks in the static IR (loop bodies counted once)


@_event
class RunFinished(Event):
    result: 'RunResult'


@_event
class RunCanceling(Event):
    """A signal cancels the run: running tasks are being stopped (SIGTERM, then SIGKILL after
    the backend's grace), waiting ones end CANCELED. force: a later signal, everything is
    killed at once."""
    signal: str                        # 'SIGINT', 'SIGTERM', 'SIGHUP'
    running: int = 0                   # attempts being stopped
    force: bool = False


@_event
class LoopStarted(Event):
    iterations: int                    # a ParallelFor with this many iterations begins
    tasks: int = 0                     # leaf tasks in all its iterations, but those of a loop inside it
                                       # (static count of the body)


@_event
class TaskQueued(Event):
    """Inputs resolved and not served from the cache: waiting for a slot (cpu, memory, GPUs)."""


@_event
class EnvBuilding(Event):
    line: str                          # one line of the environment build (venv, image)


@_event
class EnvReady(Event):
    seconds: float                     # time spent preparing the environment for this task
    built: bool                        # False when it already existed


@_event
class TaskStarted(Event):
    attempt: int
    display_name: str = ''


@_event
class TaskLog(Event):
    line: str                          # one line of the task's combined stdout/stderr


@_event
class AttemptFailed(Event):
    attempt: int
    error: str
    retrying: bool                     # a retry follows (after TaskRetrying's delay)


@_event
class TaskRetrying(Event):
    attempt: int                       # the attempt that failed
    error: str
    delay_s: float


@_event
class TaskCached(Event):
    cached_from: dict                  # {'run', 'task', 'time'} of the result served
    key: str


@_event
class TaskSucceeded(Event):
    duration_s: float


@_event
class TaskFailed(Event):
    error: str
    log_tail: tuple[str, ...] = ()
    log_path: Optional[str] = None
    attempts: int = 0


@_event
class TaskSkipped(Event):
    reason: str = ''                   # 'condition', 'upstream', ...
    tasks: int = 1                     # leaf tasks it ends: a condition or sub-pipeline skipped before it
                                       # started, all of its own (not those of a loop inside it)


@_event
class TaskCanceled(Event):
    tasks: int = 1                     # as TaskSkipped's


@_event
class TaskPredicted(Event):
    """Dry run: what the real run would do with this task."""
    prediction: str                    # CACHED | WOULD_RUN | MAY_RUN
    why: str = ''
    key: Optional[str] = None


@_event
class Warning(Event):  # noqa: A001 - the engine's own warning, not the builtin
    message: str


ALL: tuple[type, ...] = (RunStarted, RunFinished, RunCanceling, LoopStarted, TaskQueued, EnvBuilding, EnvReady, TaskStarted,
                         TaskLog, AttemptFailed, TaskRetrying, TaskCached, TaskSucceeded, TaskFailed,
                         TaskSkipped, TaskCanceled, TaskPredicted, Warning)

Subscriber = Callable[[Event], None]


class EventBus:
    """Delivers events synchronously, in order, to every subscriber (thread-safe).
    A failing subscriber must not break the run: its exception is swallowed.

    A subscriber may say which types it handles, as an `event_types` attribute (a set of
    types); one without it gets every type. The engine asks wants(T) before making events
    that only some views read, one per log line (TaskLog): a run nobody follows line by line
    makes none of them."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self._wanted: Optional[set[type]] = set()      # None: some subscriber takes every type

    def subscribe(self, fn: Subscriber) -> None:
        self._subscribers.append(fn)
        types = getattr(fn, 'event_types', None)
        if types is None:
            self._wanted = None
        elif self._wanted is not None:
            self._wanted.update(types)

    def wants(self, cls: type) -> bool:
        """Whether any subscriber handles events of type CLS."""
        return self._wanted is None or cls in self._wanted

    def emit(self, event: Event) -> None:
        with self._lock:
            for fn in self._subscribers:
                try:
                    fn(event)
                except Exception:  # a view must never take the run down
                    pass


def handler_table(owner: Any, prefix: str = 'on_') -> dict[type, Callable[[Event], None]]:
    """{event type: owner.on_<TypeName>} for the types the owner handles: a subscriber
    dispatches with one dict lookup, and a test can list what it leaves out."""
    table = {}
    for cls in ALL:
        fn = getattr(owner, prefix + cls.__name__, None)
        if fn is not None:
            table[cls] = fn
    return table
