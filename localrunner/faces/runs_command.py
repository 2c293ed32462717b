"""`localrunner runs ls | show RUN_ID`: past runs from their result.json records."""
from __future__ import annotations

import datetime
import json
import os

from localrunner.errors import UsageError


def _load(run_dir: str):
    try:
        with open(os.path.join(run_dir, 'result.json')) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def runs_command(args) -> int:
    runs_dir = os.path.join(os.path.abspath(args.root), 'runs')
    names = sorted(os.listdir(runs_dir), key=lambda n: os.path.getmtime(os.path.join(runs_dir, n))) \
        if os.path.isdir(runs_dir) else []
    if args.action == 'ls':
        for name in names:
            result = _load(os.path.join(runs_dir, name))
            if result is None:
                print(f'{name}  (no result: interrupted or running)')
                continue
            when = datetime.datetime.fromtimestamp(result.get('started', 0)).strftime('%Y-%m-%d %H:%M:%S')
            leaf = [t for t in result['tasks'] if t.get('type') in ('container', 'importer')]
            cached = sum(1 for t in leaf if t['state'] == 'CACHED')
            print(f'{name}  {when}  {result["state"]:<9}  {len(leaf)} tasks, {cached} cached, '
                  f'{result.get("duration_s") or 0:.1f}s' + ('  (in progress)' if result['state'] == 'RUNNING' else ''))
        return 0
    if args.action == 'prune':
        return _prune(runs_dir, names, args)
    if not args.run_id:
        raise UsageError(f'runs {args.action}: give a run id (see `localrunner runs ls`)')
    matches = [n for n in names if n.startswith(args.run_id)]
    if len(matches) != 1:
        raise UsageError(f'runs show {args.run_id}: {"no such run" if not matches else "ambiguous"}')
    result = _load(os.path.join(runs_dir, matches[0]))
    if result is None:
        raise UsageError(f'runs show {args.run_id}: the run left no result (interrupted?)')
    if args.action == 'report':
        from localrunner.faces.report import write_report
        print(write_report(result, args.output or os.path.join(runs_dir, matches[0], 'report.html')))
        return 0
    print(json.dumps(result, indent=1))
    return 0


def _prune(runs_dir: str, names: list[str], args) -> int:
    """Removes old run folders (their artifacts are copies: cached results stay in the CAS
    until `localrunner cache gc`)."""
    import shutil
    import time
    from localrunner.engine.caching import parse_duration
    if args.keep is None and not args.older_than:
        raise UsageError('runs prune: give --keep N and/or --older-than AGE')
    try:
        cutoff = time.time() - parse_duration(args.older_than) if args.older_than else None
    except ValueError as e:
        raise UsageError(f'--older-than: {e}') from None
    newest_first = list(reversed(names))
    doomed = set(newest_first[args.keep:]) if args.keep is not None else set(names)
    if cutoff is not None:
        doomed &= {n for n in names if os.path.getmtime(os.path.join(runs_dir, n)) < cutoff}
    for name in sorted(doomed):
        shutil.rmtree(os.path.join(runs_dir, name), ignore_errors=True)
    print(f'removed {len(doomed)} run(s), kept {len(names) - len(doomed)}')
    return 0
