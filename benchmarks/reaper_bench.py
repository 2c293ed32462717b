"""What the warm-start reaper costs a task, and what a pool of reapers would (the S7 cause).

Run under an environment's interpreter with KFP installed, as the zygote is:

    _KFP_RUNTIME=true ENV/bin/python3 benchmarks/reaper_bench.py [--tasks 1000] [--parallel 4]

It imports KFP's executor and freezes the collector as the zygote does (warm_zygote.py), then
runs the same stand-in task (a fresh folder, the component module written, compiled and run,
an output file written; no KFP executor) three ways, and prints CPU per task (this process
and every child, os.times) and tasks per second:
  alone      zygote -> task                  (one fork a task; the zygote is the parent)
  reaper     zygote -> reaper -> task        (what warm_zygote.py does today: two forks a task)
  pool       zygote -> long-lived reaper -> task, each reaper forking its tasks in turn
             (one fork a task, and the task's parent is still not the zygote)
The difference between rows is the cost of the process layout alone: the kernel's fork, exit
and copy-on-write page faults of a ~17 MB interpreter.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import select
import shutil
import tempfile
import time

import kfp.dsl.executor_main  # noqa: F401  (what the zygote holds in memory)

SOURCE = ('import kfp\nfrom kfp import dsl\nfrom kfp.dsl import *\nfrom typing import *\n\n'
          'def identity(x: int) -> int:\n    return x\n')


def task(root: str, i: int) -> None:
    """In the forked task: roughly the file work of a trivial KFP task."""
    folder = os.path.join(root, f't{i}')
    os.mkdir(folder)
    path = os.path.join(folder, 'ephemeral_component.py')
    with open(path, 'w') as f:
        f.write(SOURCE)
    namespace: dict = {}
    with open(path) as f:
        exec(compile(f.read(), path, 'exec'), namespace)
    with open(os.path.join(folder, 'out.json'), 'w') as f:
        json.dump({'parameterValues': {'Output': namespace['identity'](i)}}, f)


def fork_task(root: str, i: int) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            task(root, i)
        finally:
            os._exit(0)
    return pid


def watch(pid: int) -> None:
    """What a reaper does while its task runs: a pidfd polled, the status read, then reaped."""
    fd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    poller.poll()
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    os.waitpid(pid, 0)
    os.close(fd)


def with_reaper(root: str, i: int) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            watch(fork_task(root, i))
        finally:
            os._exit(0)
    return pid


def run_forked(root: str, n: int, parallel: int, start) -> None:
    running: set[int] = set()
    for i in range(n):
        while len(running) >= parallel:
            running.discard(os.wait()[0])
        running.add(start(root, i))
    while running:
        running.discard(os.wait()[0])


def run_pool(root: str, n: int, parallel: int) -> None:
    jobs_r, jobs_w = os.pipe()
    done_r, done_w = os.pipe()
    pool = []
    for _ in range(parallel):
        pid = os.fork()
        if pid == 0:
            try:
                while True:
                    job = os.read(jobs_r, 4)
                    if len(job) < 4 or job == b'\xff' * 4:
                        break
                    watch(fork_task(root, int.from_bytes(job, 'little')))
                    os.write(done_w, b'.')
            finally:
                os._exit(0)
        pool.append(pid)
    sent = done = 0
    while done < n:
        while sent - done < parallel and sent < n:
            os.write(jobs_w, sent.to_bytes(4, 'little'))
            sent += 1
        done += len(os.read(done_r, 64))
    for _ in pool:
        os.write(jobs_w, b'\xff' * 4)
    for pid in pool:
        os.waitpid(pid, 0)


def cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--tasks', type=int, default=1000)
    ap.add_argument('--parallel', type=int, default=4)
    ap.add_argument('--rounds', type=int, default=2)
    args = ap.parse_args()
    gc.collect()
    gc.freeze()
    ways = {'alone': lambda r, n, p: run_forked(r, n, p, fork_task),
            'reaper': lambda r, n, p: run_forked(r, n, p, with_reaper),
            'pool': run_pool}
    for _ in range(args.rounds):
        for name, way in ways.items():
            # in memory where there is one: the process layout is measured, not the disk
            root = tempfile.mkdtemp(prefix='reaper-bench-', dir='/dev/shm' if os.path.isdir('/dev/shm') else None)
            try:
                c, t = cpu(), time.perf_counter()
                way(root, args.tasks, args.parallel)
                wall, used = time.perf_counter() - t, cpu() - c
            finally:
                shutil.rmtree(root, ignore_errors=True)
            print(f'{name:7s} {used / args.tasks * 1000:6.2f} ms CPU/task  {args.tasks / wall:6.0f} tasks/s')


if __name__ == '__main__':
    main()
