"""Putting a run together: IR + RunOptions -> a ready Run, the same for every face (the
CLI, the Python API, the pytest plugin and --watch).

    assemble(pipeline, options, params=..., cli_params=..., root_artifacts=...) -> Run
    Run.execute() -> RunResult     (writes <run dir>/result.json through HistoryWriter)

Parameters are typed by the pipeline here, the backend is found by name in the entry-point
registry and constructed with one BackendOptions, the run id is made, a dry run gets a
scratch run folder, and the run's history is written by a subscriber of its events.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from typing import Callable, Iterable, Optional, Union

from localrunner.backends.base import Backend, BackendOptions
from localrunner.engine import events as ev
from localrunner.engine.events import EventBus, Subscriber
from localrunner.engine.recovery import recover_root
from localrunner.engine.runtime import Run, RunOptions, new_run_id
from localrunner.engine.slots import check_gpu_requests
from localrunner.errors import LaunchError, UsageError
from localrunner.layout import PathEscape, check_name
from localrunner.params import resolve_pipeline_params
from localrunner.spec import Pipeline, load_pipeline


def json_text(data: dict) -> str:
    # compact: the C encoder (indent= forces the pure-Python one: ~10x slower at 1,000 tasks)
    return json.dumps(data, default=str)


def write_json_atomic(path: str, data: 'dict | str') -> None:
    """tmp -> fsync -> rename: a reader sees the old document or the new one, never half.
    DATA: the document, or its json_text() already made."""
    text = data if isinstance(data, str) else json_text(data)
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix='.result-')
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class HistoryWriter:
    """Writes the run's result document into its run folder: state RUNNING when the run
    starts (with `snapshot`), kept current as tasks start and end -- at most once per
    `interval` seconds, and at the latest `interval` after a change -- and final when the run ends.
    What a dead runner leaves is then each task's last known state (engine/recovery.py)."""

    # a task started is a change too: a runner killed (kill -9) while tasks run leaves them
    # listed, and recovery records each CANCELED (it found none before the first ended)
    _CHANGES = (ev.TaskStarted, ev.TaskSucceeded, ev.TaskCached, ev.TaskFailed, ev.TaskSkipped, ev.TaskCanceled)
    event_types = frozenset((ev.RunStarted, ev.RunFinished) + _CHANGES)     # EventBus.wants

    def __init__(self, path: str, snapshot: Optional[Callable[[], dict]] = None, interval: float = 1.0,
                 on_unsaved: Optional[Callable[[str], None]] = None):
        self.path = path
        self.snapshot = snapshot
        self.on_unsaved = on_unsaved        # told why the final document could not be written
        self.interval = interval
        self.writes = 0
        self._lock = threading.Lock()
        self._last = 0.0
        self._timer: Optional[threading.Timer] = None
        self._final = False

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunFinished):
            with self._lock:
                self._final = True
                if self._timer is not None:
                    self._timer.cancel()
                try:
                    self._write(event.result.final_text())
                except OSError as e:        # a full disk: the RUNNING document stays; say so
                    if self.on_unsaved is not None:
                        self.on_unsaved(f'{self.path}: {e.strerror or e}')
        elif self.snapshot is None:
            return
        elif isinstance(event, ev.RunStarted):
            with self._lock:
                self._save()
        elif isinstance(event, self._CHANGES):
            self._changed()

    def _changed(self) -> None:
        with self._lock:
            wait = self._last + self.interval - time.monotonic()
            if wait <= 0:
                self._save()
            elif self._timer is None:
                self._timer = threading.Timer(wait, self._due)
                self._timer.daemon = True
                self._timer.start()

    def _due(self) -> None:
        with self._lock:
            self._timer = None
            self._save()

    def _save(self) -> None:
        """The RUNNING document (lock held); a failed write waits for the next change."""
        if self._final:
            return
        try:
            self._write(self.snapshot())
        except Exception:        # e.g. a full disk: the run goes on; the final write says more
            pass

    def _write(self, doc: 'dict | str') -> None:
        self._last = time.monotonic()
        write_json_atomic(self.path, doc)
        self.writes += 1


def make_backend(options: RunOptions, run_id: str) -> Backend:
    from localrunner.backends.registry import backend_class
    cls = backend_class(options.backend)
    return cls(BackendOptions(run_id=run_id, root=options.root, env_dir=options.env_dir, cwd=options.cwd,
                              warm_start=options.warm_start, settings=dict(options.backend_settings)))


def assemble(pipeline: Union[str, Pipeline], options: RunOptions, *, params: Optional[dict] = None,
             cli_params: Optional[dict] = None, root_artifacts: Optional[dict] = None,
             subscribers: Iterable[Subscriber] = (), backend: Optional[Backend] = None,
             check_backend: bool = True) -> Run:
    """A ready run. `params` are Python values (or values from a params file), `cli_params`
    NAME -> text from `-p`; both are checked and typed by the pipeline (UsageError naming the
    bad one). `backend`: a Backend the caller owns (used as is, not closed); otherwise the one
    named in options is made here and closed when the run ends. Raises UsageError for any bad
    input, before anything runs."""
    if isinstance(pipeline, str):
        pipeline = load_pipeline(pipeline)
    values = resolve_pipeline_params(pipeline.view.root.inputs.parameters, cli_params or {}, params or {})
    options.run_id = options.run_id or new_run_id(pipeline.name)
    try:
        check_name(options.run_id, 'run id')            # it names the run's folder (layout.py)
    except PathEscape as e:
        raise UsageError(f'pipeline name {pipeline.name[:60]!r} cannot name a run folder ({e})') from None
    scratch = None
    if options.dry_run and not options.run_dir:
        # a dry run must not leave a run behind: its run folder is scratch
        scratch = options.run_dir = tempfile.mkdtemp(prefix='localrunner-explain-')
    owned = backend is None
    if owned:
        backend = make_backend(options, options.run_id)
        # a dry run launches nothing: a remote backend needs neither its cluster nor its config
        if check_backend and not (options.dry_run and backend.capabilities.remote):
            try:
                backend.check()
            except LaunchError as e:
                backend.close()
                raise UsageError(f'--backend {options.backend}: {e}') from None
    try:
        check_gpu_requests(pipeline, options.gpu_ids, backend.capabilities.remote)
    except UsageError:
        if owned:
            backend.close()
        raise
    bus = EventBus()
    for fn in subscribers:
        bus.subscribe(fn)
    run = Run(pipeline, values, backend, options, bus, root_artifacts=root_artifacts)
    for found in recover_root(options.root):      # runs whose runner died, before this one starts
        bus.emit(ev.Warning(message=found.message()))
    if not options.dry_run:
        bus.subscribe(HistoryWriter(run.run_layout.result, snapshot=run.snapshot, on_unsaved=run.unsaved.append))
    if owned:
        run.on_close.append(backend.close)
    if scratch:
        run.on_close.append(lambda: shutil.rmtree(scratch, ignore_errors=True))
    return run
