"""A real S3-protocol server for tests: moto_server on a free loopback port."""
from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time


@contextlib.contextmanager
def moto_server(log_path: str):
    """Yields 'host:port' of a running moto_server; stops it afterwards."""
    if shutil.which('moto_server') is None:
        raise RuntimeError('moto_server is not installed (pip install "moto[server]")')
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    with open(log_path, 'wb') as log:
        proc = subprocess.Popen(['moto_server', '-H', '127.0.0.1', '-p', str(port)], stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f'moto_server exited with {proc.returncode}')
                try:
                    socket.create_connection(('127.0.0.1', port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError('moto_server did not start listening') from None
                    time.sleep(0.1)
            yield f'127.0.0.1:{port}'
        finally:
            proc.terminate()
            proc.wait(timeout=30)
