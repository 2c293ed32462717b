"""Runs a compiled pipeline N times in one process with localrunner's Python API.

    lr-venv/bin/python benchmarks/lr_driver.py --ir X.yaml --root DIR --out result.json \
        [--backend subprocess|docker] [--repeat N] [--no-cache] [-p name=value ...]

Writes {"import_s", "runs": [{"s", "run_s", "state", "states", "task_s"}], "peak_rss_self_kib"}.
"""
import argparse
import json
import resource
import sys
import time

T0 = time.perf_counter()
from localrunner.api import run_pipeline  # noqa: E402
from localrunner.spec import load_pipeline  # noqa: E402

IMPORT_S = time.perf_counter() - T0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument('--ir', required=True)
    ap.add_argument('--root', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--backend', default='subprocess')
    ap.add_argument('--repeat', type=int, default=1)
    ap.add_argument('--no-cache', action='store_true')
    ap.add_argument('-p', action='append', default=[])
    a = ap.parse_args()
    params = dict(kv.split('=', 1) for kv in a.p)
    t = time.perf_counter()
    pipeline = load_pipeline(a.ir)
    load_s = time.perf_counter() - t
    runs = []
    for _ in range(a.repeat):
        s = time.perf_counter()
        result = run_pipeline(pipeline, params, root=a.root, backend=a.backend, use_cache=not a.no_cache)
        wall = time.perf_counter() - s
        states: dict = {}
        task_s = []
        for r in result.records:
            if r.kind in ('dag', 'loop'):
                continue
            states[r.state.value] = states.get(r.state.value, 0) + 1
            if r.finished and r.started:
                task_s.append(r.finished - r.started)
        runs.append({'s': wall, 'run_s': result.finished - result.started, 'state': result.state.value,
                     'states': states, 'task_s': task_s})
    with open(a.out, 'w') as f:
        json.dump({'import_s': IMPORT_S, 'load_s': load_s, 'runs': runs,
                   'peak_rss_self_kib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}, f)
    return 0 if all(r['state'] == 'SUCCEEDED' for r in runs) else 1


if __name__ == '__main__':
    sys.exit(main())
