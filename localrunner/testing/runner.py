"""LocalRunner: run a kfp component or pipeline (Python object or compiled YAML) with plain
Python arguments and get a typed result. The pytest plugin hands one to each test."""
from __future__ import annotations

import os
import re
from typing import Any, Callable, Optional

import yaml

from localrunner.errors import UsageError
from localrunner.testing.artifacts import InputArtifact, make_artifact, to_engine
from localrunner.testing.results import ComponentResult, OutputArtifact, PipelineResult


def _is_pipeline_ir(path: str) -> bool:
    try:
        with open(path, encoding='utf-8') as f:
            doc = next(iter(yaml.safe_load_all(f)), None)
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return True    # let the engine's loader report what is wrong with it
    return isinstance(doc, dict) and ('root' in doc or 'pipelineSpec' in doc or 'pipelineInfo' in doc)


class LocalRunner:
    """Runs kfp components and pipelines locally for a test.

    root        run root: runs, and the action cache under <root>/cache (per test by default)
    backend     'subprocess' (default) or 'docker' (or any installed localrunner backend)
    images      {image in the IR: image to use instead}, e.g. {'python:3.11-slim': 'my-base:tag'}
    env_dir     where the subprocess backend keeps venvs (default: LOCALRUNNER_ENV_DIR or the
                user cache dir, shared by every test and session)
    use_cache   False: never serve a task from the cache (results are still recorded)
    mounts      host paths every task may read at the same path (container backends)
    """

    def __init__(self, root: str, *, backend: str = 'subprocess', images: Optional[dict] = None,
                 env_dir: Optional[str] = None, use_cache: bool = True, mounts: Optional[list] = None,
                 max_parallel: Optional[int] = None, backend_settings: Optional[dict] = None,
                 check_backend: Optional[Callable[[str], None]] = None):
        self.root = os.path.abspath(os.fspath(root))
        self.backend = backend
        self.images = dict(images or {})
        self.env_dir = env_dir
        self.use_cache = use_cache
        self.mounts = list(mounts or [])
        self.max_parallel = max_parallel
        self.backend_settings = dict(backend_settings or {})
        self.check_backend = check_backend
        self.results: list[PipelineResult] = []
        self._compiled: dict[int, tuple[Any, str]] = {}

    # ------------------------------------------------------------------ inputs
    def artifact(self, path: Any = None, *, bytes: Optional[bytes] = None, text: Optional[str] = None,  # noqa: A002
                 dataframe: Any = None, type: Any = None, name: Optional[str] = None,  # noqa: A002
                 metadata: Optional[dict] = None, format: str = 'csv', copy: bool = False) -> InputArtifact:  # noqa: A002
        """An input artifact from exactly one of path= (used in place), bytes=, text= or
        dataframe= (CSV without the index; format='parquet' or 'json' too). type= is a kfp
        artifact class (dsl.Dataset, dsl.Model, ...) or a schema title; left out, the artifact
        takes the type of the input it is passed to. metadata= becomes the artifact's metadata."""
        return make_artifact(os.path.join(self.root, 'inputs'), path, bytes=bytes, text=text,
                             dataframe=dataframe, type=type, name=name, metadata=metadata, format=format,
                             copy=copy)

    # ------------------------------------------------------------------ running
    def run_component(self, component: Any, /, **inputs: Any) -> ComponentResult:
        """Runs one component (a @dsl.component / @dsl.container_component function, a loaded
        component, or a component YAML path) with its inputs as keyword arguments: parameters
        as Python values, artifacts as localrunner.artifact(...), an artifact of an earlier
        result, a path, bytes or a pandas DataFrame. Returns a ComponentResult."""
        return self.run(component, inputs, component=True)

    def run_pipeline(self, pipeline: Any, /, **inputs: Any) -> PipelineResult:
        """Runs a @dsl.pipeline function or a compiled pipeline YAML with its parameters (and
        root input artifacts, if it has any) as keyword arguments. Returns a PipelineResult."""
        return self.run(pipeline, inputs, component=False)

    def run(self, target: Any, inputs: Optional[dict] = None, *, component: bool = False,
            backend: Optional[str] = None, use_cache: Optional[bool] = None) -> PipelineResult:
        """run_component / run_pipeline with inputs as a dict and per-run overrides."""
        from localrunner.api import run_pipeline
        from localrunner.engine import events as ev
        from localrunner.engine.runtime import RunOptions
        from localrunner.spec import load_pipeline

        backend = backend or self.backend
        if self.check_backend is not None:
            self.check_backend(backend)
        path = self.compile(target)
        try:
            pipeline = load_pipeline(path)
        except UsageError as e:
            raise ValueError(str(e)) from None
        if component:
            leaves = pipeline.root.get('dag', {}).get('tasks', {})
            if len(leaves) != 1 or 'dag' in pipeline.component(next(iter(leaves.values()))['componentRef']['name']):
                raise TypeError(f'{path}: run_component() runs a single component; this is a pipeline '
                                f'({len(leaves)} tasks): use run_pipeline()')
        params, root_artifacts = self._split_inputs(pipeline, dict(inputs or {}))

        environment: list[str] = []

        def listen(event) -> None:
            if isinstance(event, ev.EnvBuilding):
                environment.append(event.line)
        listen.event_types = frozenset({ev.EnvBuilding})      # EventBus.wants

        from localrunner.engine.caching import CacheSettings, caching_disabled_by_env
        options = RunOptions(
            root=self.root, backend=backend, backend_settings=dict(self.backend_settings), env_dir=self.env_dir,
            max_parallel=self.max_parallel or os.cpu_count() or 2, image_map=dict(self.images),
            extra_mounts=tuple(os.path.abspath(os.fspath(p)) for p in self.mounts),
            cache=CacheSettings(enabled=self.use_cache if use_cache is None else use_cache,
                                disabled_by_default=caching_disabled_by_env()))
        try:
            raw = run_pipeline(pipeline, params, root_artifacts=root_artifacts, subscribers=(listen,),
                               options=options)
        except UsageError as e:
            raise TypeError(str(e)) from None
        cls = ComponentResult if component else PipelineResult
        result = cls(raw, environment, backend)
        self.results.append(result)
        return result

    # ------------------------------------------------------------------ helpers
    def compile(self, target: Any) -> str:
        """The compiled pipeline YAML for target (a kfp component or pipeline, or a path)."""
        if isinstance(target, (str, os.PathLike)):
            path = os.path.abspath(os.fspath(target))
            if not os.path.exists(path):
                raise FileNotFoundError(f'{os.fspath(target)}: no such file')
            if _is_pipeline_ir(path):
                return path
            from kfp import components
            target = components.load_component_from_file(path)   # a KFP v1 component YAML
        from kfp.dsl.base_component import BaseComponent
        if not isinstance(target, BaseComponent):
            raise TypeError(f'{target!r} is not a kfp component or pipeline: decorate the function with '
                            f'@dsl.component, @dsl.container_component or @dsl.pipeline, or pass a YAML path')
        known = self._compiled.get(id(target))
        if known is not None and known[0] is target:
            return known[1]
        from kfp import compiler
        from localrunner.layout import RootLayout
        folder = RootLayout(self.root).compiled_dir
        os.makedirs(folder, exist_ok=True)
        label = re.sub(r'[^A-Za-z0-9_.-]+', '-', getattr(target, 'name', 'pipeline'))
        path = os.path.join(folder, f'{label}-{len(self._compiled)}.yaml')
        compiler.Compiler().compile(target, path)
        self._compiled[id(target)] = (target, path)
        return path

    def _split_inputs(self, pipeline, inputs: dict) -> tuple[dict, dict]:
        defs = pipeline.root.get('inputDefinitions', {}) or {}
        param_defs = defs.get('parameters', {}) or {}
        art_defs = defs.get('artifacts', {}) or {}
        unknown = sorted(set(inputs) - set(param_defs) - set(art_defs))
        if unknown:
            known = ', '.join(sorted(param_defs) + sorted(art_defs)) or '(none)'
            raise TypeError(f'{pipeline.name}: no input named {", ".join(map(repr, unknown))}; inputs are: {known}')
        params = {k: v for k, v in inputs.items() if k in param_defs}
        artifacts = {}
        for name, d in art_defs.items():
            if name not in inputs:
                if not d.get('isOptional'):
                    raise TypeError(f'{pipeline.name}: missing input artifact {name!r} '
                                    f'({d.get("artifactType", {}).get("schemaTitle", "system.Artifact")}); '
                                    f'pass {name}=localrunner.artifact(...)')
                continue
            value = inputs[name]
            schema = d.get('artifactType', {}) or {}
            title = schema.get('schemaTitle', 'system.Artifact')
            version = schema.get('schemaVersion', '0.0.1')
            values = value if isinstance(value, (list, tuple)) else [value]
            if len(values) != 1 and not d.get('isArtifactList'):
                raise TypeError(f'{pipeline.name}: input artifact {name!r} takes one artifact, got {len(values)}')
            artifacts[name] = [to_engine(self._coerce(v, name), name, title, version) for v in values]
        return params, artifacts

    def _coerce(self, value: Any, name: str) -> Any:
        if isinstance(value, (InputArtifact, OutputArtifact, str, os.PathLike)):
            return value
        if isinstance(value, (bytes, bytearray)):
            return self.artifact(bytes=bytes(value), name=name)
        if hasattr(value, 'to_csv') and hasattr(value, 'columns'):      # a pandas DataFrame
            return self.artifact(dataframe=value, name=name)
        return value
