"""Runs whose runner died: found, recorded CANCELED, their leftovers removed.

A run in progress is marked on disk by two things, both made before its first task starts
and removed after its result is final:

- its lease: an exclusive flock on <root>/cache/leases/<run id>.lease, held for the run's
  whole life. The kernel drops it however the runner ends (kill -9 included), so "somebody
  holds the flock" is the liveness test; a reused pid cannot fool it.
- <run dir>/runner.json: who runs it (pid, start time, boot id, pid namespace), on which
  backend, and whether it starts containers.

Its <run dir>/result.json says RUNNING meanwhile, with each task's last known state
(HistoryWriter keeps it current). The next command that opens the root (every run, and
`cache`, `runs`, `envs`: recover_root) finds each run whose runner.json is there but whose
runner is gone, and
- marks it CANCELED in its result.json: tasks that ended keep their state, the rest become
  CANCELED;
- removes its containers (by the localrunner.run label), when its backend starts any;
- removes its stale lease, then runner.json.
The subprocess tasks of a dead runner are not left for this: its reaper kills them at once
(backends/reaper.py).

The lease is the cache library's (localrunner_cache.leases): the run's TaskCache holds it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import socket
import time
from typing import Optional

from localrunner.backends import procs
from localrunner.layout import RootLayout, RunLayout
from localrunner_cache import leases, locks


# ---------------------------------------------------------------- a run in progress

class LiveRun:
    """What marks a run as in progress (see the module docstring): start() before its first
    task, end() once its result is final."""

    def __init__(self, layout: RootLayout, run_layout: RunLayout, run_id: str, backend: str, containers: bool):
        """The run's lease is its TaskCache's (localrunner_cache.leases.Lease)."""
        self.layout, self.run_layout, self.run_id = layout, run_layout, run_id
        self.info = {'run_id': run_id, 'runner': procs.identity(), 'host': socket.gethostname(),
                     'backend': backend, 'containers': containers, 'started': time.time()}

    def start(self) -> None:
        from localrunner.engine.assembly import write_json_atomic
        write_json_atomic(self.run_layout.runner, self.info)

    def end(self, finished: bool = True) -> None:
        """finished=False: the runner gives up on the run without a final result (an engine
        error): runner.json stays, saying so, and the next command records it CANCELED."""
        from localrunner.engine.assembly import write_json_atomic
        with contextlib.suppress(OSError):
            if finished:
                os.unlink(self.run_layout.runner)
            else:
                write_json_atomic(self.run_layout.runner, {**self.info, 'abandoned': time.time()})


def runner_is_gone(info: dict, layout: RootLayout, run_id: str) -> bool:
    """Whether the runner described by runner.json INFO is gone. The lease decides; a
    runner still seen alive here (between releasing its lease and its last write) is not."""
    if leases.is_live(layout.leases_dir, run_id):
        return False
    if info.get('abandoned'):
        return True
    ident = info.get('runner') or {}
    return not (procs.can_judge(ident) and procs.is_alive(ident))


# ---------------------------------------------------------------- recovery

@dataclasses.dataclass
class Recovered:
    run_id: str
    pid: Optional[int]
    tasks_canceled: int
    containers_removed: int
    problem: Optional[str] = None        # what could not be done (Docker unreachable, ...)

    def message(self) -> str:
        text = (f'run {self.run_id}: its runner (pid {self.pid}) is gone; recorded CANCELED'
                f' ({self.tasks_canceled} task(s) were still running)')
        if self.containers_removed:
            text += f', removed {self.containers_removed} container(s)'
        return text + (f'; {self.problem}' if self.problem else '')


def recover_root(root: str) -> list[Recovered]:
    """Recovers every run under ROOT whose runner is gone. Cheap when there is none: one
    stat per run folder. Never raises for what it finds on disk."""
    layout = RootLayout(root)
    try:
        entries = list(os.scandir(layout.runs_dir))
    except OSError:
        return []
    done = []
    for entry in entries:
        if os.path.exists(RunLayout(entry.path).runner):
            try:
                found = recover_run(layout, entry.name)
            except Exception:        # a damaged run folder must not stop the command
                found = None
            if found is not None:
                done.append(found)
    return done


def recover_run(layout: RootLayout, run_id: str) -> Optional[Recovered]:
    """Recovers run RUN_ID when its runner is gone; None when it is alive, already recovered,
    or being recovered by another command right now."""
    run_layout = layout.run(run_id)
    try:
        fd = os.open(run_layout.runner, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)    # one recoverer at a time
        except BlockingIOError:
            return None
        if not locks.same_file(fd, run_layout.runner):
            return None                                      # recovered meanwhile
        with os.fdopen(os.dup(fd)) as f:
            try:
                info = json.load(f)
            except ValueError:
                info = {}
        if not runner_is_gone(info, layout, run_id):
            return None
        canceled = _record_canceled(run_layout, info)
        removed, problem = 0, None
        if info.get('containers', True):
            removed, problem = _remove_containers(run_id)
        leases.remove_stale(layout.leases_dir, run_id)
        if problem is None:               # else the next command tries the containers again
            os.unlink(run_layout.runner)
        return Recovered(run_id, (info.get('runner') or {}).get('pid'), canceled, removed, problem)
    finally:
        os.close(fd)


def _record_canceled(run_layout: RunLayout, info: dict) -> int:
    """result.json: RUNNING -> CANCELED, each task that had not ended CANCELED."""
    from localrunner.engine.assembly import write_json_atomic
    try:
        with open(run_layout.result) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return 0                  # none written yet, or damaged: nothing to correct
    if not isinstance(doc, dict) or doc.get('state') != 'RUNNING':
        return 0
    now = time.time()
    canceled = 0
    for task in doc.get('tasks') or []:
        if isinstance(task, dict) and task.get('state') == 'RUNNING':
            task['state'] = 'CANCELED'
            canceled += 1
    doc['state'] = 'CANCELED'
    doc['finished'] = now
    if isinstance(doc.get('started'), (int, float)):
        doc['duration_s'] = round(now - doc['started'], 3)
    pid = (info.get('runner') or {}).get('pid')
    doc.setdefault('warnings', []).append(
        f'the runner (pid {pid}) ended without finishing this run; recorded CANCELED at '
        f'{time.strftime("%Y-%m-%d %H:%M:%S")} from its last saved state')
    write_json_atomic(run_layout.result, doc)
    return canceled


def _remove_containers(run_id: str) -> tuple[int, Optional[str]]:
    try:
        from localrunner.backends.docker_backend import remove_run_containers
        return remove_run_containers(run_id), None
    except Exception as e:       # no Docker SDK, no engine answering
        return 0, f'its containers could not be removed now ({e}); the next command tries again'
