"""`localrunner render PIPELINE`: the Pod manifests a `--cluster` run would create, written
without a cluster, a kubeconfig or a bucket -- to `kubectl apply --dry-run=server -f`, or to
diff in review.

Every executor task of the static IR is rendered once, through the backend's own code
(KubernetesBackend.pod_manifest -> pod_spec.build_pod, pod_spec.plan_staging), from a
LaunchSpec assembled with the engine's own pieces (executor input, placeholders, the lifted
pip prologue, resources, kfp-kubernetes names). What a real run only knows later is shown as
a placeholder, and every document says which it holds:
  <<...>>    a value known at run time: an upstream output, a loop item, a presigned URL
  RUN-ID     the run's id (<pipeline>-<date>-<time>-<hex>) in paths and labels
  runtime-*  an object name (secret, PVC, ...) that comes from a run-time value, kept a
             valid DNS name so the server-side dry run accepts it
  /PIPELINE-INPUTS/<name>  a pipeline input artifact (the path `run --artifact` would give)
A task inside a loop is rendered once at `<loop>.*/<task>` (one pod per item at run time);
loops, conditions, exit handlers, retries and caching are stated in annotations
(render.localrunner.dev/...) and in the comment above each document.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sys
import tempfile
from typing import Any, Callable, Optional

import yaml

from localrunner.backends.base import Resources
from localrunner.errors import UsageError

RUN_ID = 'RUN-ID'
ROOT_INPUTS = '/PIPELINE-INPUTS'      # stands for the folders of `run --artifact NAME=PATH` files
ANNOTATION = 'render.localrunner.dev/'
_PENDING = re.compile(r'<<(.+?)>>')
# a task that runs once its upstreams ended, whatever their state: dsl.ExitHandler's exit task
# (kfp/dsl/pipeline_task.py: ignore_upstream_failure / ExitHandler compile to this strategy)
_COMPLETED = 'ALL_UPSTREAM_TASKS_COMPLETED'


def pending(what: str) -> str:
    """A run-time value: readable, and valid wherever a string goes."""
    return f'<<{what}>>'


def is_pending(value: Any) -> bool:
    return '<<' in (value if isinstance(value, str) else json.dumps(value, default=str))


def _inner(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    m = _PENDING.search(text)
    return m.group(1) if m else text


@dataclasses.dataclass
class Rendered:
    """One task of the static IR: its Pod, or why it has none."""
    task: str                                   # '/'-joined path; '<loop>.*' inside a loop
    component: str
    manifest: Optional[dict] = None
    notes: list[tuple[str, str]] = dataclasses.field(default_factory=list)   # (topic, text)
    no_pod: Optional[str] = None                # why this task creates no pod
    error: Optional[str] = None                 # why it could not be rendered


@dataclasses.dataclass
class _Outputs:
    """What a rendered task hands downstream: placeholders for parameters, paths for artifacts."""
    param: Callable[[str], Any]
    arts: dict[str, list]


@dataclasses.dataclass
class _Dag:
    params: dict
    arts: dict
    prefix: str
    marks: tuple[tuple[str, str], ...]          # (topic, text) from enclosing loops/conditions
    outputs: dict[str, _Outputs] = dataclasses.field(default_factory=dict)


class _RenderError(Exception):
    pass


class Renderer:
    """Walks a pipeline's static IR and renders each executor task's Pod."""

    def __init__(self, pipeline, params: dict, root: str = '.localrunner', namespace: Optional[str] = None,
                 image_map: Optional[dict] = None):
        from localrunner.backends.kubernetes.backend import KubernetesBackend
        self.pipeline = pipeline
        self.params = params
        from localrunner.layout import RootLayout
        self.run_id = f'{pipeline.name}-{RUN_ID}'
        self.layout = RootLayout(root).run(self.run_id)      # the folders a run with this id would use
        self.run_dir = self.layout.dir
        self.image_map = image_map or {}
        # the backend a --cluster run would make: the same labels, stage image and namespace
        self.backend = KubernetesBackend(run_id=self.run_id, namespace=namespace, digest_file=False)
        self._names: dict[str, str] = {}

    # ------------------------------------------------------------------ the walk
    def render(self) -> list[Rendered]:
        root = self.pipeline.root
        arts = {}
        for name, d in (root.get('inputDefinitions', {}).get('artifacts', {}) or {}).items():
            arts[name] = [self._artifact(name, d.get('artifactType', {}), f'{ROOT_INPUTS}/{name}')]
        out: list[Rendered] = []
        self._dag(root, _Dag(dict(self.params), arts, '', ()), out)
        return out

    def _dag(self, component: dict, dag: _Dag, out: list[Rendered]) -> _Outputs:
        from localrunner.spec import task_upstreams
        tasks = component.get('dag', {}).get('tasks', {}) or {}
        waiting = {k: set(task_upstreams(t)) for k, t in tasks.items()}
        while waiting:      # upstreams first; among the ready ones, by name (a stable order)
            ready = sorted(k for k, ups in waiting.items() if not ups & set(waiting))
            for key in ready:
                del waiting[key]
                dag.outputs[key] = self._task(key, tasks[key], dag, out)
        return self._dag_outputs(component, dag)

    def _task(self, key: str, task: dict, dag: _Dag, out: list[Rendered]) -> _Outputs:
        comp_name = task['componentRef']['name']
        component = self.pipeline.component(comp_name)
        name = dag.prefix + key
        marks = dag.marks
        policy = task.get('triggerPolicy', {}) or {}
        if policy.get('strategy') == _COMPLETED:
            from localrunner.spec import task_upstreams
            ups = ', '.join(sorted(dag.prefix + u for u in task_upstreams(task)))
            marks += (('exit-handler', f'{name} runs once {ups} ended, whatever their state'),)
        ctx = self._ctx(name)
        try:
            params, arts = self._inputs(task, component, dag, ctx)
        except _RenderError as exc:
            out.append(Rendered(name, comp_name, error=str(exc)))
            return self._leaf_outputs(name, comp_name)
        if policy.get('condition'):
            marks += (('condition', self._condition(name, policy['condition'], params)),)
        if 'parameterIterator' in task or 'artifactIterator' in task:
            return self._loop(name, task, component, params, arts, marks, out)
        if 'dag' in component:
            return self._dag(component, _Dag(params, arts, name + '/', marks), out)
        label = component.get('executorLabel', '')
        executor = self.pipeline.executors.get(label, {})
        if 'importer' in executor:
            return self._importer(name, comp_name, executor['importer'], params, out)
        container = executor.get('container')
        if container is None:
            out.append(Rendered(name, comp_name, error=f'executor {label}: not a container or importer'))
            return self._leaf_outputs(name, comp_name)
        from localrunner.engine import k8s_local
        image = container.get('image', '')
        if image.startswith((k8s_local.CREATE_PVC_IMAGE, k8s_local.DELETE_PVC_IMAGE)):
            out.append(Rendered(name, comp_name, no_pod='a kfp-kubernetes CreatePVC/DeletePVC step: the '
                                'engine handles it itself (no pod; see docs/kubernetes.md)'))
            return self._leaf_outputs(name, comp_name)
        out.append(self._pod(name, task, comp_name, label, params, arts, dag, ctx, marks))
        return self._leaf_outputs(name, comp_name)

    def _leaf_outputs(self, name: str, comp_name: str) -> _Outputs:
        """A leaf task's outputs downstream: its parameters are run-time values; its artifacts
        lie where the run puts them, <run>/tasks/<task>/artifacts/<name>."""
        from localrunner.engine import executor_io
        arts = executor_io.output_artifacts(self.pipeline.view.components[comp_name], self.layout.task(name))
        for key, lst in arts.items():     # what the producer writes into its metadata
            for artifact in lst:
                artifact.metadata = {'localrunner.render': pending(f"metadata of output '{key}' of {name}")}
        return _Outputs(lambda key: pending(f"output '{key}' of {name}"), arts)

    def _loop(self, name, task, component, params, arts, marks, out) -> _Outputs:
        iterator = task.get('parameterIterator') or task.get('artifactIterator')
        item_input = iterator.get('itemInput', '')
        spec = iterator.get('items', {}) or {}
        if 'parameterIterator' in task:
            if 'raw' in spec:
                over = f'the list {str(spec["raw"])[:200]}'
            else:
                value = params.get(spec.get('inputParameter'))
                over = _inner(value) if is_pending(value) else f'the list {json.dumps(value)[:200]}'
            params = {**params, item_input: pending(f'each item of {name}')}
        else:
            over = f"the artifacts of input '{spec.get('inputArtifact')}'"
            items = arts.get(spec.get('inputArtifact')) or []
            arts = {**arts, item_input: items[:1]}
        limit = int((task.get('iteratorPolicy', {}) or {}).get('parallelismLimit', 0) or 0)
        text = f'{name}: one pod per item of {over}' + (f', at most {limit} at once' if limit else '')
        body = self._dag(component, _Dag(params, arts, f'{name}.*/', marks + (('loop', text),)), out)
        # dsl.Collected: a list, one value per iteration (of the task the body's output names)
        return _Outputs(lambda key: pending(f'list of {_inner(body.param(key))}'), body.arts)

    def _dag_outputs(self, component: dict, dag: _Dag) -> _Outputs:
        """A sub-DAG's outputs, followed to the tasks that produce them (dag.outputs in the IR)."""
        spec = component.get('dag', {}).get('outputs', {}) or {}
        params = {}
        for key, sel in (spec.get('parameters', {}) or {}).items():
            one = sel.get('valueFromParameter')
            if one and one['producerSubtask'] in dag.outputs:
                params[key] = dag.outputs[one['producerSubtask']].param(one['outputParameterKey'])
            else:   # dsl.OneOf: whichever branch ran
                params[key] = pending(f"output '{key}' of {dag.prefix.rstrip('/')} (the branch that ran)")
        arts = {}
        for key, sel in (spec.get('artifacts', {}) or {}).items():
            for s in sel.get('artifactSelectors', []) or []:
                produced = dag.outputs.get(s['producerSubtask'])
                if produced and produced.arts.get(s['outputArtifactKey']):
                    arts[key] = produced.arts[s['outputArtifactKey']]
                    break
        fallback = f'output of {dag.prefix.rstrip("/") or "the pipeline"}'
        return _Outputs(lambda key: params.get(key, pending(f"'{key}' {fallback}")), arts)

    # ------------------------------------------------------------------ values
    def _ctx(self, name: str):
        from localrunner.engine.placeholders import RunContext
        return RunContext(job_name=self.run_id, job_id=self.run_id, task_name=name.rsplit('/', 1)[-1],
                          task_id=pending('task uuid'), create_time=pending('run creation time'),
                          pipeline_root=self.run_dir, workspace=self.layout.workspace)

    def _param(self, spec: dict, dag: _Dag, ctx) -> tuple[bool, Any]:
        """A parameter reference's value in its DAG, as the engine resolves it
        (engine/inputs.parameter_value), with upstream outputs as placeholders."""
        from localrunner.engine import inputs as task_inputs
        if 'taskOutputParameter' in spec:
            ref = spec['taskOutputParameter']
            producer = dag.outputs.get(ref['producerTask'])
            if producer is None:       # not a task of this DAG (a kfp-kubernetes reference)
                return True, pending(f"output '{ref['outputParameterKey']}' of {dag.prefix}{ref['producerTask']}")
            return True, producer.param(ref['outputParameterKey'])
        if 'taskFinalStatus' in spec:
            return True, pending(f"final status of {dag.prefix}{spec['taskFinalStatus']['producerTask']}")
        return task_inputs.parameter_value(spec, task_inputs.Scope(dag.params, dag.arts, {}, dag.prefix), ctx)

    def _inputs(self, task: dict, component: dict, dag: _Dag, ctx) -> tuple[dict, dict]:
        from localrunner.engine.expressions import ExpressionError, select
        inputs = task.get('inputs', {}) or {}
        params: dict[str, Any] = {}
        for name, spec in (inputs.get('parameters', {}) or {}).items():
            present, value = self._param(spec, dag, ctx)
            if not present:
                continue
            selector = spec.get('parameterExpressionSelector')
            if selector and is_pending(value):
                value = pending(f'{_inner(value)} | {selector}')
            elif selector:
                try:
                    value = select(selector, value)
                except ExpressionError as exc:
                    raise _RenderError(f'input {name!r}: {exc}') from None
            params[name] = value
        arts: dict[str, list] = {}
        for name, spec in (inputs.get('artifacts', {}) or {}).items():
            if 'componentInputArtifact' in spec:
                value = dag.arts.get(spec['componentInputArtifact'])
            elif 'taskOutputArtifact' in spec:
                ref = spec['taskOutputArtifact']
                value = dag.outputs[ref['producerTask']].arts.get(ref['outputArtifactKey'])
            else:
                value = None
            if value:
                arts[name] = value
        for name, d in (component.get('inputDefinitions', {}).get('parameters', {}) or {}).items():
            if params.get(name) is None and 'defaultValue' in d:
                params[name] = d['defaultValue']
        return params, arts

    def _condition(self, name: str, condition: str, params: dict) -> str:
        from localrunner.engine.expressions import ExpressionError, evaluate_condition
        unknown = sorted(n for n, v in params.items() if n in condition and is_pending(v))
        if unknown:
            return f'{name}: runs only if {condition} -- decided at run time'
        try:
            passed = evaluate_condition(condition, params)
        except ExpressionError as exc:
            return f'{name}: runs only if {condition} -- cannot be evaluated: {exc}'
        verdict = 'true' if passed else 'false: with these parameters this task would NOT run'
        return f'{name}: runs only if {condition} -- {verdict}'

    def _name_value(self, ref: dict, dag: _Dag, ctx) -> Any:
        """An object name (secret, config map, PVC) given as a parameter; a run-time one
        becomes a valid DNS name standing for it."""
        _, value = self._param(ref, dag, ctx)
        if not is_pending(value):
            return value
        what = _inner(value)
        dns = ('runtime-' + re.sub(r'[^a-z0-9]+', '-', what.lower()).strip('-'))[:63].rstrip('-')
        self._names[dns] = what
        return dns

    @staticmethod
    def _artifact(name: str, schema: dict, uri: str):
        from localrunner.engine.model import Artifact
        return Artifact(name=name, schema_title=schema.get('schemaTitle', 'system.Artifact'),
                        schema_version=schema.get('schemaVersion', '0.0.1'), uri=uri, metadata={})

    def _importer(self, name: str, comp_name: str, spec: dict, params: dict, out: list) -> _Outputs:
        """No pod: the engine makes the artifact. Downstream sees the URI (a local path is
        staged into the consumer's pod), as engine/importer.py resolves it."""
        from localrunner.engine.model import local_path
        source = spec.get('artifactUri', {}) or {}
        uri = source.get('constant') if 'constant' in source else params.get(source.get('runtimeParameter', 'uri'))
        if isinstance(uri, dict):
            uri = uri.get('stringValue')
        uri = str(uri or pending(f'artifact URI of {name}'))
        if not is_pending(uri):
            path = local_path(uri) or (os.path.abspath(uri) if '://' not in uri else None)
            if path and spec.get('downloadToWorkspace'):
                path = os.path.join(self.layout.workspace, 'imports', name,
                                    os.path.basename(path.rstrip('/')) or 'artifact')
            uri = path or uri
        out.append(Rendered(name, comp_name, no_pod=f'an importer: the engine makes the artifact from {uri} '
                            '(no pod; a local file is staged into the pods that read it)'))
        artifact = self._artifact('artifact', spec.get('typeSchema', {}), uri)
        return _Outputs(lambda key: pending(f"output '{key}' of {name}"), {'artifact': [artifact]})

    # ------------------------------------------------------------------ one pod
    def _pod(self, name, task, comp_name, label, params, arts, dag, ctx, marks) -> Rendered:
        from localrunner.backends.kubernetes import pod_spec
        from localrunner.engine import executor_io, k8s_local
        from localrunner.engine.resources import resources_of
        from localrunner.engine.container_task import launch_spec
        from localrunner.engine.placeholders import PlaceholderError
        rendered = Rendered(name, comp_name, notes=list(marks))
        task_layout = self.layout.task(name)
        task_dir = task_layout.out             # the task's workdir, the only folder it writes
        # the engine's own readers, on the typed views (spec/views.py) of the component and its container
        component, container = self.pipeline.view.components[comp_name], self.pipeline.view.executors[label].container
        params = executor_io.coerce_inputs(dict(params), component.inputs.parameters)
        executor_input = executor_io.build(
            params, arts, executor_io.output_artifacts(component, task_layout),
            executor_io.output_parameter_files(component, task_layout), task_layout.executor_output)
        try:
            resources = resources_of(container, executor_input, ctx)
        except ValueError as exc:
            resources = Resources()
            rendered.notes.append(('resources', f'not rendered: {exc}'))
        self._names = {}
        try:
            platform = k8s_local.resolve_names(self.pipeline.k8s_executor_config(label),
                                               lambda ref: self._name_value(ref, dag, ctx))
            # the spec a --cluster run hands the backend (a cluster applies kfp-kubernetes itself)
            spec = launch_spec(name, container, executor_input, ctx, arts=arts, workdir=task_dir, run_id=self.run_id,
                               image_map=self.image_map, resources=resources, k8s=k8s_local.K8sEffect(),
                               platform=platform, log_path=task_layout.log(1))
            # the task folder is a folder; an input artifact is shown as a file (its volume is
            # its parent folder, which holds a folder as well: only the download step differs)
            staging, _ = pod_spec.plan_staging(
                spec, lambda path: path == os.path.abspath(task_dir),
                lambda obj: pending(f'presigned GET URL of the staged {obj}'),
                lambda obj: pending(f'presigned PUT URL for {obj}'))
            uid = hashlib.sha256(name.encode()).hexdigest()[:10]
            manifest = self.backend.pod_manifest(spec, pod_spec.pod_name(name, uid), staging)
        except (PlaceholderError, ValueError) as exc:
            rendered.error = str(exc)
            return rendered
        manifest['metadata']['namespace'] = self.backend.namespace
        rendered.notes += self._task_notes(task, name, manifest)
        notes: dict[str, str] = {}
        for topic, text in rendered.notes:      # nested loops / conditions: outermost first
            key = ANNOTATION + topic
            notes[key] = f'{notes[key]}; {text}' if key in notes else text
        manifest['metadata'].setdefault('annotations', {}).update(notes)
        rendered.manifest = manifest
        return rendered

    def _task_notes(self, task: dict, name: str, manifest: dict) -> list[tuple[str, str]]:
        notes = [('task', f'{name}: one pod per attempt; the name ends in the attempt id')]
        caching = (task.get('cachingOptions') or {}).get('enableCache') is True
        notes.append(('caching', 'on: a run that finds this task in the cache creates no pod' if caching
                      else 'off: every run creates this pod'))
        policy = task.get('retryPolicy') or {}
        retries = int(policy.get('maxRetryCount', 0) or 0)
        if retries:
            backoff = ', '.join(f'{k} {policy[k]}' for k in ('backoffDuration', 'backoffFactor', 'backoffMaxDuration')
                                if k in policy)
            notes.append(('retries', f'{retries}: a new pod per attempt' + (f' ({backoff})' if backoff else '')))
        found = sorted(set(_PENDING.findall(json.dumps(manifest))))
        shown = [f'<<{p}>>' for p in found if not p.startswith('presigned ')]
        if any(p.startswith('presigned ') for p in found):
            shown.append('<<presigned ... URL ...>>: signed by the run for each attempt')
        shown += [f'{dns}: {what}' for dns, what in sorted(self._names.items())]
        if f'{ROOT_INPUTS}/' in json.dumps(manifest):
            shown.append(f'{ROOT_INPUTS}/<name>: the path of a pipeline input artifact (run --artifact)')
        notes.append(('placeholders', f'{RUN_ID}: the run id; ' + '; '.join(shown)))
        return notes


# ---------------------------------------------------------------------- output

class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the pod's shell scripts) as literal blocks: readable in review.
    No anchors: a mount shared by two containers is written out twice, as kubectl shows it."""

    def ignore_aliases(self, data):
        return True


_Dumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    'tag:yaml.org,2002:str', text, style='|' if '\n' in text else None))


def document(item: Rendered) -> str:
    lines = [f'# localrunner render: task {item.task} (component {item.component})']
    lines += [f'# {topic}: {text}' for topic, text in item.notes]
    body = yaml.dump(item.manifest, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)
    return '\n'.join(lines) + '\n' + body


def _stream_header(pipeline, rendered: list[Rendered]) -> str:
    lines = [f'# Pods a `localrunner run --cluster` of {pipeline.name} would create (localrunner render).',
             '# <<...>> marks a value known only at run time; RUN-ID stands for the run id.']
    lines += [f'# no pod for {r.task}: {r.no_pod}' for r in rendered if r.no_pod]
    return '\n'.join(lines) + '\n'


def _file_name(task: str, taken: set[str]) -> str:
    stem = re.sub(r'[^A-Za-z0-9_.-]+', '-', task.replace('/', '__').replace('*', 'each')).strip('-') or 'task'
    name, n = f'{stem}.yaml', 1
    while name in taken:
        n += 1
        name = f'{stem}-{n}.yaml'
    taken.add(name)
    return name


def write(rendered: list[Rendered], pipeline, target: str) -> str:
    """'-': one multi-document stream on stdout; a .yaml/.yml file: the stream there; else
    a folder with one file per pod. Returns where it went."""
    pods = [r for r in rendered if r.manifest]
    if target == '-' or (target.endswith(('.yaml', '.yml')) and not os.path.isdir(target)):
        stream = _stream_header(pipeline, rendered) + '---\n'.join(document(r) for r in pods)
        if target == '-':
            sys.stdout.write(stream)
            sys.stdout.flush()
            return 'standard output'
        _write_atomic(target, stream)
        return target
    try:
        os.makedirs(target, exist_ok=True)
    except OSError as exc:
        raise UsageError(f'-o {target}: cannot create the folder: {exc.strerror or exc}') from None
    taken: set[str] = set()
    for r in pods:
        _write_atomic(os.path.join(target, _file_name(r.task, taken)), document(r))
    return target


def _write_atomic(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix='.render-')
        with os.fdopen(fd, 'w', encoding='utf-8') as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise UsageError(f'-o {path}: cannot write: {exc.strerror or exc}') from None


def render_command(args) -> int:
    from localrunner.faces.from_python import compile_python, is_python_target
    from localrunner.params import parse_cli_params, read_params_file, resolve_pipeline_params
    from localrunner.spec import load_pipeline
    if is_python_target(args.pipeline):
        with tempfile.TemporaryDirectory(prefix='localrunner-render-') as scratch:
            pipeline = load_pipeline(compile_python(args.pipeline, scratch))
    else:
        pipeline = load_pipeline(args.pipeline)
    from_file = read_params_file(args.params_file) if args.params_file else {}
    params = resolve_pipeline_params(pipeline.view.root.inputs.parameters, parse_cli_params(args.param),
                                     from_file)
    from localrunner.faces.run_command import _image_map
    image_map = _image_map(args.image_map)
    rendered = Renderer(pipeline, params, root=args.root, namespace=args.namespace, image_map=image_map).render()
    where = write(rendered, pipeline, args.output)
    failed = [r for r in rendered if r.error]
    for r in failed:
        print(f'localrunner: render: task {r.task}: {r.error}', file=sys.stderr)
    pods = sum(1 for r in rendered if r.manifest)
    others = sum(1 for r in rendered if r.no_pod)
    print(f'rendered {pods} pod manifest{"s" * (pods != 1)} of {pipeline.name} to {where}'
          + (f'; {others} task{"s" * (others != 1)} without a pod' if others else '')
          + (f'; {len(failed)} could not be rendered' if failed else ''), file=sys.stderr)
    return 1 if failed else 0
