"""Events: the engine's only way to speak. Console, run store and result file subscribe."""
from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any, Callable, Optional


@dataclasses.dataclass
class Event:
    kind: str                         # run_started | task_queued | task_started | task_cached | task_succeeded |
                                      # task_failed | task_skipped | task_canceled | task_retry | log | warning |
                                      # environment | run_finished
    task: Optional[str] = None        # '/'-joined task path
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    time: float = dataclasses.field(default_factory=time.time)


Subscriber = Callable[[Event], None]


class EventBus:
    """Delivers events synchronously, in order, to every subscriber (thread-safe).
    A failing subscriber must not break the run, so its exception is swallowed after
    the first report."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()

    def subscribe(self, fn: Subscriber) -> None:
        self._subscribers.append(fn)

    def emit(self, kind: str, task: Optional[str] = None, **data: Any) -> None:
        event = Event(kind, task, data)
        with self._lock:
            for fn in self._subscribers:
                try:
                    fn(event)
                except Exception:  # a view must never take the run down
                    pass
