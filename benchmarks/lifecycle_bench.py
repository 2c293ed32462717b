#!/usr/bin/env python3
"""Lifecycle figures (subprocess backend, this machine):

    python3 benchmarks/lifecycle_bench.py [--tasks 300]

- saved state: how many times result.json is written during a run of N short tasks (it is
  kept current as tasks end, rate-limited to once a second), and the run's wall time;
- Ctrl-C: seconds from SIGINT to the runner's exit with 8 tasks running;
- kill -9: seconds from SIGKILL of the runner until none of its tasks is left.
Needs kfp (the test extra) to compile the pipelines.

Measured on the 2-core dev machine (2026-12-04): 300 tasks -> 5 writes of result.json in a
2.1 s run (100 tasks: 2 writes, 0.5 s); SIGINT -> exit 0.20 s; kill -9 -> no task left after
0.02-0.05 s (the reaper's SIGTERM; tasks that ignore it go after the reap grace, 2 s).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid

from kfp import compiler, dsl

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


@dsl.container_component
def echo(i: int):
    return dsl.ContainerSpec(image='python:3.11-slim', command=['sh', '-c', 'echo "$0"', i])


@dsl.container_component
def sleeper(marker: str, i: int):
    return dsl.ContainerSpec(image='python:3.11-slim',
                             command=['sh', '-c', 'export M="$0"; echo "up $1"; sleep 600 & wait', marker, i])


def saved_state(folder: str, tasks: int) -> dict:
    @dsl.pipeline(name='many')
    def many():
        with dsl.ParallelFor(list(range(tasks))) as i:
            echo(i=i)

    path = os.path.join(folder, 'many.yaml')
    compiler.Compiler().compile(many, path)
    from localrunner.engine.assembly import HistoryWriter, assemble
    from localrunner.engine.caching import CacheSettings
    from localrunner.engine.runtime import RunOptions
    run = assemble(path, RunOptions(root=os.path.join(folder, 'root'), cache=CacheSettings(enabled=False)))
    [writer] = [s for s in run.bus._subscribers if isinstance(s, HistoryWriter)]
    t = time.perf_counter()
    result = run.execute()
    return {'tasks': tasks, 'state': result.state.value, 'seconds': round(time.perf_counter() - t, 2),
            'result_json_writes': writer.writes}


def _marked(marker: str) -> int:
    n = 0
    for name in os.listdir('/proc'):
        if name.isdigit():
            try:
                with open(f'/proc/{name}/environ', 'rb') as f:
                    n += marker.encode() in f.read()
            except OSError:
                pass
    return n


def _start_sleepers(folder: str, count: int):
    marker = f'lr-bench-{uuid.uuid4().hex}'

    @dsl.pipeline(name='sleepers')
    def sleepers():
        for i in range(count):
            sleeper(marker=marker, i=i)

    path = os.path.join(folder, f'sleepers-{marker}.yaml')
    compiler.Compiler().compile(sleepers, path)
    proc = subprocess.Popen([sys.executable, '-m', 'localrunner.cli', 'run', path, '--root',
                             os.path.join(folder, 'root2'), '-q', '--max-parallel', str(count)],
                            cwd=REPO, stdout=subprocess.DEVNULL)
    while _marked(marker) < count:       # each task: its sleep
        time.sleep(0.05)
    return proc, marker


def ctrl_c(folder: str, count: int = 8) -> float:
    proc, _ = _start_sleepers(folder, count)
    t = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    proc.wait()
    return round(time.perf_counter() - t, 3)


def kill_9(folder: str, count: int = 8) -> float:
    proc, marker = _start_sleepers(folder, count)
    t = time.perf_counter()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    while _marked(marker):
        time.sleep(0.01)
    return round(time.perf_counter() - t, 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--tasks', type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        figures = {'saved_state': saved_state(folder, args.tasks),
                   'sigint_to_exit_s (8 running tasks)': ctrl_c(folder),
                   'kill9_to_no_task_s (8 running tasks)': kill_9(folder)}
    print(json.dumps(figures, indent=1))


if __name__ == '__main__':
    main()
