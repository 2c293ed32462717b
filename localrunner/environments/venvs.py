"""One virtual environment per distinct PythonEnv, built once, shared machine-wide.

Layout: <env dir>/<key>/ holds the venv; <key>/.complete marks a finished build (a folder
without it is a crashed build and is rebuilt); <key>/localrunner-resolved.json records what
the venv really holds (Resolved: interpreter, platform, installed versions), written
at build time and refreshed when its site-packages changes; <key>.lock serialises builders
across processes. The user's own Python environment is never modified.

The folder name is a local matter (it may hash host paths); what enters a cache key is the
record, which holds none.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from typing import Callable, Optional

from localrunner.backends.base import LaunchError
from localrunner.environments.resolved import Resolved, clean_environ, read as read_installed
from localrunner.environments.python_env import InstallStep, PythonEnv
from localrunner.user_cache import default_env_dir
from localrunner_cache.locks import file_lock

COMPLETE_MARKER = _COMPLETE = '.complete'
RESOLVED_FILE = 'localrunner-resolved.json'
# Bumped when the way a venv is built changes, so older venvs are not reused. (A venv of an
# older localrunner without RESOLVED_FILE is still used: its record is read once and written.)
_LAYOUT = 2


def _interpreter_identity(python: str) -> str:
    """The interpreter a venv is made from, to name its folder on THIS machine only (a real
    path): never a cache key, which reads the built venv instead (VenvCache.resolved)."""
    return f'{os.path.realpath(python)}|{sys.version.split()[0]}|{sys.implementation.cache_tag}'


def _uv() -> Optional[str]:
    found = shutil.which('uv')
    if found:
        return found
    try:
        import uv  # the PyPI wheel ships the binary
        return uv.find_uv_bin()
    except Exception:
        return None


def _site_dirs(venv: str) -> list[str]:
    """The venv's site-packages folders (POSIX and Windows layouts)."""
    return sorted(glob.glob(os.path.join(venv, 'lib', 'python*', 'site-packages'))
                  + glob.glob(os.path.join(venv, 'Lib', 'site-packages')))


def _stamp(venv: str) -> dict[str, int]:
    """mtime_ns of each site-packages folder: installing, upgrading or removing a
    distribution adds or removes a *.dist-info entry there, which changes it."""
    out = {}
    for path in _site_dirs(venv):
        try:
            out[os.path.relpath(path, venv)] = os.stat(path).st_mtime_ns
        except OSError:
            pass
    return out


def _venv_python(venv: str) -> str:
    return os.path.join(venv, 'Scripts', 'python.exe') if os.name == 'nt' else os.path.join(venv, 'bin', 'python')


def read_record(venv: str) -> Optional[Resolved]:
    """The venv's recorded reading when it is still true (its site-packages unchanged since);
    None when absent (a venv of an older localrunner), unreadable, stale or broken. Cheap:
    one small file and two stats -- this runs on every cache lookup."""
    try:
        with open(os.path.join(venv, RESOLVED_FILE), encoding='utf-8') as f:
            data = json.load(f)
        site = data['site']
        # stat the recorded folders (no glob: this is the hot path), and the venv's python
        # through its links (a deleted or moved base interpreter breaks the venv)
        if not site or any(os.stat(os.path.join(venv, rel)).st_mtime_ns != mtime
                           for rel, mtime in site.items()) or not os.path.exists(_venv_python(venv)):
            return None
        return Resolved.from_json(data.get('resolved'))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def write_record(venv: str) -> Resolved:
    """Reads what VENV holds with its own python (raises OSError/ValueError when it cannot
    tell) and records it, atomically: a reader sees the old record or the new one. The stamp
    is taken first, so a change made while reading makes the next read_record() stale rather
    than wrongly fresh. A venv folder we may not write to (another user's) is read each time."""
    stamp = _stamp(venv)
    reading = read_installed(_venv_python(venv))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=venv, prefix='.resolved-')
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            json.dump({'site': stamp, 'resolved': reading.to_json()}, f, sort_keys=True)
        os.replace(tmp, os.path.join(venv, RESOLVED_FILE))
    except OSError:
        if tmp:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return reading


class VenvCache:
    def __init__(self, root: Optional[str] = None, python: str = sys.executable, reaper=None):
        """reaper: registers each installer's process group (backends/reaper.py), so a build
        dies with a runner that is killed."""
        self.root = root or default_env_dir()
        self.python = python
        self._guard = threading.Lock()
        self._keys: dict[PythonEnv, str] = {}
        # build output of a build started without a log sink (by the cache key's reading,
        # before the engine has one): handed to the next ensure() of that env, i.e. prepare()
        self._held: dict[PythonEnv, list[str]] = {}
        self._reaper = reaper
        self._procs: set[subprocess.Popen] = set()

    def key(self, env: PythonEnv) -> str:
        # memoised: asked on every cache lookup, prepare and launch of a task
        key = self._keys.get(env)
        if key is None:
            ident = f'{_interpreter_identity(self.python)}|{env.key()}|{_LAYOUT}'
            key = self._keys[env] = hashlib.sha256(ident.encode()).hexdigest()[:20]
        return key

    def path(self, env: PythonEnv) -> str:
        return os.path.join(self.root, self.key(env))

    def is_built(self, env: PythonEnv) -> bool:
        return os.path.exists(os.path.join(self.path(env), _COMPLETE))

    def ensure(self, env: PythonEnv, log: Callable[[str], None]) -> str:
        """Returns the venv folder, building it first when needed (once across threads and processes)."""
        with self._guard:
            held = self._held.pop(env, [])
        for line in held:
            log(line)
        target = self.path(env)
        marker = os.path.join(target, _COMPLETE)
        if os.path.exists(marker):
            try:
                os.utime(marker)         # last use, for `localrunner envs prune --older-than`
            except OSError:
                pass
            return target
        return self._build_locked(env, target, log, broken=False)

    def resolved(self, env: PythonEnv, log: Optional[Callable[[str], None]] = None) -> Resolved:
        """What the venv for ENV really holds (the cache key's view of it), building the venv
        first when it does not exist yet.

        Why build before the cache lookup rather than resolve without installing and install
        that resolution afterwards: the built venv says what the task runs with by
        construction, while a separate resolve would have to reproduce KFP's prologue -- a
        SEQUENCE of pip installs (the user's packages, then kfp --no-deps; a later step may
        upgrade what an earlier one chose) -- and the installer's choices, and could drift
        from what then gets installed. The venv is needed anyway on a miss; on a hit on a new
        machine it is built once, and every later lookup reads the record (read_record: one
        small file and two stats).

        Without LOG, a build's output is held for the next ensure() of ENV (prepare())."""
        if log is None:
            log = self._holder(env)
        try:
            target = self.ensure(env, log)
            reading = read_record(target)
            if reading is not None:
                return reading
            try:
                return write_record(target)      # a venv of an older localrunner, or changed since
            except (OSError, ValueError):
                pass
            # its python cannot even list its packages (files deleted, base interpreter
            # moved): rebuild it, once
            target = self._build_locked(env, target, log, broken=True)
            try:
                return read_record(target) or write_record(target)
            except (OSError, ValueError) as e:
                raise LaunchError(f'the environment {target} was rebuilt but cannot be read: {e}',
                                  retryable=False) from None
        except OSError as e:                     # the env folder itself: permissions, disk full
            raise LaunchError(f'cannot build the environment under {self.root}: {e}',
                              retryable=False) from None

    def _holder(self, env: PythonEnv) -> Callable[[str], None]:
        def hold(line: str) -> None:
            with self._guard:
                self._held.setdefault(env, []).append(line)
        return hold

    def _build_locked(self, env: PythonEnv, target: str, log: Callable[[str], None], broken: bool) -> str:
        """Builds the venv under the per-key thread and file locks. BROKEN: the finished venv
        there is unusable, rebuild it unless another builder has already done so."""
        os.makedirs(self.root, exist_ok=True)
        with file_lock(target + '.lock', what=f'environment {os.path.basename(target)}'):
            done = os.path.exists(os.path.join(target, _COMPLETE))
            if done and (not broken or read_record(target) is not None):
                return target
            shutil.rmtree(target, ignore_errors=True)   # a crashed build's leftovers
            try:
                self._build(env, target, log)
                try:
                    write_record(target)
                except (OSError, ValueError) as e:
                    raise LaunchError(f'environment built but its packages cannot be '
                                      f'read: {e}', retryable=False) from None
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                raise
            with open(os.path.join(target, _COMPLETE), 'w') as f:
                f.write(repr(env.describe()))
        return target

    def _run(self, argv: list[str], what: str, log: Callable[[str], None]) -> None:
        # its own process group, so cancel() stops the installer and whatever it started
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                stdin=subprocess.DEVNULL, start_new_session=True, env=clean_environ())
        with self._guard:
            self._procs.add(proc)
        if self._reaper is not None:
            self._reaper.watch(proc.pid)
        try:
            output = proc.communicate()[0]
        finally:
            with self._guard:
                self._procs.discard(proc)
            if self._reaper is not None:
                self._reaper.forget(proc.pid)
        for line in output.splitlines():
            log(line)
        if proc.returncode < 0:
            raise LaunchError(f'environment build stopped while installing {what} (signal {-proc.returncode})',
                              retryable=False)
        if proc.returncode != 0:
            tail = ' | '.join(output.strip().splitlines()[-4:])
            raise LaunchError(f'environment build failed while installing {what}: {tail}', retryable=False)

    def cancel(self) -> None:
        """Kills the builds in progress (the run was canceled); the half-built venv is removed
        by ensure(), and the next build starts afresh."""
        with self._guard:
            running = list(self._procs)
        for proc in running:
            if proc.returncode is not None:      # already reaped: its id may be reused
                continue
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _build(self, env: PythonEnv, target: str, log: Callable[[str], None]) -> None:
        uv = _uv()
        log(f'building environment {os.path.basename(target)}: {" ".join(env.packages)}')
        if uv:
            self._run([uv, 'venv', '--quiet', '--python', self.python, target], 'the venv', log)
            py = os.path.join(target, 'bin', 'python')
            for step in env.steps:
                # --compile-bytecode: uv skips it by default, and with PYTHONDONTWRITEBYTECODE set
                # every task would then recompile pandas & co on import (seconds per task)
                self._run([uv, 'pip', 'install', '--quiet', '--compile-bytecode', '--python', py]
                          + self._uv_args(step),
                          ' '.join(step.requirements), log)
        else:
            self._run([self.python, '-m', 'venv', target], 'the venv', log)
            py = os.path.join(target, 'bin', 'python')
            for step in env.steps:
                self._run([py, '-m', 'pip', 'install', '--quiet', '--disable-pip-version-check']
                          + step.pip_args(), ' '.join(step.requirements), log)

    @staticmethod
    def _uv_args(step: InstallStep) -> list[str]:
        args = []
        # The host's pip setup (extra indexes, local wheel folders) keeps working behind a
        # proxy or offline; uv does not read pip.conf itself.
        for url in _host_pip_setting('extra-index-url') + _env_list('PIP_EXTRA_INDEX_URL'):
            args += ['--extra-index-url', url]
        for path in dict.fromkeys(_host_pip_setting('find-links') + _env_list('PIP_FIND_LINKS')):
            if os.path.exists(path.replace('file://', '')):
                args += ['--find-links', path]
        # pip weighs every index equally; uv's default (first index wins) would refuse a
        # version that only a later index has.
        args += ['--index-strategy', 'unsafe-best-match']
        return args + step.pip_args(trusted_hosts=False)


def _env_list(name: str) -> list[str]:
    return [v for v in os.environ.get(name, '').split() if v]


_PIP_CONFIG: Optional[dict] = None


def _host_pip_setting(name: str) -> list[str]:
    """Values of `pip config list` for global.<name> (read once)."""
    global _PIP_CONFIG
    if _PIP_CONFIG is None:
        _PIP_CONFIG = {}
        try:
            out = subprocess.run([sys.executable, '-m', 'pip', 'config', 'list'], capture_output=True,
                                 text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            out = ''
        for line in out.splitlines():
            if '=' not in line:
                continue
            k, v = line.split('=', 1)
            k = k.split('.', 1)[-1]
            _PIP_CONFIG.setdefault(k, []).extend(v.strip().strip("'\"").split())
    return [v for v in _PIP_CONFIG.get(name, []) if not v.startswith('file://') or os.path.exists(v[7:])]
