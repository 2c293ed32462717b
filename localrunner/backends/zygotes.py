"""The runner's side of a warm-start zygote process (warm_zygote.py): start it, read its hello,
stop it; and the zygotes started ahead of any backend (AHEAD, for backends/warm_prestart.py).

Kept apart from warm.py (the backend's warm path: launching tasks through a zygote) so that
the CLI can start a zygote before it imports the engine: this module imports the standard
library only, and no concurrent.futures (whose logging import alone is ~5 ms).
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from typing import Callable, Optional

ZYGOTE_PROGRAM = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'warm_zygote.py')
_START_TIMEOUT_S = 120.0      # a zygote's imports on a loaded machine
_MAX_RESTARTS = 20            # a zygote that keeps dying: its environment runs exec'd

# Variables the interpreter, the C library or KFP's import read at start-up: a zygote serves
# only tasks whose values are the same as its own (the rest is the task's own, set per task).
_STARTUP_NAMES = frozenset({'PATH', 'HOME', 'LANG', 'LANGUAGE', 'TZ', 'GLIBC_TUNABLES'})
_STARTUP_PREFIXES = ('PYTHON', 'LC_', 'LD_', 'MALLOC_')


def supported() -> bool:
    """fork, pidfds (Linux 5.3) and SCM_RIGHTS through the socket module (Python 3.9)."""
    if not sys.platform.startswith('linux') or not hasattr(socket, 'send_fds'):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True


def python3_on(path: Optional[str]) -> Optional[str]:
    """The python3 that `sh` finds on a task's PATH, as the exec path would run it."""
    return shutil.which('python3', path=path if path is not None else os.defpath)


def _startup_env(env: dict[str, str]) -> tuple:
    return tuple(sorted((k, v) for k, v in env.items()
                        if k in _STARTUP_NAMES or k.startswith(_STARTUP_PREFIXES)))


def zygote_key(python: str, cwd: str, env: dict[str, str], module: str) -> tuple:
    """What a zygote serves: a task with this interpreter, working directory, start-up
    variables (of ENV, the task's environment) and executor module. The one place the key is
    made: a backend's zygotes and the ones started ahead (AHEAD) must agree on it."""
    return (python, cwd, _startup_env(env), module)


class ZygoteError(Exception):
    """This environment's zygote cannot serve: its tasks run exec'd."""


class Zygote:
    """One zygote process: started on first use, restarted when found dead."""

    def __init__(self, python: str, cwd: str, env: dict[str, str], module: str):
        self.python, self.cwd, self.env, self.module = python, cwd, env, module
        self.lock = threading.Lock()
        self.proc: Optional[subprocess.Popen] = None
        self.control: Optional[socket.socket] = None
        self.added: dict[str, str] = {}       # what the interpreter adds at start-up (LC_CTYPE)
        self.starts = 0
        self.broken: Optional[str] = None     # why this environment runs exec'd
        self.ready = False                    # its hello was read: it serves tasks

    @classmethod
    def of(cls, key: tuple) -> 'Zygote':
        """The zygote for a zygote_key()."""
        python, cwd, startup, module = key
        return cls(python, cwd, dict(startup), module)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ensure(self, spawner) -> None:
        """Starts (or restarts) the zygote through SPAWNER.call (warm._Spawner: the thread it
        dies with), or greets one started ahead (spawn()); raises ZygoteError when it cannot serve."""
        if self.broken:
            raise ZygoteError(self.broken)
        if self.alive():
            if not self.ready:
                self._greet()
            return
        self.stop()
        self.spawn(spawner.call)
        self._greet()

    def spawn(self, call: Callable) -> None:
        """Starts the process, through CALL(fn) (fn run in the thread it dies with); its hello
        is read by ensure(), so a zygote can be started ahead and greeted when first used."""
        if self.starts > _MAX_RESTARTS:
            self.broken = f'zygote died {self.starts} times'
            raise ZygoteError(self.broken)
        self.starts += 1
        self.ready = False
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(self.env, _KFP_RUNTIME='true')
        try:
            # its stdout and stderr: a file with no name, so that nothing is left behind
            # whatever ends the zygote (it checks the file is still empty after its imports)
            with tempfile.TemporaryFile() as log:
                argv = [self.python, ZYGOTE_PROGRAM, str(theirs.fileno()), str(os.getpid()), self.module]
                self.proc = call(lambda: subprocess.Popen(
                    argv, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    pass_fds=(theirs.fileno(),), start_new_session=True))
        except OSError as e:
            ours.close()
            self.broken = f'cannot start {self.python}: {e}'
            raise ZygoteError(self.broken) from None
        finally:
            theirs.close()
        self.control = ours

    def _greet(self) -> None:
        """Reads the started zygote's hello: it serves, or it is broken (and stopped)."""
        ours = self.control
        ours.settimeout(_START_TIMEOUT_S)
        try:
            hello = json.loads(ours.recv(1 << 16) or b'null')
        except (OSError, ValueError):
            hello = None
        ours.settimeout(None)
        if not hello or hello.get('error') or hello.get('threads') != 1:
            why = (hello or {}).get('error') or (f'{hello["threads"]} threads after its imports' if hello
                                                 else 'exited before it was ready')
            self.broken = f'zygote for {self.python}: {why}'
            self.stop()
            raise ZygoteError(self.broken)
        self.added = hello.get('added') or {}
        self.ready = True

    def stop(self) -> None:
        self.ready = False
        if self.control is not None:
            self.control.close()            # EOF: the zygote exits; running tasks are not its
            self.control = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


class _AheadOfTime:
    """Zygotes started before any backend exists (warm_prestart.py: the CLI starts those the
    last run of the same pipeline used, while it imports the engine). A backend adopts the
    one whose key is its own; whatever is not adopted is stopped when the process exits, and
    dies with it in any case (parent-death signal, EOF). Also records which zygotes served
    tasks in this process, for the next pre-start."""

    def __init__(self):
        self._lock = threading.Lock()
        self._zygotes: dict[tuple, Zygote] = {}
        self.served: dict[tuple, None] = {}          # (python, module), in first-use order

    def start(self, python: str, cwd: str, env: dict[str, str], module: str) -> None:
        """Starts a zygote from the calling thread, which must live as long as the process
        (the main thread): the zygote's parent-death signal follows that thread."""
        key = zygote_key(python, cwd, env, module)
        zygote = Zygote.of(key)
        try:
            zygote.spawn(lambda fn: fn())
        except ZygoteError:
            return
        with self._lock:
            self._zygotes[key] = zygote

    def take(self, key: tuple) -> Optional[Zygote]:
        with self._lock:
            return self._zygotes.pop(key, None)

    def stop_all(self) -> None:
        """Kills the zygotes no backend adopted: they never had a task, so they have no
        reaper, and a kill does not wait for their imports to end as EOF would."""
        with self._lock:
            zygotes, self._zygotes = list(self._zygotes.values()), {}
        for zygote in zygotes:
            if zygote.proc is not None:
                zygote.proc.kill()
            zygote.stop()


AHEAD = _AheadOfTime()
atexit.register(AHEAD.stop_all)
