"""Typed results of a test run: parameters as Python values, artifacts with paths, metrics, logs."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterator, Optional

from localrunner.engine.model import Artifact, State, TaskRecord
from localrunner.engine.runtime import RunResult

METRICS_TITLE = 'system.Metrics'
TRACEBACK = 'Traceback (most recent call last):'
LOG_LINES = 60


class LocalRunnerFailure(AssertionError):
    """A run did not succeed. The message names each failed task with its error, and the
    component's traceback and the end of its log."""


@dataclasses.dataclass
class OutputArtifact:
    """An artifact a task produced (or a pipeline returned)."""
    name: str
    type: str                       # schema title, e.g. 'system.Dataset'
    schema_version: str
    uri: str
    path: Optional[str]
    metadata: dict
    digest: Optional[str] = None

    @classmethod
    def of(cls, a: Artifact) -> 'OutputArtifact':
        return cls(name=a.name, type=a.schema_title, schema_version=a.schema_version, uri=a.uri, path=a.path,
                   metadata=dict(a.metadata or {}), digest=a.digest)

    @property
    def schema_title(self) -> str:
        return self.type

    def exists(self) -> bool:
        return bool(self.path) and os.path.exists(self.path)

    def _local(self) -> str:
        if not self.path:
            raise ValueError(f'artifact {self.name} ({self.uri}) is not a local file')
        return self.path

    def read_bytes(self) -> bytes:
        with open(self._local(), 'rb') as f:
            return f.read()

    def read_text(self, encoding: str = 'utf-8') -> str:
        with open(self._local(), encoding=encoding) as f:
            return f.read()

    def read_json(self) -> Any:
        return json.loads(self.read_text())

    def __fspath__(self) -> str:
        return self._local()


class Outputs(dict):
    """A dict of outputs whose missing keys explain themselves: the run's failure when it
    failed, else the names that do exist."""

    def __init__(self, data: dict, owner: 'PipelineResult', what: str):
        super().__init__(data)
        self._owner = owner
        self._what = what

    def __missing__(self, key):
        __tracebackhide__ = True
        if not self._owner.succeeded:
            raise self._owner.failure(f'{self._what} {key!r} is missing because the run {self._owner.state.value}')
        raise KeyError(f'{self._what} {key!r}: there is none; {self._what}s are: {", ".join(sorted(self)) or "(none)"}')


def _metrics(artifacts: dict[str, list[Artifact]]) -> dict:
    merged: dict = {}
    for lst in artifacts.values():
        for a in lst:
            if a.schema_title == METRICS_TITLE:
                merged.update({k: v for k, v in (a.metadata or {}).items() if k != 'display_name'})
    return merged


def _without_executor_input(lines: list[str]) -> list[str]:
    """KFP's executor logs the whole executor input as JSON before running the function:
    noise in a failure report (the inputs are in executor_input.json)."""
    out, skipping = [], False
    for line in lines:
        if not skipping and line.startswith('[KFP Executor') and line.rstrip().endswith('Got executor_input:'):
            skipping = True
            continue
        if skipping:
            if line.startswith('}'):
                skipping = False
            continue
        if line.startswith('[KFP Executor') and ('Looking for component' in line or 'Loading KFP component' in line):
            continue
        out.append(line)
    return out


def _read(path: str) -> str:
    try:
        with open(path, encoding='utf-8', errors='replace') as f:
            return f.read()
    except OSError:
        return ''


@dataclasses.dataclass
class TaskResult:
    """One task of a run (its name is the '/'-joined path of task keys, e.g. condition-1/deploy-model)."""
    name: str
    display_name: str
    state: State
    kind: str
    component: str
    outputs: dict
    artifacts: dict
    artifact_lists: dict
    metrics: dict
    error: Optional[str]
    log_paths: list
    attempts: int
    cached_from: Optional[dict]
    duration_s: Optional[float]
    task_dir: Optional[str]

    @classmethod
    def of(cls, r: TaskRecord) -> 'TaskResult':
        out = r.outputs
        arts = out.artifacts if out else {}
        lists = {k: [OutputArtifact.of(a) for a in v] for k, v in arts.items()}
        return cls(name=r.name, display_name=r.display_name, state=r.state, kind=r.kind, component=r.component,
                   outputs=dict(out.parameters) if out else {},
                   artifacts={k: v[0] for k, v in lists.items() if v}, artifact_lists=lists,
                   metrics=_metrics(arts), error=r.error, log_paths=[p for p in r.logs if os.path.isabs(p)],
                   attempts=r.attempts, cached_from=r.cached_from,
                   duration_s=(r.finished - r.started) if r.started and r.finished else None, task_dir=r.task_dir)

    @property
    def succeeded(self) -> bool:
        return self.state.ok

    @property
    def cached(self) -> bool:
        return self.state == State.CACHED

    @property
    def output(self) -> Any:
        return self.outputs['Output']

    @property
    def logs(self) -> str:
        """The task's log (stdout and stderr); every attempt's, when it was retried. Empty
        for a cache hit (nothing ran)."""
        texts = [_read(p) for p in self.log_paths]
        if len(texts) <= 1:
            return texts[0] if texts else ''
        return ''.join(f'--- attempt {i} ---\n{t}' for i, t in enumerate(texts, 1))

    def failure_detail(self, lines: int = LOG_LINES) -> str:
        """Error, traceback and the end of the log of a failed task (KFP's executor-input dump
        left out)."""
        text = f'task {self.name} {self.state.value}: {self.error or "(no error recorded)"}'
        log = _read(self.log_paths[-1]) if self.log_paths else ''
        if not log.strip():
            return text
        all_lines = log.rstrip('\n').splitlines()
        shown = _without_executor_input(all_lines)
        start = max((i for i, line in enumerate(shown) if line.startswith(TRACEBACK)), default=-1)
        if start >= 0:
            before, tb = shown[:start][-10:], shown[start:]
            if len(tb) > lines:
                tb = tb[:lines // 2] + ['...'] + tb[-(lines // 2):]
            shown = before + tb
        else:
            shown = shown[-lines:]
        text += f'\nlog: {self.log_paths[-1]}'
        return text + '\n' + '\n'.join('  | ' + line for line in shown)

    def __repr__(self) -> str:
        extra = f': {self.error}' if self.error else ''
        return f'<TaskResult {self.name} {self.state.value}{extra}>'


class PipelineResult:
    """The result of running a pipeline: state, outputs (parameters as Python values),
    artifacts, per-task results, metrics by task, logs."""

    def __init__(self, run: RunResult, environment_log: Optional[list] = None, backend: str = 'subprocess'):
        self.raw = run
        self.run_id = run.run_id
        self.pipeline = run.pipeline
        self.state: State = run.state
        self.run_dir = run.run_dir
        self.backend = backend
        self.warnings = list(run.warnings)
        self.environment_log: list[str] = list(environment_log or [])
        self.tasks: dict[str, TaskResult] = {r.name: TaskResult.of(r) for r in run.records}
        self.outputs = Outputs(dict(run.outputs.parameters), self, 'output parameter')
        self.artifact_lists = {k: [OutputArtifact.of(a) for a in v] for k, v in run.outputs.artifacts.items()}
        self.artifacts = Outputs({k: v[0] for k, v in self.artifact_lists.items() if v}, self, 'output artifact')

    # ------------------------------------------------------------------ convenience
    @property
    def succeeded(self) -> bool:
        return self.state == State.SUCCEEDED

    @property
    def output(self) -> Any:
        """The single output named 'Output' (a function's return value)."""
        __tracebackhide__ = True
        return self.outputs['Output']

    @property
    def leaf_tasks(self) -> dict[str, TaskResult]:
        return {n: t for n, t in self.tasks.items() if t.kind in ('container', 'importer', 'internal')}

    @property
    def metrics(self) -> dict[str, dict]:
        """{task name: {metric: value}} for every task that logged metrics (system.Metrics)."""
        return {n: t.metrics for n, t in self.tasks.items() if t.metrics and t.kind != 'dag'
                and t.kind not in ('loop', 'condition')}

    @property
    def logs(self) -> str:
        """Every task's log, each under a '=== task ===' header, in the order tasks started."""
        return ''.join(f'=== {t.name} ===\n{t.logs}' for t in self.leaf_tasks.values() if t.log_paths)

    @property
    def failed_tasks(self) -> list[TaskResult]:
        leaves = [t for t in self.leaf_tasks.values() if t.state == State.FAILED]
        return leaves or [t for t in self.tasks.values() if t.state == State.FAILED]

    def failure_report(self) -> str:
        head = f'{self.pipeline} {self.state.value} (run {self.run_id}, backend {self.backend}, run dir {self.run_dir})'
        parts = [head] + [t.failure_detail() for t in self.failed_tasks]
        if self.state == State.CANCELED and not self.failed_tasks:
            parts.append('the run was canceled')
        return '\n'.join(parts)

    def failure(self, prefix: str = '') -> LocalRunnerFailure:
        return LocalRunnerFailure((prefix + '\n' if prefix else '') + self.failure_report())

    def raise_for_state(self) -> 'PipelineResult':
        """Raises LocalRunnerFailure (an AssertionError) with the failed tasks' errors,
        tracebacks and logs unless the run succeeded; returns self otherwise."""
        __tracebackhide__ = True
        if not self.succeeded:
            raise self.failure()
        return self

    def to_json(self) -> dict:
        """The run's result document, a copy of its own (the run's is shared, read-only)."""
        import copy
        return copy.deepcopy(self.raw.to_json())

    def __iter__(self) -> Iterator:
        raise TypeError(f'{type(self).__name__} is not iterable; use .outputs, .artifacts or .tasks')

    def __repr__(self) -> str:
        extra = ''
        if not self.succeeded and self.failed_tasks:
            t = self.failed_tasks[0]
            extra = f': task {t.name}: {t.error}'
        return f'<{type(self).__name__} {self.pipeline} {self.state.value}{extra}>'


class ComponentResult(PipelineResult):
    """The result of running one component: its outputs, artifacts, metrics and log."""

    def __init__(self, run: RunResult, environment_log: Optional[list] = None, backend: str = 'subprocess'):
        super().__init__(run, environment_log, backend)
        leaves = list(self.leaf_tasks.values()) or list(self.tasks.values())
        self.task: Optional[TaskResult] = leaves[0] if leaves else None
        if self.task is not None and self.task.state.ok:
            self.outputs = Outputs(dict(self.task.outputs), self, 'output parameter')
            self.artifact_lists = dict(self.task.artifact_lists)
            self.artifacts = Outputs(dict(self.task.artifacts), self, 'output artifact')

    @property
    def succeeded(self) -> bool:
        return self.state == State.SUCCEEDED

    @property
    def cached(self) -> bool:
        return self.task is not None and self.task.cached

    @property
    def metrics(self) -> dict:  # type: ignore[override]
        """{metric: value} logged by the component (metadata of its system.Metrics outputs)."""
        return dict(self.task.metrics) if self.task else {}

    @property
    def logs(self) -> str:
        return self.task.logs if self.task else ''

    @property
    def error(self) -> Optional[str]:
        return self.task.error if self.task else None
