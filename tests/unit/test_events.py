"""events.py: typed events, and subscribers that must handle every type."""
import dataclasses

import pytest

from localrunner.engine import events as ev
from localrunner.faces.console import ConsoleView


def test_every_event_type_is_listed_and_frozen():
    declared = {v for v in vars(ev).values() if isinstance(v, type) and issubclass(v, ev.Event) and v is not ev.Event}
    assert declared == set(ev.ALL)
    e = ev.TaskSucceeded(task='t', duration_s=1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.task = 'other'


def test_the_console_decides_about_every_event_type(tmp_path):
    """A new event type must be a decision in the console, not a silence."""
    view = ConsoleView(stream=open(tmp_path / 'out', 'w'), live=False)
    missing = [cls.__name__ for cls in ev.ALL if cls not in view._handlers]
    assert not missing, f'ConsoleView has no on_<Type> for {missing}'


def test_a_failing_subscriber_does_not_stop_the_others():
    bus = ev.EventBus()
    seen = []
    bus.subscribe(lambda e: 1 / 0)
    bus.subscribe(seen.append)
    bus.emit(ev.Warning(message='x'))
    assert [type(e) for e in seen] == [ev.Warning]


def test_the_bus_knows_which_types_its_subscribers_take():
    bus = ev.EventBus()
    assert not bus.wants(ev.TaskLog)                     # nobody listens yet
    history = lambda e: None                             # noqa: E731
    history.event_types = frozenset({ev.RunFinished})
    bus.subscribe(history)
    assert bus.wants(ev.RunFinished) and not bus.wants(ev.TaskLog)
    bus.subscribe(lambda e: None)                        # says nothing: takes every type
    assert bus.wants(ev.TaskLog)


def test_the_console_takes_a_tasks_lines_only_when_verbose(tmp_path):
    quiet = ConsoleView(stream=open(tmp_path / 'a', 'w'), live=False)
    verbose = ConsoleView(stream=open(tmp_path / 'b', 'w'), live=False, verbose=True)
    assert ev.TaskLog not in quiet.event_types and ev.TaskFailed in quiet.event_types
    assert ev.TaskLog in verbose.event_types
