"""`localrunner runs ls | show RUN | report RUN | compare A B | prune`: past runs, from their
run folders (faces/history.py reads them; a damaged one is one line, never a traceback)."""
from __future__ import annotations

import datetime
import json
import os
import shutil
import time

from localrunner.errors import UsageError
from localrunner.faces.history import (History, RunRecord, artifacts_of, format_seconds, format_value, held_lease,
                                       key_metrics, leaf_tasks, task_counts)


def runs_command(args) -> int:
    history = History(args.root)
    if args.action == 'ls':
        return _ls(history)
    if args.action == 'prune':
        return _prune(history, args)
    if args.action == 'compare':
        from localrunner.faces.compare import compare_command
        return compare_command(history, args)
    if not args.run_id:
        raise UsageError(f'runs {args.action}: give a run id (see `localrunner runs ls`)')
    record = history.readable(args.run_id, f'runs {args.action}')
    if args.action == 'report':
        from localrunner.faces.report import write_report
        print(write_report(record.result, args.output or os.path.join(record.dir, 'report.html'), history, record))
        return 0
    if getattr(args, 'json', False):
        print(json.dumps(record.result, indent=1))
        return 0
    print(show_text(record))
    return 0


def _when(ts) -> str:
    try:
        return datetime.datetime.fromtimestamp(ts).strftime('%Y-%m-%d %H:%M:%S')
    except (TypeError, ValueError, OverflowError, OSError):
        return '-'


def ls_line(record: RunRecord) -> str:
    if record.result is None:
        state = 'RUNNING' if record.live else 'UNREADABLE' if 'result.json:' in (record.problem or '') else 'INCOMPLETE'
        why = 'in progress' if record.live else record.problem
        return f'{record.run_id}  {"-":<19}  {state:<10}  {why}'
    r = record.result
    counts = task_counts(r)
    tally = f'{counts["ran"]} ran, {counts.get("CACHED", 0)} cached'
    for state in ('FAILED', 'SKIPPED', 'CANCELED'):
        if counts.get(state):
            tally += f', {counts[state]} {state.lower()}'
    metrics = '  '.join(f'{m}={format_value(v)}' for m, v in key_metrics(r))
    return (f'{record.run_id}  {_when(r.get("started"))}  {r["state"]:<10}  {format_seconds(r.get("duration_s")):>7}  '
            f'{tally}' + (f'  {metrics}' if metrics else ''))


def _ls(history: History) -> int:
    ids = history.run_ids()
    if not ids:
        print(f'no runs under {history.runs_dir}')
    for run_id in ids:
        print(ls_line(history.read(run_id)))
    return 0


def show_text(record: RunRecord) -> str:
    """A person's view of one run: what ran, how it ended, what it made, where the logs are."""
    r = record.result
    tasks = leaf_tasks(r)
    counts = task_counts(r)
    lines = [f'{r.get("pipeline") or "?"}  {r["state"]}  {format_seconds(r.get("duration_s"))}  '
             f'started {_when(r.get("started"))}',
             f'run    {record.run_id}',
             f'folder {record.dir}',
             f'tasks  {len(tasks)}: ' + ', '.join(f'{n} {s.lower()}' for s, n in counts.items() if n and s != 'ran')]
    if r.get('parameters'):
        lines += ['', 'parameters'] + [f'  {k} = {format_value(v)}' for k, v in r['parameters'].items()]
    width = max([len(t['name']) for t in tasks] + [4])
    lines += ['', f'{"TASK":<{width}}  {"STATE":<9}  {"TIME":>7}  ATTEMPTS  CACHED FROM']
    for t in tasks:
        source = t.get('cached_from') or {}
        lines.append(f'{t["name"]:<{width}}  {t["state"]:<9}  {format_seconds(t.get("duration_s")):>7}  '
                     f'{t.get("attempts", 0):>8}  {source.get("run", "")}')
    errors = [(t['name'], t['error']) for t in tasks if t.get('error')]
    if errors:
        lines += ['', 'errors'] + [f'  {n}: {e.splitlines()[0] if e else ""}' for n, e in errors]
    outputs = []
    for t in tasks:
        items = [f'    {k} = {format_value(v)}' for k, v in ((t.get('outputs') or {}).get('parameters') or {}).items()]
        for name, art in artifacts_of(t):
            md = art.get('metadata') or {}
            if art.get('type') == 'system.Metrics' and md:
                items.append(f'    {name} ({art["type"]}): ' + '  '.join(f'{k}={format_value(v)}' for k, v in md.items()))
            else:
                where = art.get('path') or art.get('uri') or ''
                items.append(f'    {name} ({art.get("type") or "?"}): {where}'
                             + (f'  [{art["digest"][:12]}]' if art.get('digest') else ''))
        if items:
            outputs += [f'  {t["name"]}'] + items
    if outputs:
        lines += ['', 'outputs'] + outputs
    logs = record.logs()
    if logs:
        lines += ['', 'logs (`localrunner logs RUN TASK`)']
        for name, paths in logs.items():
            for i, path in enumerate(paths, 1):
                missing = '' if os.path.isfile(path) else '  (missing)'
                lines.append(f'  {name} attempt {i}: {path}{missing}')
    if r.get('warnings'):
        lines += ['', 'warnings'] + [f'  {w}' for w in r['warnings']]
    return '\n'.join(lines)


def _prune(history: History, args) -> int:
    """Removes old run folders (their artifacts are copies: cached results stay in the CAS
    until `localrunner cache gc`). A live run is never removed, whatever its age: its lease
    is held while we delete, so it can't be taken by a run at the same moment."""
    from localrunner.engine.caching import parse_duration
    if args.keep is None and not args.older_than:
        raise UsageError('runs prune: give --keep N and/or --older-than AGE')
    if args.keep is not None and args.keep < 0:
        raise UsageError(f'--keep {args.keep}: must be 0 or more')
    try:
        cutoff = time.time() - parse_duration(args.older_than) if args.older_than else None
    except ValueError as e:
        raise UsageError(f'--older-than: {e}') from None
    names = history.run_ids()
    doomed = list(reversed(names))[args.keep:] if args.keep is not None else list(names)
    if cutoff is not None:
        doomed = [n for n in doomed if _mtime(os.path.join(history.runs_dir, n)) < cutoff]
    removed, live = 0, 0
    for name in sorted(doomed):
        with held_lease(history.root, name) as lease:
            if not lease.acquired:
                live += 1
                continue
            shutil.rmtree(os.path.join(history.runs_dir, name), ignore_errors=True)
            removed += 1
    print(f'removed {removed} run(s), kept {len(names) - removed}'
          + (f' ({live} still running, left alone)' if live else ''))
    return 0


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return float('inf')
