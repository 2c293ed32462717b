"""One executor task (a container or lightweight Python component), start to finish:
resolve -> action key -> cache hit? materialize : [slot -> single-flight -> environment ->
attempts with retries -> outputs into the CAS -> record] -> publish outputs."""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from typing import TYPE_CHECKING, Any, Optional

from localrunner.backends.base import LaunchError, LaunchSpec, Mount, Resources
from localrunner.engine import executor_io, k8s_local
from localrunner.engine import inputs as task_inputs
from localrunner.engine.caching import action_key, canonical, parse_duration
from localrunner.engine.model import WOULD_RUN, Artifact, Outcome, State, TaskRecord
from localrunner.engine.placeholders import PlaceholderError, RunContext, resolve_argv, substitute
from localrunner.engine.slots import GpuShortage
from localrunner.environments.python_env import lift_prologue

if TYPE_CHECKING:
    from localrunner.engine.runtime import Run

_MEMORY_UNITS = {'': 1, 'k': 10**3, 'm': 10**6, 'g': 10**9, 't': 10**12,
                 'ki': 2**10, 'mi': 2**20, 'gi': 2**30, 'ti': 2**40}
_MAX_BACKOFF_S = 3600.0          # KFP caps backoffMaxDuration at one hour
LOG_TAIL_LINES = 20


def parse_memory(text: Any) -> Optional[int]:
    if text in (None, ''):
        return None
    m = re.fullmatch(r'\s*([0-9.]+)\s*([a-zA-Z]*)\s*', str(text))
    if not m or m.group(2).lower() not in _MEMORY_UNITS:
        raise ValueError(f'not a memory quantity: {text!r}')
    return int(float(m.group(1)) * _MEMORY_UNITS[m.group(2).lower()])


def parse_cpu(text: Any) -> Optional[float]:
    if text in (None, ''):
        return None
    t = str(text).strip()
    if t.endswith('m'):
        return float(t[:-1]) / 1000
    return float(t)


def resources_of(container: dict, executor_input: dict, ctx: RunContext) -> Resources:
    r = container.get('resources', {}) or {}

    def value(string_key: str, number_key: str, unit_giga: bool = False):
        raw = r.get(string_key)
        if isinstance(raw, str) and '{{$' in raw:
            raw = substitute(raw, executor_input, ctx)
        if raw not in (None, ''):
            return raw
        number = r.get(number_key)
        if number is None:
            return None
        return f'{number}G' if unit_giga else number

    cpu_limit = parse_cpu(value('resourceCpuLimit', 'cpuLimit'))
    cpu_request = parse_cpu(value('resourceCpuRequest', 'cpuRequest'))
    mem_limit = parse_memory(value('resourceMemoryLimit', 'memoryLimit', unit_giga=True))
    mem_request = parse_memory(value('resourceMemoryRequest', 'memoryRequest', unit_giga=True))
    acc = r.get('accelerator', {}) or {}
    acc_type = acc.get('resourceType') or acc.get('type')
    if isinstance(acc_type, str) and '{{$' in acc_type:
        acc_type = substitute(acc_type, executor_input, ctx)
    count = acc.get('resourceCount', acc.get('count'))
    if isinstance(count, str) and '{{$' in count:
        count = substitute(count, executor_input, ctx)
    count = int(float(count)) if count not in (None, '') else (1 if acc_type else 0)
    return Resources(cpu_limit=cpu_limit, memory_limit=mem_limit, cpu_request=cpu_request,
                     memory_request=mem_request, accelerator_type=acc_type or None,
                     accelerator_count=count if acc_type else 0)


def retry_delays(policy: dict) -> list[float]:
    """Seconds to wait before each retry, as KFP defines set_retry's backoff."""
    retries = int(policy.get('maxRetryCount', 0) or 0)
    base = parse_duration(policy['backoffDuration']) if policy.get('backoffDuration') else 0.0
    factor = float(policy['backoffFactor']) if 'backoffFactor' in policy else 2.0
    cap = parse_duration(str(policy['backoffMaxDuration'])) if policy.get('backoffMaxDuration') else _MAX_BACKOFF_S
    cap = min(cap, _MAX_BACKOFF_S)
    return [min(base * (factor ** n), cap) for n in range(retries)]


class ContainerTask:
    def __init__(self, run: 'Run', name: str, display: str, task: dict, component_name: str,
                 component: dict, executor_label: str, params: dict, arts: dict[str, list[Artifact]],
                 scope: Optional[task_inputs.Scope] = None):
        self.run = run
        self.name = name
        self.display = display
        self.task = task
        self.component_name = component_name
        self.component = component
        self.label = executor_label
        self.container = run.pipeline.executors[executor_label]['container']
        self.params = executor_io.coerce_inputs(
            params, component.get('inputDefinitions', {}).get('parameters', {}))
        self.arts = arts
        # kfp-kubernetes settings name their parameters in the enclosing DAG (its inputs, its tasks' outputs)
        self.scope = scope or task_inputs.Scope({}, {}, {}, '')
        self.task_dir = os.path.join(run.run_dir, 'tasks', name)
        self.record = TaskRecord(name=name, display_name=display, state=State.SUCCEEDED, kind='container',
                                 component=component_name, task_dir=self.task_dir)
        self.task_id = str(uuid.uuid4())
        self.timeout_s: Optional[float] = None

    # ------------------------------------------------------------------ helpers
    def _ctx(self) -> RunContext:
        return self.run.context(self.name, self.task_id)

    def _fail(self, message: str) -> Outcome:
        self.record.state = State.FAILED
        self.record.error = message
        self.record.finished = time.time()
        outcome = Outcome(State.FAILED, error=message)
        self.run.finish(self.record, outcome)
        return outcome

    # ------------------------------------------------------------------ main
    async def execute(self) -> Outcome:
        run = self.run
        self.record.started = time.time()
        run.register(self.record)
        image = self.container.get('image', '')
        if image.startswith(k8s_local.CREATE_PVC_IMAGE) or image.startswith(k8s_local.DELETE_PVC_IMAGE):
            return self._pvc_operation(image)
        try:
            prepared = self._prepare()
        except (PlaceholderError, ValueError, executor_io.OutputError) as e:
            return self._fail(str(e))
        spec, parts = prepared
        try:
            fingerprint = await run.in_thread(run.backend.environment_fingerprint, spec)
        except LaunchError as e:
            return self._fail(str(e))
        parts['environment'] = fingerprint
        options = self.task.get('cachingOptions') or {}
        custom = options.get('cacheKey')
        # set_caching_options(cache_key=...): as on KFP, the user's key replaces the computed one
        key = action_key({'schema': 1, 'custom_cache_key': custom}) if custom else action_key(parts)
        self.record.cache_key = key
        use_cache = run.cache.wants_cache(options)
        if not run.options.dry_run:
            run.cache.remember(run.pipeline.name, self.name, key, parts, run.run_id)

        if use_cache:
            hit = await run.in_thread(run.cache.lookup, key)
            served = await self._serve_hit(hit, key) if hit is not None else None
            if served is not None:
                return served
        if run.options.dry_run:
            return self._explain_miss(key, parts, run.cache.previous(run.pipeline.name, self.name), use_cache)
        if not use_cache:
            # caching off: no single flight with an identical task either (KFP runs both)
            return await self._admitted(spec, parts, key, use_cache=False)
        async with run.key_lock(key):                     # identical tasks in this run: one at a time
            return await self._admitted(spec, parts, key, use_cache=True)

    async def _admitted(self, spec: LaunchSpec, parts: dict, key: str, use_cache: bool) -> Outcome:
        """Runs the task once its resources are granted; with the cache in use, under the
        cross-process single-flight lock on its key, looking it up once more there."""
        run = self.run
        if spec.resources.accelerator_count and not run.pool.gpu_ids and not run.backend_is_remote:
            # no GPU on this machine and none declared: run on the CPU, say so
            run.warn_once(f'{self.name}: asks for {spec.resources.accelerator_count} '
                          f'{spec.resources.accelerator_type or "GPU"}; no GPU here (detected or '
                          f'declared with --gpus), running without one')
            spec.resources.accelerator_count = 0
        local = not run.backend_is_remote      # a cluster schedules cpu, memory and GPUs itself
        gpus = spec.resources.accelerator_count if local else 0
        try:
            run.pool.check(gpus)
        except GpuShortage as e:
            return self._fail(f'{e}')
        grant = await run.pool.acquire(
            (spec.resources.cpu_request or spec.resources.cpu_limit or 0.0) if local else 0.0,
            (spec.resources.memory_request or spec.resources.memory_limit or 0) if local else 0, gpus)
        if local:
            spec.resources.gpu_ids = grant.gpu_ids
        try:
            if not use_cache:
                return await self._attempts(spec, parts, key, record=False)
            flock = run.cache.actions.lock(key)
            await run.in_thread(flock.__enter__)      # other processes: single flight
            try:
                hit = await run.in_thread(run.cache.lookup, key)
                served = await self._serve_hit(hit, key) if hit is not None else None
                if served is not None:
                    return served
                return await self._attempts(spec, parts, key, record=True)
            finally:
                await run.in_thread(flock.__exit__, None, None, None)
        finally:
            await run.pool.release(grant)

    def _prepare(self) -> tuple[LaunchSpec, dict]:
        run = self.run
        shutil.rmtree(self.task_dir, ignore_errors=True)
        os.makedirs(self.task_dir, exist_ok=True)
        self.out_arts = executor_io.output_artifacts(self.component, self.task_dir)
        self.out_param_files = executor_io.output_parameter_files(self.component, self.task_dir)
        self.output_file = os.path.join(self.task_dir, 'executor_output.json')
        self.executor_input = executor_io.build(self.params, self.arts, self.out_arts, self.out_param_files,
                                                self.output_file)
        ctx = self._ctx()
        resources = resources_of(self.container, self.executor_input, ctx)
        lookup = lambda ref: task_inputs.parameter_value(ref, self.scope, ctx)[1]  # noqa: E731
        platform_config = run.pipeline.k8s_executor_config(self.label)
        if run.backend_is_remote:
            # a cluster backend applies the settings itself, with the cluster's own objects
            k8s = k8s_local.K8sEffect()
        else:
            k8s = k8s_local.apply(platform_config, lookup, run.options.k8s,
                                  pod_name=f'{run.run_id}-{self.task_id[:8]}', task=self.name,
                                  scratch_dir=self.task_dir)
        self.timeout_s = k8s.timeout_s
        for message in k8s.warnings:
            run.warn(message, task=self.name)
        if k8s.volumes and not run.backend_mounts_volumes:
            run.warn_once(f'{self.name}: mounts at {", ".join(sorted(k8s.volumes.values()))} need a container '
                          f'(--backend docker); on this backend the task does not see them')
        for key in k8s.ignored:
            run.warn_once(f'kfp-kubernetes setting {key} has no local effect (recorded only)')

        env = {}
        for item in self.container.get('env', []) or []:
            env[item['name']] = substitute(str(item.get('value', '')), self.executor_input, ctx)
        env.update(k8s.env)
        python_env, argv_template = lift_prologue(self.container.get('command', []) or [],
                                                  self.container.get('args', []) or [])
        argv = resolve_argv(argv_template, self.executor_input, ctx)

        mounts = [Mount(a.path, read_only=True) for lst in self.arts.values() for a in lst if a.path]
        mounts.append(Mount(self.task_dir, read_only=False))
        image = self.container.get('image', '')
        spec = LaunchSpec(task=self.name, image=run.options.image_map.get(image, image), argv=argv, env=env,
                          workdir=self.task_dir, log_path='', python_env=python_env, mounts=mounts,
                          resources=resources, labels={'localrunner.run': run.run_id, 'localrunner.task': self.name,
                                                       **k8s.labels},
                          volumes=k8s.volumes, platform=k8s_local.resolve_names(platform_config, lookup))
        parts = {
            'schema': 1,
            'executor': {'image': self.container.get('image', ''),
                         'command': self.container.get('command', []),
                         'args': self.container.get('args', []),
                         # key parts are stored (and shared through a remote cache): a secret
                         # enters as a SHA-256 of its value (xxh3 is no one-way function),
                         # which still changes the key when the secret changes
                         'env': {k: f'secret-sha256:{hashlib.sha256(v.encode()).hexdigest()}'
                                 if k in k8s.secret_env else v for k, v in env.items()}},
            'inputs': {'parameters': canonical(self.params),
                       'artifacts': {n: [a.key_form() for a in lst] for n, lst in sorted(self.arts.items())}},
            'outputs': self.component.get('outputDefinitions', {}),
            'accelerator': {'type': resources.accelerator_type, 'count': resources.accelerator_count},
            'volumes': sorted(k8s.volumes.values()),
        }
        return spec, parts

    # ------------------------------------------------------------------ cache hit / explain
    async def _serve_hit(self, hit, key: str) -> Optional[Outcome]:
        """Materializes a cached result; None when it turns out unusable (then it is a miss)."""
        run = self.run

        def materialize() -> dict[str, list[Artifact]]:
            arts = {}
            for name, lst in hit.outputs.get('artifacts', {}).items():
                arts[name] = []
                for i, a in enumerate(lst):
                    uri = os.path.join(self.task_dir, 'artifacts', name if i == 0 else f'{name}.{i}')
                    if a.get('digest'):
                        run.cache.cas.materialize(a['digest'], uri, a.get('kind'))
                    arts[name].append(Artifact(name=name, schema_title=a['type'], schema_version=a['version'],
                                               uri=uri, metadata=a.get('metadata') or {},
                                               digest=a.get('digest'), kind=a.get('kind')))
            return arts

        try:
            arts = await run.in_thread(materialize)
        except Exception as e:           # a corrupt object is a miss, never a wrong result
            run.warn(f'cache entry for {self.name} unusable ({e}); running the task', task=self.name)
            run.cache.actions.delete(key)
            shutil.rmtree(os.path.join(self.task_dir, 'artifacts'), ignore_errors=True)
            return None
        outcome = Outcome(State.CACHED, parameters=hit.outputs.get('parameters', {}), artifacts=arts)
        self.record.state = State.CACHED
        self.record.cached_from = hit.producer
        self.record.finished = time.time()
        run.bus.emit('task_cached', self.name, cached_from=hit.producer, key=key)
        run.finish(self.record, outcome)
        return outcome

    def _explain_miss(self, key: str, parts: dict, previous: Optional[dict], use_cache: bool) -> Outcome:
        if not use_cache:
            why = 'caching is off for this task'
        elif previous is None:
            why = 'never run before'
        elif previous['key'] == key:
            why = 'same key as the last run, but its result is gone or expired'
        else:
            from localrunner.engine.caching import diff_parts
            changed = diff_parts(previous['parts'], canonical(parts))
            why = 'changed: ' + ', '.join(changed[:6])
        self.record.state = State.SKIPPED
        self.record.error = None
        self.record.finished = time.time()
        self.run.bus.emit('task_would_run', self.name, key=key, why=why)
        self.record.logs = [f'would run: {why}']
        outcome = Outcome(State.SKIPPED, error=WOULD_RUN)
        self.run.finish(self.record, outcome)
        return outcome

    # ------------------------------------------------------------------ running
    async def _attempts(self, spec: LaunchSpec, parts: dict, key: str, record: bool) -> Outcome:
        run = self.run
        delays = retry_delays(self.task.get('retryPolicy', {}) or {})
        with open(os.path.join(self.task_dir, 'executor_input.json'), 'w') as f:
            json.dump(self.executor_input, f, indent=1)
        try:
            await run.in_thread(run.backend.prepare, spec, lambda line: run.bus.emit('environment', self.name,
                                                                                     line=line))
        except LaunchError as e:
            return self._fail(str(e))
        attempt = 0
        while True:
            attempt += 1
            self.record.attempts = attempt
            attempt_dir = os.path.join(self.task_dir, f'attempt-{attempt}')
            os.makedirs(attempt_dir, exist_ok=True)
            spec.log_path = os.path.join(attempt_dir, 'log.txt')
            self.record.logs.append(spec.log_path)
            self._clear_outputs()
            if run.cancelled:
                return self._cancel()
            run.bus.emit('task_started', self.name, attempt=attempt, display_name=self.display)
            error, retryable = await self._one_attempt(spec)
            if run.cancelled:
                return self._cancel()
            if error is None:
                try:
                    return await self._collect(key, parts, record)
                except (executor_io.OutputError, OSError) as e:
                    error, retryable = str(e), True
                except Exception as e:         # e.g. a full disk while storing
                    error, retryable = f'storing outputs failed: {e}', False
            if not retryable or attempt > len(delays):
                tail = self._log_tail(spec.log_path)
                self.record.error = error
                run.bus.emit('task_failed', self.name, error=error, log_tail=tail, log_path=spec.log_path,
                             attempts=attempt)
                return self._fail(error)
            delay = delays[attempt - 1]
            run.bus.emit('task_retry', self.name, attempt=attempt, error=error, delay_s=delay)
            await asyncio.sleep(delay)

    async def _one_attempt(self, spec: LaunchSpec) -> tuple[Optional[str], bool]:
        run = self.run
        try:
            execution = await run.in_thread(run.backend.launch, spec,
                                            lambda line: run.bus.emit('log', self.name, line=line))
        except LaunchError as e:
            return str(e), e.retryable
        run.executions.add(execution)
        if run.cancelled:        # cancelled while it was being launched: cancel() did not see it
            run.stop(execution)
        try:
            code = await asyncio.wait_for(run.in_thread(execution.wait), self.timeout_s)
        except asyncio.TimeoutError:
            run.stop(execution)
            return f'timed out after {self.timeout_s:g}s (kubernetes.set_timeout)', True
        except asyncio.CancelledError:          # Ctrl-C: the process must not outlive the run
            run.cancelled = True
            run.stop(execution)
            raise
        finally:
            run.executions.discard(execution)
        if code != 0:
            return f'exited with code {code}', True
        return None, False

    def _clear_outputs(self) -> None:
        for sub in ('artifacts', 'parameters'):
            shutil.rmtree(os.path.join(self.task_dir, sub), ignore_errors=True)
        if os.path.exists(self.output_file):
            os.remove(self.output_file)
        for lst in self.out_arts.values():
            for a in lst:
                os.makedirs(os.path.dirname(a.path), exist_ok=True)
        for path in self.out_param_files.values():
            os.makedirs(os.path.dirname(path), exist_ok=True)

    async def _collect(self, key: str, parts: dict, record: bool) -> Outcome:
        run = self.run
        params = executor_io.read_outputs(self.component, self.out_arts, self.out_param_files, self.output_file)

        def store() -> set[str]:
            digests = set()
            for lst in self.out_arts.values():
                for a in lst:
                    if a.path:
                        a.digest, a.kind = run.cache.put_output(a.path)
                        if a.digest:
                            digests.add(a.digest)
            return digests

        digests = await run.in_thread(store)
        outcome = Outcome(State.SUCCEEDED, parameters=params, artifacts=self.out_arts)
        if record:          # caching off (IR, --no-cache, KFP_DISABLE_...): nothing is written
            outputs = {'parameters': params,
                       'artifacts': {n: [{'type': a.schema_title, 'version': a.schema_version,
                                          'metadata': a.metadata, 'digest': a.digest, 'kind': a.kind}
                                         for a in lst] for n, lst in self.out_arts.items()}}
            await run.in_thread(run.cache.record, key, parts, outputs, digests,
                                {'run': run.run_id, 'task': self.name, 'time': time.time()})
        self.record.state = State.SUCCEEDED
        self.record.finished = time.time()
        run.bus.emit('task_succeeded', self.name, duration_s=self.record.finished - self.record.started)
        run.finish(self.record, outcome)
        return outcome

    def _cancel(self) -> Outcome:
        self.record.state = State.CANCELED
        self.record.finished = time.time()
        self.run.bus.emit('task_canceled', self.name)
        self.run.finish(self.record, Outcome(State.CANCELED))
        return Outcome(State.CANCELED)

    @staticmethod
    def _log_tail(path: str) -> list[str]:
        try:
            with open(path, errors='replace') as f:
                return f.read().splitlines()[-LOG_TAIL_LINES:]
        except OSError:
            return []

    # ------------------------------------------------------------------ kfp-kubernetes PVC ops
    def _pvc_operation(self, image: str) -> Outcome:
        run = self.run
        os.makedirs(self.task_dir, exist_ok=True)
        if image.startswith(k8s_local.CREATE_PVC_IMAGE):
            name = k8s_local.create_pvc(self.params, run.options.k8s, run.run_id)
            outcome = Outcome(State.SUCCEEDED, parameters={'name': name})
        else:
            k8s_local.delete_pvc(self.params, run.options.k8s)
            outcome = Outcome(State.SUCCEEDED)
        self.record.state = State.SUCCEEDED
        self.record.finished = time.time()
        run.bus.emit('task_succeeded', self.name, duration_s=0.0)
        run.finish(self.record, outcome)
        return outcome
