"""One virtual environment per distinct PythonEnv, built once, shared machine-wide.

Layout: <env dir>/<key>/ holds the venv; <key>/.complete marks a finished build (a folder
without it is a crashed build and is rebuilt); <key>.lock serialises builders across
processes. The user's own Python environment is never modified.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from typing import Callable, Optional

import platformdirs

from localrunner.backends.base import LaunchError
from localrunner.environments.python_env import InstallStep, PythonEnv

COMPLETE_MARKER = _COMPLETE = '.complete'
# Bumped when the way a venv is built changes, so older venvs are not reused.
_LAYOUT = 2


def default_env_dir() -> str:
    return os.environ.get('LOCALRUNNER_ENV_DIR') or os.path.join(
        platformdirs.user_cache_dir('localrunner'), 'envs')


def interpreter_identity(python: str = sys.executable) -> str:
    """The interpreter a venv is made from: its real path and version."""
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


class VenvCache:
    def __init__(self, root: Optional[str] = None, python: str = sys.executable, reaper=None):
        """reaper: registers each installer's process group (backends/reaper.py), so a build
        dies with a runner that is killed."""
        self.root = root or default_env_dir()
        self.python = python
        self._thread_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._reaper = reaper
        self._procs: set[subprocess.Popen] = set()

    def key(self, env: PythonEnv) -> str:
        ident = f'{interpreter_identity(self.python)}|{env.key()}|{_LAYOUT}'
        return hashlib.sha256(ident.encode()).hexdigest()[:20]

    def path(self, env: PythonEnv) -> str:
        return os.path.join(self.root, self.key(env))

    def is_built(self, env: PythonEnv) -> bool:
        return os.path.exists(os.path.join(self.path(env), _COMPLETE))

    def ensure(self, env: PythonEnv, log: Callable[[str], None]) -> str:
        """Returns the venv folder, building it first when needed (once across threads and processes)."""
        target = self.path(env)
        marker = os.path.join(target, _COMPLETE)
        if os.path.exists(marker):
            try:
                os.utime(marker)         # last use, for `localrunner envs prune --older-than`
            except OSError:
                pass
            return target
        key = os.path.basename(target)
        with self._guard:
            tlock = self._thread_locks.setdefault(key, threading.Lock())
        with tlock:
            os.makedirs(self.root, exist_ok=True)
            with open(target + '.lock', 'w') as lockf:
                fcntl.flock(lockf, fcntl.LOCK_EX)
                try:
                    if os.path.exists(os.path.join(target, _COMPLETE)):
                        return target
                    shutil.rmtree(target, ignore_errors=True)   # a crashed build's leftovers
                    try:
                        self._build(env, target, log)
                    except BaseException:
                        shutil.rmtree(target, ignore_errors=True)
                        raise
                    with open(os.path.join(target, _COMPLETE), 'w') as f:
                        f.write(repr(env.describe()))
                finally:
                    fcntl.flock(lockf, fcntl.LOCK_UN)
        return target

    def _run(self, argv: list[str], what: str, log: Callable[[str], None]) -> None:
        # its own process group, so cancel() stops the installer and whatever it started
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                stdin=subprocess.DEVNULL, start_new_session=True)
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
