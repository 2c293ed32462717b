"""Backends are plugins: the entry-point group `localrunner.backends` is the only registry
(localrunner's own three are registered there by its pyproject.toml, like anyone else's)."""
from __future__ import annotations

from importlib import metadata

from localrunner.backends.base import Backend
from localrunner.errors import UsageError

GROUP = 'localrunner.backends'


def available() -> dict[str, str]:
    return {ep.name: ep.value for ep in metadata.entry_points(group=GROUP)}


def backend_class(name: str) -> type:
    known = available()
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
