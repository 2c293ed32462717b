"""CPython's cyclic garbage collector while a run goes on.

A run makes some 10^5 objects for a ParallelFor of 1,000 tasks (records, events, key parts,
futures, the executor inputs), nearly all freed by reference counting as soon as they are
done with; what stays (the task records) is not garbage. With the default thresholds
(700, 10, 10) the collector ran ~150 times in a cached x1000 rerun, its oldest-generation
passes traversing every object of the process (the engine, the pipeline spec, what earlier
runs left in a long-lived process): ~60-100 ms of a ~350 ms run.

So while a run goes on, the objects that existed before it are frozen (gc.freeze: alive, never
traversed) and the youngest generation is collected every 10,000 allocations, not 700.
Both are undone when the last of the process's concurrent runs ends (the CLI keeps the
threshold for its whole process: for_this_process); cyclic garbage is still
collected throughout, only in fewer passes. A process that froze objects of its own keeps its
freeze (nothing is frozen or unfrozen here then), and one that turned the collector off, or
set a higher threshold, keeps that.
"""
from __future__ import annotations

import contextlib
import gc
import threading
from typing import Iterator, Optional

YOUNG_THRESHOLD = 10_000        # allocations between two passes over the youngest generation

_lock = threading.Lock()
_runs = 0                                   # runs going on in this process
_saved: Optional[tuple[tuple[int, ...], bool]] = None     # (thresholds, froze) before the first


def for_this_process() -> None:
    """A command's own process (cli.py): the youngest generation every 10,000 allocations from
    its start. Its imports and the pipeline's spec live as long as it does: with the default
    threshold they were traversed ~50 times before a run began (~15 ms)."""
    thresholds = gc.get_threshold()
    if 0 < thresholds[0] < YOUNG_THRESHOLD:
        gc.set_threshold(YOUNG_THRESHOLD, *thresholds[1:])


@contextlib.contextmanager
def during_a_run() -> Iterator[None]:
    global _runs, _saved
    with _lock:
        if _runs == 0:
            thresholds = gc.get_threshold()
            froze = gc.isenabled() and gc.get_freeze_count() == 0
            if froze:
                gc.freeze()
            if 0 < thresholds[0] < YOUNG_THRESHOLD:
                gc.set_threshold(YOUNG_THRESHOLD, *thresholds[1:])
            _saved = (thresholds, froze)
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0 and _saved is not None:
                thresholds, froze = _saved
                _saved = None
                gc.set_threshold(*thresholds)
                if froze:
                    gc.unfreeze()
