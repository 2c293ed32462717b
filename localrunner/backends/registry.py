"""Backends are plugins: the entry-point group `localrunner.backends` is the only registry
(localrunner's own are registered there by its pyproject.toml, like anyone else's)."""
from __future__ import annotations

from localrunner.backends.base import Backend
from localrunner.errors import UsageError

GROUP = 'localrunner.backends'

# What pyproject.toml registers for localrunner itself, so that a run with one of these needs
# no entry-point scan (importlib.metadata reads every installed distribution: ~15 ms of each
# start). tests/unit/test_backend_registry.py checks it against the installed entry points.
BUILT_IN = {
    'subprocess': 'localrunner.backends.subprocess_backend:SubprocessBackend',
    'auto': 'localrunner.backends.auto_backend:AutoBackend',
    'docker': 'localrunner.backends.docker_backend:DockerBackend',
    'kubernetes': 'localrunner.backends.kubernetes.backend:KubernetesBackend',
}


def available() -> dict[str, str]:
    from importlib import metadata
    return {ep.name: ep.value for ep in metadata.entry_points(group=GROUP)}


def backend_class(name: str) -> type:
    known = {name: BUILT_IN[name]} if name in BUILT_IN else available()
    if name not in known:
        raise UsageError(f'--backend {name}: unknown backend; available: {", ".join(sorted(known)) or "none"}'
                         + ('' if known else ' (is localrunner installed? pip install -e .)'))
    module, _, attr = known[name].partition(':')
    try:
        mod = __import__(module, fromlist=[attr])
    except ImportError as e:
        extra = ' (pip install localrunner[kubernetes])' if name == 'kubernetes' else ''
        raise UsageError(f'--backend {name}: cannot load it: {e}{extra}') from None
    cls = getattr(mod, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise UsageError(f'--backend {name}: {known[name]} is not a localrunner backend')
    return cls
