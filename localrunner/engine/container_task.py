"""One executor task (a container or lightweight Python component), start to finish:

    prepare (folders, executor input, launch spec, key parts) -> action key
    -> cache in use? lookup: hit -> restore -> CACHED
    -> dry run? predict
    -> [same key in this run: one at a time] -> slot (cpu, memory, GPUs)
    -> [cross-process single flight on the key, lookup again] -> environment
    -> attempts with KFP's retry backoff -> outputs into the CAS -> record -> SUCCEEDED

Every ending goes through Run.end(). The key is built by caching.key_parts(), resources by
resources.resources_of(), kfp-kubernetes settings by k8s_local, paths by layout.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from typing import TYPE_CHECKING, Optional

from localrunner.backends.base import LaunchSpec, Mount, Resources, unread_lines
from localrunner.engine import events as ev
from localrunner.engine import executor_io, k8s_local
from localrunner.engine import inputs as task_inputs
from localrunner.engine import placement, prediction
from localrunner.engine.caching import action_key, canonical, canonical_key, custom_key_parts, key_parts
from localrunner.engine.model import Artifact, Outcome, State, TaskRecord
from localrunner.engine.placeholders import PlaceholderError, RunContext, resolve_argv, substitute
from localrunner.engine.resources import resources_of
from localrunner.engine.slots import GpuShortage
from localrunner.environments.python_env import lift_prologue
from localrunner.errors import LaunchError
from localrunner.layout import PathEscape, ensure_dirs, printable
from localrunner.spec.views import Component, Container, Executor, Retry, Task
from localrunner_cache import LockTimeout

if TYPE_CHECKING:
    from localrunner.engine.runtime import Run


class RunCanceled(Exception):
    """Raised at a wait point (a slot, an identical task, a retry backoff, another process's
    identical task) when the run is canceled: the task ends CANCELED there."""


_MAX_BACKOFF_S = 3600.0          # KFP caps backoffMaxDuration at one hour
_LOCK_SLICE_S = 0.5              # waiting for another process's identical task: re-check cancel this often


def retry_delays(retry: Optional[Retry]) -> list[float]:
    """Seconds to wait before each retry, as KFP defines set_retry's backoff
    (kfp/dsl/pipeline_task.py set_retry; the backend applies backoffDuration * factor^n,
    capped at backoffMaxDuration and at one hour)."""
    if retry is None:
        return []
    cap = min(retry.max_backoff_s if retry.max_backoff_s is not None else _MAX_BACKOFF_S, _MAX_BACKOFF_S)
    return [min(retry.backoff_s * (retry.factor ** n), cap) for n in range(retry.max_retries)]


def launch_spec(name: str, container: Container, executor_input: dict, ctx: RunContext, *, arts: dict, workdir: str,
                run_id: str, image_map: dict, resources: Resources, k8s: k8s_local.K8sEffect, platform: dict,
                extra_mounts: tuple = (), needs_image: Optional[str] = None, log_path: str = '',
                with_command: bool = True) -> LaunchSpec:
    """What a backend is handed for one attempt of a task (pure: no I/O). The one place a
    LaunchSpec is put together: a run (ContainerTask._prepare) and `localrunner render` both
    call it. The command (command_of); the env with the kfp-kubernetes env on top; inputs
    mounted read-only, the task's writable folder read-write. with_command=False leaves argv
    empty, for command_of to fill once the task is known to run: a cache hit never needs it
    (and {{$}} is the whole executor input, serialized)."""
    env = {name: substitute(value, executor_input, ctx) for name, value in container.env.items()}
    env.update(k8s.env)
    _no_nul(env.values(), 'its environment')
    python_env, _ = lift_prologue(list(container.command), list(container.args))
    mounts = [Mount(a.path, read_only=True) for lst in arts.values() for a in lst if a.path]
    mounts += [Mount(p, read_only=True) for p in extra_mounts]
    mounts.append(Mount(workdir, read_only=False))
    image = container.image
    return LaunchSpec(task=name, image=image_map.get(image, image),
                      argv=command_of(container, executor_input, ctx) if with_command else [],
                      env=env, workdir=workdir, log_path=log_path, python_env=python_env, mounts=mounts,
                      resources=resources, labels={'localrunner.run': run_id, 'localrunner.task': name, **k8s.labels},
                      volumes=dict(k8s.volumes), read_only_volumes=set(k8s.read_only), platform=platform,
                      needs_image=needs_image)


def command_of(container: Container, executor_input: dict, ctx: RunContext) -> list[str]:
    """The command a task runs: KFP's pip prologue lifted off (environments/python_env.py, it
    becomes the task's environment), the placeholders resolved."""
    _, argv_template = lift_prologue(list(container.command), list(container.args))
    return _no_nul(resolve_argv(argv_template, executor_input, ctx), 'its command line')


def _no_nul(values, where: str):
    """VALUES, when none holds a NUL byte (an input value can: an upstream's output); no
    process can be handed one in an argument or a variable: ValueError saying where."""
    for value in values:
        if isinstance(value, str) and '\0' in value:
            raise ValueError(f'an input value in {where} holds a NUL byte, which no process can be given: '
                             f"'{printable(value[:60])}'")
    return values


def _log_failed(spec: LaunchSpec, e: OSError) -> str:
    """An attempt whose log could not be written, as its error (not retried: the disk stays full)."""
    return f'cannot write its log {spec.log_path}: {e.strerror or e}'


class ContainerTask:
    def __init__(self, run: 'Run', name: str, task: Task, component: Component, executor: Executor, params: dict,
                 arts: dict[str, list[Artifact]], scope: Optional[task_inputs.Scope] = None,
                 task_id: Optional[str] = None):
        self.run = run
        self.name = name
        self.display = task.display_name or task.key
        self.task = task
        self.component = component
        self.label = executor.label
        self.container = executor.container
        self.params = executor_io.coerce_inputs(params, component.inputs.parameters)
        self.arts = arts
        # kfp-kubernetes settings name their parameters in the enclosing DAG (its inputs, its tasks' outputs)
        self.scope = scope or task_inputs.Scope({}, {}, {}, '')
        self.record = TaskRecord.of(name, task, 'container', display_name=self.display)
        self.task_id = task_id or run.task_uuid()       # the one its inputs were resolved with
        self.timeout_s: Optional[float] = None
        self.execution = None             # the attempt running (_run_attempt sets it, in its thread)

    def _ctx(self) -> RunContext:
        return self.run.context(self.name, self.task_id)

    def _end(self, state: State, error: Optional[str] = None, **outputs) -> Outcome:
        return self.run.end(self.record, Outcome(state, error=error, **outputs))

    # ------------------------------------------------------------------ main
    async def execute(self) -> Outcome:
        try:
            return await self._execute()
        except RunCanceled:               # canceled while waiting (slot, identical task, backoff)
            return self._end(State.CANCELED)

    async def _execute(self) -> Outcome:
        run = self.run
        self.record.started = time.time()
        run.register(self.record)
        try:
            self.layout = run.run_layout.task(self.name)
        except PathEscape as e:
            return self._end(State.FAILED, f'refused: {e}')
        self.record.task_dir = self.layout.dir
        image = self.container.image
        if image.startswith(k8s_local.CREATE_PVC_IMAGE) or image.startswith(k8s_local.DELETE_PVC_IMAGE):
            return self._pvc_operation(image)
        try:
            spec, parts = self._prepare()
        except PathEscape as e:            # a name (output, volume, PVC) that would leave the root
            return self._end(State.FAILED, f'refused: {e}')
        except (PlaceholderError, ValueError, executor_io.OutputError, OSError) as e:
            return self._end(State.FAILED, str(e))
        try:
            fingerprint = await self._environment(spec)          # may build the environment
        except LaunchError as e:
            # a build stopped by the run's cancel is not the task's failure
            return self._end(State.CANCELED if run.cancelled else State.FAILED, str(e))
        if fingerprint is None:           # a dry run builds nothing: what it would install decides
            self.record.prediction = prediction.MAY_RUN
            self.record.reason = 'its environment is not built on this machine yet (the key holds what it installs)'
            return self.run.end(self.record, Outcome(State.SUCCEEDED, pending=self.name))
        parts['environment'] = fingerprint
        parts = canonical(parts)          # once: the key, the remembered parts and the entry share it
        custom = self.task.cache_key
        key = action_key(custom_key_parts(custom, self.component, self.container)) if custom else canonical_key(parts)
        self.record.cache_key = key
        use_cache = run.cache.wants_cache(self.task.cache_enabled)
        if use_cache and not run.options.dry_run:
            # what explains a later miss: the last key that could have left an entry (a task
            # with caching off, or a --no-cache run, leaves none, and writes nothing to the cache)
            run.cache.remember(run.pipeline.name, self.name, key, parts, run.run_id, key_is_digest=not custom)

        if use_cache:
            served = await self._serve_from_cache(key)
            if served is not None:
                return served
        if run.options.dry_run:
            return self._predict_run(key, parts, use_cache)
        if not use_cache:
            # caching off: no single flight with an identical task either (KFP runs both)
            return await self._admitted(spec, parts, key, use_cache=False)
        lock = run.key_lock(key)                          # identical tasks in this run: one at a time
        if lock.locked() or run.cancelled:
            await run.unless_canceled(lock.acquire())
        else:
            await lock.acquire()                          # free: taken at once, nothing to cancel
        try:
            return await self._admitted(spec, parts, key, use_cache=True)
        finally:
            lock.release()

    async def _admitted(self, spec: LaunchSpec, parts: dict, key: str, use_cache: bool) -> Outcome:
        """Runs the task once its resources are granted; with the cache in use, under the
        cross-process single-flight lock on its key, looking it up once more there."""
        run = self.run
        local = not run.caps.remote            # a cluster schedules cpu, memory and GPUs itself
        if spec.resources.accelerator_count and not run.pool.gpu_ids and local:
            # no GPU on this machine and none declared: run on the CPU, say so
            run.warn_once(f'{self.name}: asks for {spec.resources.accelerator_count} '
                          f'{spec.resources.accelerator_type or "GPU"}; no GPU here (detected or '
                          f'declared with --gpus), running without one')
            spec.resources.accelerator_count = 0
        gpus = spec.resources.accelerator_count if local else 0
        try:
            run.pool.check(gpus)
        except GpuShortage as e:
            return self._end(State.FAILED, f'{e}')
        run.bus.emit(ev.TaskQueued(task=self.name))
        need = ((spec.resources.cpu_request or spec.resources.cpu_limit or 0.0) if local else 0.0,
                (spec.resources.memory_request or spec.resources.memory_limit or 0) if local else 0, gpus)
        # free now (the usual case below max_parallel): taken without a wait to make cancelable
        grant = None if run.cancelled else run.pool.try_acquire(*need)
        if grant is None:
            grant = await run.unless_canceled(run.pool.acquire(*need))
        if local:
            spec.resources.gpu_ids = grant.gpu_ids
        try:
            if not use_cache:
                return await self._attempts(spec, parts, key, record=False)
            flock = await self._cross_process_lock(key)      # other processes: single flight
            try:
                served = await self._serve_from_cache(key)
                if served is not None:
                    return served
                return await self._attempts(spec, parts, key, record=True)
            finally:
                flock.__exit__(None, None, None)      # a close: never blocks
        finally:
            await run.pool.release(grant)

    async def _cross_process_lock(self, key: str):
        """The entered flock on KEY, waited for in short slices so a cancel is not stuck
        behind another process's task."""
        run = self.run
        flock = run.cache.actions.lock(key, timeout=0)
        try:
            flock.__enter__()               # free (the usual case): taken here, no thread hop
            return flock
        except LockTimeout:
            pass
        while True:
            flock = run.cache.actions.lock(key, timeout=_LOCK_SLICE_S)
            try:
                await run.in_thread(flock.__enter__)
                return flock
            except LockTimeout:
                if run.cancelled:
                    raise RunCanceled() from None

    def _prepare(self) -> tuple[LaunchSpec, dict]:
        """The task's folders, executor input, launch spec and key parts."""
        run, layout = self.run, self.layout
        if os.path.lexists(layout.dir):             # a task folder of this run id: never mixed
            shutil.rmtree(layout.dir, ignore_errors=True)
        # its folders are made when it starts (_lay_out, off the event loop); a cache hit makes
        # only what it restores
        self.out_arts = executor_io.output_artifacts(self.component, layout)
        self.out_param_files = executor_io.output_parameter_files(self.component, layout)
        self.executor_input = executor_io.build(self.params, self.arts, self.out_arts, self.out_param_files,
                                                layout.executor_output)
        ctx = self._ctx()
        resources = resources_of(self.container, self.executor_input, ctx)
        lookup = lambda ref: task_inputs.parameter_value(ref, self.scope, ctx)[1]  # noqa: E731
        platform_config = run.pipeline.k8s_executor_config(self.label)
        if run.caps.remote:
            # a cluster backend applies the settings itself, with the cluster's own objects
            k8s = k8s_local.K8sEffect()
        else:
            k8s = k8s_local.apply(platform_config, lookup, run.options.k8s,
                                  pod_name=f'{run.run_id}-{self.task_id[:8]}', task=self.name,
                                  empty_dir=layout.empty_dir, pvc_folder=run.layout.pvc,
                                  private_dir=run.private_dir)
        self.timeout_s = k8s.timeout_s
        for message in k8s.warnings:
            run.warn(message, task=self.name)
        for key in k8s.ignored:
            run.warn_once(f'kfp-kubernetes setting {key} has no local effect (recorded only)')

        spec = launch_spec(self.name, self.container, self.executor_input, ctx, arts=self.arts, workdir=layout.out,
                           run_id=run.run_id, image_map=run.options.image_map, resources=resources, k8s=k8s,
                           platform=k8s_local.resolve_names(platform_config, lookup),
                           extra_mounts=run.options.extra_mounts, needs_image=run.image_needs.get(self.label),
                           with_command=False)
        image, env = self.container.image, spec.env
        self.caps = run.backend.capabilities_for(spec)
        if k8s.volumes and not self.caps.volumes:
            run.warn_once(f'{self.name}: mounts at {", ".join(sorted(k8s.volumes.values()))} need a container '
                          f'(--backend docker or auto); on this backend the task does not see them')
        self.collect = self._collect_from(spec)
        self.reads_secret = k8s.reads_secret
        parts = key_parts(image=image, command=self.container.command, args=self.container.args, env=env,
                          secret_env=k8s.secret_env, params=self.params,
                          artifacts={n: [a.key_form() for a in lst] for n, lst in sorted(self.arts.items())},
                          outputs=self.component.outputs.as_written,     # as written: the key hashes it
                          accelerator={'type': resources.accelerator_type, 'count': resources.accelerator_count},
                          volumes=list(k8s.volumes.values()), environment='',
                          # keyed under the cache's own key, read (or made) only for a task with a secret
                          secret_digest=run.cache.secret_digest,
                          volume_content=k8s.volume_content)
        return spec, parts

    def _collect_from(self, spec: LaunchSpec) -> executor_io.Collect:
        """Where this task's outputs may come from (docs/security.md). A task in a local
        container also gets a /tmp of its own, on the host under its task folder, so that
        KFP's Artifact.set_path('/tmp/...') is collected from what the task wrote there,
        never from the host's /tmp; its writable volumes (empty dirs, PVCs) count too."""
        if not self.caps.isolated:
            return executor_io.Collect(out=self.layout.out)
        if not self.caps.remote and '/tmp' not in spec.volumes.values():
            os.makedirs(self.layout.tmp(), exist_ok=True)
            spec.volumes[self.layout.tmp()] = '/tmp'
        mounted = {} if self.caps.remote else {
            target: host for host, target in spec.volumes.items() if target not in spec.read_only_volumes}
        return executor_io.Collect(out=self.layout.out, isolated=True, mounted=mounted)

    # ------------------------------------------------------------------ cache hit / dry run
    async def _serve_from_cache(self, key: str) -> Optional[Outcome]:
        """CACHED with the entry's outputs restored into this run, or None (a miss; an
        entry that turns out unusable is dropped and is a miss too). Looked up and restored
        in one hop to a worker thread."""
        run = self.run
        try:
            found = await run.in_batch(self._restore, key, looks_up=key)
        except Exception as e:           # a corrupt object is a miss, never a wrong result
            run.warn(f'cache entry for {self.name} unusable ({e}); running the task', task=self.name)
            run.cache.actions.delete(key)
            shutil.rmtree(os.path.join(self.layout.out, 'artifacts'), ignore_errors=True)
            return None
        if found is None:
            return None
        hit, arts = found
        self.record.cached_from = hit.producer
        if run.options.dry_run:
            self.record.prediction = prediction.CACHED
            self.record.reason = f'entry {key[:16]} from run {hit.producer.get("run", "?")}'
        return self._end(State.CACHED, parameters=hit.outputs.get('parameters', {}), artifacts=arts)

    def _restore(self, key: str) -> Optional[tuple]:
        """In a worker thread: (the entry, its artifacts materialized in this task's folder),
        or None for a miss. Raises when an object can't be restored (verified: never a
        wrong byte)."""
        run = self.run
        hit = run.cache.lookup(key, self.component.outputs.as_written)
        if hit is None:
            return None
        arts: dict[str, list[Artifact]] = {}
        for name, lst in hit.outputs.get('artifacts', {}).items():
            arts[name] = []
            for i, a in enumerate(lst):
                path = self.layout.artifact(name, i)
                # a dry run needs what downstream keys read (type, metadata, digest), not the bytes
                if a.get('digest') and not run.options.dry_run:
                    run.cache.cas.materialize(a['digest'], path, a.get('kind'))
                arts[name].append(Artifact(name=name, schema_title=a['type'], schema_version=a['version'],
                                           uri=path, metadata=a.get('metadata') or {},
                                           digest=a.get('digest'), kind=a.get('kind')))
        return hit, arts

    def _predict_run(self, key: str, parts: dict, use_cache: bool) -> Outcome:
        run = self.run
        previous = run.cache.previous(run.pipeline.name, self.name)
        if not use_cache:
            why = 'caching is off for this task'
        elif previous is None:
            why = 'never run before'
        elif previous['key'] == key:
            why = 'same key as the last run, but its result is gone or expired'
        else:
            why = prediction.describe_change(previous['parts'], parts)
        self.record.prediction, self.record.reason = prediction.WOULD_RUN, why
        return self.run.end(self.record, Outcome(State.SUCCEEDED, pending=self.name))

    # ------------------------------------------------------------------ running
    async def _attempts(self, spec: LaunchSpec, parts: dict, key: str, record: bool) -> Outcome:
        run = self.run
        delays = retry_delays(self.task.retry)
        try:
            spec.argv = command_of(self.container, self.executor_input, self._ctx())
        except (PlaceholderError, ValueError) as e:
            return self._end(State.FAILED, str(e))
        try:
            await self._environment(spec, prepare=True)
        except LaunchError as e:
            # a build stopped by the run's cancel is not the task's failure
            return self._end(State.CANCELED if run.cancelled else State.FAILED, str(e))
        attempt = 0
        while True:
            attempt += 1
            self.record.attempts = attempt
            try:
                spec.log_path = self.layout.log(attempt)
            except PathEscape as e:
                return self._end(State.FAILED, f'refused: {e}')
            self.record.logs.append(spec.log_path)
            if run.cancelled:
                return self._end(State.CANCELED)
            run.bus.emit(ev.TaskStarted(task=self.name, attempt=attempt, display_name=self.display))
            error, retryable, params = await self._one_attempt(spec, attempt, key, parts, record)
            if params is not None:
                return self._end(State.SUCCEEDED, parameters=params, artifacts=self.out_arts)
            if run.cancelled:
                return self._end(State.CANCELED)
            again = retryable and attempt <= len(delays)
            run.bus.emit(ev.AttemptFailed(task=self.name, attempt=attempt, error=error, retrying=again))
            if not again:
                if spec.needs_image and not self.caps.containers:
                    error = f'{error}; {placement.hint(spec.needs_image)}'
                return self._end(State.FAILED, error)
            delay = delays[attempt - 1]
            run.bus.emit(ev.TaskRetrying(task=self.name, attempt=attempt, error=error, delay_s=delay))
            await run.unless_canceled(asyncio.sleep(delay))

    async def _environment(self, spec: LaunchSpec, prepare: bool = False) -> Optional[str]:
        """The environment's fingerprint (which builds a missing environment: what it
        resolves to decides the key), or with prepare=True, the environment made ready to run
        (cheap once built). Build output becomes EnvBuilding events; a build is timed by
        EnvReady, so the summary can tell build time from task time. Both depend only on
        the image and the python environment (and where the task goes): asked once per run for
        each, not once per task (a ParallelFor of 1,000 makes one call, not 1,000 thread hops)."""
        run = self.run
        memo_key = ('prepare' if prepare else 'fingerprint', spec.image,
                    spec.python_env.key() if spec.python_env else None, spec.needs_image)
        answer = run.environments.get(memo_key)
        if answer is None:
            # the first task asks; the others of its stage (asking at the same moment) await it
            answer = run.environments[memo_key] = asyncio.ensure_future(self._ask_environment(spec, prepare))
            answer.add_done_callback(lambda done: self._keep_answer(memo_key, done, prepare))
        if answer.done():                 # asked before (every task of a stage but the first)
            return answer.result()
        # shielded: one waiter's cancel (its own Ctrl-C, a timeout) must not cancel the others' answer
        return await asyncio.shield(answer)

    def _keep_answer(self, memo_key: tuple, done: asyncio.Future, prepare: bool) -> None:
        """Only a real answer is kept: a failed build or a dry run's "not built" is asked again
        by the next task (each gets its own message)."""
        keep = not done.cancelled() and done.exception() is None and (prepare or done.result() is not None)
        if not keep and self.run.environments.get(memo_key) is done:
            del self.run.environments[memo_key]

    async def _ask_environment(self, spec: LaunchSpec, prepare: bool) -> Optional[str]:
        run = self.run
        began = time.time()
        building: list[bool] = []

        def on_env_line(line: str) -> None:
            building.append(True)
            run.bus.emit(ev.EnvBuilding(task=self.name, line=line))
        if prepare:
            await run.in_thread(run.backend.prepare, spec, on_env_line)
            result = None
        else:
            result = await run.in_thread(run.backend.environment_fingerprint, spec, on_env_line,
                                         not run.options.dry_run)
        if building:
            run.bus.emit(ev.EnvReady(task=self.name, seconds=time.time() - began, built=True))
        return result

    async def _one_attempt(self, spec: LaunchSpec, attempt: int, key: str, parts: dict,
                           record: bool) -> tuple[Optional[str], bool, Optional[dict]]:
        """One attempt: (error, retryable, output parameters once stored). Without a timeout it
        is one hop to a worker thread (_run_attempt: launched, waited for, its outputs stored);
        with one, the wait is a hop of its own, abandoned at the deadline."""
        run = self.run
        if self.timeout_s is None:
            self.execution = None
            try:
                return await run.in_thread(self._run_attempt, spec, attempt, key, parts, record)
            except asyncio.CancelledError:      # Ctrl-C: the process must not outlive the run
                run.cancelled = True            # one still being launched is stopped by track()
                if self.execution is not None:
                    run.stop(self.execution)
                raise
        try:
            execution = await run.in_thread(self._launch, spec, attempt)
        except LaunchError as e:
            return str(e), e.retryable, None
        run.track(execution)
        try:
            code = await asyncio.wait_for(run.in_thread(execution.wait), self.timeout_s)
        except asyncio.TimeoutError:            # first: it is an OSError too (3.11)
            run.stop(execution)
            return f'timed out after {self.timeout_s:g}s (kubernetes.set_timeout)', True, None
        except OSError as e:
            return _log_failed(spec, e), False, None
        except asyncio.CancelledError:          # Ctrl-C: the process must not outlive the run
            run.cancelled = True
            run.stop(execution)
            raise
        finally:
            run.executions.discard(execution)
        ended = self._ended_by(code)
        return ended if ended is not None else await run.in_batch(self._stored, key, parts, record)

    def _run_attempt(self, spec: LaunchSpec, attempt: int, key: str, parts: dict,
                     record: bool) -> tuple[Optional[str], bool, Optional[dict]]:
        """In a worker thread, the whole attempt in one hop (the thread would block on the
        wait anyway): launched, tracked (a run canceled meanwhile stops it), waited for and,
        on exit 0 in a run not canceled, its outputs stored."""
        run = self.run
        try:
            execution = self._launch(spec, attempt)
        except LaunchError as e:
            return str(e), e.retryable, None
        self.execution = execution
        run.track(execution)
        try:
            code = execution.wait()
        except OSError as e:            # its log could not be written (a full disk); the task is gone
            return _log_failed(spec, e), False, None
        finally:
            run.executions.discard(execution)
        ended = self._ended_by(code)
        return ended if ended is not None else self._stored(key, parts, record)

    def _ended_by(self, code: int) -> Optional[tuple[Optional[str], bool, None]]:
        """The attempt's outcome when its exit status decides it (a failure, or a run canceled
        meanwhile: nothing is stored); None when its outputs are to be read."""
        if code != 0:
            return f'exited with code {code}', True, None
        if self.run.cancelled:
            return None, False, None
        return None

    def _stored(self, key: str, parts: dict, record: bool) -> tuple[Optional[str], bool, Optional[dict]]:
        """_store's outcome as an attempt's: a missing or unreadable output is retryable,
        anything else (a full disk while storing) is not."""
        try:
            return None, False, self._store(key, parts, record)
        except (executor_io.OutputError, OSError) as e:
            return str(e), True, None
        except Exception as e:
            return f'storing outputs failed: {e}', False, None

    def _launch(self, spec: LaunchSpec, attempt: int):
        """In a worker thread: the attempt's folders laid out, then the backend's launch (one
        hop, so the event loop never waits on the file system for a task that starts)."""
        try:
            self._lay_out(attempt, spec)
        except PathEscape as e:
            raise LaunchError(f'refused: {e}') from None
        except OSError as e:                # e.g. a full disk
            raise LaunchError(f'cannot lay out the task folder: {e}') from None
        return self.run.backend.launch(spec, self._on_line if self.run.bus.wants(ev.TaskLog) else unread_lines)

    def _on_line(self, line: str) -> None:
        self.run.bus.emit(ev.TaskLog(task=self.name, line=line))

    def _lay_out(self, attempt: int, spec: LaunchSpec) -> None:
        """The task's folders for the attempt. The first also gets the executor input (kept
        beside the logs, for the record) and the logs folder. A later one gets a fresh out
        folder (and /tmp), as a retried pod starts afresh: nothing a failed attempt left
        counts, and no link it planted for this one is followed (rmtree never follows a link;
        a link in place of the folder is unlinked). The output folders exist before the task
        starts (KFP's launcher makes them too)."""
        if attempt == 1:
            ensure_dirs((self.layout.dir, self.layout.out, self.layout.logs_dir))
            with open(self.layout.executor_input, 'x') as f:
                f.write(json.dumps(self.executor_input))
        else:
            for folder in (self.layout.out, self.layout.tmp()):
                if os.path.islink(folder):
                    os.unlink(folder)
                elif os.path.isdir(folder):
                    shutil.rmtree(folder, ignore_errors=True)
            if self.layout.tmp() in spec.volumes:
                os.makedirs(self.layout.tmp(), exist_ok=True)
            os.makedirs(self.layout.out, exist_ok=True)
        folders = {os.path.dirname(a.path) for lst in self.out_arts.values() for a in lst}
        folders |= {os.path.dirname(p) for p in self.out_param_files.values()}
        ensure_dirs(sorted(folders))

    def _store(self, key: str, parts: dict, record: bool) -> dict:
        """In a worker thread, one hop: the task's outputs read (never through a link: a host
        file never enters the store), stored, and with `record` its entry written. Returns
        the output parameters."""
        run = self.run
        params = executor_io.read_outputs(self.component, self.out_arts, self.out_param_files,
                                          self.layout.executor_output, self.collect)
        digests = set()
        for name, lst in self.out_arts.items():
            for a in lst:
                if a.path:
                    with executor_io.readable(a.path, self.collect, f'output artifact {name!r}') as path:
                        # a canceled run stops the copy (gigabytes take seconds): it never waits on it
                        a.digest, a.kind = (run.cache.put_output(path, stop=lambda: run.cancelled) if path
                                            else (None, None))
                    if a.digest:
                        digests.add(a.digest)
        if record:          # caching off (IR, --no-cache, KFP_DISABLE_...): nothing is written
            outputs = {'parameters': params,
                       'artifacts': {n: [{'type': a.schema_title, 'version': a.schema_version,
                                          'metadata': a.metadata, 'digest': a.digest, 'kind': a.kind}
                                         for a in lst] for n, lst in self.out_arts.items()}}
            # a task handed a secret: its results stay on this machine unless the user shares them
            share = not self.reads_secret or run.options.cache.share_secrets
            run.cache.record(key, parts, outputs, digests,
                             {'run': run.run_id, 'task': self.name, 'time': time.time()}, share)
        return params

    # ------------------------------------------------------------------ kfp-kubernetes PVC ops
    def _pvc_operation(self, image: str) -> Outcome:
        run = self.run
        if run.caps.remote and not run.options.dry_run:
            # a claim made here would be a folder of this machine: a pod mounting it would wait forever
            return self._end(State.FAILED, 'kubernetes.CreatePVC/DeletePVC are not run on a cluster backend by '
                                           'localrunner: create the claim with kubectl (and mount it by name), '
                                           'or run this pipeline locally')
        if run.options.dry_run:
            # no folder is made or removed; CreatePVC's output (the claim's name) is known
            self.record.prediction, self.record.reason = prediction.WOULD_RUN, 'a PVC operation runs every time'
            if image.startswith(k8s_local.CREATE_PVC_IMAGE):
                return self._end(State.SUCCEEDED, parameters={'name': k8s_local.claim_name(self.params, run.run_id)})
            return self._end(State.SUCCEEDED)
        try:
            if image.startswith(k8s_local.CREATE_PVC_IMAGE):
                name = k8s_local.create_pvc(self.params, run.options.k8s, run.run_id, run.layout.pvc)
                return self._end(State.SUCCEEDED, parameters={'name': name})
            k8s_local.delete_pvc(self.params, run.options.k8s, run.layout.pvc)
        except (PathEscape, ValueError) as e:
            return self._end(State.FAILED, f'refused: {e}')
        return self._end(State.SUCCEEDED)
