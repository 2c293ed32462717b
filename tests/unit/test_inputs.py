"""inputs.py: a task's inputs resolved in its DAG's scope, as KFP's driver resolves them."""
import pytest

from localrunner.engine.inputs import InputError, Scope, final_status, input_value, parameter_value, resolve
from localrunner.engine.model import Artifact, Outcome, State
from localrunner.engine.placeholders import RunContext
from localrunner.spec import Component, Task
from tests.ir_views import component_view, task_view

CTX = RunContext(job_name='pipe-run-1', job_id='uuid-1', task_name='consumer', task_id='t-1',
                 create_time='2024-01-01T00:00:00Z', pipeline_root='/root', workspace='/ws')
DATA = Artifact('data', 'system.Dataset', '0.0.1', '/root/runs/r/tasks/load/out/artifacts/data', {'rows': 10})
MODEL = Artifact('model', 'system.Model', '0.0.1', '/root/runs/r/tasks/train/out/artifacts/model', {'acc': 0.9})


def scope(**outcomes) -> Scope:
    return Scope(parameters={'pipelinechannel--n': 3, 'pipelinechannel--word': 'hi', 'pipelinechannel--none': None,
                             'pipelinechannel--records-loop-item': {'n': 2, 'label': 'b', 'tags': ['x']}},
                 artifacts={'pipelinechannel--data': [DATA]},
                 outcomes=outcomes, prefix='condition-1/')


def out(producer: str, key: str = 'Output') -> dict:
    return {'taskOutputParameter': {'producerTask': producer, 'outputParameterKey': key}}


def art(producer: str, key: str) -> dict:
    return {'taskOutputArtifact': {'producerTask': producer, 'outputArtifactKey': key}}


def task(parameters=None, artifacts=None) -> Task:
    """The view of a task with these inputs, as the IR writes them."""
    return task_view({'inputs': {'parameters': parameters or {}, 'artifacts': artifacts or {}}})


def component(parameters=None, artifacts=None) -> Component:
    return component_view({'inputDefinitions': {'parameters': parameters or {}, 'artifacts': artifacts or {}}})


STRING, INT = {'parameterType': 'STRING'}, {'parameterType': 'NUMBER_INTEGER'}


def test_component_input_parameters():
    params, _ = resolve(task({'n': {'componentInputParameter': 'pipelinechannel--n'},
                              'w': {'componentInputParameter': 'pipelinechannel--word'}}),
                        component({'n': INT, 'w': STRING}), scope(), CTX, check_required=True)
    assert params == {'n': 3, 'w': 'hi'}


def test_task_output_parameters():
    sc = scope(train=Outcome(State.SUCCEEDED, parameters={'Output': 0.93, 'best': {'lr': 0.1}}),
               cached=Outcome(State.CACHED, parameters={'Output': 'old'}))
    params, _ = resolve(task({'acc': out('train'), 'best': out('train', 'best'), 'c': out('cached')}),
                        component(), sc, CTX, check_required=True)
    assert params == {'acc': 0.93, 'best': {'lr': 0.1}, 'c': 'old'}


def test_constants_and_run_metadata_in_constants():
    params, _ = resolve(task({'k': {'runtimeValue': {'constant': 5}},
                              'l': {'runtimeValue': {'constant': [1, 2]}},
                              'job': {'runtimeValue': {'constant': '{{$.pipeline_job_name}}'}},
                              'msg': {'runtimeValue': {'constant': 'task {{$.pipeline_task_name}} of {{$.pipeline_job_uuid}}'}}}),
                        component(), scope(), CTX, check_required=True)
    assert params == {'k': 5, 'l': [1, 2], 'job': 'pipe-run-1', 'msg': 'task consumer of uuid-1'}


@pytest.mark.parametrize('state,kfp_state', [(State.SUCCEEDED, 'COMPLETE'), (State.CACHED, 'CACHED'),
                                             (State.FAILED, 'FAILED'), (State.SKIPPED, 'SKIPPED'),
                                             (State.CANCELED, 'CANCELED')])
def test_task_final_status(state, kfp_state):
    sc = scope(body=Outcome(state, error='exit code 3' if state is State.FAILED else None))
    params, _ = resolve(task({'status': {'taskFinalStatus': {'producerTask': 'body'}}}),
                        component({'status': {'parameterType': 'TASK_FINAL_STATUS'}}), sc, CTX, check_required=True)
    status = params['status']
    assert status['state'] == kfp_state
    assert status['pipelineJobResourceName'] == 'pipe-run-1' and status['pipelineTaskName'] == 'body'
    if state is State.FAILED:
        assert status['error']['message'] == 'exit code 3' and status['error']['code'] != 0
    else:
        assert status['error'] == {}


def test_final_status_of_a_task_that_never_ran_and_of_a_failure_without_message():
    assert final_status(None, 'body', 'job')['state'] == 'SKIPPED'
    assert final_status(Outcome(State.FAILED), 'body', 'job')['error']['message']


def test_a_loop_item_field_is_selected():
    """KFP compiles `item.label` over a list of dicts into parseJson(string_value)["label"]."""
    loop_item = {'componentInputParameter': 'pipelinechannel--records-loop-item'}
    params, _ = resolve(task({'a': {**loop_item, 'parameterExpressionSelector': 'parseJson(string_value)["n"]'},
                              'b': {**loop_item, 'parameterExpressionSelector': 'parseJson(string_value)["label"]'},
                              't': {**loop_item, 'parameterExpressionSelector': 'parseJson(string_value)["tags"]'}}),
                        component({'a': INT, 'b': STRING}), scope(), CTX, check_required=True)
    assert params == {'a': 2, 'b': 'b', 't': ['x']}


def test_a_selector_that_cannot_apply_is_an_input_error_naming_the_input():
    sc = scope(up=Outcome(State.SUCCEEDED, parameters={'Output': 'not json'}))
    with pytest.raises(InputError, match="input 'a'"):
        resolve(task({'a': {**out('up'), 'parameterExpressionSelector': 'parseJson(string_value)["n"]'}}),
                component(), sc, CTX, check_required=True)


def test_defaults_fill_what_has_no_value():
    comp = component({'n': {**INT, 'defaultValue': 7}, 'w': {**STRING, 'defaultValue': 'dflt'},
                      'z': {**STRING, 'defaultValue': 'from-default'}, 'given': {**INT, 'defaultValue': 1}})
    params, _ = resolve(task({'z': {'componentInputParameter': 'pipelinechannel--none'},
                              'given': {'componentInputParameter': 'pipelinechannel--n'}}),
                        comp, scope(), CTX, check_required=True)
    # no binding, and a binding to a None value, both take the default; a value beats the default
    assert params == {'n': 7, 'w': 'dflt', 'z': 'from-default', 'given': 3}


def test_optional_inputs_may_stay_empty():
    params, arts = resolve(task(), component({'o': {**STRING, 'isOptional': True}},
                                             {'m': {'artifactType': {'schemaTitle': 'system.Model'}, 'isOptional': True}}),
                           scope(), CTX, check_required=True)
    assert params == {} and arts == {}


@pytest.mark.parametrize('state', [State.FAILED, State.SKIPPED, State.CANCELED])
def test_a_missing_required_parameter_names_its_producer_and_its_state(state):
    sc = scope(train=Outcome(state))
    with pytest.raises(InputError) as e:
        resolve(task({'acc': out('train')}), component({'acc': STRING}), sc, CTX, check_required=True)
    assert "'acc'" in str(e.value) and f'condition-1/train is {state.value}' in str(e.value)


def test_a_producer_that_never_ran_is_named_so():
    with pytest.raises(InputError, match='condition-1/train is not run'):
        resolve(task({'acc': out('train')}), component({'acc': STRING}), scope(), CTX, check_required=True)


def test_a_producer_that_succeeded_without_the_output():
    sc = scope(train=Outcome(State.SUCCEEDED, parameters={'other': 1}))
    with pytest.raises(InputError, match='SUCCEEDED'):
        resolve(task({'acc': out('train')}), component({'acc': STRING}), sc, CTX, check_required=True)


def test_a_required_input_with_no_binding_at_all():
    with pytest.raises(InputError, match="required input parameter 'w' has no value$"):
        resolve(task(), component({'w': STRING}), scope(), CTX, check_required=True)


def test_a_missing_required_artifact_names_its_producer():
    sc = scope(train=Outcome(State.SKIPPED))
    with pytest.raises(InputError) as e:
        resolve(task(artifacts={'model': art('train', 'model')}),
                component(artifacts={'model': {'artifactType': {'schemaTitle': 'system.Model'}}}), sc, CTX,
                check_required=True)
    assert "artifact 'model'" in str(e.value) and 'condition-1/train is SKIPPED' in str(e.value)


def test_no_check_and_exempt_names_let_missing_inputs_pass():
    sc = scope(train=Outcome(State.FAILED))
    t = task({'acc': out('train')}, {'model': art('train', 'model')})
    comp = component({'acc': STRING}, {'model': {'artifactType': {'schemaTitle': 'system.Model'}}})
    assert resolve(t, comp, sc, CTX, check_required=False) == ({}, {})
    assert resolve(t, comp, sc, CTX, check_required=True, exempt=frozenset({'acc', 'model'})) == ({}, {})
    with pytest.raises(InputError, match="'model'"):
        resolve(t, comp, sc, CTX, check_required=True, exempt=frozenset({'acc'}))


def test_a_final_status_input_is_never_required():
    params, _ = resolve(task(), component({'status': {'parameterType': 'TASK_FINAL_STATUS'}}), scope(), CTX,
                        check_required=True)
    assert params == {}


def test_artifacts_from_component_inputs_and_task_outputs():
    sc = scope(train=Outcome(State.SUCCEEDED, artifacts={'model': [MODEL]}))
    _, arts = resolve(task(artifacts={'data': {'componentInputArtifact': 'pipelinechannel--data'},
                                      'model': art('train', 'model')}),
                      component(artifacts={'data': {}, 'model': {}}), sc, CTX, check_required=True)
    assert arts == {'data': [DATA], 'model': [MODEL]}


def test_an_empty_artifact_list_is_no_value():
    sc = scope(train=Outcome(State.SUCCEEDED, artifacts={'model': []}))
    _, arts = resolve(task(artifacts={'model': art('train', 'model')}), component(), sc, CTX, check_required=True)
    assert arts == {}


def test_a_kfp_kubernetes_reference_resolves_as_the_same_task_input_does():
    """k8s_local's *NameParameter references are IR parameter references kept in the platform
    config (a dict): parameter_value reads them to what the reader makes of a task input."""
    sc = scope(train=Outcome(State.SUCCEEDED, parameters={'Output': 'claim-7'}), body=Outcome(State.FAILED))
    refs = {'in': {'componentInputParameter': 'pipelinechannel--word'}, 'out': out('train'),
            'missing': out('nowhere'), 'const': {'runtimeValue': {'constant': 'job {{$.pipeline_job_name}}'}},
            'status': {'taskFinalStatus': {'producerTask': 'body'}}}
    view = task(refs)
    for name, ref in refs.items():
        assert parameter_value(ref, sc, CTX) == input_value(view.parameters[name], sc, CTX), name
    assert parameter_value(refs['in'], sc, CTX) == (True, 'hi')
    assert parameter_value(refs['missing'], sc, CTX) == (False, None)
    assert parameter_value({'somethingElse': 1}, sc, CTX) == (False, None)
