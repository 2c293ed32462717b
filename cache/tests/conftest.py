"""Fixtures for localrunner_cache tests: real files, real processes, a real S3 server."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid

import pytest

from lrcache_helpers import BlackHole
from localrunner_cache import CAS, ActionCache


@pytest.fixture
def store(tmp_path):
    return str(tmp_path / "store")


@pytest.fixture
def cas(store):
    return CAS(store)


@pytest.fixture
def ac(store):
    cache = ActionCache(store)
    yield cache
    cache.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    if shutil.which("moto_server") is None:
        pytest.skip("moto_server (moto[server]) is not installed")
    port = _free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    proc = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"moto_server exited with {proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("moto_server did not start listening")
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture
def s3_client(s3_endpoint):
    from minio import Minio

    return Minio(s3_endpoint, access_key="testing", secret_key="testing", secure=False, region="us-east-1")


@pytest.fixture
def bucket(s3_client):
    name = f"lr-cache-{uuid.uuid4().hex[:12]}"
    s3_client.make_bucket(name)
    return name


@pytest.fixture(params=["silent", "unaccepted"])
def black_hole(request):
    hole = BlackHole(request.param)
    yield hole
    hole.close()
