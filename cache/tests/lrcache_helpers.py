"""Helpers shared by the tests (a unique module name: the repo's other test folders
have a conftest of their own, so helpers are not imported from conftest)."""

from __future__ import annotations

import os
import subprocess
import sys

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cache_worker.py")


def write_tree(root, spec: dict) -> str:
    """Create files from {relpath: bytes | ("exec", bytes) | ("symlink", target) | {}}."""
    root = str(root)
    os.makedirs(root, exist_ok=True)
    for rel, value in spec.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if isinstance(value, dict):
            os.makedirs(path, exist_ok=True)
        elif isinstance(value, tuple) and value[0] == "symlink":
            os.symlink(value[1], path)
        elif isinstance(value, tuple) and value[0] == "exec":
            with open(path, "wb") as f:
                f.write(value[1])
            os.chmod(path, 0o755)
        else:
            with open(path, "wb") as f:
                f.write(value)
            os.chmod(path, 0o644)
    return root


def run_worker(*args, **popen_kwargs) -> subprocess.Popen:
    """Start cache_worker.py in a fresh interpreter (a real, independent process)."""
    return subprocess.Popen([sys.executable, WORKER, *map(str, args)], **popen_kwargs)
