"""The default backend: each attempt is a process on this machine, no daemon needed.

A lightweight component runs inside its cached venv (the venv's bin/ first on PATH, so the
component's `python3` is the venv's); a container component's command runs as it is.
"""
from __future__ import annotations

import codecs
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from typing import Optional

from localrunner.backends import procs
from localrunner.backends.base import (Backend, BackendOptions, Capabilities, Execution, LaunchError, LaunchSpec,
                                       LineSink, LogSink, unread_lines)
from localrunner.backends.reaper import MARKER_VAR, Reaper
from localrunner.backends.task_environ import runner_environ, task_environ
from localrunner.environments.venvs import VenvCache
from localrunner.layout import open_log

STOP_GRACE_S = 5.0       # terminate(): SIGTERM, then SIGKILL after this long
REAP_GRACE_S = 2.0       # after the main process exits, what of its group still holds its output gets this long
_POLL_S = 0.2


class _ProcessExecution(Execution):
    """One task process, the leader of its own process group (start_new_session=True).

    The main process is never reaped before its group is dealt with: its zombie keeps the
    pid, and with it the group id, from being reused, so killpg() cannot hit a stranger.
    Exit is observed with waitid(WNOWAIT); Popen reaps at the very end."""

    def __init__(self, proc: subprocess.Popen, spec: LaunchSpec, on_line: LineSink, tmp: str,
                 stop_grace: float, reap_grace: float, reaper: Reaper):
        self._proc = proc
        self._spec = spec
        self._on_line = on_line
        self._tmp = tmp
        self._stop_grace = stop_grace
        self._reap_grace = reap_grace
        self._reaper = reaper
        self._lock = threading.Lock()      # signals to the group vs. reaping the leader
        self._reaped = False
        self._terminating = False
        self._killed = threading.Event()

    # ------------------------------------------------------------ the process group
    def _signal_group(self, sig: int) -> None:
        with self._lock:
            if not self._reaped:
                procs.kill_group(self._proc.pid, sig)

    def _main_exited(self) -> bool:
        with self._lock:
            if self._reaped:
                return True
            try:
                return os.waitid(os.P_PID, self._proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
            except ChildProcessError:
                return True

    # ------------------------------------------------------------ output and exit
    def wait(self) -> int:
        """The exit status, once the task and its group are gone. OSError, then, when its log
        could not be written (a full disk): the attempt fails with that, never half-told."""
        try:
            log_error = self._pump()
            self._wait_main()            # its output is closed, but it may still be working
            # whatever of the group is left (a background child that closed its output)
            # goes now: the task is over, as when a container's main process ends
            self._signal_group(signal.SIGKILL)
            with self._lock:
                status = self._proc.wait()
                self._reaped = True
        finally:
            self._reaper.forget(self._proc.pid)
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._reaper.forget_folder(self._tmp)
        if log_error is not None:
            raise log_error
        return status

    def _wait_main(self) -> None:
        """Blocks until the main process has exited, without reaping it."""
        try:
            os.waitid(os.P_PID, self._proc.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass

    def _pump(self) -> Optional[OSError]:
        """Copies the task's output to its log and on_line until EOF -- or, when the main
        process has exited but something (a background child) still holds the pipe, until
        the reap grace has passed: then the group is killed and reading stops. A log that
        can't be written (a full disk) is returned, not raised: the pipe is still drained,
        so the task never blocks on it, and wait() still ends its group."""
        out = self._proc.stdout
        fd = out.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        decoder = codecs.getincrementaldecoder('utf-8')(errors='replace')
        lines_read = self._on_line is not unread_lines     # else the log file alone: no decoding
        pending = ''
        give_up: Optional[float] = None      # when to stop waiting for EOF
        killed_group = False
        log, failed = None, None
        try:
            try:
                log = open_log(self._spec.log_path)      # host-only, never through a link
            except OSError as e:
                failed = e
            while True:
                if poller.poll(_POLL_S * 1000):
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    if failed is None:
                        try:
                            log.write(chunk)
                            log.flush()
                        except OSError as e:
                            failed = e
                    if lines_read:
                        pending += decoder.decode(chunk)
                        *lines, pending = pending.split('\n')
                        for line in lines:
                            self._line(line)
                    continue
                now = time.monotonic()
                if give_up is None and self._main_exited():
                    give_up = now + (0.0 if self._killed.is_set() else self._reap_grace)
                elif give_up is not None and now >= give_up:
                    if killed_group:
                        break        # held by a process outside the group: the reaper's job
                    self._signal_group(signal.SIGKILL)
                    killed_group, give_up = True, now + 1.0
        finally:
            out.close()
            if log is not None:
                try:
                    log.close()
                except OSError as e:        # what the last flush could not write
                    failed = failed or e
        pending += decoder.decode(b'', final=True)
        if pending:
            self._line(pending)
        return failed

    def _line(self, line: str) -> None:
        try:
            self._on_line(line.rstrip('\r'))
        except Exception:       # a broken sink must not stop the log
            pass

    # ------------------------------------------------------------ stopping
    def terminate(self) -> None:
        with self._lock:
            if self._terminating or self._reaped:
                return
            self._terminating = True
        self._signal_group(signal.SIGTERM)
        deadline = time.monotonic() + self._stop_grace
        while not self._main_exited():
            if time.monotonic() >= deadline or self._killed.is_set():
                self._signal_group(signal.SIGKILL)
                return
            time.sleep(0.05)

    def kill(self) -> None:
        self._killed.set()
        self._signal_group(signal.SIGKILL)


class SubprocessBackend(Backend):
    """Tasks are processes of this user on this machine: no image, no volumes, no isolation."""
    name = 'subprocess'
    capabilities = Capabilities(local_gpus=True)

    def __init__(self, options: Optional[BackendOptions] = None):
        """options.settings: stop_grace (terminate(): SIGTERM, then SIGKILL after this long;
        default 5s), reap_grace (after a task's main process exits, what is left of its
        process group -- a background child holding its output -- is killed after this long;
        default 2s)."""
        super().__init__(options)
        self.stop_grace = self.options.seconds('stop_grace', STOP_GRACE_S)
        self.reap_grace = self.options.seconds('reap_grace', REAP_GRACE_S)
        self.run_id = self.options.run_id or uuid.uuid4().hex
        self.reaper = Reaper(f'{MARKER_VAR}={self.run_id}', grace=self.reap_grace)
        self.venvs = VenvCache(self.options.env_dir, reaper=self.reaper)
        self.cwd = self.options.cwd or os.getcwd()
        self.warm = None             # lightweight components forked from a zygote (backends/warm.py)
        self._base_env: Optional[dict[str, str]] = None
        if self.options.warm_start:
            from localrunner.backends import warm, zygotes
            self.warm = warm.WarmStarter() if zygotes.supported() else None

    def environment_fingerprint(self, spec: LaunchSpec, log: Optional[LogSink] = None,
                                build: bool = True) -> Optional[str]:
        if spec.python_env is None:
            # a container component's command runs on the host: its image does not apply, and
            # what the host has is not ours to read (no path, so machines still share)
            return f'host:{os.uname().sysname}'
        # What the venv holds (interpreter, platform, installed versions), never a host path
        # nor the requested packages (those are in the command, a key part of their own). The
        # venv is built here when missing (VenvCache.resolved says why)
        if not build and not self.venvs.is_built(spec.python_env):
            return None
        return 'venv:' + self.venvs.resolved(spec.python_env, log).identity()

    def prepare(self, spec: LaunchSpec, log: LogSink) -> None:
        if spec.python_env is not None:
            self.venvs.ensure(spec.python_env, log)
        if self.warm:
            self.warm.prepare(spec, self._environ(spec, ''), self.cwd)

    def _environ(self, spec: LaunchSpec, tmp: str) -> dict[str, str]:
        if self._base_env is None:      # read once per run: os.environ decodes every entry on each read
            self._base_env = runner_environ()
        venv = self.venvs.path(spec.python_env) if spec.python_env is not None else None
        return task_environ(self._base_env, venv, tmp, spec, self.run_id)

    def launch(self, spec: LaunchSpec, on_line: LineSink) -> Execution:
        if not spec.argv:
            raise LaunchError(f'{spec.task}: empty command', retryable=False)
        tmp = tempfile.mkdtemp(prefix='lr-')
        self.reaper.watch_folder(tmp)         # removed by the reaper if this runner dies first
        env = self._environ(spec, tmp)
        warm = self.warm.launch(spec, env, self.cwd) if self.warm else None
        if warm is not None:
            return self._execution(warm, spec, on_line, tmp)
        try:
            proc = subprocess.Popen(spec.argv, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        except FileNotFoundError:
            self._drop(tmp)
            raise LaunchError(f'{spec.task}: command not found on this machine: {spec.argv[0]}',
                              retryable=False) from None
        except OSError as e:
            self._drop(tmp)
            raise LaunchError(f'{spec.task}: cannot start {spec.argv[0]}: {e.strerror}', retryable=False) from None
        return self._execution(proc, spec, on_line, tmp)

    def _drop(self, tmp: str) -> None:
        shutil.rmtree(tmp, ignore_errors=True)
        self.reaper.forget_folder(tmp)

    def _execution(self, proc, spec: LaunchSpec, on_line: LineSink, tmp: str) -> '_ProcessExecution':
        """An exec'd process or a forked warm one (a Popen-like WarmProcess): the same log pump,
        wait, reap grace and terminate; its group dies with the runner (the reaper)."""
        from localrunner.backends.warm import WarmExecution, WarmProcess
        cls = WarmExecution if isinstance(proc, WarmProcess) else _ProcessExecution
        self.reaper.watch(proc.pid)      # its session's id is its pid: the group dies with the runner
        return cls(proc, spec, on_line, tmp, self.stop_grace, self.reap_grace, self.reaper)

    def cancel(self) -> None:
        self.venvs.cancel()

    def close(self) -> None:
        if self.warm:
            self.warm.close()
        self.venvs.cancel()
        self.reaper.close()
