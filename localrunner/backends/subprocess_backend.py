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

from localrunner.backends.base import (Backend, BackendOptions, Capabilities, Execution, LaunchError, LaunchSpec,
                                       LineSink, LogSink)
from localrunner.environments.venvs import VenvCache
from localrunner.layout import open_log

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
            with open_log(self._spec.log_path) as log:      # host-only, never through a link
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
    """Tasks are processes of this user on this machine: no image, no volumes, no isolation."""
    name = 'subprocess'
    capabilities = Capabilities(local_gpus=True)

    def __init__(self, options: Optional[BackendOptions] = None):
        super().__init__(options)
        self.venvs = VenvCache(self.options.env_dir)
        self.cwd = self.options.cwd or os.getcwd()

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
