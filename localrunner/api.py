"""The Python face: run a compiled pipeline from code (the pytest plugin and scripts use this)."""
from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Optional

from localrunner.engine.assembly import assemble
from localrunner.engine.caching import CacheSettings, caching_disabled_by_env
from localrunner.engine.events import Subscriber
from localrunner.engine.k8s_local import LocalSources
from localrunner.engine.runtime import RunOptions, RunResult
from localrunner.spec import Pipeline

if TYPE_CHECKING:
    from localrunner.backends.base import Backend


def run_pipeline(pipeline: 'str | Pipeline', params: Optional[dict] = None, *, root: str = '.localrunner',
                 backend: 'str | Backend' = 'subprocess', use_cache: bool = True, cache_max_age_s: Optional[float] = None,
                 max_parallel: Optional[int] = None, fail_fast: bool = False, gpu_ids: tuple = (),
                 secrets: Optional[dict] = None, config_maps: Optional[dict] = None, pvcs: Optional[dict] = None,
                 root_artifacts: Optional[dict] = None, subscribers: tuple[Subscriber, ...] = (),
                 backend_settings: Optional[dict] = None, options: Optional[RunOptions] = None) -> RunResult:
    """Runs a compiled pipeline (path or loaded Pipeline) and returns its RunResult.
    `params` are Python values, checked and converted like `-p`; `root_artifacts` maps a
    root input artifact name to a list of Artifact objects. `backend` is a backend name, or a
    Backend instance that the caller owns (used as is, not closed). `options` gives every
    RunOptions field at once (then the keyword shortcuts are ignored). Raises UsageError on
    bad input.

    SIGINT, SIGTERM or SIGHUP during the run (called from the main thread) cancel it as on
    the command line: its tasks are stopped and its result.json says CANCELED. The signal
    is then handed to the handler the caller had: Ctrl-C raises KeyboardInterrupt here, a
    SIGTERM ends the process as it would have without localrunner."""
    if options is None:
        options = RunOptions(
            root=root, backend=backend if isinstance(backend, str) else 'subprocess',
            backend_settings=dict(backend_settings or {}),
            max_parallel=max_parallel or os.cpu_count() or 2, fail_fast=fail_fast,
            cache=CacheSettings(enabled=use_cache, max_age_s=cache_max_age_s,
                                disabled_by_default=caching_disabled_by_env()),
            k8s=LocalSources(secrets=secrets or {}, config_maps=config_maps or {}, pvcs=pvcs or {}),
            gpu_ids=tuple(gpu_ids))
    run = assemble(pipeline, options, params=params or {}, root_artifacts=root_artifacts, subscribers=subscribers,
                   backend=None if isinstance(backend, str) else backend, check_backend=False)
    result = run.execute()
    if result.signal is not None:
        signal.raise_signal(result.signal)
    return result
