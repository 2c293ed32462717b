"""Pre-start: the zygotes a `localrunner run` will need, started while the CLI imports the engine.

A run's first warm task waits for its zygote (~80 ms: an interpreter and KFP's executor
imports), which starts only once the engine is imported (~100 ms) and the task is laid out.
Which zygotes a run needs is known only then, so the CLI guesses: it starts those that the
last run of the same pipeline file, from the same directory with the same environment folder,
served (a memo under the user's cache dir), before it imports the engine. The backend adopts
a zygote started ahead whose key (interpreter, directory, start-up variables, module) is
its own (zygotes.AHEAD). A wrong guess costs one zygote start on another core: the zygote is
killed when the process exits (it never had a task). A run that served no warm task (all
cached) records that, so the next one starts none.

The memo is checked, never trusted: its interpreter must be bin/python3 of a venv directly
in the environment folder this run uses (the one `sh` would find first on the task's PATH),
its module KFP's executor_main; anything else is ignored. A component that sets variables
of its own (set_env_variable) has another key: its zygote starts when its task does.
"""
from __future__ import annotations

import json
import os
from typing import Optional

from localrunner.user_cache import TextMemo, default_env_dir, user_cache_path

PRESTART_FORMAT = 1
MAX_ZYGOTES = 2              # a pipeline's environments started ahead, the first used first
_MODULES = frozenset({'kfp.dsl.executor_main', 'kfp.components.executor_main'})


class WarmMemo(TextMemo):
    """The zygotes the last run of a pipeline file served, as [(python, module)]."""

    def __init__(self, pipeline: str, cwd: str, env_dir: str):
        from localrunner import __version__
        super().__init__(json.dumps([PRESTART_FORMAT, __version__, cwd, env_dir]),
                         os.path.abspath(pipeline), user_cache_path('warm'))

    def zygotes(self) -> list[tuple[str, str]]:
        data = self._read(1 << 16) or {}
        found = data.get('zygotes')
        if not isinstance(found, list):
            return []
        return [(z[0], z[1]) for z in found[:MAX_ZYGOTES]
                if isinstance(z, list) and len(z) == 2 and all(isinstance(s, str) for s in z)]

    def record(self, served: list[tuple[str, str]]) -> None:
        served = [list(z) for z in served[:MAX_ZYGOTES]]
        if served != [list(z) for z in self.zygotes()]:
            self._write({'zygotes': served})


def wanted(args) -> bool:
    """A `run` that may fork tasks: warm start on, a backend that runs processes here, a
    compiled pipeline file (a PIPELINE.py is compiled first: no text to key by yet)."""
    return (args.command == 'run' and not args.dry_run and not args.no_warm_start and not args.cluster
            and (args.backend or 'subprocess') in ('subprocess', 'auto')
            and not args.pipeline.split(':', 1)[0].endswith('.py') and os.path.isfile(args.pipeline))


def prestart(args) -> Optional[WarmMemo]:
    """Starts the zygotes the memo names and returns the memo, to record what the run
    served (record()); None when this run cannot fork a task."""
    if not wanted(args):
        return None
    from localrunner.backends import zygotes
    from localrunner.backends.task_environ import runner_environ, task_environ
    if not zygotes.supported():
        return None
    env_dir, cwd = default_env_dir(), os.getcwd()
    memo = WarmMemo(args.pipeline, cwd, env_dir)
    base = runner_environ()
    for python, module in memo.zygotes():
        venv = os.path.dirname(os.path.dirname(python))
        if (module not in _MODULES or venv != os.path.join(env_dir, os.path.basename(venv))
                or python != os.path.join(venv, 'bin', 'python3')):
            continue
        env = task_environ(base, venv, '', None, '')
        if zygotes.python3_on(env.get('PATH')) == python:          # the one the task's `sh` would run
            zygotes.AHEAD.start(python, cwd, env, module)
    return memo


def record(memo: Optional[WarmMemo]) -> None:
    """After the run: what it served is what the next run of the pipeline starts ahead."""
    if memo is not None:
        from localrunner.backends import zygotes
        memo.record(list(zygotes.AHEAD.served))
