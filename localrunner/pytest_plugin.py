"""pytest plugin for localrunner, registered through the `pytest11` entry point: installing
localrunner is enough, no conftest.py needed.

Fixtures (see `pytest --fixtures`):
    localrunner               a LocalRunner for this test: run_component(), run_pipeline(), artifact()
    localrunner_backend       the backend name this test runs on
    localrunner_shared_root   a run root (and action cache) shared by the whole session

Choosing the backend: `@pytest.mark.localrunner(backend="docker")` on a test (or module /
class), else `--localrunner-backend NAME` on the command line, else the `localrunner_backend`
ini option, else "subprocess". A Docker test is skipped with the reason when no Docker
engine answers -- except under CI=true, where that is a failure.

Marker keywords: backend=, shared_cache=True (use the session's run root and action cache),
use_cache=False, images={ir image: replacement}, mounts=[host paths].
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Optional

import pytest

if TYPE_CHECKING:
    from localrunner.testing import LocalRunner

# The engine is imported when a test first asks for the fixture, not when pytest starts.
_EXPORTS = ('ComponentResult', 'InputArtifact', 'LocalRunner', 'LocalRunnerFailure', 'OutputArtifact',
            'PipelineResult', 'TaskResult')
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import localrunner.testing
        return getattr(localrunner.testing, name)
    raise AttributeError(name)


_RUNNER_KEY = pytest.StashKey['LocalRunner']()
_PROBES_KEY = pytest.StashKey[dict]()
_MARKER_KEYS = {'backend', 'shared_cache', 'use_cache', 'images', 'mounts'}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup('localrunner', 'localrunner (run KFP components and pipelines locally)')
    group.addoption('--localrunner-backend', dest='localrunner_backend', default=None, metavar='NAME',
                    help='backend for tests using the localrunner fixture (default: subprocess; '
                         'a @pytest.mark.localrunner(backend=...) marker wins)')
    group.addoption('--localrunner-image', dest='localrunner_images', action='append', default=[],
                    metavar='IMAGE=REPLACEMENT',
                    help='run components whose IR names IMAGE in REPLACEMENT instead (repeatable), '
                         'e.g. an offline base image for the docker backend')
    group.addoption('--localrunner-env-dir', dest='localrunner_env_dir', default=None, metavar='DIR',
                    help='venv cache of the subprocess backend (default: LOCALRUNNER_ENV_DIR or the '
                         'user cache dir; shared across tests and sessions)')
    parser.addini('localrunner_backend', 'default localrunner backend for tests (subprocess)', default='')
    parser.addini('localrunner_images', 'IMAGE=REPLACEMENT lines applied to every localrunner run',
                  type='linelist', default=[])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        'markers', 'localrunner(backend=None, shared_cache=False, use_cache=True, images=None, mounts=None): '
                   'how the localrunner fixture runs this test (backend "docker" skips without an '
                   'engine, fails under CI=true)')
    config.stash[_PROBES_KEY] = {}


def _in_ci() -> bool:
    return os.environ.get('CI', '').strip().lower() in ('1', 'true', 'yes')


def _docker_problem() -> Optional[str]:
    try:
        import docker
    except ImportError:
        return 'the docker Python package is not installed'
    try:
        client = docker.from_env(timeout=10)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return f'no Docker engine answers ({type(exc).__name__}: {exc})'
    return None


def _require_backend(config: pytest.Config, name: str) -> None:
    """Skips the test (fails it under CI=true) when the backend's engine is not reachable."""
    if name != 'docker':
        return
    probes = config.stash.setdefault(_PROBES_KEY, {})
    key = (name, os.environ.get('DOCKER_HOST', ''))
    if key not in probes:
        probes[key] = _docker_problem()
    problem = probes[key]
    if problem is None:
        return
    reason = f'localrunner backend "docker": {problem}'
    if _in_ci():
        pytest.fail(f'{reason} (CI=true: Docker tests must run, not be skipped)', pytrace=False)
    pytest.skip(reason)


def _marker_options(node) -> dict:
    """The localrunner markers' keywords, closest (test) first winning over module/class."""
    options: dict = {}
    for mark in node.iter_markers('localrunner'):
        if mark.args:
            raise pytest.UsageError(f'{node.nodeid}: @pytest.mark.localrunner takes keywords only '
                                    f'({", ".join(sorted(_MARKER_KEYS))})')
        unknown = set(mark.kwargs) - _MARKER_KEYS
        if unknown:
            raise pytest.UsageError(f'{node.nodeid}: @pytest.mark.localrunner: unknown keyword(s) '
                                    f'{", ".join(sorted(unknown))}; known: {", ".join(sorted(_MARKER_KEYS))}')
        for k, v in mark.kwargs.items():
            options.setdefault(k, v)
    return options


def _image_map(lines) -> dict:
    from localrunner.errors import UsageError
    from localrunner.params import assignment
    try:
        return {old: new.strip() for old, new in (assignment(line, '--localrunner-image', 'IMAGE=REPLACEMENT')
                                                  for line in lines)}
    except UsageError as e:
        raise pytest.UsageError(str(e)) from None


@pytest.fixture(scope='session')
def localrunner_shared_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A localrunner run root shared by every test of the session: its action cache lets one
    test's results serve another's (use @pytest.mark.localrunner(shared_cache=True))."""
    return str(tmp_path_factory.mktemp('localrunner-shared'))


@pytest.fixture
def localrunner_backend(request: pytest.FixtureRequest) -> str:
    """The localrunner backend this test runs on: the marker's backend=, else
    --localrunner-backend, else the localrunner_backend ini option, else 'subprocess'."""
    return (_marker_options(request.node).get('backend')
            or request.config.getoption('localrunner_backend')
            or request.config.getini('localrunner_backend')
            or 'subprocess')


@pytest.fixture
def localrunner(request: pytest.FixtureRequest, tmp_path, localrunner_backend: str) -> 'LocalRunner':
    """Runs KFP components and pipelines locally and returns typed results:
    localrunner.run_component(fn_or_yaml, **inputs) -> ComponentResult,
    localrunner.run_pipeline(fn_or_yaml, **params) -> PipelineResult, and
    localrunner.artifact(path=|bytes=|text=|dataframe=, type=dsl.Dataset, metadata={}) for input
    artifacts. Results have .state, .output, .outputs, .artifacts[name] (.path, .uri, .metadata,
    .read_text()), .metrics, .tasks[name], .logs and .raise_for_state(). Each test gets its own
    run root and action cache (tmp_path/'localrunner'); venvs and environment images are shared
    by all tests and sessions. Configure with @pytest.mark.localrunner(backend=, shared_cache=,
    use_cache=, images=, mounts=) or --localrunner-backend, --localrunner-image, --localrunner-env-dir.

    Example::

        result = localrunner.run_component(train, data=localrunner.artifact(dataframe=df), epochs=2)
        result.raise_for_state()
        assert result.metrics['accuracy'] > 0.9
        assert result.artifacts['model'].metadata['framework'] == 'sklearn'
    """
    from localrunner.testing import LocalRunner
    options = _marker_options(request.node)
    config = request.config
    _require_backend(config, localrunner_backend)
    images = _image_map(config.getini('localrunner_images'))
    images.update(_image_map(config.getoption('localrunner_images') or []))
    images.update(options.get('images') or {})
    if options.get('shared_cache'):
        root = request.getfixturevalue('localrunner_shared_root')
    else:
        root = str(tmp_path / 'localrunner')
    runner = LocalRunner(root, backend=localrunner_backend, images=images,
                         env_dir=config.getoption('localrunner_env_dir'),
                         use_cache=options.get('use_cache', True), mounts=options.get('mounts'),
                         check_backend=lambda name: _require_backend(config, name))
    request.node.stash[_RUNNER_KEY] = runner
    return runner


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A failed test that ran something gets each failed run's task errors, tracebacks and
    logs as a report section (unless the failure is already a LocalRunnerFailure saying so)."""
    outcome = yield
    report = outcome.get_result()
    if call.when != 'call' or not report.failed:
        return
    runner = item.stash.get(_RUNNER_KEY, None)
    if runner is None:
        return
    from localrunner.testing import LocalRunnerFailure
    if call.excinfo is not None and isinstance(call.excinfo.value, LocalRunnerFailure):
        return
    for result in runner.results:
        if not result.succeeded:
            report.sections.append((f'localrunner: {result.pipeline} {result.state.value}',
                                    result.failure_report()))
