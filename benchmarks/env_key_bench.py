#!/usr/bin/env python3
"""What a cache lookup pays for a lightweight component's environment key, venv built.

    python3 benchmarks/env_key_bench.py [N]

Builds one small venv (a local wheel, no index) in a temp folder, then times N calls of the
subprocess backend's environment_fingerprint (reads the venv's record + one stat), next to
the formula it replaced (realpath of the interpreter + the requested steps' digest).
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from localrunner.backends.base import LaunchSpec  # noqa: E402
from localrunner.backends.base import BackendOptions
from localrunner.backends.subprocess_backend import SubprocessBackend  # noqa: E402
from localrunner.environments.python_env import InstallStep, PythonEnv  # noqa: E402
from tests.support.wheels import make_wheel  # noqa: E402


def per_call_us(fn, n: int) -> float:
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        rounds.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(rounds)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory() as tmp:
        os.environ['PIP_FIND_LINKS'] = make_wheel(os.path.join(tmp, 'wheels'), 'lr-bench-probe', '1.0').rsplit('/', 1)[0]
        env = PythonEnv((InstallStep(('lr-bench-probe',)),))
        backend = SubprocessBackend(BackendOptions(env_dir=os.path.join(tmp, 'envs')))
        spec = LaunchSpec(task='t', image='', argv=['true'], env={}, workdir=tmp, log_path='', python_env=env)
        t0 = time.perf_counter()
        print('fingerprint:', backend.environment_fingerprint(spec))
        print(f'first call (builds the venv): {time.perf_counter() - t0:.2f} s')
        new = per_call_us(lambda: backend.environment_fingerprint(spec), n)
        old = per_call_us(lambda: f'venv:{os.path.realpath(sys.executable)}|{sys.version.split()[0]}|'
                                  f'{sys.implementation.cache_tag}:{env.key()}', n)
        print(f'per lookup, venv built: {new:.0f} us (the path-based key it replaced: {old:.0f} us)')


if __name__ == '__main__':
    main()
