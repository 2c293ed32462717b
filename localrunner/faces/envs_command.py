"""`localrunner envs ls | prune [--older-than AGE]`: the environments built for lightweight
components (venvs in the user cache; derived Docker images), shared by every run and test."""
from __future__ import annotations

import datetime
import os
import re
import shutil
import time

from localrunner.engine.caching import parse_duration
from localrunner.environments.venvs import COMPLETE_MARKER
from localrunner.errors import UsageError
from localrunner.user_cache import default_env_dir
from localrunner_cache import LockTimeout
from localrunner_cache.locks import file_lock

_VENV_KEY = re.compile(r'[0-9a-f]{20}')     # VenvCache.key(): the folder names it makes


def _size(path: str) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _describe(marker: str) -> str:
    try:
        with open(marker, encoding='utf-8', errors='replace') as f:
            return f.read(200)
    except OSError:
        return ''


def list_venvs(root: str) -> list[dict]:
    """Every venv folder under ``root``; one without its marker (a crashed or running
    build, or a damaged folder) is listed as incomplete, so that prune can remove it."""
    try:
        names = sorted(os.listdir(root))
    except OSError:                     # no env dir yet, or not a folder
        return []
    out = []
    for name in names:
        path = os.path.join(root, name)
        if not _VENV_KEY.fullmatch(name) or os.path.islink(path) or not os.path.isdir(path):
            continue                    # lock files, anything else kept there, links: not venvs
        marker = os.path.join(path, COMPLETE_MARKER)
        complete = os.path.isfile(marker)
        out.append({'kind': 'venv', 'key': name, 'path': path, 'complete': complete,
                    'last_used': _mtime(marker if complete else path), 'bytes': _size(path),
                    'describes': _describe(marker) if complete else '(incomplete: no build marker)'})
    return out


def list_images() -> list[dict]:
    try:
        import docker
        from localrunner.environments.images import KEY_LABEL, PACKAGES_LABEL
        client = docker.from_env(timeout=5)
        images = client.images.list(filters={'label': KEY_LABEL})
    except Exception:       # no engine: nothing to list
        return []
    out = []
    for image in images:
        labels = (image.attrs.get('Config') or {}).get('Labels') or {}
        created = image.attrs.get('Created', '')[:19]
        try:
            stamp = datetime.datetime.fromisoformat(created).replace(tzinfo=datetime.timezone.utc).timestamp()
        except ValueError:
            stamp = 0.0
        out.append({'kind': 'image', 'key': labels.get(KEY_LABEL, '')[:20], 'path': ', '.join(image.tags) or image.id,
                    'last_used': stamp, 'bytes': image.attrs.get('Size', 0),
                    'describes': labels.get(PACKAGES_LABEL, '')[:200], 'id': image.id})
    return out


def _remove_venv(path: str) -> bool:
    """Only when no build or task holds it: take the builder's lock first. The marker
    goes first, so a removal cut short leaves a folder that is rebuilt, never used."""
    try:
        with file_lock(path + '.lock', timeout=0):
            marker = os.path.join(path, COMPLETE_MARKER)
            if os.path.isdir(marker) and not os.path.islink(marker):
                shutil.rmtree(marker, ignore_errors=True)    # damaged: not the file a build writes
            elif os.path.lexists(marker):
                os.remove(marker)
            shutil.rmtree(path, ignore_errors=True)
        os.remove(path + '.lock')
    except LockTimeout:                 # a build or a task holds it
        return False
    except OSError:                     # a damaged entry (e.g. a folder where the lock file goes)
        return not os.path.exists(path)
    return not os.path.exists(path)


def envs_command(args) -> int:
    root = args.env_dir or default_env_dir()
    entries = (list_venvs(root) if args.kind != 'image' else []) + (list_images() if args.kind != 'venv' else [])
    if args.action == 'ls':
        for e in sorted(entries, key=lambda e: e['last_used'], reverse=True):
            when = datetime.datetime.fromtimestamp(e['last_used']).strftime('%Y-%m-%d %H:%M')
            flag = '' if e.get('complete', True) else '  (incomplete)'
            print(f'{e["kind"]:<5}  {e["key"]:<20}  {e["bytes"] / 2**20:8.1f} MiB  {when}  {e["path"]}{flag}')
        return 0
    if not args.older_than and not args.all:
        raise UsageError('envs prune: give --older-than AGE (e.g. 30d) or --all')
    try:
        cutoff = time.time() - (parse_duration(args.older_than) if args.older_than else -1)
    except ValueError as e:
        raise UsageError(f'--older-than: {e}') from None
    removed = freed = 0
    for e in entries:
        if not args.all and e['last_used'] >= cutoff:
            continue
        if e['kind'] == 'venv':
            ok = _remove_venv(e['path'])
        else:
            try:
                import docker
                docker.from_env(timeout=5).images.remove(e['id'], force=False)
                ok = True
            except Exception:           # in use by a container, or already gone
                ok = False
        if ok:
            removed += 1
            freed += e['bytes']
    print(f'removed {removed} environment(s), {freed / 2**20:.1f} MiB')
    return 0
