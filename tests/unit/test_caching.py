"""caching.py: the action key's canonical document, and whether the IR turns caching on."""
import copy

import pytest

from localrunner.engine import caching
from localrunner.engine.caching import (action_key, caching_disabled_by_env, canonical, canonical_json,
                                        diff_parts, key_parts)
from localrunner.engine.model import Artifact
from localrunner.errors import UsageError
from tests.ir_views import component_view, container_view, task_view

SECRET = 'hunter2-very-secret'


def parts(**change):
    base = dict(image='python:3.11', command=['sh', '-c', 'python3 -m kfp.dsl.executor_main "$@"'],
                args=['--executor_input', '{{$}}', '--function_to_execute', 'train'],
                env={'MODE': 'fast', 'DB_PASSWORD': SECRET}, secret_env={'DB_PASSWORD'},
                params={'n': 5, 'lr': 0.1, 'cfg': {'layers': [2, 4]}},
                artifacts={'data': [{'type': 'system.Dataset', 'version': '0.0.1', 'metadata': {},
                                     'digest': 'aa' * 16, 'kind': 'file'}]},
                outputs={'parameters': {'Output': 'NUMBER_DOUBLE'}, 'artifacts': {'model': 'system.Model'}},
                accelerator={'type': None, 'count': 0}, volumes=['/data'], environment='venv:abc',
                secret_digest=_keyed)
    base.update(change)
    return key_parts(**base)


def _keyed(value: bytes) -> str:
    # what TaskCache.secret_digest gives: an HMAC under the cache's own key
    import hashlib
    import hmac
    return 'hmac-sha256:' + hmac.new(b'k' * 32, value, hashlib.sha256).hexdigest()


def key(**change) -> str:
    return action_key(parts(**change))


# ----------------------------------------------------------------- canonical forms
def test_whole_floats_are_ints_everywhere():
    assert canonical(5.0) == 5 and type(canonical(5.0)) is int
    assert canonical({'a': [1.0, {'b': 2.0}], 'c': (3.0,)}) == {'a': [1, {'b': 2}], 'c': [3]}
    assert canonical(2.5) == 2.5 and canonical(True) is True and canonical(None) is None


def test_canonical_json_is_independent_of_key_order_and_number_spelling():
    a = {'b': 1, 'a': {'z': [1.0, 2], 'y': 'ü'}}
    b = {'a': {'y': 'ü', 'z': [1, 2.0]}, 'b': 1.0}
    assert canonical_json(a) == canonical_json(b) == '{"a":{"y":"ü","z":[1,2]},"b":1}'


def test_a_bool_is_not_the_number_one():
    assert canonical_json({'x': True}) != canonical_json({'x': 1})
    assert action_key({'x': True}) != action_key({'x': 1})


def test_action_key_is_deterministic():
    assert key() == key() == action_key(copy.deepcopy(parts()))
    assert len(key()) == 32 and int(key(), 16) >= 0       # xxh3-128, hex


# ----------------------------------------------------------------- what enters the key
@pytest.mark.parametrize('change', [
    {'image': 'python:3.12'},
    {'command': ['sh', '-c', 'python3 other.py']},
    {'args': ['--executor_input', '{{$}}', '--function_to_execute', 'evaluate']},
    {'env': {'MODE': 'slow', 'DB_PASSWORD': SECRET}},
    {'env': {'MODE': 'fast', 'DB_PASSWORD': 'another-secret'}},
    {'env': {'MODE': 'fast', 'DB_PASSWORD': SECRET, 'EXTRA': '1'}},
    {'params': {'n': 6, 'lr': 0.1, 'cfg': {'layers': [2, 4]}}},
    {'params': {'n': 5, 'lr': 0.1, 'cfg': {'layers': [2, 8]}}},
    {'artifacts': {'data': [{'type': 'system.Dataset', 'version': '0.0.1', 'metadata': {},
                             'digest': 'bb' * 16, 'kind': 'file'}]}},
    {'artifacts': {'data': [{'type': 'system.Dataset', 'version': '0.0.1', 'metadata': {'rows': 1},
                             'digest': 'aa' * 16, 'kind': 'file'}]}},
    {'outputs': {'parameters': {'Output': 'STRING'}, 'artifacts': {'model': 'system.Model'}}},
    {'accelerator': {'type': 'nvidia.com/gpu', 'count': 1}},
    {'accelerator': {'type': 'nvidia.com/gpu', 'count': 2}},
    {'volumes': ['/data', '/scratch']},
    {'environment': 'venv:def'},
])
def test_a_change_in_any_part_changes_the_key(change):
    assert key(**change) != key()


def test_what_does_not_change_the_key():
    assert key(params={'n': 5.0, 'lr': 0.1, 'cfg': {'layers': [2.0, 4]}}) == key()    # 5 == 5.0
    assert key(env={'DB_PASSWORD': SECRET, 'MODE': 'fast'}) == key()                  # env order
    assert key(volumes=['/b', '/a']) == key(volumes=['/a', '/b'])                       # volume order


def test_a_secret_never_appears_in_clear():
    document = canonical_json(parts())
    assert SECRET not in document
    assert 'fast' in document                       # an ordinary env value is kept as it is
    assert parts()['executor']['env']['DB_PASSWORD'].startswith('hmac-sha256:')


def test_the_same_value_is_a_secret_only_where_marked():
    as_secret = parts(env={'TOKEN': 'tok-7f3e9'}, secret_env={'TOKEN'})
    as_plain = parts(env={'TOKEN': 'tok-7f3e9'}, secret_env=set())
    assert 'tok-7f3e9' not in canonical_json(as_secret) and 'tok-7f3e9' in canonical_json(as_plain)
    assert action_key(as_secret) != action_key(as_plain)


def test_an_artifacts_location_never_enters_its_key_form():
    here = Artifact('data', 'system.Dataset', '0.0.1', '/runs/a/tasks/x/out/artifacts/data', {'rows': 3}, 'cc' * 16, 'file')
    there = Artifact('data', 'system.Dataset', '0.0.1', '/elsewhere/data', {'rows': 3}, 'cc' * 16, 'file')
    assert key(artifacts={'data': [here.key_form()]}) == key(artifacts={'data': [there.key_form()]})
    assert '/runs/a' not in canonical_json(here.key_form())


def test_the_schema_version_is_in_the_key():
    document = parts()
    bumped = {**document, 'schema': document['schema'] + 1}
    assert action_key(bumped) != action_key(document)


# ----------------------------------------------------------------- set_caching_options(cache_key=...)
LIGHTWEIGHT = {'image': 'python:3.11', 'command': ['sh', '-c', '...', 'sh', '-ec', '...'],
               'args': ['--executor_input', '{{$}}', '--function_to_execute', 'train']}
IFACE = {'inputDefinitions': {'parameters': {'n': {'parameterType': 'NUMBER_INTEGER'}}},
         'outputDefinitions': {'parameters': {'Output': {'parameterType': 'STRING'}}}}


def custom_key_parts(cache_key: str, component: dict, container: dict) -> dict:
    """caching.custom_key_parts of a component and its container as the IR writes them."""
    return caching.custom_key_parts(cache_key, component_view(component), container_view(container))


def test_one_component_used_twice_shares_a_custom_key():
    # the IR holds comp-train and comp-train-2, exec-train and exec-train-2: equal copies
    first = custom_key_parts('v1', copy.deepcopy(IFACE), copy.deepcopy(LIGHTWEIGHT))
    second = custom_key_parts('v1', copy.deepcopy(IFACE), copy.deepcopy(LIGHTWEIGHT))
    assert action_key(first) == action_key(second)


@pytest.mark.parametrize('other_component,other_container', [
    (IFACE, {**LIGHTWEIGHT, 'args': ['--executor_input', '{{$}}', '--function_to_execute', 'evaluate']}),
    ({'inputDefinitions': {'parameters': {'m': {'parameterType': 'STRING'}}},
      'outputDefinitions': IFACE['outputDefinitions']}, LIGHTWEIGHT),
    (IFACE, {'image': 'alpine:3', 'command': ['sh', '-c', 'echo'], 'args': []}),
])
def test_different_components_never_share_a_custom_key(other_component, other_container):
    assert action_key(custom_key_parts('v1', IFACE, LIGHTWEIGHT)) != \
        action_key(custom_key_parts('v1', other_component, other_container))


def test_container_components_are_told_apart_by_image_and_command():
    a = {'image': 'alpine:3', 'command': ['sh', '-c', 'echo a'], 'args': ['x']}
    assert action_key(custom_key_parts('k', IFACE, a)) == \
        action_key(custom_key_parts('k', IFACE, {**a, 'args': ['y']}))       # args are inputs: the user vouches
    assert action_key(custom_key_parts('k', IFACE, a)) != \
        action_key(custom_key_parts('k', IFACE, {**a, 'command': ['sh', '-c', 'echo b']}))
    assert action_key(custom_key_parts('k', IFACE, a)) != action_key(custom_key_parts('k2', IFACE, a))


# ----------------------------------------------------------------- explaining a miss
def test_diff_parts_names_each_changed_leaf():
    old = parts()
    new = parts(image='python:3.12', params={'n': 6, 'lr': 0.1, 'cfg': {'layers': [2, 4]}, 'extra': 1})
    assert diff_parts(old, new) == ['executor.image', 'inputs.parameters.extra (new)', 'inputs.parameters.n']
    assert diff_parts(new, old) == ['executor.image', 'inputs.parameters.extra (removed)', 'inputs.parameters.n']


def test_diff_parts_of_equal_documents_is_empty():
    assert diff_parts(parts(), parts(params={'n': 5.0, 'lr': 0.1, 'cfg': {'layers': [2, 4]}})) == []
    assert diff_parts(1, 2) == ['(everything)']


# ----------------------------------------------------------------- whether caching is on
@pytest.mark.parametrize('value', ['1', 'true', 'True', 'TRUE', 't', 'yes', 'Y', 'on', ' true '])
def test_env_truth_set_disables_caching(monkeypatch, value):
    monkeypatch.setenv('KFP_DISABLE_EXECUTION_CACHING_BY_DEFAULT', value)
    assert caching_disabled_by_env()


@pytest.mark.parametrize('value', ['', '0', 'false', 'no', 'off', 'n', 'disable', '2'])
def test_other_env_values_do_not(monkeypatch, value):
    monkeypatch.setenv('KFP_DISABLE_EXECUTION_CACHING_BY_DEFAULT', value)
    assert not caching_disabled_by_env()


def test_an_unset_env_does_not(monkeypatch):
    monkeypatch.delenv('KFP_DISABLE_EXECUTION_CACHING_BY_DEFAULT', raising=False)
    assert not caching_disabled_by_env()


@pytest.mark.parametrize('options,enabled', [
    ({'enableCache': True}, True),
    ({'enableCache': False}, False),
    ({}, False),                       # set_caching_options(False) compiles to {} (proto3 default)
    (None, False),                     # no cachingOptions at all
])
def test_a_tasks_caching_is_on_only_when_enable_cache_is_true(options, enabled):
    task = task_view({} if options is None else {'cachingOptions': options})
    assert task.cache_enabled is enabled


@pytest.mark.parametrize('options', [{'enableCache': 'true'}, {'enableCache': 1}, 'enableCache',
                                     [{'enableCache': True}]])
def test_caching_options_of_another_shape_are_refused_when_the_pipeline_is_read(options):
    with pytest.raises(UsageError, match='root.dag.tasks.task.cachingOptions'):
        task_view({'cachingOptions': options})
