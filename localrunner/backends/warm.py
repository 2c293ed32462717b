"""Warm start for lightweight components: a task forked from a zygote instead of exec'd.

After its pip prologue is lifted (environments/python_env.py), a lightweight component's
command is KFP's
    sh -ec 'program_path=$(mktemp -d)
            printf "%s" "$0" > "$program_path/ephemeral_component.py"
            _KFP_RUNTIME=true python3 -m kfp.dsl.executor_main --component_module_path ... "$@"'
       SOURCE --executor_input ... --function_to_execute NAME
(kfp/dsl/component_factory.py: _get_command_and_args_for_lightweight_component). Exec'd, that
is an interpreter start plus KFP's imports, ~60-70 ms of CPU per task. Here one zygote per
environment (warm_zygote.py, under the environment's python3) imports KFP's executor once and
forks each task, which then does exactly what that script does: same environment, working
directory, rlimits, umask, own session, stdout+stderr to the task's log pipe, the executor
run as __main__ through runpy with the same argv.

The runner sees a Popen-like object (WarmProcess): the backend's _ProcessExecution pumps its
log, waits for it and terminates it with killpg as it does an exec'd process, and its exit
status reads as the exec path's `sh` reports it. Anything other than that exact command, a
command execve would refuse, or an environment whose zygote cannot start, runs exec'd.
"""
from __future__ import annotations

import collections
import concurrent.futures
import functools
import json
import os
import queue
import re
import resource
import signal
import socket
import struct
import subprocess
import threading
import time
from typing import Optional

from localrunner.backends.base import LaunchSpec
from localrunner.backends.subprocess_backend import _ProcessExecution
from localrunner.backends.zygotes import AHEAD, Zygote, ZygoteError, python3_on, zygote_key

_STATUS = struct.Struct('=i')
_LAUNCH_TIMEOUT_S = 60.0      # fork, fork, setsid: milliseconds, unless the machine is stuck
_MAX_ZYGOTES = 8              # distinct environments at once; the least recently used stops

_RLIMITS = sorted(getattr(resource, n) for n in dir(resource) if n.startswith('RLIMIT_'))

_SCRIPT_LINES = ('program_path=$(mktemp -d)',
                 'printf "%s" "$0" > "$program_path/ephemeral_component.py"')
_RUN_LINE = re.compile(r'_KFP_RUNTIME=true python3 -m ([A-Za-z_][\w.]*) --component_module_path '
                       r'"\$program_path/ephemeral_component\.py" "\$@"')


def kfp_program(argv: list[str]) -> Optional[tuple[str, str, list[str]]]:
    """(executor module, component source, executor args) when argv is KFP's lightweight
    component command, else None. Lines are compared with runs of blanks collapsed (KFP's
    line continuations leave long runs of spaces), never across lines."""
    if len(argv) < 4 or argv[0] != 'sh' or argv[1] != '-ec':
        return None
    lines = [' '.join(line.split()) for line in argv[2].splitlines() if line.strip()]
    if len(lines) != 3 or tuple(lines[:2]) != _SCRIPT_LINES:
        return None
    match = _RUN_LINE.fullmatch(lines[2])
    if match is None:
        return None
    return match.group(1), argv[3], list(argv[4:])


def _execable(argv: list[str], env: dict[str, str]) -> bool:
    """Whether execve(2) would take this command line and environment (Linux: 32 pages per
    string, ARG_MAX for all of them with their pointers). A command the exec path cannot
    start must fail here too, as it would on a cluster, not run because it was forked."""
    # os.fsencode's encoding, called directly (~40 strings a task); each string's length,
    # its NUL and its pointer count toward the total
    sizes = [len(a.encode('utf-8', 'surrogateescape')) for a in argv]
    sizes += [len(f'{k}={v}'.encode('utf-8', 'surrogateescape')) for k, v in env.items()]
    per_string, total = _exec_limits()
    return max(sizes) < per_string and sum(sizes) + (1 + 8) * len(sizes) <= total


@functools.lru_cache(maxsize=1)
def _exec_limits() -> tuple[int, int]:
    # sysconf(ARG_MAX) reads the stack rlimit (a syscall): once per process, not per string
    return 32 * os.sysconf('SC_PAGE_SIZE'), os.sysconf('SC_ARG_MAX')


def _dash_pwd(env_pwd: Optional[str], cwd: str) -> str:
    """The PWD that `sh` (dash) exports: the inherited one when it names the working
    directory, else getcwd()'s physical path."""
    if env_pwd and env_pwd.startswith('/'):
        try:
            a, b = os.stat(env_pwd), os.stat(cwd)
            if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino):
                return env_pwd
        except OSError:
            pass
    return os.path.realpath(cwd)


def _umask() -> int:
    """This process's umask, read without changing it (os.umask would, for every thread)."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('Umask:'):
                return int(line.split()[1], 8)
    raise OSError('no Umask in /proc/self/status')


class _ZygoteGone(Exception):
    """The zygote died under us; it is restarted."""


class WarmProcess:
    """The part of subprocess.Popen that _ProcessExecution uses (pid, stdout, poll, wait),
    for a task forked by a zygote. Its exit status comes over the task's socket from its
    reaper, which keeps it unreaped (pid and process group reserved) until we have read it."""

    def __init__(self, pid: int, sock: socket.socket, log_fd: int, args: list[str]):
        self.pid = pid
        self.args = args
        self.stdout = open(log_fd, 'rb')
        self.returncode: Optional[int] = None
        self.group_signalled = False      # the runner sent its process group a signal
        self._sock = sock
        self._cond = threading.Condition()
        self._reading = False

    def signalling_group(self) -> None:
        """Says the runner is about to signal the task's process group (SIGTERM, then SIGKILL
        after the grace): exec'd, `sh` dies of the SIGTERM, so the status is -15, and it says
        nothing of how python3 died."""
        with self._cond:
            self.group_signalled = True
            if self.returncode is None:
                try:
                    self._sock.send(b'G')
                except OSError:
                    pass

    def poll(self) -> Optional[int]:
        return self._status(0.0)

    def wait(self, timeout: Optional[float] = None) -> int:
        code = self._status(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return code

    def _status(self, timeout: Optional[float]) -> Optional[int]:
        """One thread reads the socket at a time; the others wait for what it read."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self.returncode is None and self._reading:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            if self.returncode is not None:
                return self.returncode
            self._reading = True
        code = None
        try:
            code = self._read(deadline)
            # Exec'd, python3 is the child of `sh -ec`: sh reports a child killed by signal N
            # as exit code 128+N, and dies itself of the SIGTERM the runner sends the group.
            if code is not None and self.group_signalled:
                code = -signal.SIGTERM
            elif code is not None and code < 0:
                code = 128 - code
        finally:
            with self._cond:
                self._reading = False
                if code is not None:
                    self.returncode = code
                    self._sock.close()           # the reaper may now reap the task
                self._cond.notify_all()
        return code

    def _read(self, deadline: Optional[float]) -> Optional[int]:
        data = b''
        while len(data) < 1 + _STATUS.size:
            # a status begun is read to its end (five bytes, written at once)
            wait = None if deadline is None or data else max(0.0, deadline - time.monotonic())
            self._sock.settimeout(wait)
            try:
                chunk = self._sock.recv(1 + _STATUS.size - len(data))
            except (BlockingIOError, socket.timeout):
                if not data:
                    return None
                continue
            except OSError:
                chunk = b''
            if not chunk:
                # the reaper died without a status (someone killed it): the task got SIGKILL
                # from its parent-death signal; whatever is left of its group goes the same way
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except OSError:
                    pass
                return -signal.SIGKILL
            data += chunk
        return _STATUS.unpack(data[1:])[0]


class WarmExecution(_ProcessExecution):
    """The exec path's execution (log pump, reap grace, wait, killpg terminate) over a
    WarmProcess. The task is not the runner's child: its exit comes as a status over its
    socket (the reaper keeps it unreaped until then, so its group id is not reused)."""

    def _main_exited(self) -> bool:
        return self._reaped or self._proc.poll() is not None

    def _wait_main(self) -> None:
        self._proc.wait()

    def terminate(self) -> None:
        if self._proc.poll() is None:
            self._proc.signalling_group()
        super().terminate()


class _Spawner:
    """One long-lived thread starts every zygote: a zygote's parent-death signal fires when
    the *thread* that forked it ends, and the engine's pool threads come and go."""

    def __init__(self):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None

    def call(self, fn):
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name='localrunner-zygotes', daemon=True)
            self._thread.start()
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._jobs.put((fn, future))
        return future.result()

    def _serve(self) -> None:
        while True:
            fn, future = self._jobs.get()
            if fn is None:
                return
            try:
                future.set_result(fn())
            except BaseException as e:
                future.set_exception(e)

    def stop(self) -> None:
        if self._thread is not None:
            self._jobs.put((None, None))
            self._thread.join(timeout=5)
            self._thread = None


class WarmStarter:
    """The subprocess backend's warm path: launch(...) returns the started task, or None to exec."""

    def __init__(self):
        self._zygotes: collections.OrderedDict[tuple, Zygote] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._spawner = _Spawner()
        self._which: dict[Optional[str], Optional[str]] = {}
        self._closed = False
        self.launched = 0             # tasks forked so far (tests and benchmarks read it)

    def launch(self, spec: LaunchSpec, env: dict[str, str], cwd: str) -> Optional[WarmProcess]:
        """The task forked from its environment's zygote, or None to exec it. env: the
        environment the exec path would give the command."""
        return self._start(spec, env, cwd)

    def prepare(self, spec: LaunchSpec, env: dict[str, str], cwd: str) -> None:
        """Starts the task's zygote ahead of its launch, so that a launch takes milliseconds
        (the engine stops only what has been launched when it cancels a run)."""
        found = self._zygote_for(spec, env, cwd)
        if found is not None:
            try:
                with found[0].lock:
                    found[0].ensure(self._spawner)
            except ZygoteError:
                pass

    def _zygote_for(self, spec: LaunchSpec, env: dict[str, str], cwd: str) -> Optional[tuple]:
        """(zygote, (module, source, args)) for a command that can take the warm path."""
        program = kfp_program(spec.argv)
        if program is None or not os.path.isdir(cwd) or not _execable(spec.argv, env):
            return None
        python = self._python3(env.get('PATH'))
        if python is None:
            return None
        zygote = self._zygote(zygote_key(python, cwd, env, program[0]))
        return None if zygote is None else (zygote, program)

    def _start(self, spec: LaunchSpec, env: dict[str, str], cwd: str) -> Optional[WarmProcess]:
        found = self._zygote_for(spec, env, cwd)
        if found is None:
            return None
        zygote, (module, source, args) = found
        for _ in range(2):          # a zygote found dead is restarted, once per launch
            try:
                with zygote.lock:
                    zygote.ensure(self._spawner)
                    task_env = dict(env, _KFP_RUNTIME='true', PWD=_dash_pwd(env.get('PWD'), cwd))
                    for k, v in zygote.added.items():
                        task_env.setdefault(k, v)
                    request = {'module': module, 'source': source, 'args': args, 'env': task_env,
                               'cwd': cwd, 'umask': _umask(),
                               'rlimits': [(r, resource.getrlimit(r)) for r in _RLIMITS]}
                    sock, log_r = self._send(zygote)
            except ZygoteError:
                return None
            except _ZygoteGone:
                continue
            proc = self._started(sock, log_r, request, spec.argv)
            if proc is not None:
                self.launched += 1
                AHEAD.served.setdefault((zygote.python, module))
                return proc
        return None

    def _python3(self, path: Optional[str]) -> Optional[str]:
        if path not in self._which:
            self._which[path] = python3_on(path)
        return self._which[path]

    def _zygote(self, key: tuple) -> Optional[Zygote]:
        with self._lock:
            if self._closed:
                return None
            zygote = self._zygotes.get(key)
            if zygote is None:
                zygote = self._zygotes[key] = AHEAD.take(key) or Zygote.of(key)
                while len(self._zygotes) > _MAX_ZYGOTES:
                    _, old = self._zygotes.popitem(last=False)
                    with old.lock:
                        old.stop()
            self._zygotes.move_to_end(key)
        return None if zygote.broken else zygote

    @staticmethod
    def _send(zygote: Zygote) -> tuple[socket.socket, int]:
        """Hands the zygote the task's socket and log pipe; it passes them to a reaper."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        log_r, log_w = os.pipe()
        try:
            socket.send_fds(zygote.control, [b'L'], [theirs.fileno(), log_w])
        except OSError:
            ours.close()
            os.close(log_r)
            zygote.stop()
            raise _ZygoteGone from None
        finally:
            theirs.close()
            os.close(log_w)
        return ours, log_r

    @staticmethod
    def _started(sock: socket.socket, log_r: int, request: dict, argv: list[str]) -> Optional[WarmProcess]:
        """Sends the request; returns the task once its reaper says it runs, None when the
        zygote went away first (the task never started)."""
        payload = json.dumps(request).encode()
        sock.settimeout(_LAUNCH_TIMEOUT_S)
        try:
            sock.sendall(struct.pack('=I', len(payload)) + payload)
            head = b''
            while len(head) < 1 + _STATUS.size:
                chunk = sock.recv(1 + _STATUS.size - len(head))
                if not chunk:
                    break
                head += chunk
        except OSError:
            head = b''
        sock.settimeout(None)
        if len(head) != 1 + _STATUS.size or head[:1] != b'S':
            sock.close()                    # a reaper that did start kills its task on this EOF
            os.close(log_r)
            return None
        return WarmProcess(_STATUS.unpack(head[1:])[0], sock, log_r, argv)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            zygotes = list(self._zygotes.values())
            self._zygotes.clear()
        for zygote in zygotes:
            with zygote.lock:
                zygote.broken = 'the backend is closed'     # a launch already past the map execs
                zygote.stop()
        self._spawner.stop()
