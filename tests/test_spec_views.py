"""The typed views of a loaded pipeline (spec/views.py): what they say about real compiled
pipelines, that they are frozen, and that the raw-dict API the engine reads is unchanged.
Every compiled pipeline we have must still load."""
import dataclasses
import glob
import os

import pytest
import yaml

from localrunner.spec import Loop, Pipeline, PipelineView, load_pipeline, task_upstreams
from tests import control_flow_pipelines as cf
from tests.helpers import compile_pipeline

HERE = os.path.dirname(__file__)
EXAMPLES = sorted(glob.glob(os.path.join(HERE, '..', 'examples', '*.yaml')))
CONFORMANCE = sorted(glob.glob('/work/shared/conformance/cases/*/pipeline.yaml'))


@pytest.mark.parametrize('path', EXAMPLES + CONFORMANCE, ids=lambda p: os.path.basename(os.path.dirname(p))
                         if p.endswith('pipeline.yaml') else os.path.basename(p))
def test_every_compiled_pipeline_loads(path):
    pipeline = load_pipeline(path)
    assert isinstance(pipeline.view, PipelineView)
    assert set(pipeline.view.components) == set(pipeline.components)
    assert set(pipeline.view.executors) == set(pipeline.executors)


@pytest.fixture(scope='module')
def compiled(tmp_path_factory):
    folder = tmp_path_factory.mktemp('cf')
    return {name: load_pipeline(compile_pipeline(getattr(cf, name), folder / f'{name}.yaml'))
            for name in ('conditions_pipeline', 'loops_pipeline', 'collected_pipeline', 'nested_pipeline',
                         'exit_handler_pipeline', 'oneof_pipeline', 'failure_pipeline', 'limited_loop_pipeline')}


def test_control_flow_pipelines_load_and_read_consistently(compiled):
    for pipeline in compiled.values():
        view = pipeline.view
        for dag in view.dags():
            raw = pipeline.root if dag.path == 'root' else pipeline.component(dag.name)
            assert set(dag.dag.tasks) == set(raw['dag'].get('tasks', {}))
            for key, task in dag.dag.tasks.items():
                assert task.path == f'{dag.path}.dag.tasks.{key}'
                assert task.component == raw['dag']['tasks'][key]['componentRef']['name']
                # the view's upstreams are the raw reading's (one idea, two readings until the switch)
                assert task.upstreams == frozenset(task_upstreams(raw['dag']['tasks'][key]))


def test_loops_and_their_inputs(compiled):
    view = compiled['loops_pipeline'].view
    loops = {k: t.loop for k, t in view.root.dag.tasks.items() if t.loop is not None}
    assert len(loops) >= 4
    raw_loops = [loop for loop in loops.values() if loop.raw_items is not None]
    assert any(loop.raw_items == '["p", "q", "r"]' for loop in raw_loops), raw_loops
    param_loop = next(loop for loop in loops.values() if loop.items_input and not loop.over_artifacts)
    assert param_loop.item_input.startswith('pipelinechannel--')
    limited = compiled['limited_loop_pipeline'].view
    (loop,) = [t.loop for t in limited.root.dag.tasks.values() if t.loop]
    assert loop == Loop(over_artifacts=False, item_input=loop.item_input, raw_items='[1, 2, 3]', parallelism=1)


def test_conditions_and_final_status(compiled):
    tasks = compiled['conditions_pipeline'].view.root.dag.tasks
    conditions = [t.condition for t in tasks.values() if t.condition]
    assert conditions and all('inputs.parameter_values' in c for c in conditions), conditions
    exit_view = compiled['exit_handler_pipeline'].view
    finals = [(t, p) for dag in exit_view.dags() for t in dag.dag.tasks.values()
              for p in t.parameters.values() if p.kind == 'final_status']
    assert finals and all(p.producer in t.upstreams for t, p in finals)
    for t, _ in finals:
        assert t.strategy == 'ALL_UPSTREAM_TASKS_COMPLETED'


def test_dag_outputs_and_declared_interfaces(compiled):
    view = compiled['collected_pipeline'].view
    assert set(view.root.outputs.parameters) == {'squares', 'odd_squares', 'nested'}
    assert view.root.outputs.artifacts['texts'].is_list
    assert set(view.root.dag.output_parameters) == {'squares', 'odd_squares', 'nested'}
    oneof = compiled['oneof_pipeline'].view
    (selectors,) = [s for d in oneof.dags() for s in d.dag.output_parameters.values() if len(s) > 1][:1]
    assert all(sel.producer and sel.key for sel in selectors)
    note = next(c for c in view.components.values() if c.executor_label)
    assert note.dag is None and note.executor_label in view.executors


def test_examples_executors_retry_caching_resources(tmp_path):
    ml = load_pipeline(os.path.join(HERE, '..', 'examples', 'ml_pipeline.yaml')).view
    importer = next(e.importer for e in ml.executors.values() if e.importer is not None)
    assert importer.uri_parameter == 'uri' and importer.schema_title == 'system.Dataset'
    train = next(e.container for label, e in ml.executors.items() if 'train' in label)
    assert train.image == 'python:3.11-slim' and train.command[:2] == ('sh', '-c')
    gate = ml.root.dag.tasks['condition-1']
    assert gate.condition == "inputs.parameter_values['pipelinechannel--evaluate-model-Output'] == true"
    assert gate.upstreams == {'evaluate-model', 'train-model'} and gate.caching is None
    assert ml.components[gate.component].dag is not None
    from tests.test_validation import victim
    view = load_pipeline(compile_pipeline(victim, tmp_path / 'v.yaml')).view
    produce, show = view.root.dag.tasks['produce'], view.root.dag.tasks['show']
    assert produce.retry.max_retries == 2 and produce.retry.max_backoff_s == 3600.0
    assert dict(produce.caching) == {'enableCache': True} and produce.cache_enabled and produce.cache_key == ''
    assert not gate.cache_enabled
    assert show.parameters['msg'].kind == 'task_output' and show.parameters['msg'].producer == 'produce'
    assert show.artifacts['data'].name == 'data' and show.upstreams == frozenset({'produce'})
    resources = view.executors['exec-show'].container.resources
    assert (resources.cpu_limit, resources.memory_limit) == ('500m', '1G')
    assert resources.accelerator.type == 'nvidia.com/gpu' and resources.accelerator.count == 1
    assert view.executors['exec-show'].container.args[0] == "{{$.inputs.parameters['msg']}}"


def test_interfaces_as_written_are_the_ir_sections_themselves(compiled):
    """What enters a cache key (a component's inputDefinitions / outputDefinitions) is handed
    on as the IR writes it: the very dict, {} when the IR has none."""
    for pipeline in compiled.values():
        for name, component in pipeline.view.components.items():
            raw = pipeline.component(name)
            for key, interface in (('inputDefinitions', component.inputs), ('outputDefinitions', component.outputs)):
                if key in raw:
                    assert interface.as_written is raw[key]
                else:
                    assert interface.as_written == {} and type(interface.as_written) is dict
            assert set(component.outputs.parameters) == set(component.outputs.as_written.get('parameters', {}))


def test_display_names_as_written():
    view = load_pipeline(os.path.join(HERE, '..', 'examples', 'hello_pipeline.yaml')).view
    assert all(t.display_name for t in view.root.dag.tasks.values())
    from tests.ir_views import task_view
    assert task_view({'taskInfo': {'name': 'shown'}}).display_name == 'shown'
    assert task_view({}).display_name == ''           # the record then shows the task's path (TaskRecord.of)


def test_views_are_frozen_and_the_raw_api_is_unchanged():
    path = os.path.join(HERE, '..', 'examples', 'hello_pipeline.yaml')
    pipeline = load_pipeline(path)
    view = pipeline.view
    task = next(iter(view.root.dag.tasks.values()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.component = 'other'
    with pytest.raises(TypeError):
        view.root.dag.tasks['new'] = task
    with pytest.raises(TypeError):
        view.components['x'] = None
    # the engine's raw reading: same names, plain dicts
    with open(path) as f:
        raw = yaml.safe_load(f)
    assert pipeline.spec == raw and pipeline.root is raw_root(pipeline)
    assert pipeline.component(task.component) == raw['components'][task.component]
    assert pipeline.executors == raw['deploymentSpec']['executors']
    assert pipeline.name == raw['pipelineInfo']['name'] == view.name
    # a Pipeline made by hand gets its view (and its shape checks) too
    again = Pipeline(path, raw, {})
    assert again.view.root.dag.tasks.keys() == view.root.dag.tasks.keys()


def raw_root(pipeline):
    return pipeline.spec['root']
