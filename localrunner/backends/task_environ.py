"""A task's environment on this machine, made in one place: the subprocess backend's launch and
the CLI's warm-start pre-start (backends/warm_prestart.py), which runs before the engine is
imported, so this module imports only the standard library and the reaper's marker."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional

from localrunner.backends.reaper import MARKER_VAR

if TYPE_CHECKING:
    from localrunner.backends.base import LaunchSpec


def runner_environ() -> dict[str, str]:
    """The runner's environment as its tasks start from it: its own venv and interpreter
    settings must not leak into the component's."""
    base = dict(os.environ)
    for leak in ('PYTHONPATH', 'PYTHONHOME', 'VIRTUAL_ENV', '__PYVENV_LAUNCHER__'):
        base.pop(leak, None)
    return base


def task_environ(base: dict[str, str], venv: Optional[str], tmp: str, spec: Optional[LaunchSpec],
                 run_id: str) -> dict[str, str]:
    """A task's environment: BASE (runner_environ()), VENV first on its PATH, TMPDIR, then
    SPEC's own variables. The one place it is made: a launch, and the warm start's pre-start
    (which has no spec yet: a component that sets variables of its own is not pre-started)."""
    env = dict(base)
    if venv is not None:
        env['VIRTUAL_ENV'] = venv
        env['PATH'] = os.path.join(venv, 'bin') + os.pathsep + env.get('PATH', '')
    # a short private temp folder per attempt, removed afterwards: KFP's `mktemp -d` and
    # whatever else the task makes there (a deep path breaks AF_UNIX sockets' 107-byte limit)
    env['TMPDIR'] = tmp
    env['PYTHONUNBUFFERED'] = '1'               # logs stream line by line
    if spec is not None:
        if spec.resources.gpu_ids or spec.resources.accelerator_count:
            env['CUDA_VISIBLE_DEVICES'] = ','.join(spec.resources.gpu_ids)
        env.update(spec.env)
    env[MARKER_VAR] = run_id     # how the reaper finds a process that left its group
    return env
