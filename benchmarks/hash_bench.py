"""Hashing: GB/s of localrunner_cache.digest_file against reading the file (cat > /dev/null),
cold (pages dropped with posix_fadvise DONTNEED) and warm (page cache), and the memoized path
(StatMemo: a stat + one sqlite lookup instead of reading).

    lr-venv/bin/python benchmarks/hash_bench.py --size-mib 1024 --dir DIR --out result.json [--reps 3]

Order alternates: cat, digest, cat, digest ... so a drift in the machine hits both alike.
"""
import argparse
import json
import os
import subprocess
import sys
import time

from localrunner_cache import StatMemo, digest_file
from localrunner_cache.memo import RACY_WINDOW_NS


def drop(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def cat(path: str) -> None:
    with open(os.devnull, 'wb') as null:
        subprocess.run(['cat', path], stdout=null, check=True)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument('--size-mib', type=int, default=1024)
    ap.add_argument('--dir', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--reps', type=int, default=3)
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    path = os.path.join(a.dir, f'blob-{a.size_mib}m')
    size = a.size_mib << 20
    if not os.path.exists(path) or os.path.getsize(path) != size:
        chunk = os.urandom(16 << 20)
        with open(path, 'wb') as f:
            for _ in range(size // len(chunk)):
                f.write(chunk)
            f.write(chunk[: size % len(chunk)])
    # StatMemo trusts an entry only if the file was last modified > RACY_WINDOW before hashing
    age = time.time_ns() - os.stat(path).st_mtime_ns
    if age < RACY_WINDOW_NS + 100_000_000:
        time.sleep((RACY_WINDOW_NS + 100_000_000 - age) / 1e9)

    res = {'size_bytes': size, 'cat_cold': [], 'digest_cold': [], 'cat_warm': [], 'digest_warm': [],
           'memo_first': None, 'memo_hit': []}
    for _ in range(a.reps):
        drop(path)
        res['cat_cold'].append(timed(lambda: cat(path)))
        drop(path)
        res['digest_cold'].append(timed(lambda: digest_file(path)))
    cat(path)     # bring it into the page cache
    for _ in range(a.reps):
        res['cat_warm'].append(timed(lambda: cat(path)))
        res['digest_warm'].append(timed(lambda: digest_file(path)))
    memo_db = os.path.join(a.dir, 'memo.db')
    for suffix in ('', '-wal', '-shm'):
        if os.path.exists(memo_db + suffix):
            os.remove(memo_db + suffix)
    memo = StatMemo(memo_db)
    res['memo_first'] = timed(lambda: memo.digest_file(path))
    for _ in range(max(5, a.reps)):
        res['memo_hit'].append(timed(lambda: memo.digest_file(path)))
    assert memo.digest_file(path) == digest_file(path)
    memo.close()
    with open(a.out, 'w') as f:
        json.dump(res, f)
    return 0


if __name__ == '__main__':
    sys.exit(main())
