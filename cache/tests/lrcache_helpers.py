"""Helpers shared by the tests (a unique module name: the repo's other test folders
have a conftest of their own, so helpers are not imported from conftest)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

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


class BlackHole:
    """A TCP endpoint on 127.0.0.1 that never answers. "silent": it accepts connections
    (counted) and never sends a byte; "unaccepted": its accept queue is full, so a new
    connection is never even established (SYNs are dropped)."""

    def __init__(self, kind: str):
        self.kind = kind
        self.accepted = 0
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(0 if kind == "unaccepted" else 16)
        self.endpoint = f"127.0.0.1:{self._server.getsockname()[1]}"
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        if kind == "unaccepted":
            for _ in range(4):  # fill the accept queue ourselves; never accept
                c = socket.socket()
                c.setblocking(False)
                try:
                    c.connect(self._server.getsockname())
                except BlockingIOError:
                    pass
                self._held.append(c)
            time.sleep(0.2)
        else:
            self._thread = threading.Thread(target=self._accept, daemon=True)
            self._thread.start()

    def _accept(self):
        self._server.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                continue
            self.accepted += 1
            self._held.append(conn)  # read nothing, answer nothing, close nothing

    def close(self):
        self._stop.set()
        if self.kind != "unaccepted":
            self._thread.join(timeout=5)
        for s in self._held:
            s.close()
        self._server.close()
