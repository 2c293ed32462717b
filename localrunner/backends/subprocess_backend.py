"""The default backend: each attempt is a process on this machine, no daemon needed.

A lightweight component runs inside its cached venv (the venv's bin/ first on PATH, so the
component's `python3` is the venv's); a container component's command runs as it is.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
from typing import Optional

from localrunner.backends.base import Backend, Execution, LaunchError, LaunchSpec, LineSink, LogSink
from localrunner.environments.venvs import VenvCache, interpreter_identity

_KILL_GRACE_S = 5.0


class _ProcessExecution(Execution):
    def __init__(self, proc: subprocess.Popen, spec: LaunchSpec, on_line: LineSink, tmp: str):
        self._proc = proc
        self._spec = spec
        self._on_line = on_line
        self._tmp = tmp
        self._terminated = threading.Event()

    def wait(self) -> int:
        try:
            with open(self._spec.log_path, 'ab') as log:
                for raw in iter(self._proc.stdout.readline, b''):
                    log.write(raw)
                    log.flush()
                    self._on_line(raw.decode(errors='replace').rstrip('\n'))
            self._proc.stdout.close()
            return self._proc.wait()
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def terminate(self) -> None:
        if self._terminated.is_set() or self._proc.poll() is not None:
            return
        self._terminated.set()
        try:
            os.killpg(self._proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self._proc.wait(timeout=_KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class SubprocessBackend(Backend):
    name = 'subprocess'

    def __init__(self, env_dir: Optional[str] = None, cwd: Optional[str] = None, warm_start: bool = True,
                 **_options):
        self.venvs = VenvCache(env_dir)
        self.cwd = cwd or os.getcwd()
        self.warm = None             # lightweight components forked from a zygote (backends/warm.py)
        if warm_start:
            from localrunner.backends import warm
            self.warm = warm.WarmStarter() if warm.supported() else None

    def environment_fingerprint(self, spec: LaunchSpec) -> str:
        if spec.python_env is None:
            # a container component's command runs on the host: its image does not apply
            return f'host:{os.uname().sysname}'
        return f'venv:{interpreter_identity()}:{spec.python_env.key()}'

    def prepare(self, spec: LaunchSpec, log: LogSink) -> None:
        if spec.python_env is not None:
            self.venvs.ensure(spec.python_env, log)
        if self.warm:
            self.warm.prepare(spec, self._environ(spec, ''), self.cwd)

    def _environ(self, spec: LaunchSpec, tmp: str) -> dict[str, str]:
        env = dict(os.environ)
        # The runner's own venv/interpreter must not leak into the component's.
        for leak in ('PYTHONPATH', 'PYTHONHOME', 'VIRTUAL_ENV', '__PYVENV_LAUNCHER__'):
            env.pop(leak, None)
        if spec.python_env is not None:
            venv = self.venvs.path(spec.python_env)
            env['VIRTUAL_ENV'] = venv
            env['PATH'] = os.path.join(venv, 'bin') + os.pathsep + env.get('PATH', '')
        # a short private temp folder per attempt, removed afterwards: KFP's `mktemp -d` and
        # whatever else the task makes there (a deep path breaks AF_UNIX sockets' 107-byte limit)
        env['TMPDIR'] = tmp
        env['PYTHONUNBUFFERED'] = '1'               # logs stream line by line
        if spec.resources.gpu_ids or spec.resources.accelerator_count:
            env['CUDA_VISIBLE_DEVICES'] = ','.join(spec.resources.gpu_ids)
        env.update(spec.env)
        return env

    def launch(self, spec: LaunchSpec, on_line: LineSink) -> Execution:
        if not spec.argv:
            raise LaunchError(f'{spec.task}: empty command', retryable=False)
        tmp = tempfile.mkdtemp(prefix='lr-')
        env = self._environ(spec, tmp)
        warm = self.warm.launch(spec, env, self.cwd, on_line, tmp) if self.warm else None
        if warm is not None:
            return warm
        try:
            proc = subprocess.Popen(spec.argv, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        except FileNotFoundError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise LaunchError(f'{spec.task}: command not found on this machine: {spec.argv[0]}',
                              retryable=False) from None
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise LaunchError(f'{spec.task}: cannot start {spec.argv[0]}: {e.strerror}', retryable=False) from None
        return _ProcessExecution(proc, spec, on_line, tmp)

    def close(self) -> None:
        if self.warm:
            self.warm.close()
