"""`localrunner cache stats | ls | show KEY | verify [--repair] | gc | prune`.

A damaged index is set aside (quarantine/) and rebuilt by the library as it is opened:
the commands still answer, with a `warning:` line on stderr. `verify` reports every kind
of damage on one line and exits 1 when it found any."""
from __future__ import annotations

import datetime
import json
import os
import re
import sys

from localrunner.engine.caching import parse_duration
from localrunner.layout import RootLayout
from localrunner.errors import UsageError
from localrunner_cache import CAS, ActionCache, CacheError, Index, StatMemo, gc, prune, verify

_SIZE = re.compile(r'^\s*([0-9.]+)\s*([kmgt]?i?b?)\s*$', re.I)
_SIZE_UNITS = {'': 1, 'b': 1, 'k': 10**3, 'kb': 10**3, 'ki': 2**10, 'kib': 2**10, 'm': 10**6, 'mb': 10**6,
               'mi': 2**20, 'mib': 2**20, 'g': 10**9, 'gb': 10**9, 'gi': 2**30, 'gib': 2**30,
               't': 10**12, 'tb': 10**12, 'ti': 2**40, 'tib': 2**40}
# objects younger than this survive gc and prune: a run in progress stores objects before
# it records them (objects a live run relies on are kept anyway, by its lease)
GC_GRACE_S = 3600.0


def parse_size(text: str) -> int:
    m = _SIZE.match(text or '')
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise UsageError(f'--max-size {text}: not a size (e.g. 500M, 10G)')
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def _human(n: float) -> str:
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if n < 1024 or unit == 'TiB':
            return f'{n:.1f} {unit}' if unit != 'B' else f'{int(n)} B'
        n /= 1024
    return str(n)


def _age(created: float) -> str:
    return datetime.datetime.fromtimestamp(created).strftime('%Y-%m-%d %H:%M:%S')


def _open(root: str, warnings: list) -> tuple[CAS, ActionCache]:
    layout = RootLayout(root)
    if not os.path.isdir(layout.cache_dir):
        raise UsageError(f'{root}: no cache here (run a pipeline with --root {root} first)')
    return CAS(layout.cas_dir, warnings), ActionCache(layout.actions_dir, layout.quarantine_dir, warnings)


def _other_indexes(root: str, warnings: list) -> list[tuple[str, object]]:
    """The stat memo and the explain index, for verify (only those that exist)."""
    layout, out = RootLayout(root), []
    if os.path.exists(layout.memo_db):
        out.append(('memo', StatMemo(layout.memo_db, layout.quarantine_dir, warnings)))
    if os.path.isdir(layout.last_dir):
        out.append(('last', Index(layout.last_dir, 'last', layout.quarantine_dir, warnings)))
    return out


def _verify_line(report: dict, repair: bool) -> str:
    damaged = ', '.join(f'{name} ({why[:80]})' for name, why in report['damaged_indexes'].items()) or '0'
    line = (f'checked {report["checked"]} objects and {report["actions"]} action entries; '
            f'corrupt (quarantined): {len(report["corrupt"])}; entries missing objects: {len(report["incomplete"])}; '
            f'unreadable entries: {len(report["unreadable"])}; damaged indexes (quarantined, rebuilt): {damaged}')
    if repair:
        line += f'; entries dropped: {report["dropped"]}'
    elif report['incomplete'] or report['unreadable']:
        line += ' (drop them with --repair)'
    return line


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:                     # removed meanwhile (a concurrent runs prune)
        return 0.0


def kept_run_digests(root: str, keep_runs: int | None) -> set[str]:
    """Digests that kept runs' results reference (newest first; all runs when keep_runs is None)."""
    runs_dir = RootLayout(root).runs_dir
    if not os.path.isdir(runs_dir):
        return set()
    runs = sorted((os.path.join(runs_dir, d) for d in os.listdir(runs_dir)), key=_mtime, reverse=True)
    if keep_runs is not None:
        runs = runs[:keep_runs]
    keep = set()
    for run in runs:
        try:
            with open(os.path.join(run, 'result.json')) as f:
                result = json.load(f)
        except (OSError, ValueError):
            continue
        try:
            for task in result.get('tasks', []):
                for arts in (task.get('outputs') or {}).get('artifacts', {}).values():
                    keep.update(a['digest'] for a in arts if isinstance(a.get('digest'), str))
        except (AttributeError, TypeError, KeyError):
            continue                    # a damaged record keeps nothing (the lease still protects live runs)
    return keep


def _find(ac: ActionCache, prefix: str):
    matches = [(k, r) for k, r in ac.entries() if k.startswith(prefix)]
    if not matches:
        raise UsageError(f'cache show {prefix}: no such action key')
    if len(matches) > 1:
        raise UsageError(f'cache show {prefix}: ambiguous, {len(matches)} keys start with it')
    return matches[0]


def cache_command(args) -> int:
    warnings: list[str] = []
    try:
        return _command(args, warnings)
    except CacheError as e:             # what even a rebuilt index cannot answer (e.g. a read-only disk)
        raise UsageError(f'cache {args.action}: {e}') from None
    finally:
        for message in dict.fromkeys(warnings):
            print(f'warning: {message}', file=sys.stderr)


def _command(args, warnings: list) -> int:
    cas, ac = _open(args.root, warnings)
    out = sys.stdout
    if args.action == 'stats':
        digests = list(cas.iter_digests())
        stats = {'actions': len(ac), 'objects': len(digests), 'bytes': cas.total_size(),
                 'root': os.path.abspath(args.root)}
        if args.json:
            print(json.dumps(stats), file=out)
        else:
            print(f'action results: {stats["actions"]}\nCAS objects:    {stats["objects"]} '
                  f'({_human(stats["bytes"])})\nroot:           {stats["root"]}', file=out)
    elif args.action == 'ls':
        rows = sorted(ac.entries(), key=lambda kr: kr[1].created, reverse=True)
        if args.json:
            print(json.dumps([{'key': k, 'created': r.created, 'producer': r.producer} for k, r in rows]), file=out)
        for key, r in rows if not args.json else []:
            print(f'{key[:16]}  {_age(r.created)}  {r.producer.get("task", "?")}  '
                  f'(run {r.producer.get("run", "?")})', file=out)
    elif args.action == 'show':
        if not args.key:
            raise UsageError('cache show: give an action key (or a prefix of one)')
        key, r = _find(ac, args.key)
        print(json.dumps({'key': key, **json.loads(r.to_json())}, indent=1), file=out)
    elif args.action == 'verify':
        others = _other_indexes(args.root, warnings)
        report = verify(cas, ac, repair=args.repair, indexes=others)
        for _name, index in others:
            index.close()
        warnings.clear()                # what was quarantined is on the one line below
        print(json.dumps(report) if args.json else _verify_line(report, args.repair), file=out)
        ac.close()
        return 1 if report['damaged'] else 0
    elif args.action == 'gc':
        stats = gc(cas, ac, keep=kept_run_digests(args.root, args.keep_runs), grace_s=GC_GRACE_S,
                   leases_dir=RootLayout(args.root).leases_dir)
        print(json.dumps(stats) if args.json else ', '.join(f'{k}: {v}' for k, v in stats.items()), file=out)
    elif args.action == 'prune':
        if not args.older_than and not args.max_size:
            raise UsageError('cache prune: give --older-than AGE and/or --max-size SIZE')
        try:
            older = parse_duration(args.older_than) if args.older_than else None
        except ValueError as e:
            raise UsageError(f'--older-than: {e}') from None
        size = parse_size(args.max_size) if args.max_size else None
        stats = prune(cas, ac, older_than_s=older, max_size_bytes=size,
                      keep=frozenset(kept_run_digests(args.root, args.keep_runs)) if args.keep_runs else frozenset(),
                      grace_s=GC_GRACE_S, leases_dir=RootLayout(args.root).leases_dir)
        print(json.dumps(stats) if args.json else ', '.join(f'{k}: {v}' for k, v in stats.items()), file=out)
    ac.close()
    return 0
