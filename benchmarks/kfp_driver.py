"""Runs a compiled pipeline N times in one process with kfp.local (kfp==2.17.3, own venv).

    kfp-venv/bin/python benchmarks/kfp_driver.py --ir X.yaml --runner sub|venv|docker \
        --root DIR --out result.json [--repeat N] [--cache] [-p name=value ...]

Writes {"import_s", "init_s", "runs": [{"s", "cache_hits", "ok"}], "peak_rss_self_kib"} to
--out (kfp.local re-indents print() after a ParallelFor, so nothing is parsed from stdout).
"""
import argparse
import json
import logging
import os
import resource
import sys
import time

T0 = time.perf_counter()
from kfp import components, local  # noqa: E402

IMPORT_S = time.perf_counter() - T0


class _HitCounter(logging.Handler):
    def __init__(self):
        super().__init__()
        self.hits = 0

    def emit(self, record):
        if 'cache hit' in record.getMessage():
            self.hits += 1


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument('--ir', required=True)
    ap.add_argument('--runner', choices=['sub', 'venv', 'docker'], required=True)
    ap.add_argument('--root', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--repeat', type=int, default=1)
    ap.add_argument('--cache', action='store_true')
    ap.add_argument('-p', action='append', default=[])
    a = ap.parse_args()
    params = {}
    for kv in a.p:
        k, v = kv.split('=', 1)
        params[k] = v
    t = time.perf_counter()
    runner = {'sub': lambda: local.SubprocessRunner(use_venv=False),
              'venv': lambda: local.SubprocessRunner(use_venv=True),
              # dockerd here has no bridge network; only the host network reaches PyPI
              'docker': lambda: local.DockerRunner(network_mode='host')}[a.runner]()
    os.makedirs(a.root, exist_ok=True)
    local.init(runner=runner, pipeline_root=os.path.join(a.root, 'outputs'),
               workspace_root=os.path.join(a.root, 'workspace'), raise_on_error=True,
               enable_caching=a.cache, cache_root=os.path.join(a.root, 'cache') if a.cache else None)
    pipeline = components.load_component_from_file(a.ir)
    init_s = time.perf_counter() - t
    counter = _HitCounter()
    logging.getLogger().addHandler(counter)
    runs = []
    for _ in range(a.repeat):
        before = counter.hits
        s = time.perf_counter()
        ok = True
        try:
            pipeline(**params)
        except Exception as e:      # raise_on_error=True: a failed task raises
            print(f'kfp_driver: run failed: {type(e).__name__}: {e}', file=sys.stderr)
            ok = False
        runs.append({'s': time.perf_counter() - s, 'cache_hits': counter.hits - before, 'ok': ok})
    with open(a.out, 'w') as f:
        json.dump({'import_s': IMPORT_S, 'init_s': init_s, 'runs': runs,
                   'peak_rss_self_kib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}, f)
    return 0 if all(r['ok'] for r in runs) else 1


if __name__ == '__main__':
    sys.exit(main())
