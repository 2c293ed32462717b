"""Backends are plugins: entry-point group `localrunner.backends`."""
from __future__ import annotations

from importlib import metadata

from localrunner.backends.base import Backend
from localrunner.errors import UsageError

GROUP = 'localrunner.backends'
_BUILTIN = {
    'subprocess': 'localrunner.backends.subprocess_backend:SubprocessBackend',
    'docker': 'localrunner.backends.docker_backend:DockerBackend',
    'kubernetes': 'localrunner.backends.kubernetes.backend:KubernetesBackend',
}


def available() -> dict[str, str]:
    found = dict(_BUILTIN)
    for ep in metadata.entry_points(group=GROUP):
        found[ep.name] = ep.value
    return found


def backend_class(name: str) -> type:
    # built-ins first: scanning installed distributions' entry points costs ~0.1 s
    known = _BUILTIN if name in _BUILTIN else available()
    if name not in known:
        raise UsageError(f'--backend {name}: unknown backend; available: {", ".join(sorted(known))}')
    module, _, attr = known[name].partition(':')
    try:
        mod = __import__(module, fromlist=[attr])
    except ImportError as e:
        extra = ' (pip install localrunner[kubernetes])' if name == 'kubernetes' else ''
        raise UsageError(f'--backend {name}: cannot load it: {e}{extra}') from None
    cls = getattr(mod, attr)
    if not issubclass(cls, Backend):
        raise UsageError(f'--backend {name}: {known[name]} is not a localrunner backend')
    return cls
