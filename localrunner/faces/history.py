"""The run history on disk, as every face that looks back at runs reads it (`runs ls|show|
report|prune|compare`, `logs`, the run page, JUnit XML).

    <root>/runs/<run id>/result.json            the run's record (docs/architecture.md)
    <root>/runs/<run id>/tasks/<task path>/     executor_input.json and one log per attempt
    <root>/cache/leases/<run id>.lease          flock-held by the run while it is live

A damaged history never raises here: a result.json that is not JSON, is truncated or has the
wrong shape becomes a RunRecord with `problem` set (one line), so a listing can say so and a
command about that run can stop with that line. Paths recorded in a result are used only
inside the run's folder (rebased when the root moved; symlinks resolved), so a tampered
record or a link a task planted can't make a report embed ~/.ssh/id_rsa.
"""
from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
from typing import Any, Iterator, Optional

from localrunner.errors import UsageError
from localrunner.layout import PathEscape, RootLayout, RunLayout
from localrunner_cache import leases

LEAF_TYPES = ('container', 'importer')
GROUP_TYPES = ('dag', 'loop', 'condition')
FINAL_STATES = ('SUCCEEDED', 'FAILED', 'CANCELED')
_MAX_RESULT_BYTES = 256 * 1024 * 1024
# the two per-attempt log layouts: tasks/<path>/attempt-<n>/log.txt and tasks/<path>/logs/attempt-<n>.log
_LOG_FILE = re.compile(r'^(?:(?P<a>.+)/attempt-(?P<n1>\d+)/log\.txt|(?P<b>.+)/logs/attempt-(?P<n2>\d+)\.log)$')


def lease_path(root: str, run_id: str) -> str:
    return leases.lease_path(RootLayout(root).leases_dir, run_id)


def run_is_live(root: str, run_id: str) -> bool:
    """Whether a run is in progress: it holds the flock on its lease for as long as it lives
    (localrunner_cache.leases)."""
    return leases.is_live(RootLayout(root).leases_dir, run_id)


class held_lease:
    """Holds a run's lease while something is removed, so the run can't be declared live and
    deleted at once. `acquired` is False when the run is live (the lock is taken)."""

    def __init__(self, root: str, run_id: str):
        self.path = lease_path(root, run_id)
        self.fd: Optional[int] = None
        self.acquired = True

    def __enter__(self) -> 'held_lease':
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return self
        except OSError:
            self.acquired = False
            return self
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.acquired = False
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)


# ---------------------------------------------------------------------------- the result document

class BadResult(ValueError):
    """A result.json that can't be used; the message is one line."""


def _expect(value: Any, kinds: tuple, where: str, optional: bool = True) -> Any:
    if value is None and optional:
        return value
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise BadResult(f'{where} is {type(value).__name__}, expected {"/".join(k.__name__ for k in kinds)}')
    return value


def _check_outputs(outputs: Any, where: str) -> None:
    _expect(outputs, (dict,), where)
    if not outputs:
        return
    _expect(outputs.get('parameters'), (dict,), f'{where}.parameters')
    arts = _expect(outputs.get('artifacts'), (dict,), f'{where}.artifacts') or {}
    for name, items in arts.items():
        for i, art in enumerate(_expect(items, (list,), f'{where}.artifacts.{name}', optional=False)):
            w = f'{where}.artifacts.{name}[{i}]'
            _expect(art, (dict,), w, optional=False)
            for field in ('name', 'type', 'uri', 'path', 'digest'):
                _expect(art.get(field), (str,), f'{w}.{field}')
            _expect(art.get('metadata'), (dict,), f'{w}.metadata')


def check_result(data: Any) -> dict:
    """The result document if it has the shape docs/architecture.md promises (the fields the
    faces read, with their types); BadResult naming the first field that doesn't."""
    _expect(data, (dict,), 'the document', optional=False)
    _expect(data.get('run_id'), (str,), 'run_id')
    _expect(data.get('pipeline'), (str,), 'pipeline')
    _expect(data.get('state'), (str,), 'state', optional=False)
    _expect(data.get('run_dir'), (str,), 'run_dir')
    for field in ('started', 'finished', 'duration_s'):
        _expect(data.get(field), (int, float), field)
    for i, w in enumerate(_expect(data.get('warnings'), (list,), 'warnings') or []):
        _expect(w, (str,), f'warnings[{i}]', optional=False)
    _expect(data.get('parameters'), (dict,), 'parameters')
    _check_outputs(data.get('outputs'), 'outputs')
    for i, task in enumerate(_expect(data.get('tasks'), (list,), 'tasks', optional=False)):
        w = f'tasks[{i}]'
        _expect(task, (dict,), w, optional=False)
        _expect(task.get('name'), (str,), f'{w}.name', optional=False)
        _expect(task.get('state'), (str,), f'{w}.state', optional=False)
        for field in ('type', 'display_name', 'error', 'cache_key', 'component', 'reason', 'prediction'):
            _expect(task.get(field), (str,), f'{w}.{field}')
        _expect(task.get('duration_s'), (int, float), f'{w}.duration_s')
        _expect(task.get('attempts'), (int,), f'{w}.attempts')
        cached = _expect(task.get('cached_from'), (dict,), f'{w}.cached_from') or {}
        for field in ('run', 'task'):
            _expect(cached.get(field), (str,), f'{w}.cached_from.{field}')
        for key in ('logs', 'upstream'):
            for j, item in enumerate(_expect(task.get(key), (list,), f'{w}.{key}') or []):
                _expect(item, (str,), f'{w}.{key}[{j}]', optional=False)
        _check_outputs(task.get('outputs'), f'{w}.outputs')
    return data


def read_result(path: str) -> dict:
    """A result.json, checked; BadResult (one line) for anything unreadable."""
    try:
        with open(path, 'rb') as f:
            raw = f.read(_MAX_RESULT_BYTES + 1)
    except FileNotFoundError:
        raise BadResult('no result.json (interrupted, or still running)') from None
    except OSError as e:
        raise BadResult(f'result.json: {e.strerror}') from None
    if len(raw) > _MAX_RESULT_BYTES:
        raise BadResult(f'result.json: larger than {_MAX_RESULT_BYTES >> 20} MiB')
    try:
        data = json.loads(raw.decode('utf-8'))
    except UnicodeDecodeError:
        raise BadResult('result.json: not UTF-8 text (damaged)') from None
    except RecursionError:
        raise BadResult('result.json: nested too deeply (damaged)') from None
    except ValueError as e:
        raise BadResult(f'result.json: not valid JSON ({e.msg} at line {e.lineno}; truncated or damaged)') from None
    try:
        return check_result(data)
    except BadResult as e:
        raise BadResult(f'result.json: {e}') from None


def leaf_tasks(result: dict) -> list[dict]:
    """The tasks that executed something (container, importer): what a person counts."""
    return [t for t in result['tasks'] if (t.get('type') or 'container') not in GROUP_TYPES]


def task_counts(result: dict) -> dict[str, int]:
    """Leaf tasks by state, plus 'ran' (executed here: not cached, not skipped)."""
    counts: dict[str, int] = {}
    for t in leaf_tasks(result):
        counts[t['state']] = counts.get(t['state'], 0) + 1
    counts['ran'] = counts.get('SUCCEEDED', 0) + counts.get('FAILED', 0)
    return counts


def artifacts_of(task: dict) -> Iterator[tuple[str, dict]]:
    """(output name, artifact) for each output artifact of a task; lists as name[i]."""
    for name, items in ((task.get('outputs') or {}).get('artifacts') or {}).items():
        for i, art in enumerate(items):
            yield (name if len(items) == 1 else f'{name}[{i}]'), art


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def metric_rows(result: dict) -> list[tuple[str, str, str, Any]]:
    """(task, artifact, metric, value) for every scalar of every system.Metrics artifact of a
    leaf task (a DAG's outputs repeat its tasks' artifacts), in run order."""
    rows = []
    for task in leaf_tasks(result):
        for name, art in artifacts_of(task):
            if art.get('type') == 'system.Metrics':
                for key, value in (art.get('metadata') or {}).items():
                    if is_number(value) or isinstance(value, (str, bool)):
                        rows.append((task['name'], name, key, value))
    return rows


_KEY_METRIC = re.compile(r'acc|f1|auc|loss|precision|recall|rmse|mae|mse|error|score', re.I)


def key_metrics(result: dict, limit: int = 3) -> list[tuple[str, Any]]:
    """The few numbers a listing shows: metrics named like a model quality (accuracy, f1, loss,
    ...), the last task's first; otherwise the first numeric metrics."""
    numeric = [(m, v) for _, _, m, v in metric_rows(result) if is_number(v)]
    preferred = [mv for mv in reversed(numeric) if _KEY_METRIC.search(mv[0])]
    chosen = preferred or numeric
    seen, out = set(), []
    for metric, value in chosen:
        if metric not in seen:
            seen.add(metric)
            out.append((metric, value))
    return out[:limit]


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f'{value:.4g}'
    if isinstance(value, (dict, list, bool)) or value is None:
        return json.dumps(value, default=str)
    return str(value)


def format_seconds(value: Optional[float]) -> str:
    if value is None:
        return '-'
    if value < 60:
        return f'{value:.1f}s'
    minutes, seconds = divmod(int(value), 60)
    return f'{minutes}m{seconds:02d}s' if minutes < 60 else f'{minutes // 60}h{minutes % 60:02d}m'


# ---------------------------------------------------------------------------- one run

@dataclasses.dataclass
class RunRecord:
    run_id: str
    dir: str
    result: Optional[dict]
    problem: Optional[str]         # why `result` is None, one line
    live: bool

    @property
    def recorded_dir(self) -> Optional[str]:
        return (self.result or {}).get('run_dir')

    def local(self, path: Optional[str], inside: bool = True) -> Optional[str]:
        """A path from the result, as it is on this machine now: rebased onto the run's folder
        when the root moved since; with `inside`, None unless it resolves (through symlinks)
        to a place inside the run's folder."""
        if not path:
            return None
        recorded = self.recorded_dir
        if recorded and recorded != self.dir and (path == recorded or path.startswith(recorded.rstrip('/') + '/')):
            path = self.dir + path[len(recorded.rstrip('/')):]
        if not inside:
            return path
        real, base = os.path.realpath(path), os.path.realpath(self.dir)
        return path if real.startswith(base + os.sep) else None

    def task(self, name: str) -> Optional[dict]:
        matches = [t for t in (self.result or {}).get('tasks', []) if t['name'] == name]
        return matches[-1] if matches else None

    def task_dir(self, name: str) -> Optional[str]:
        """The task's folder in this run (layout.py), or None for a name that is not a task path."""
        try:
            return RunLayout(self.dir).task(name).dir
        except PathEscape:
            return None

    def logs(self) -> dict[str, list[str]]:
        """{task: its attempts' log paths, in order}: from the result when there is one
        (paths inside the run folder only); for a run still RUNNING (its result is written
        at most once a second, a started task may not be in it yet) or with no result, what
        is in the run folder too."""
        out: dict[str, list[str]] = {}
        if self.result is not None:
            for t in self.result['tasks']:
                if t.get('logs'):
                    out[t['name']] = [self.local(p) or p for p in t['logs']]
            if self.result.get('state') != 'RUNNING':
                return out
        for task, paths in scan_logs(self.dir).items():
            known = out.setdefault(task, [])
            known.extend(p for p in paths if p not in known)
        return out

    def executor_input(self, name: str) -> Optional[dict]:
        folder = self.task_dir(name)
        if folder is None:
            return None
        try:
            with open(os.path.join(folder, 'executor_input.json'), 'rb') as f:
                data = json.loads(f.read(_MAX_RESULT_BYTES).decode('utf-8'))
        except (OSError, ValueError, RecursionError):
            return None
        return data if isinstance(data, dict) else None

    def uri_producers(self) -> dict[str, str]:
        """Output artifact URI -> the leaf task that produced it (a DAG's outputs repeat them)."""
        out: dict[str, str] = {}
        for t in leaf_tasks(self.result or {'tasks': []}):
            for _, art in artifacts_of(t):
                if art.get('uri'):
                    out.setdefault(art['uri'], t['name'])
        return out


def input_artifacts(executor_input: dict) -> list[tuple[str, dict]]:
    """(input name, runtime artifact) pairs of an executor input, skipping malformed entries
    (it is a file in the run folder: whatever it holds, a face must not raise on it)."""
    inputs = executor_input.get('inputs')
    arts = inputs.get('artifacts') if isinstance(inputs, dict) else None
    out = []
    for name, spec in arts.items() if isinstance(arts, dict) else ():
        items = spec.get('artifacts') if isinstance(spec, dict) else None
        if isinstance(items, list):
            out += [(name, art) for art in items if isinstance(art, dict) and isinstance(art.get('uri', ''), str)]
    return out


def input_parameters(executor_input: dict) -> dict:
    inputs = executor_input.get('inputs')
    values = inputs.get('parameterValues') if isinstance(inputs, dict) else None
    return values if isinstance(values, dict) else {}


def scan_logs(run_dir: str) -> dict[str, list[str]]:
    """Per-attempt logs found under <run>/tasks (a run still going has no result yet)."""
    base = RunLayout(run_dir).tasks_dir
    found: dict[str, list[tuple[int, str]]] = {}
    for folder, _dirs, files in os.walk(base):
        for file in files:
            rel = os.path.relpath(os.path.join(folder, file), base)
            m = _LOG_FILE.match(rel.replace(os.sep, '/'))
            if m:
                task = m.group('a') or m.group('b')
                found.setdefault(task, []).append((int(m.group('n1') or m.group('n2')), os.path.join(folder, file)))
    return {task: [p for _, p in sorted(items)] for task, items in found.items()}


def log_tail(path: Optional[str], lines: int = 30) -> Optional[list[str]]:
    """The last lines of a log; None when it can't be read."""
    if not path:
        return None
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode('utf-8', errors='replace')
    except OSError:
        return None
    return text.splitlines()[-lines:]


# ---------------------------------------------------------------------------- the history

class History:
    """The runs under a root. Reads are cached per instance (a report follows cached_from
    into other runs)."""

    def __init__(self, root: str):
        self.layout = RootLayout(root)
        self.root = self.layout.root
        self.runs_dir = self.layout.runs_dir
        self._records: dict[str, RunRecord] = {}

    def run_ids(self) -> list[str]:
        """Run folders, oldest first (by when they started, else by modification time)."""
        def started(name: str) -> float:
            record = self.read(name)
            if record.result and is_number(record.result.get('started')):
                return record.result['started']
            return self.layout.run_mtime(name)
        return sorted(self.layout.run_ids(), key=lambda n: (started(n), n))

    def read(self, run_id: str) -> RunRecord:
        if run_id not in self._records:
            run_dir = os.path.join(self.runs_dir, run_id)
            result, problem = None, None
            try:
                result = read_result(os.path.join(run_dir, 'result.json'))
            except BadResult as e:
                problem = str(e)
            self._records[run_id] = RunRecord(run_id, run_dir, result, problem, run_is_live(self.root, run_id))
        return self._records[run_id]

    def read_fresh(self, run_id: str) -> RunRecord:
        """The run as it is on disk now (a live run's logs and result appear as it goes)."""
        self._records.pop(run_id, None)
        return self.read(run_id)

    def resolve(self, ref: str, command: str) -> str:
        """A run id from an id or a unique prefix of one; UsageError (one line) otherwise."""
        if ref in ('.', '..') or '/' in ref or '\x00' in ref:
            raise UsageError(f'{command} {ref}: not a run id')
        ids = self.run_ids()
        if ref in ids:
            return ref
        matches = [n for n in ids if n.startswith(ref)]
        if not matches:
            raise UsageError(f'{command} {ref}: no such run under {self.runs_dir} (see `localrunner runs ls`)')
        if len(matches) > 1:
            raise UsageError(f'{command} {ref}: ambiguous, matches {", ".join(matches[:4])}'
                             + (' ...' if len(matches) > 4 else ''))
        return matches[0]

    def readable(self, ref: str, command: str) -> RunRecord:
        """The run named by `ref`, with its result; UsageError (one line) when it has none."""
        record = self.read(self.resolve(ref, command))
        if record.result is None:
            why = 'still running, no result yet' if record.live else record.problem
            raise UsageError(f'{command} {record.run_id}: {why}')
        return record

    def inputs(self, record: RunRecord, task: dict) -> tuple[Optional[dict], Optional[RunRecord], Optional[str]]:
        """(executor input, the run it was read from, that run's task name) of a leaf task: its
        own, or for a cached task the producing run's (same key: same parameter values and
        input contents). (None, None, None) when neither is on disk."""
        own = record.executor_input(task['name'])
        if own is not None:
            return own, record, task['name']
        source = task.get('cached_from') or {}
        run, name = source.get('run'), source.get('task')
        if run and name and '/' not in run and run not in ('.', '..'):
            producer = self.read(run)
            data = producer.executor_input(name)
            if data is not None:
                return data, producer, name
        return None, None, None

    def input_parameters(self, record: RunRecord) -> dict[str, Any]:
        """The run's parameters: the pipeline's own when the result records them, else each
        leaf task's input parameters as 'task.param' (from its executor input)."""
        if isinstance(record.result.get('parameters'), dict):
            return dict(record.result['parameters'])
        out = {}
        for task in leaf_tasks(record.result):
            data, _, _ = self.inputs(record, task)
            for k, v in input_parameters(data or {}).items():
                out[f'{task["name"]}.{k}'] = v
        return out
