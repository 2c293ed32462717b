"""The Python face: run a compiled pipeline from code (the pytest plugin and scripts use this)."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Optional

from localrunner.engine.caching import CacheSettings, caching_disabled_by_env
from localrunner.engine.events import EventBus, Subscriber
from localrunner.engine.k8s_local import LocalSources
from localrunner.engine.runtime import Run, RunOptions, RunResult
from localrunner.params import resolve_pipeline_params
from localrunner.spec import Pipeline, load_pipeline

if TYPE_CHECKING:
    from localrunner.backends.base import Backend


def make_backend(name: str = 'subprocess', run_id: Optional[str] = None, **options: Any):
    from localrunner.backends.registry import backend_class
    cls = backend_class(name)
    if name in ('docker', 'kubernetes'):
        return cls(run_id=run_id, **options)
    return cls(**options)


def run_pipeline(pipeline: 'str | Pipeline', params: Optional[dict] = None, *, root: str = '.localrunner',
                 backend: 'str | Backend' = 'subprocess', use_cache: bool = True, cache_max_age_s: Optional[float] = None,
                 max_parallel: Optional[int] = None, fail_fast: bool = False, gpu_ids: tuple = (),
                 secrets: Optional[dict] = None, config_maps: Optional[dict] = None, pvcs: Optional[dict] = None,
                 root_artifacts: Optional[dict] = None, subscribers: tuple[Subscriber, ...] = (),
                 backend_options: Optional[dict] = None) -> RunResult:
    """Runs a compiled pipeline (path or loaded Pipeline) and returns its RunResult.
    `params` are Python values, checked and converted like `-p`; `root_artifacts` maps a
    root input artifact name to a list of Artifact objects. `backend` is a backend name, or a
    Backend instance that the caller owns (used as is, not closed; backend_options ignored).
    Raises UsageError on bad input."""
    if isinstance(pipeline, str):
        pipeline = load_pipeline(pipeline)
    values = resolve_pipeline_params(pipeline.root.get('inputDefinitions', {}), {}, params or {})
    options = RunOptions(
        root=root, max_parallel=max_parallel or os.cpu_count() or 2, fail_fast=fail_fast,
        cache=CacheSettings(enabled=use_cache, max_age_s=cache_max_age_s,
                            disabled_by_default=caching_disabled_by_env()),
        k8s=LocalSources(secrets=secrets or {}, config_maps=config_maps or {}, pvcs=pvcs or {}),
        gpu_ids=tuple(gpu_ids))
    from localrunner.engine.runtime import new_run_id
    options.run_id = new_run_id(pipeline.name)
    bus = EventBus()
    for fn in subscribers:
        bus.subscribe(fn)
    owned = isinstance(backend, str)
    runner = make_backend(backend, run_id=options.run_id, **(backend_options or {})) if owned else backend
    try:
        return Run(pipeline, values, runner, options, bus, root_artifacts=root_artifacts).execute()
    finally:
        if owned:
            runner.close()
