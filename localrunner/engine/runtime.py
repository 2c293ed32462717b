"""A run: the root DAG and every sub-DAG (condition, loop, exit handler, nested pipeline),
expanded when it becomes ready, with KFP's semantics.

One asyncio loop owns all state; blocking work (cache I/O, environment builds, waiting for
a process or container) runs in a thread pool. A DAG waits on each task's upstreams
(dependentTasks and data producers), then the task is skipped, expanded or executed.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import datetime
import functools
import json
import os
import random
import re
import secrets
import shutil
import signal
import threading
import time
import uuid
from typing import Any, Callable, Optional

from localrunner.backends.base import Backend, Execution
from localrunner.engine import collector
from localrunner.engine import events as ev
from localrunner.engine import inputs as task_inputs
from localrunner.engine.caching import CacheSettings, TaskCache
from localrunner.engine.container_task import ContainerTask, RunCanceled
from localrunner.engine.events import EventBus
from localrunner.engine.expressions import ExpressionError, evaluate_condition
from localrunner.engine.interrupts import Interrupts
from localrunner.engine.k8s_local import LocalSources
from localrunner.engine import placement, prediction
from localrunner.engine.model import Artifact, Outcome, State, TaskRecord
from localrunner.engine.placeholders import RunContext
from localrunner.engine.slots import ResourcePool
from localrunner.layout import RootLayout
from localrunner.spec import Pipeline
from localrunner.spec.views import Component, Dag, Task

COMPLETED_STRATEGY = 'ALL_UPSTREAM_TASKS_COMPLETED'
_BATCH = 32             # in_batch calls per hop, at least
# in_batch hops per turn of the loop, at most: one per core. A cached stage's hops are Python
# work under the GIL, so more of them only add worker threads to start (the loop waits while
# each new one takes the GIL) and hand-offs; a stage of 1,000 on 2 cores makes 2, not 32
_HOPS = max(2, os.cpu_count() or 2)


@dataclasses.dataclass
class RunOptions:
    """Everything that shapes a run, whichever face asks for it (CLI, Python API, pytest
    plugin, --watch): engine/assembly.py turns IR + RunOptions into a ready Run."""
    root: str = '.localrunner'
    backend: str = 'subprocess'            # a name registered under the localrunner.backends entry point
    backend_settings: dict = dataclasses.field(default_factory=dict)   # backend-specific (BackendOptions.settings)
    env_dir: Optional[str] = None          # shared venvs; None: $LOCALRUNNER_ENV_DIR or the user cache
    cwd: Optional[str] = None              # working folder of host processes; None: the current one
    warm_start: bool = True
    max_parallel: int = os.cpu_count() or 2
    fail_fast: bool = False
    cache: CacheSettings = dataclasses.field(default_factory=CacheSettings)
    k8s: LocalSources = dataclasses.field(default_factory=LocalSources)
    dry_run: bool = False
    gpu_ids: tuple[str, ...] = ()
    cpus: Optional[float] = None
    memory: Optional[int] = None
    run_id: Optional[str] = None
    run_dir: Optional[str] = None          # default <root>/runs/<run id>
    image_map: dict = dataclasses.field(default_factory=dict)   # image named in the IR -> image to run
    extra_mounts: tuple[str, ...] = ()     # host paths every task may read at the same path (container backends)


@dataclasses.dataclass
class RunResult:
    run_id: str
    pipeline: str
    state: State
    outputs: Outcome
    records: list[TaskRecord]
    run_dir: str
    started: float
    finished: Optional[float]             # None while RUNNING
    warnings: list[str]
    parameters: dict = dataclasses.field(default_factory=dict)     # the run's typed pipeline parameters
    signal: Optional[int] = None          # the signal that canceled the run
    _doc: Optional[dict] = dataclasses.field(default=None, init=False, repr=False, compare=False)
    _text: Optional[str] = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def to_json(self) -> dict:
        """The result document; a finished run's is made once (the history writer, the
        CLI's --result-json, --report and --watch share it: read it, never change it)."""
        if self._doc is not None:
            return self._doc
        doc = {
            'run_id': self.run_id,
            'pipeline': self.pipeline,
            'state': self.state.value,
            'outputs': {'parameters': self.outputs.parameters,
                        'artifacts': {k: [a.result() for a in v] for k, v in self.outputs.artifacts.items()}},
            'parameters': self.parameters,
            'tasks': [r.to_json() for r in self.records],
            'run_dir': self.run_dir,
            'started': self.started,
            'finished': self.finished,
            'duration_s': round((self.finished or time.time()) - self.started, 3),
            'warnings': self.warnings,
        }
        if self.signal is not None:
            doc['signal'] = signal.Signals(self.signal).name
        if self.finished is not None:
            self._doc = doc
        return doc

    def final_text(self) -> str:
        """The finished run's document as JSON text, made once: the run folder's result.json
        and --result-json are the same bytes (a 1,000-task run's document is ~20 ms to make)."""
        if self._text is None:
            from localrunner.engine.assembly import json_text
            self._text = json_text(self.to_json())
        return self._text


def new_run_id(pipeline_name: str) -> str:
    stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
    return f'{pipeline_name}-{stamp}-{secrets.token_hex(3)}'


class Run:
    def __init__(self, pipeline: Pipeline, params: dict, backend: Backend, options: RunOptions,
                 bus: Optional[EventBus] = None, root_artifacts: Optional[dict] = None):
        self.pipeline = pipeline
        self.view = pipeline.view             # the typed IR the run walks (spec/views.py)
        self.params = params
        self.root_artifacts = root_artifacts or {}
        self.backend = backend
        self.caps = backend.capabilities
        self.options = options
        self.bus = bus or EventBus()
        self.run_id = options.run_id or new_run_id(pipeline.name)
        self.layout = RootLayout(options.root)
        self.root = self.layout.root
        self.run_layout = self.layout.run(self.run_id, options.run_dir)
        self.run_dir = self.run_layout.dir
        self.workspace = self.run_layout.workspace
        if not options.k8s.pvc_root:
            options.k8s.pvc_root = self.layout.pvcs_dir
        self.cache = TaskCache(self.root, options.cache, run_id=self.run_id)
        self.image_needs = placement.tasks_needing_images(pipeline)     # executor label -> why
        self.pool = ResourcePool(options.max_parallel, options.cpus, options.memory, options.gpu_ids)
        self.records: list[TaskRecord] = []
        self._registered: set[int] = set()     # ids of records already listed (a list scan is O(n^2))
        self.executions: set[Execution] = set()
        self.cancelled = False
        self.killed = False                    # a second signal: no grace, nothing waits
        # why the final result.json could not be written (a full disk): the run is then left
        # to recovery (runner.json stays), which records it, not RUNNING forever
        self.unsaved: list[str] = []
        self.signal: Optional[int] = None      # the first signal received
        self.started = time.time()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._main_task: Optional[asyncio.Task] = None
        self._waiting: set[asyncio.Future] = set()     # unless_canceled waits, canceled with the run
        self._stopped: set[asyncio.Future] = set()     # those the run's cancel canceled
        self.warnings: list[str] = []
        self._warned: set[str] = set()
        self._key_locks: dict[str, asyncio.Lock] = {}
        self._stoppers: list[threading.Thread] = []
        self.on_close: list[Callable[[], None]] = []     # released when the run ends (assembly.py)
        self._private: Optional[str] = None
        # (what, image, python env, placement) -> the answer, as a future all of a stage's tasks await
        self.environments: dict[tuple, asyncio.Future] = {}
        # task uuids: unique within the run and across runs (seeded once from the OS), without
        # a getrandom() syscall per task as uuid4() makes
        self._uuids = random.Random(secrets.token_bytes(16))
        self._batch: list[tuple] = []          # in_batch calls of this turn of the loop
        self._threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(8, options.max_parallel * 2 + 8), thread_name_prefix='localrunner')
        self.created = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')

    # ------------------------------------------------------------------ services for tasks
    async def in_thread(self, fn: Callable, *args) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._threads, functools.partial(fn, *args))
        finally:
            self._drain_cache_warnings()

    def in_batch(self, fn: Callable, *args, looks_up: Optional[str] = None) -> asyncio.Future:
        """`await run.in_batch(fn, *args)`: fn(*args) in a worker thread, like in_thread, but
        the calls made in one turn of the event loop share hops: a stage of a ParallelFor
        whose 1,000 tasks look up the cache at once makes one hop a core (_HOPS), each of at
        least _BATCH calls, not 1,000 (a hop costs more than a lookup). For short work that
        does not block on anything but the disk: cache lookups and restores, storing outputs.
        Not for a launch or a wait.
        looks_up: the cache key fn looks up, if any; a hop reads its calls' keys at once
        (TaskCache.reading_ahead)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._batch.append((fn, args, looks_up, future))
        if len(self._batch) == 1:
            loop.call_soon(self._send_batch, loop)     # after the rest of this turn has queued
        return future

    def _send_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        items, self._batch = self._batch, []
        size = max(_BATCH, -(-len(items) // _HOPS))
        for i in range(0, len(items), size):
            self._threads.submit(self._run_batch, loop, items[i:i + size])

    def _run_batch(self, loop: asyncio.AbstractEventLoop, items: list) -> None:
        """In a worker thread: each call in turn; every answer goes back in one hop."""
        answers = []
        with self.cache.reading_ahead([key for _fn, _args, key, _future in items if key]):
            for fn, args, _key, future in items:
                try:
                    answers.append((future, fn(*args), None))
                except BaseException as e:      # every caller gets an answer, whatever happened
                    answers.append((future, None, e))
        try:
            loop.call_soon_threadsafe(self._answer_batch, answers)
        except RuntimeError:        # the loop is closed: the run was killed, nobody awaits them
            pass

    def _answer_batch(self, answers: list) -> None:
        for future, value, error in answers:
            if future.cancelled():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)
        self._drain_cache_warnings()

    def _drain_cache_warnings(self) -> None:
        # the cache library never prints: what it noticed (damage quarantined, a remote that
        # stopped answering, an entry that failed validation) becomes the run's warnings
        for message in self.cache.drain_warnings():
            self.warn(message)

    def task_uuid(self) -> str:
        """A fresh version-4 uuid for a task (KFP's {{$.pipeline_task_uuid}})."""
        return str(uuid.UUID(int=self._uuids.getrandbits(128), version=4))

    def key_lock(self, key: str) -> asyncio.Lock:
        return self._key_locks.setdefault(key, asyncio.Lock())

    def context(self, task_name: str, task_id: str) -> RunContext:
        return RunContext(job_name=self.run_id, job_id=self.run_id, task_name=task_name.rsplit('/', 1)[-1],
                          task_id=task_id, create_time=self.created, pipeline_root=self.run_dir,
                          workspace=self.workspace)

    def register(self, record: TaskRecord) -> None:
        if id(record) not in self._registered:
            self._registered.add(id(record))
            self.records.append(record)

    def end(self, record: TaskRecord, outcome: Outcome) -> Outcome:
        """The one way a task reaches a final state: the record takes the outcome, the run
        lists it, and (for a leaf task) the matching event is emitted. A task ends once."""
        if record.state.final and record.finished is not None:
            raise RuntimeError(f'task {record.name} ended twice ({record.state.value}, then {outcome.state.value})')
        record.state = prediction.predicted_state(record.prediction, outcome.state)
        record.outputs = outcome
        if outcome.error:
            record.error = outcome.error
        record.finished = time.time()
        self.register(record)
        if record.leaf:
            self.bus.emit(self._end_event(record, outcome))
        return outcome

    def _end_event(self, record: TaskRecord, outcome: Outcome, tasks: int = 1) -> ev.Event:
        """The event of a task's end; TASKS: the leaf tasks a skip or cancel ends (_end_new)."""
        state, name = outcome.state, record.name
        if record.prediction:
            return ev.TaskPredicted(task=name, prediction=record.prediction, why=record.reason or '',
                                    key=record.cache_key)
        if state == State.SUCCEEDED:
            return ev.TaskSucceeded(task=name, duration_s=record.finished - (record.started or record.finished))
        if state == State.CACHED:
            return ev.TaskCached(task=name, cached_from=record.cached_from or {}, key=record.cache_key or '')
        if state == State.FAILED:
            log = record.logs[-1] if record.logs else None
            return ev.TaskFailed(task=name, error=record.error or 'failed', log_tail=tuple(log_tail(log)),
                                 log_path=log, attempts=record.attempts)
        if state == State.SKIPPED:
            return ev.TaskSkipped(task=name, reason=record.reason or '', tasks=tasks)
        return ev.TaskCanceled(task=name, tasks=tasks)

    def private_dir(self, label: str) -> str:
        """A fresh folder outside the root, this user's only, removed when the run ends (a
        secret given as a file becomes one file per key there: its bytes never enter the root)."""
        import tempfile
        if self._private is None:
            self._private = tempfile.mkdtemp(prefix=f'localrunner-{os.getpid()}-')    # mode 0700
            self.on_close.append(lambda: shutil.rmtree(self._private, ignore_errors=True))
        return tempfile.mkdtemp(prefix=re.sub(r'[^A-Za-z0-9_.-]', '_', label)[:40] + '-', dir=self._private)

    def warn(self, message: str, task: Optional[str] = None) -> None:
        self.warnings.append(message)
        self.bus.emit(ev.Warning(task=task, message=message))

    def warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            self.warn(message)

    # ------------------------------------------------------------------ canceling
    def cancel(self) -> None:
        """Fail-fast, a signal or the API: nothing new starts; tasks waiting (for a slot, an
        identical task, a retry backoff) end CANCELED; running attempts are terminated (the
        backend's SIGTERM, then SIGKILL after its grace); environment builds are stopped.
        Callable from any thread; the first call does it."""
        if self.cancelled:
            return
        self.cancelled = True
        self._in_loop(self._wake_waiters)
        self._detach(self.backend.cancel)
        for execution in list(self.executions):
            self.stop(execution)

    def kill(self) -> None:
        """A second signal: every attempt is killed now, and nothing waits any longer (the
        tasks still open end CANCELED). Callable from any thread."""
        self.killed = True
        self.cancel()
        self._detach(self.backend.cancel)        # a build started since the first signal
        for execution in list(self.executions):
            self._detach(execution.kill)
        self._in_loop(lambda: self._main_task.cancel() if self._main_task else None)

    def stop(self, execution: Execution) -> None:
        self._detach(execution.kill if self.killed else execution.terminate)

    def track(self, execution: Execution) -> None:
        """A started attempt; one that started while the run was being canceled is stopped."""
        self.executions.add(execution)
        if self.cancelled:
            self.stop(execution)

    def _detach(self, fn: Callable[[], None]) -> None:
        # its own thread, not the pool: the pool may be shutting down, and a terminate can
        # take the backend's grace period
        stopper = threading.Thread(target=fn, name='localrunner-stop', daemon=True)
        stopper.start()
        self._stoppers.append(stopper)

    def _in_loop(self, fn: Callable[[], None]) -> None:
        """Runs fn in the run's event loop (from any thread); nothing when it is not running."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(fn)
        except RuntimeError:        # closed: the run is past its DAGs
            pass

    def _wake_waiters(self) -> None:
        for waiting in list(self._waiting):
            if not waiting.done():
                self._stopped.add(waiting)
                waiting.cancel()

    async def unless_canceled(self, awaitable) -> Any:
        """`await awaitable`, unless the run is canceled first: then it is abandoned and
        RunCanceled raised. A result ready at the same moment wins (a lock or slot acquired
        is returned, never lost: a cancel that comes after the grant gives it back)."""
        inner = asyncio.ensure_future(awaitable)
        if self.cancelled and not inner.done():
            inner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                return await inner
            raise RunCanceled()
        self._waiting.add(inner)           # the run's cancel cancels it (_wake_waiters)
        try:
            return await inner
        except asyncio.CancelledError:
            if inner not in self._stopped or _being_canceled():
                raise                       # this task itself is canceled (kill): nothing waits
            raise RunCanceled() from None
        finally:
            self._waiting.discard(inner)
            self._stopped.discard(inner)

    def _on_signal(self, signum: int) -> None:
        self.signal = signum
        self.bus.emit(ev.RunCanceling(signal=signal.Signals(signum).name, running=len(self.executions)))
        self.cancel()

    def _on_signal_again(self, signum: int) -> None:
        self.bus.emit(ev.RunCanceling(signal=signal.Signals(signum).name, running=len(self.executions),
                                      force=True))
        self.kill()

    # ------------------------------------------------------------------ entry points
    def execute(self) -> RunResult:
        """Runs the pipeline to its end. SIGINT, SIGTERM and SIGHUP (in the main thread)
        cancel it for the whole call, shutdown included; a second one kills (interrupts.py)."""
        self.started = time.time()
        os.makedirs(self.run_dir, exist_ok=True)
        os.makedirs(self.workspace, exist_ok=True)
        with collector.during_a_run(), Interrupts(self._on_signal, self._on_signal_again):
            live = self._go_live()
            finished = False
            try:
                result = self._execute()
                finished = True
                return result
            finally:
                if live is not None:
                    live.end(finished and not self.unsaved)

    def _go_live(self):
        """Marks the run as in progress, so a runner that dies is found (engine/recovery.py)."""
        if self.options.dry_run:
            return None
        from localrunner.engine.recovery import LiveRun
        live = LiveRun(self.layout, self.run_layout, self.run_id, self.options.backend, self.caps.containers)
        try:
            live.start()
        except OSError as e:
            self.warn(f'cannot mark the run as in progress under {self.root} ({e}); '
                      f'if this runner dies, the next command will not record it CANCELED')
            return None
        return live

    def _execute(self) -> RunResult:
        self.bus.emit(ev.RunStarted(run_id=self.run_id, pipeline=self.pipeline.name, run_dir=self.run_dir,
                                    total=self.count_leaf_tasks()))
        self._warn_placement()
        outcome = Outcome(State.FAILED)
        try:
            outcome = asyncio.run(self._main())
        except KeyboardInterrupt:             # not through our handlers (not the main thread's run)
            self.signal = self.signal or signal.SIGINT
            self.cancel()
            outcome = Outcome(State.CANCELED)
        finally:
            while self._stoppers:             # a signal may add more meanwhile
                self._stoppers.pop().join()
            self._threads.shutdown(wait=not self.killed, cancel_futures=True)
            self.cache.close()              # writes the keys remembered to explain later misses
            self._drain_cache_warnings()
            for close in reversed(self.on_close):
                close()
        for r in list(self.records):          # still open: interrupted under it
            if not r.state.final or r.finished is None:
                r.state = State.RUNNING        # lets end() take it once
                r.finished = None
                self.end(r, Outcome(State.CANCELED, error=r.error))
        failed = any(r.state == State.FAILED for r in self.records) or outcome.state == State.FAILED
        if self.signal is not None:
            state = State.CANCELED             # whatever had failed before the signal
        elif failed:
            state = State.FAILED               # fail-fast cancels the rest of a failed run
        elif self.cancelled or outcome.state == State.CANCELED:
            state = State.CANCELED
        else:
            state = State.SUCCEEDED
        result = RunResult(self.run_id, self.pipeline.name, state, outcome, self.records, self.run_dir,
                           self.started, time.time(), self.warnings, parameters=self.params, signal=self.signal)
        self.bus.emit(ev.RunFinished(result=result))
        return result

    def snapshot(self) -> dict:
        """The result document of the run in progress: state RUNNING, each task listed so far
        with its state (HistoryWriter saves it; engine/recovery.py reads it)."""
        return RunResult(self.run_id, self.pipeline.name, State.RUNNING, Outcome(State.RUNNING),
                         list(self.records), self.run_dir, self.started, None, list(self.warnings)).to_json()

    async def _main(self) -> Outcome:
        self._loop = asyncio.get_running_loop()
        self._main_task = asyncio.current_task()
        if self.killed:
            return Outcome(State.CANCELED)
        try:
            return await self.run_dag(self.view.root, self.params, self.root_artifacts, '')
        except asyncio.CancelledError:        # kill(): nothing waits any more
            self.cancelled = True
            return Outcome(State.CANCELED)
        finally:
            self._loop = None

    def _warn_placement(self) -> None:
        """Said when the run is planned: the tasks that need their image but won't get it."""
        if not self.image_needs or self.caps.containers:
            return
        listed = '; '.join(f'{label} ({why})' for label, why in sorted(self.image_needs.items())[:5])
        more = f' and {len(self.image_needs) - 5} more' if len(self.image_needs) > 5 else ''
        docker = getattr(self.backend, 'docker_error', None)
        self.warn(f'{len(self.image_needs)} executor(s) need their image but run their command on this machine: '
                  f'{listed}{more}. ' + (f'--backend auto found no Docker engine ({docker})' if docker else
                                         'Run with --backend auto to send them to Docker'))

    def count_leaf_tasks(self) -> int:
        """Executor tasks in the static IR (loop bodies counted once)."""
        return self.count_leaves(self.view.root)

    def count_leaves(self, component: Component, nested_loops: bool = True) -> int:
        """Executor tasks of COMPONENT's DAG; without `nested_loops`, those directly in its
        iterations (a ParallelFor inside counts its own, in its own LoopStarted)."""
        n = 0
        for task in component.dag.tasks.values():
            sub = self.view.components[task.component]
            if sub.dag is None:
                n += 1
            elif nested_loops or task.loop is None:
                n += self.count_leaves(sub, nested_loops)
        return n

    # ------------------------------------------------------------------ DAGs
    async def run_dag(self, component: Component, params: dict, arts: dict, prefix: str) -> Outcome:
        tasks = component.dag.tasks
        scope = task_inputs.Scope(params, arts, {}, prefix)
        done = {name: asyncio.Event() for name in tasks}

        async def one(name: str) -> None:
            task = tasks[name]
            for up in task.upstreams:
                await done[up].wait()
            try:
                outcome = await self.run_task(task, scope)
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as e:    # an engine bug must fail this task, not hang the DAG
                outcome = self._end_new(prefix + name, task, State.FAILED,
                                        error=f'internal error: {type(e).__name__}: {e}')
            scope.outcomes[name] = outcome
            if outcome.state == State.FAILED and self.options.fail_fast and not self.cancelled:
                self.cancel()
            done[name].set()

        if len(tasks) == 1:                 # e.g. a loop body of one task: no Task to wrap it in
            await one(next(iter(tasks)))
        else:
            await asyncio.gather(*(one(name) for name in tasks))
        states = [o.state for o in scope.outcomes.values()]
        if State.FAILED in states:
            state = State.FAILED
        elif State.CANCELED in states:
            state = State.CANCELED
        else:
            state = State.SUCCEEDED
        pending = next((o.pending for o in scope.outcomes.values() if o.pending), None)
        out_params, out_arts = self._dag_outputs(component.dag, scope.outcomes)
        failed = [(f'{prefix}{n}', o.error) for n, o in scope.outcomes.items() if o.state == State.FAILED]
        error = None
        if failed:
            name, why = failed[0]
            error = why if why and why.startswith('task ') else f'task {name} failed' + (f': {why}' if why else '')
        return Outcome(state, out_params, out_arts, error=error, pending=pending)

    @staticmethod
    def _dag_outputs(dag: Dag, outcomes: dict[str, Outcome]) -> tuple[dict, dict]:
        """A DAG's outputs: for each, the first selector whose producer has a value (dsl.OneOf
        lists several; a plain output one)."""
        params = {}
        for name, selectors in dag.output_parameters.items():
            for s in selectors:
                o = outcomes.get(s.producer)
                if o is not None and s.key in o.parameters:
                    params[name] = o.parameters[s.key]
                    break
        arts = {}
        for name, selectors in dag.output_artifacts.items():
            for s in selectors:
                o = outcomes.get(s.producer)
                if o is not None and o.artifacts.get(s.key):
                    arts[name] = o.artifacts[s.key]
                    break
        return params, arts

    # ------------------------------------------------------------------ one task of a DAG
    async def run_task(self, task: Task, scope: task_inputs.Scope) -> Outcome:
        """One task of a DAG: waits are done; now skipped, expanded (sub-DAG, loop) or run."""
        name = scope.prefix + task.key
        component = self.view.components[task.component]
        if self.cancelled:
            return self._end_new(name, task, State.CANCELED)
        if self.options.dry_run:
            unknown = prediction.pending_upstreams(task, scope)
            if unknown:
                return prediction.may_run(self, name, task, f'reads outputs of {", ".join(unknown)}, which would run')
        if task.strategy != COMPLETED_STRATEGY:
            blocked = [o for o in (scope.outcomes[u] for u in task.upstreams) if not o.state.ok]
            if blocked:
                state = State.CANCELED if any(o.state == State.CANCELED for o in blocked) else State.SKIPPED
                return self._end_new(name, task, state, reason='an upstream task did not succeed')
        exempt = frozenset([task.loop.item_input]) if task.loop else frozenset()
        # the task's own id before its inputs: dsl.PIPELINE_TASK_ID_PLACEHOLDER given as an
        # input value is this task's id, as KFP's driver resolves it (and its command line's)
        task_id = self.task_uuid()
        try:
            params, arts = task_inputs.resolve(task, component, scope, self.context(name, task_id),
                                               check_required=component.dag is None, exempt=exempt)
        except task_inputs.InputError as e:
            return self._end_new(name, task, State.FAILED, error=str(e))
        if task.condition:
            try:
                passed = evaluate_condition(task.condition, params)
            except ExpressionError as e:
                return self._end_new(name, task, State.FAILED, error=f'condition: {e}')
            if not passed:
                return self._end_new(name, task, State.SKIPPED, kind='condition', reason='its condition was false')
        if task.loop:
            return await self._run_loop(name, task, component, params, arts)
        if component.dag is not None:
            if task.retry is not None and task.retry.max_retries > 0:
                # the KFP backend long ignored it too (kubeflow/pipelines#11288); said, never silent
                self.warn_once(f'{name}: set_retry on a pipeline task is not applied here: its tasks run '
                               f'once each (set_retry on the tasks inside it retries them)')
            record = TaskRecord.of(name, task, 'dag', started=time.time())
            return self.end(record, await self.run_dag(component, params, arts, name + '/'))
        executor = self.view.executor_of(component)
        if executor is not None and executor.importer is not None:
            from localrunner.engine.importer import run_importer
            return await run_importer(self, name, task, executor.importer, params)
        if executor is None or executor.container is None:
            return self._end_new(name, task, State.FAILED, error=f'executor {component.executor_label}: only '
                                                                 f'container and importer executors exist in KFP v2 IR')
        return await ContainerTask(self, name, task, component, executor, params, arts, scope=scope,
                                   task_id=task_id).execute()

    async def _run_loop(self, name: str, task: Task, component: Component, params: dict, arts: dict) -> Outcome:
        record = TaskRecord.of(name, task, 'loop', started=time.time())
        loop = task.loop
        if not loop.over_artifacts:
            items = loop.raw_items if loop.raw_items is not None else params.get(loop.items_input)
            if isinstance(items, str):
                try:
                    items = json.loads(items)
                except ValueError:
                    items = None
            if not isinstance(items, list):
                return self.end(record, Outcome(State.FAILED, error=f'loop items are not a list: {str(items)[:80]!r}'))
        else:
            items = arts.get(loop.items_input, []) or []
            self.warn_once(f'{name}: ParallelFor over artifacts runs here, but the KFP cluster backend '
                           f'does not support it (parity warning)')
        item_is_artifact, item_input = loop.over_artifacts, loop.item_input
        gate = asyncio.Semaphore(loop.parallelism) if loop.parallelism > 0 else None

        async def iteration(index: int, item: Any) -> Outcome:
            p, a = dict(params), dict(arts)
            if item_is_artifact:
                a[item_input] = [item]
            else:
                p[item_input] = item
            if gate is None:
                return await self.run_dag(component, p, a, f'{name}.{index}/')
            async with gate:
                return await self.run_dag(component, p, a, f'{name}.{index}/')

        # the console counts a task towards its innermost loop: this loop's own tasks, then
        self.bus.emit(ev.LoopStarted(task=name, iterations=len(items),
                                     tasks=len(items) * self.count_leaves(component, nested_loops=False)))
        results = await asyncio.gather(*(iteration(i, item) for i, item in enumerate(items)))
        # dsl.Collected: each output of the body, gathered over the iterations
        collected_params = {out: [r.parameters[out] for r in results if out in r.parameters]
                            for out in component.dag.output_parameters}
        collected_arts: dict[str, list[Artifact]] = {out: [a for r in results for a in r.artifacts.get(out, [])]
                                                     for out in component.dag.output_artifacts}
        states = [r.state for r in results]
        state = State.FAILED if State.FAILED in states else State.CANCELED if State.CANCELED in states \
            else State.SUCCEEDED
        error = next((r.error for r in results if r.state == State.FAILED), None)
        pending = next((r.pending for r in results if r.pending), None)
        return self.end(record, Outcome(state, collected_params, collected_arts, error=error, pending=pending))

    def _end_new(self, name: str, task: Task, state: State, kind: Optional[str] = None,
                 error: Optional[str] = None, reason: Optional[str] = None) -> Outcome:
        """A task that ends before it starts (skipped, canceled, failed on its inputs)."""
        if kind is None:
            kind = self.task_kind(task.component)
        record = TaskRecord.of(name, task, kind, started=time.time(), reason=reason)
        outcome = self.end(record, Outcome(state, error=error))
        sub = self.view.components[task.component]
        if not record.leaf and sub.dag is not None and state in (State.SKIPPED, State.CANCELED):
            # its tasks never start, so never end: what counts tasks (a loop's progress) hears of them here
            leaves = self.count_leaves(sub, nested_loops=False)
            if leaves:
                self.bus.emit(self._end_event(record, outcome, tasks=leaves))
        return outcome

    def task_kind(self, comp_name: str) -> str:
        component = self.view.components[comp_name]
        if component.dag is not None:
            return 'dag'
        executor = self.view.executor_of(component)
        return 'importer' if executor is not None and executor.importer is not None else 'container'


def _being_canceled() -> bool:
    """Whether the running task has been asked to cancel (Python 3.11+ tells; before, no)."""
    cancelling = getattr(asyncio.current_task(), 'cancelling', None)
    return bool(cancelling and cancelling())


def log_tail(path: Optional[str], lines: int = 20) -> list[str]:
    """The last lines of a task's log (for a failure report); [] when it can't be read."""
    if not path:
        return []
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            return f.read().decode(errors='replace').splitlines()[-lines:]
    except OSError:
        return []
