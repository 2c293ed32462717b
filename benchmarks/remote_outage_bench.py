"""A dead remote cache: what ten lookups + ten uploads cost a run, through TaskCache with the
shipped S3 client settings (open_remote) and the store's circuit breaker, against two kinds
of black hole on 127.0.0.1 (cache/tests/lrcache_helpers.py): "silent" accepts and never
answers, "unaccepted" never completes the TCP handshake.

    python benchmarks/remote_outage_bench.py [--reps 3] [--old]

--old also times ONE request with the client settings used before (connect 3 s, read 60 s,
urllib3 Retry(total=2) retrying reads too, no breaker): before, each of the twenty calls paid
that. Prints JSON; figures are in benchmarks/remote_outage.md.
"""
import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from localrunner.engine.caching import CacheSettings, TaskCache  # noqa: E402


def black_hole(kind):
    spec = importlib.util.spec_from_file_location('lrcache_helpers', os.path.join(ROOT, 'cache', 'tests',
                                                                                 'lrcache_helpers.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.BlackHole(kind)


def env_for(endpoint):
    os.environ.update({'LOCALRUNNER_S3_ENDPOINT': endpoint, 'LOCALRUNNER_S3_INSECURE': '1',
                       'AWS_ACCESS_KEY_ID': 'x', 'AWS_SECRET_ACCESS_KEY': 'y', 'AWS_DEFAULT_REGION': 'us-east-1'})


def twenty_calls(kind):
    hole = black_hole(kind)
    env_for(hole.endpoint)
    with tempfile.TemporaryDirectory() as tmp:
        cache = TaskCache(os.path.join(tmp, 'root'), CacheSettings(remote='s3://team/ml'))
        out = os.path.join(tmp, 'out')
        started = time.monotonic()
        for i in range(10):
            cache.lookup(f'key{i}')
            with open(out, 'w') as f:
                f.write(f'result {i}')
            digest, _ = cache.put_output(out)
            cache.record(f'key{i}', {}, {'parameters': {}, 'artifacts': {}}, {digest}, {'run': 'bench'})
        elapsed = time.monotonic() - started
        warnings = cache.drain_warnings()
        cache.close()
    hole.close()
    return elapsed, len(warnings), hole.accepted


def one_old_request(kind):
    import urllib3
    from minio import Minio
    from localrunner_cache import CacheError, RemoteStore
    hole = black_hole(kind)
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=3, read=60),
                               retries=urllib3.Retry(total=2, backoff_factor=0.2,
                                                     status_forcelist=[500, 502, 503, 504]))
    client = Minio(hole.endpoint, access_key='x', secret_key='y', secure=False, region='us-east-1', http_client=http)
    started = time.monotonic()
    try:
        RemoteStore(client, 'team').get_action('key')
    except CacheError:
        pass
    elapsed = time.monotonic() - started
    hole.close()
    return elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--reps', type=int, default=3)
    parser.add_argument('--old', action='store_true')
    args = parser.parse_args()
    report = {}
    for kind in ('silent', 'unaccepted'):
        runs = [twenty_calls(kind) for _ in range(args.reps)]
        times = [r[0] for r in runs]
        report[kind] = {'twenty_calls_s': {'median': round(statistics.median(times), 2),
                                           'min': round(min(times), 2), 'max': round(max(times), 2)},
                        'warnings': sorted({r[1] for r in runs}), 'connections_accepted': sorted({r[2] for r in runs})}
        if args.old:
            report[kind]['old_settings_one_request_s'] = round(one_old_request(kind), 1)
    print(json.dumps(report, indent=1))


if __name__ == '__main__':
    main()
