"""Warm start vs exec, per task, with the subprocess backend alone (no engine), and its floors.

    lr-venv/bin/python benchmarks/warm_bench.py --ir one-sub.yaml --out warm.json [--tasks N] [--blocks B]

The task is the trivial lightweight component's own command (KFP's `sh -ec ... python3 -m
kfp.dsl.executor_main ...`) with its executor input, launched and waited for one at a time,
warm (forked from the environment's zygote) and exec'd (--no-warm-start), in alternating blocks.
Floors, measured in the same process: `python3 -c pass` in the task's environment (the
cheapest exec of an interpreter), and a bare fork (fork, _exit, wait) of that interpreter
with KFP's executor imported (what a zygote forks).

Writes {"warm_s": [...], "exec_s": [...], "first_warm_s" (the zygote's start and the first
task), "python_pass_s": [...], "bare_fork_s": [...]} (seconds per task).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import yaml

from localrunner.backends.base import LaunchSpec
from localrunner.backends.base import BackendOptions
from localrunner.backends.subprocess_backend import SubprocessBackend
from localrunner.environments.python_env import lift_prologue

_FORK_LOOP = '''
import os, sys, time
import kfp.dsl.executor_main
n = int(sys.argv[1]); out = []
for _ in range(n):
    t = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    out.append(time.perf_counter() - t)
print(out)
'''


def _spec(ir: str, folder: str) -> LaunchSpec:
    with open(ir) as f:
        doc = yaml.safe_load(f)
    container = next(iter(doc['deploymentSpec']['executors'].values()))['container']
    env, argv = lift_prologue(container['command'], container['args'])
    executor_input = {'inputs': {'parameterValues': {'x': 1}},
                      'outputs': {'parameters': {'Output': {'outputFile': os.path.join(folder, 'Output')}},
                                  'outputFile': os.path.join(folder, 'executor_output.json')}}
    argv = [a.replace('{{$}}', json.dumps(executor_input)) for a in argv]
    return LaunchSpec(task='bench', image='', argv=argv, env={}, workdir=folder,
                      log_path=os.path.join(folder, 'log.txt'), python_env=env)


def _one(backend: SubprocessBackend, spec: LaunchSpec) -> float:
    t = time.perf_counter()
    code = backend.launch(spec, lambda line: None).wait()
    if code != 0:
        raise SystemExit(f'task exited with {code}; log: {spec.log_path}')
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument('--ir', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--tasks', type=int, default=20, help='tasks per block')
    ap.add_argument('--blocks', type=int, default=3, help='alternating warm/exec blocks')
    a = ap.parse_args()
    folder = tempfile.mkdtemp(prefix='warm-bench-')
    spec = _spec(a.ir, folder)
    warm, cold = SubprocessBackend(BackendOptions(warm_start=True)), SubprocessBackend(BackendOptions(warm_start=False))
    if warm.warm is None:
        raise SystemExit('warm start is not supported on this machine')
    cold.prepare(spec, lambda line: None)              # the venv, built once, not timed
    python = os.path.join(warm.venvs.path(spec.python_env), 'bin', 'python3')
    out = {'warm_s': [], 'exec_s': [], 'python_pass_s': [], 'bare_fork_s': []}
    try:
        t = time.perf_counter()
        warm.prepare(spec, lambda line: None)          # starts the environment's zygote
        out['first_warm_s'] = time.perf_counter() - t + _one(warm, spec)
        for _ in range(a.blocks):
            out['warm_s'] += [_one(warm, spec) for _ in range(a.tasks)]
            out['exec_s'] += [_one(cold, spec) for _ in range(a.tasks)]
            for _ in range(a.tasks):
                t = time.perf_counter()
                subprocess.run([python, '-c', 'pass'], check=True)
                out['python_pass_s'].append(time.perf_counter() - t)
            forks = subprocess.run([python, '-c', _FORK_LOOP, str(a.tasks)], check=True, capture_output=True,
                                   text=True, env=dict(os.environ, _KFP_RUNTIME='true'))
            out['bare_fork_s'] += json.loads(forks.stdout)
        out['launched_warm'] = warm.warm.launched
    finally:
        warm.close()
        cold.close()
    with open(a.out, 'w') as f:
        json.dump(out, f)
    return 0


if __name__ == '__main__':
    sys.exit(main())
