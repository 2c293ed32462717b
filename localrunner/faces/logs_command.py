"""`localrunner logs RUN [TASK] [-f]`: a task's log, every attempt in order (all tasks when no
TASK is named). With -f, like `kubectl logs -f`: keep printing what is written, new attempts
included, until the run ends (its lease is released, faces/history.py run_is_live)."""
from __future__ import annotations

import os
import sys
import time
from typing import Optional

from localrunner.errors import UsageError
from localrunner.faces.history import History, RunRecord, run_is_live

POLL_S = 0.2
_CHUNK = 1 << 16


def _task_logs(record: RunRecord, task: Optional[str]) -> dict[str, list[str]]:
    logs = record.logs()
    if task is None:
        return logs
    return {task: logs.get(task, [])}


def _check_task(record: RunRecord, task: str, live: bool) -> None:
    """A task the run doesn't have is a usage error (exit 2) — unless the run is still going
    and may yet start it."""
    if live or task in record.logs():
        return
    if record.result is not None and record.task(task) is not None:
        return
    known = sorted(record.logs()) or sorted(t['name'] for t in (record.result or {}).get('tasks', []))
    raise UsageError(f'logs {record.run_id} {task}: no such task'
                     + (f' (tasks with logs: {", ".join(known[:8])}{" ..." if len(known) > 8 else ""})' if known else ''))


def _copy(path: str, offset: int, out, prefix: str = '') -> int:
    """Writes what `path` holds past `offset` (whole lines only when prefixing); returns the new
    offset. A missing file reads as empty."""
    try:
        with open(path, 'rb') as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return offset
    if prefix:
        end = data.rfind(b'\n') + 1
        data = data[:end]
        for line in data.splitlines():
            out.write(prefix + line.decode('utf-8', errors='replace') + '\n')
    else:
        out.write(data.decode('utf-8', errors='replace'))
    out.flush()
    return offset + len(data)


def print_logs(record: RunRecord, task: Optional[str], out=sys.stdout) -> int:
    logs = _task_logs(record, task)
    if task is not None and not logs[task]:
        state = (record.task(task) or {}).get('state', '')
        print(f'{task}: no log ({state.lower() or "not started"}: it ran no process here)', file=out)
        return 0
    many = task is None
    for name, paths in logs.items():
        for i, path in enumerate(paths, 1):
            if many or len(paths) > 1:
                print(f'==> {name} attempt {i}: {path} <==', file=out)
            if not os.path.isfile(path):
                print(f'(log missing: {path})', file=out)
                continue
            with open(path, 'rb') as f:
                while chunk := f.read(_CHUNK):
                    out.write(chunk.decode('utf-8', errors='replace'))
            out.flush()
    if many and not logs:
        print(f'{record.run_id}: no task logs yet', file=out)
    return 0


def follow(history: History, record: RunRecord, task: Optional[str], out=sys.stdout) -> int:
    """Prints the logs as they grow until the run ends; then what was written last."""
    offsets: dict[str, int] = {}
    announced: set[str] = set()
    many = task is None

    def sweep() -> None:
        current = history.read_fresh(record.run_id)
        for name, paths in _task_logs(current, task).items():
            for i, path in enumerate(paths, 1):
                if path not in announced:
                    announced.add(path)
                    if not many:
                        if i > 1 or len(paths) > 1:
                            print(f'==> attempt {i}: {path} <==', file=out)
                    offsets[path] = 0
                offsets[path] = _copy(path, offsets[path], out, f'[{name}] ' if many else '')

    while run_is_live(history.root, record.run_id):
        sweep()
        time.sleep(POLL_S)
    sweep()                                   # what was written between the last look and the end
    if many:                                  # a last line without its newline
        for path, offset in offsets.items():
            _copy(path, offset, out, '')
    return 0


def logs_command(args) -> int:
    history = History(args.root)
    run_id = history.resolve(args.run_id, 'logs')
    record = history.read(run_id)
    live = run_is_live(history.root, run_id)
    if record.result is None and not live and record.problem and record.problem.startswith('result.json:'):
        # damaged record: the logs on disk are still worth showing
        print(f'localrunner: {run_id}: {record.problem}; showing the logs found in its folder', file=sys.stderr)
    if args.task:
        _check_task(record, args.task, live)
    if args.follow:
        try:
            return follow(history, record, args.task)
        except KeyboardInterrupt:          # Ctrl-C ends the following, not the run
            return 130
    return print_logs(record, args.task)
