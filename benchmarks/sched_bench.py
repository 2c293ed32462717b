"""Scheduler cost alone: a synthetic N-task DAG run by localrunner's engine on a no-op backend.

    lr-venv/bin/python benchmarks/sched_bench.py --tasks 10000 --root DIR --out result.json

The DAG: N container tasks (command `true`, no inputs or outputs), in layers of `width`;
each task after the first layer depends on 2 tasks of the layer before (fixed seed), so the
graph has real fan-in/fan-out and N/width levels. The backend launches nothing: its
Execution.wait() writes nothing and returns 0. Cache lookups are off.

Measured, in µs per task:
  validate  - load_pipeline() of the IR file: YAML/JSON parse + KFP protobuf schema check +
              reference/cycle checks (what every `localrunner run` pays before anything runs);
  plan      - Pipeline(...) + Run(...) construction;
  schedule  - Run.execute(): the DAG walk, input resolution, per-task folders, launch/wait
              through the thread pool, records and events.
  floor     - what the file system alone costs for the same tasks: a bare loop making each
              task's folders as the engine lays them out (task/, out/, logs/ and the executor
              input file), under the same root, after the run.
"""
import argparse
import json
import os
import random
import resource
import shutil
import sys
import time

from localrunner.backends.base import Backend, Execution
from localrunner.engine.caching import CacheSettings
from localrunner.engine.runtime import Run, RunOptions
from localrunner.spec import Pipeline, load_pipeline


class _NoopExecution(Execution):
    def wait(self) -> int:
        return 0

    def terminate(self) -> None:
        pass


class NoopBackend(Backend):
    name = 'noop'

    def environment_fingerprint(self, spec, log=None, build=True) -> str:
        return 'noop'

    def launch(self, spec, on_line) -> Execution:
        return _NoopExecution()


def synthetic_spec(n: int, width: int = 100, seed: int = 7) -> dict:
    rng = random.Random(seed)
    tasks = {}
    for i in range(n):
        name = f't{i}'
        task = {'componentRef': {'name': 'comp-noop'}, 'taskInfo': {'name': name},
                'cachingOptions': {}}
        layer = i // width
        if layer:
            prev = range((layer - 1) * width, min(layer * width, n))
            task['dependentTasks'] = sorted({f't{j}' for j in rng.sample(list(prev), 2)})
        tasks[name] = task
    return {
        'pipelineInfo': {'name': f'synthetic-{n}'},
        'schemaVersion': '2.1.0',
        'sdkVersion': 'kfp-2.17.3',
        'components': {'comp-noop': {'executorLabel': 'exec-noop'}},
        'deploymentSpec': {'executors': {'exec-noop': {'container': {
            'image': 'noop', 'command': ['true']}}}},
        'root': {'dag': {'tasks': tasks}},
    }


def folders_floor(base: str, n: int) -> float:
    """Seconds for a bare loop to make n tasks' folders and executor-input files, as a run
    lays them out (engine/container_task.py: _lay_out), then removed (not timed)."""
    os.makedirs(base)
    t = time.perf_counter()
    for i in range(n):
        task = os.path.join(base, f't{i}')
        os.mkdir(task)
        os.mkdir(os.path.join(task, 'out'))
        os.mkdir(os.path.join(task, 'logs'))
        fd = os.open(os.path.join(task, 'executor_input.json'), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        os.write(fd, b'{}')
        os.close(fd)
    elapsed = time.perf_counter() - t
    shutil.rmtree(base, ignore_errors=True)
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument('--tasks', type=int, default=10000)
    ap.add_argument('--width', type=int, default=100)
    ap.add_argument('--root', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--max-parallel', type=int, default=os.cpu_count() or 2)
    a = ap.parse_args()
    shutil.rmtree(a.root, ignore_errors=True)
    os.makedirs(a.root)
    spec = synthetic_spec(a.tasks, a.width)
    path = os.path.join(a.root, 'synthetic.json')
    with open(path, 'w') as f:
        json.dump(spec, f)

    t = time.perf_counter()
    load_pipeline(path)
    validate_s = time.perf_counter() - t

    t = time.perf_counter()
    pipeline = Pipeline(path, spec, platform={})
    options = RunOptions(root=a.root, max_parallel=a.max_parallel, cache=CacheSettings(enabled=False))
    run = Run(pipeline, {}, NoopBackend(), options)
    plan_s = time.perf_counter() - t

    t = time.perf_counter()
    result = run.execute()
    schedule_s = time.perf_counter() - t
    floor_s = folders_floor(os.path.join(a.root, 'floor'), a.tasks)
    states: dict = {}
    for r in result.records:
        states[r.state.value] = states.get(r.state.value, 0) + 1
    out = {'tasks': a.tasks, 'width': a.width, 'max_parallel': a.max_parallel,
           'validate_s': validate_s, 'plan_s': plan_s, 'schedule_s': schedule_s, 'folders_floor_s': floor_s,
           'state': result.state.value, 'states': states,
           'peak_rss_self_kib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    with open(a.out, 'w') as f:
        json.dump(out, f)
    shutil.rmtree(os.path.join(a.root, 'runs'), ignore_errors=True)
    return 0 if result.state.value == 'SUCCEEDED' else 1


if __name__ == '__main__':
    sys.exit(main())
