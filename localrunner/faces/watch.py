"""`localrunner run --watch`: the inner loop. After each run, watch what it read from this
machine (the pipeline file, the params file, --artifact inputs, importer paths, secret and
config-map folders); when any of it changes, run again. The cache makes a re-run cost only
the steps downstream of the change."""
from __future__ import annotations

import os
import sys
import time
from typing import Callable

from localrunner.errors import UsageError

POLL_S = 0.5
_MAX_FILES_PER_TREE = 2000        # a huge input folder is watched by its first entries


def watched_paths(args, result: dict) -> set[str]:
    paths = {os.path.abspath(args.pipeline.split(':', 1)[0])}
    if args.params_file:
        paths.add(os.path.abspath(args.params_file))
    for pair in list(args.artifact) + list(args.secret) + list(args.config_map):
        if '=' in pair:
            paths.add(os.path.abspath(os.path.expanduser(pair.split('=', 1)[1])))
    for task in result.get('tasks', []):
        if task.get('type') == 'importer':
            for arts in task.get('outputs', {}).get('artifacts', {}).values():
                paths.update(a['path'] for a in arts if a.get('path'))
    return paths


def snapshot(paths: set[str]) -> dict:
    state = {}
    for path in paths:
        if os.path.isdir(path):
            count = 0
            for folder, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    full = os.path.join(folder, name)
                    try:
                        st = os.stat(full)
                    except OSError:
                        continue
                    state[full] = (st.st_mtime_ns, st.st_size)
                    count += 1
                    if count >= _MAX_FILES_PER_TREE:
                        break
        else:
            try:
                st = os.stat(path)
                state[path] = (st.st_mtime_ns, st.st_size)
            except OSError:
                state[path] = None
    return state


def watch(args, run_once: Callable, max_runs: int = 0) -> int:
    """Runs, then re-runs on every change until Ctrl-C (or max_runs, for tests)."""
    code, runs = 2, 0
    try:
        while True:
            try:
                code, result = run_once(args)
            except UsageError as e:       # a half-edited pipeline: say so, wait for the next save
                print(f'localrunner: error: {e}', file=sys.stderr, flush=True)
                code, result = 2, {}
            runs += 1
            if code > 128 or (max_runs and runs >= max_runs):    # 128+N: a signal canceled the run
                return code
            paths = watched_paths(args, result)
            before = snapshot(paths)
            print(f'watching {len(paths)} path(s) for changes; Ctrl-C to stop', flush=True)
            while True:
                time.sleep(POLL_S)
                now = snapshot(paths)
                if now != before:
                    changed = sorted(p for p in set(now) | set(before) if now.get(p) != before.get(p))
                    print(f'changed: {", ".join(changed[:3])}{" ..." if len(changed) > 3 else ""}', flush=True)
                    break
    except KeyboardInterrupt:
        return code
