"""prediction.py: how a dry run words a changed key, and which upstream outputs are unknown."""
import pytest

from localrunner.engine.caching import custom_key_parts, key_parts
from localrunner.engine.inputs import Scope
from localrunner.engine.model import Outcome, State
from localrunner.engine.prediction import describe_change, pending_upstreams
from tests.ir_views import component_view, container_view, task_view


def parts(**change):
    base = dict(image='python:3.11', command=['python3', 'main.py'], args=['--n', '5'],
                env={'MODE': 'fast', 'TOKEN': 's3cret'}, secret_env={'TOKEN'},
                params={'n': 5, 'cfg': {'lr': 0.1}}, artifacts={'data': [{'digest': 'aa'}]},
                outputs={'parameters': {'Output': 'STRING'}}, accelerator={'type': None, 'count': 0},
                volumes=['/data'], environment='venv:1', secret_digest=lambda v: 'hmac-sha256:' + v.hex())
    base.update(change)
    return key_parts(**base)


@pytest.mark.parametrize('change,words', [
    ({'image': 'python:3.12'}, 'changed: image'),
    ({'environment': 'venv:2'}, 'changed: environment (image or packages)'),
    ({'command': ['python3', 'other.py']}, 'changed: code'),
    ({'args': ['--n', '6']}, 'changed: code'),
    ({'env': {'MODE': 'slow', 'TOKEN': 's3cret'}}, 'changed: environment variable'),
    ({'env': {'MODE': 'fast', 'TOKEN': 'rotated'}}, 'changed: environment variable'),
    ({'params': {'n': 6, 'cfg': {'lr': 0.1}}}, 'changed: input parameter n'),
    ({'params': {'n': 5, 'cfg': {'lr': 0.2}}}, 'changed: input parameter cfg'),       # a nested field: its parameter
    ({'artifacts': {'data': [{'digest': 'bb'}]}}, 'changed: input artifact data'),
    ({'outputs': {'parameters': {'Output': 'NUMBER_INTEGER'}}}, 'changed: declared outputs'),
    ({'accelerator': {'type': 'nvidia.com/gpu', 'count': 1}}, 'changed: accelerator'),
    ({'volumes': []}, 'changed: volumes'),
])
def test_each_part_has_a_name_a_person_knows(change, words):
    assert describe_change(parts(), parts(**change)) == words


def test_new_and_removed_parameters_are_said_so():
    assert describe_change(parts(), parts(params={'n': 5, 'cfg': {'lr': 0.1}, 'seed': 1})) == \
        'changed: input parameter seed (new)'
    assert describe_change(parts(), parts(params={'cfg': {'lr': 0.1}})) == 'changed: input parameter n (removed)'


def test_several_changes_are_listed_once_each_in_key_order():
    said = describe_change(parts(), parts(command=['python3', 'x.py'], args=['--n', '6'], image='python:3.12',
                                          params={'n': 6, 'cfg': {'lr': 0.1}}))
    assert said == 'changed: code, image, input parameter n'


def test_at_most_six_things_are_named():
    many = parts(params={f'p{i}': i for i in range(10)})
    assert describe_change(parts(), many).count(',') == 5


def test_a_custom_key_change_and_a_schema_change():
    iface = component_view({'inputDefinitions': {}})
    container = container_view({'args': ['--function_to_execute', 'f']})
    assert describe_change(custom_key_parts('v1', iface, container),
                           custom_key_parts('v2', iface, container)) == 'changed: cache key'
    assert describe_change(parts(), {**parts(), 'schema': 999}) == 'changed: key schema'


def test_equal_documents_say_the_key():
    assert describe_change(parts(), parts()) == 'changed: the key'


# ----------------------------------------------------------------- pending upstreams
def test_pending_upstreams_are_those_whose_outputs_the_task_reads():
    scope = Scope({}, {}, {
        'train': Outcome(State.SUCCEEDED, pending='train'),
        'load': Outcome(State.SUCCEEDED),                      # known outputs (cached or ran)
        'body': Outcome(State.SUCCEEDED, pending='body'),
        'split': Outcome(State.SUCCEEDED, pending='split'),
        'unrelated': Outcome(State.SUCCEEDED, pending='unrelated'),
    }, prefix='loop.0/')
    task = task_view({'inputs': {
        'parameters': {'acc': {'taskOutputParameter': {'producerTask': 'train', 'outputParameterKey': 'acc'}},
                       'loss': {'taskOutputParameter': {'producerTask': 'train', 'outputParameterKey': 'loss'}},
                       'rows': {'taskOutputParameter': {'producerTask': 'load', 'outputParameterKey': 'rows'}},
                       'status': {'taskFinalStatus': {'producerTask': 'body'}},
                       'n': {'componentInputParameter': 'pipelinechannel--n'}},
        'artifacts': {'part': {'taskOutputArtifact': {'producerTask': 'split', 'outputArtifactKey': 'part'}}}},
        'dependentTasks': ['unrelated']})                      # .after() alone reads nothing
    assert pending_upstreams(task, scope) == ['loop.0/train', 'loop.0/body', 'loop.0/split']


@pytest.mark.parametrize('task', [{}, {'inputs': {}}, {'inputs': {'parameters': {}, 'artifacts': {}}}])
def test_a_task_without_inputs_waits_on_nothing(task):
    scope = Scope({}, {}, {'train': Outcome(State.SUCCEEDED, pending='train')}, prefix='')
    assert pending_upstreams(task_view(task), scope) == []


def test_a_producer_not_in_scope_is_not_pending():
    task = task_view({'inputs': {'parameters': {'x': {'taskOutputParameter': {'producerTask': 'gone',
                                                                              'outputParameterKey': 'Output'}}}}})
    assert pending_upstreams(task, Scope({}, {}, {}, prefix='')) == []
