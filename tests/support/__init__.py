"""Helpers shared by the test suites (importable as `tests.support`).

require_docker(): a Docker client, or skip the test with the reason -- except under CI=true,
where a missing engine is a FAILURE (CI must never go green by skipping the Docker tests).
"""
from __future__ import annotations

import os

__all__ = ['ensure_base_image', 'in_ci', 'require_docker', 'require_base_image']


def ensure_base_image(tag: str | None = None) -> str:
    """See tests.support.docker_image (imported lazily so `python3 -m` runs it cleanly)."""
    from tests.support import docker_image
    return docker_image.ensure_base_image(tag or docker_image.DEFAULT_TAG)


def in_ci() -> bool:
    return os.environ.get('CI', '').strip().lower() in ('1', 'true', 'yes')


def _unavailable(reason: str):
    import pytest
    if in_ci():
        pytest.fail(f'{reason} (CI=true: the Docker tests must run in CI)', pytrace=False)
    pytest.skip(reason)


def require_docker():
    """Returns a docker.DockerClient that answers a ping; skips (or fails under CI) otherwise."""
    try:
        import docker
    except ImportError:
        _unavailable('the docker Python package is not installed')
    try:
        client = docker.from_env(timeout=15)
        client.ping()
    except Exception as exc:  # DockerException, connection refused, missing socket...
        _unavailable(f'no Docker engine answers ({exc.__class__.__name__}: {exc}); '
                     'start one with: setsid dockerd --iptables=false --bridge=none &')
    return client


def require_base_image(tag: str | None = None) -> str:
    """require_docker() + the offline test base image (built once; .ci/run prebuilds it)."""
    require_docker()
    try:
        return ensure_base_image(tag)
    except Exception as exc:
        _unavailable(f'cannot build the test base image {tag or "(default)"}: {exc}')
