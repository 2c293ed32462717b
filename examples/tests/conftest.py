"""Fixtures for the example tests: each test runs on the subprocess backend and on Docker.

The Docker variants run the components in the offline test base image (tests.support) in
place of python:3.11-slim. They skip when no Docker engine answers -- except under CI=true, where that is a failure.
"""
import os
import sys

import pytest

EXAMPLES = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(EXAMPLES)
DATA_DIR = os.path.join(EXAMPLES, 'data')
IRIS = os.path.join(DATA_DIR, 'iris.csv')
for path in (EXAMPLES, REPO):
    if path not in sys.path:
        sys.path.insert(0, path)

BACKENDS = [
    pytest.param('subprocess', id='subprocess'),
    pytest.param('docker', id='docker',
                 marks=[pytest.mark.docker, pytest.mark.slow, pytest.mark.localrunner(backend='docker')]),
]


@pytest.fixture(params=BACKENDS)
def runner(request, localrunner, localrunner_backend):
    """The localrunner fixture, on each backend in turn (Docker: in the offline base image)."""
    if localrunner_backend == 'docker':
        from tests.support import docker_image, require_base_image
        require_base_image()
        import ml_pipeline
        localrunner.images.setdefault(ml_pipeline.BASE_IMAGE, docker_image.DEFAULT_TAG)
    return localrunner


@pytest.fixture(scope='session')
def iris_df():
    import pandas as pd
    return pd.read_csv(IRIS)
