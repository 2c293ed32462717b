"""Shared test helpers: compile a kfp pipeline and run the real CLI on it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Callable, Optional

from kfp import compiler


def compile_pipeline(fn: Callable, path) -> str:
    path = str(path)
    compiler.Compiler().compile(fn, package_path=path)
    return path


def run_cli(*args: str, cwd: Optional[str] = None, env: Optional[dict] = None, timeout: float = 600):
    """Runs `localrunner ARGS` as a real process. Returns CompletedProcess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, '-m', 'localrunner.cli', *args], capture_output=True, text=True,
                          cwd=cwd, env=full_env, timeout=timeout)


def run_pipeline_file(pipeline: str, root, *extra: str, cwd=None, env=None):
    """Runs a compiled pipeline; returns (returncode, result dict or None, completed process)."""
    result_path = os.path.join(str(root), f'result-{len(os.listdir(root)) if os.path.isdir(root) else 0}.json')
    os.makedirs(str(root), exist_ok=True)
    proc = run_cli('run', pipeline, '--root', str(root), '--result-json', result_path, *extra, cwd=cwd, env=env)
    result = None
    if os.path.exists(result_path):
        with open(result_path) as f:
            result = json.load(f)
        os.remove(result_path)
    return proc.returncode, result, proc


def states(result: dict) -> dict[str, str]:
    """Leaf task name -> state (last entry wins)."""
    return {t['name']: t['state'] for t in result['tasks'] if t.get('type') in ('container', 'importer')}


def task(result: dict, name: str) -> dict:
    matches = [t for t in result['tasks'] if t['name'] == name]
    assert matches, f'no task {name} in {[t["name"] for t in result["tasks"]]}'
    return matches[-1]
