"""The run root on disk: the one place that turns names into paths under it.

    <root>/runs/<run id>/result.json               the run's record (docs/architecture.md); RUNNING while it runs
    <root>/runs/<run id>/runner.json               only while it runs: who runs it (engine/recovery.py)
    <root>/runs/<run id>/workspace/                KFP's pipeline workspace
    <root>/runs/<run id>/tasks/<task path>/        host-only: executor_input.json, logs/
        logs/attempt-<n>.log                       each attempt's output (never writable by the task)
        out/                                       the ONLY folder a task may write (its workdir)
            artifacts/<name>[.<i>]                 output artifacts (uri == path)
            parameters/<name>                      output parameter files
            executor_output.json
        empty-dirs/<volume>/                       kfp-kubernetes empty_dir_mount, writable
    <root>/cache/                                  localrunner_cache (cas/, actions/, memo.db, last/, leases/)
    <root>/pvcs/<claim>/                           local folders behind PVCs (CreatePVC / mount_pvc)
    <root>/compiled/                               pipelines compiled from .py by `run PIPELINE.py`
    <root>/quarantine/                             damaged state files moved aside

Every path is built by `within(base, *names)`: each name must be one plain path component
(no separator, no '..', no NUL or control characters), and the result — with any symlink
already on disk resolved — must stay inside its base. A pipeline, a container or a cache
entry names things; only this module turns those names into places.
"""
from __future__ import annotations

import os
import re
from typing import Iterable

MAX_NAME_BYTES = 200
_CONTROL = re.compile(r'[\x00-\x1f\x7f]')


class PathEscape(ValueError):
    """A name that is not one plain path component, or a path that leaves its base."""


def check_name(name: str, what: str = 'name') -> str:
    """`name` if it can be one path component; PathEscape naming `what` otherwise."""
    if not isinstance(name, str) or not name:
        raise PathEscape(f'{what}: empty name {name!r}')
    if '/' in name or '\\' in name:
        raise PathEscape(f'{what}: {name!r} contains a path separator')
    if name in ('.', '..'):
        raise PathEscape(f'{what}: {name!r} is not a name')
    if _CONTROL.search(name):
        raise PathEscape(f'{what}: {name!r} contains a control character')
    if len(name.encode('utf-8', 'surrogatepass')) > MAX_NAME_BYTES:
        raise PathEscape(f'{what}: {name[:40]!r}... is longer than {MAX_NAME_BYTES} bytes')
    return name


def _inside(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


def within(base: str, *names: str, what: str = 'name') -> str:
    """base/names... — each name one checked component; the result, resolved through any
    symlink that exists on disk (a task may have planted one), must stay inside `base`."""
    path = base
    for name in names:
        path = os.path.join(path, check_name(name, what))
    real_base = os.path.realpath(base)
    if not _inside(os.path.realpath(path), real_base):
        raise PathEscape(f'{what}: {os.path.join(*names) if names else path!r} leads outside {base}')
    return path


def split_task_path(task: str) -> list[str]:
    """A '/'-joined task path ('for-loop-2.0/condition-3/train') as checked components."""
    parts = task.split('/')
    for part in parts:
        check_name(part, 'task')
    return parts


class TaskLayout:
    """The folders of one task of a run (see the module docstring)."""

    def __init__(self, tasks_dir: str, task: str):
        self.name = task
        self.dir = within(tasks_dir, *split_task_path(task), what='task')
        self.out = os.path.join(self.dir, 'out')
        self.executor_input = os.path.join(self.dir, 'executor_input.json')
        self.executor_output = os.path.join(self.out, 'executor_output.json')
        self.logs_dir = os.path.join(self.dir, 'logs')

    def log(self, attempt: int) -> str:
        return os.path.join(self.logs_dir, f'attempt-{int(attempt)}.log')

    def artifact(self, name: str, index: int = 0) -> str:
        check_name(name, 'output artifact')
        return os.path.join(self.out, 'artifacts', name if index == 0 else f'{name}.{int(index)}')

    def parameter(self, name: str) -> str:
        return within(os.path.join(self.out, 'parameters'), name, what='output parameter')

    def empty_dir(self, volume: str) -> str:
        return within(os.path.join(self.dir, 'empty-dirs'), volume, what='empty_dir volume')

    def imports(self) -> str:
        return os.path.join(self.dir, 'imports')


class RunLayout:
    def __init__(self, run_dir: str):
        self.dir = run_dir
        self.result = os.path.join(run_dir, 'result.json')
        self.runner = os.path.join(run_dir, 'runner.json')
        self.workspace = os.path.join(run_dir, 'workspace')
        self.tasks_dir = os.path.join(run_dir, 'tasks')

    def task(self, task: str) -> TaskLayout:
        return TaskLayout(self.tasks_dir, task)


class RootLayout:
    def __init__(self, root: str):
        self.root = os.path.abspath(os.path.expanduser(root))
        self.runs_dir = os.path.join(self.root, 'runs')
        self.cache_dir = os.path.join(self.root, 'cache')
        self.leases_dir = os.path.join(self.cache_dir, 'leases')
        self.pvcs_dir = os.path.join(self.root, 'pvcs')
        self.compiled_dir = os.path.join(self.root, 'compiled')
        self.quarantine_dir = os.path.join(self.root, 'quarantine')

    def run(self, run_id: str, run_dir: str | None = None) -> RunLayout:
        """The run's folders; `run_dir` overrides where (a dry run's scratch folder)."""
        return RunLayout(run_dir or within(self.runs_dir, run_id, what='run id'))

    def run_ids(self) -> list[str]:
        """Run folders, oldest first (by modification time)."""
        try:
            names = [e.name for e in os.scandir(self.runs_dir) if e.is_dir(follow_symlinks=False)]
        except OSError:
            return []

        def mtime(name: str) -> float:
            try:
                return os.stat(os.path.join(self.runs_dir, name)).st_mtime
            except OSError:
                return 0.0
        return sorted(names, key=mtime)

    def pvc(self, claim: str) -> str:
        return within(self.pvcs_dir, claim, what='PVC name')


def ensure_dirs(paths: Iterable[str]) -> None:
    for path in paths:
        os.makedirs(path, exist_ok=True)
