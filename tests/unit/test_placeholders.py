"""placeholders.py: every placeholder form KFP's SDK writes into a container's command and args
(kfp/dsl/placeholders.py, kfp/dsl/__init__.py), resolved against an executor input."""
import json

import pytest

from localrunner.engine.placeholders import PlaceholderError, RunContext, resolve_argv, substitute_run_metadata

DATASET = {'schemaTitle': 'system.Dataset', 'schemaVersion': '0.0.1'}
EXECUTOR_INPUT = {
    'inputs': {
        'parameterValues': {'text': 'say "hi" \\ and\nbye', 'count': 3, 'ratio': 0.25, 'flag': True, 'off': False,
                            'nothing': None, 'items': [1, 'two', {'three': 3}], 'conf': {'lr': 0.1, 'layers': [2, 4]},
                            'empty': '', 'tricky': '{{$.pipeline_job_name}} \\1 \\g<0>'},
        'artifacts': {
            'data': {'artifacts': [
                {'name': 'data', 'type': DATASET, 'uri': '/runs/r/tasks/up/out/artifacts/data',
                 'metadata': {'rows': 3, 'source': 'csv', 'schema': {'cols': ['a', 'b']}}},
                {'name': 'data-2', 'type': DATASET, 'uri': '/runs/r/tasks/up/out/artifacts/data.1', 'metadata': {}}]},
            'none-yet': {'artifacts': []},
        },
    },
    'outputs': {
        'parameters': {'Output': {'outputFile': '/t/out/parameters/Output'}},
        'artifacts': {'model': {'artifacts': [{'name': 'model', 'type': {'schemaTitle': 'system.Model'},
                                               'uri': '/t/out/artifacts/model', 'metadata': {'framework': 'x'}}]}},
        'outputFile': '/t/out/executor_output.json',
    },
}
CTX = RunContext(job_name='pipe-20240101-000000-abc123', job_id='pipe-20240101-000000-abc123',
                 task_name='train', task_id='6f1c', create_time='2024-01-01T00:00:00Z',
                 pipeline_root='/root/runs/pipe', workspace='/root/runs/pipe/workspace')


def one(item: str, executor_input=EXECUTOR_INPUT, ctx=CTX) -> str:
    [arg] = resolve_argv([item], executor_input, ctx)
    return arg


def param(name: str, suffix: str = '') -> str:
    return one(f"{{{{$.inputs.parameters['{name}']{suffix}}}}}")


def test_executor_input_is_the_whole_document_as_json():
    assert json.loads(one('{{$}}')) == EXECUTOR_INPUT
    # embedded in a larger argument too
    assert json.loads(one('--executor_input={{$}}').split('=', 1)[1]) == EXECUTOR_INPUT


@pytest.mark.parametrize('name,text', [
    ('text', 'say "hi" \\ and\nbye'),      # a string is given as it is, never quoted
    ('count', '3'),
    ('ratio', '0.25'),
    ('flag', 'true'),                     # JSON spelling, as KFP's launcher (strconv.FormatBool)
    ('off', 'false'),
    ('nothing', 'null'),
    ('empty', ''),
])
def test_input_parameter_scalars(name, text):
    assert param(name) == text


def test_input_parameter_lists_and_dicts_are_json():
    assert json.loads(param('items')) == [1, 'two', {'three': 3}]
    assert json.loads(param('conf')) == {'lr': 0.1, 'layers': [2, 4]}


def test_a_value_is_inserted_verbatim_and_never_resolved_again():
    """A value that looks like a placeholder or a regex back-reference stays as it is."""
    assert param('tricky') == '{{$.pipeline_job_name}} \\1 \\g<0>'


@pytest.mark.parametrize('name', ['text', 'items', 'conf', 'count', 'tricky'])
def test_json_escape_embeds_any_value_inside_a_json_string(name):
    arg = one(f'{{"v": "{{{{$.inputs.parameters[\'{name}\'].json_escape}}}}"}}')
    assert json.loads(arg)['v'] == param(name)


def test_both_quote_styles_of_the_key():
    # the IR's YAML doubles single quotes; either spelling names the same input
    assert one("{{$.inputs.parameters['count']}}") == one('{{$.inputs.parameters["count"]}}') == '3'
    assert one("{{$.inputs.parameters[''count'']}}") == '3'


def test_several_placeholders_in_one_argument():
    assert one("--n={{$.inputs.parameters['count']}},flag={{$.inputs.parameters['flag']}}") == '--n=3,flag=true'


def test_input_artifacts_uri_path_and_metadata():
    uri = '/runs/r/tasks/up/out/artifacts/data'
    assert one("{{$.inputs.artifacts['data'].uri}}") == uri
    assert one("{{$.inputs.artifacts['data'].path}}") == uri       # local: the path is the uri
    assert json.loads(one("{{$.inputs.artifacts['data'].metadata}}")) == {
        'rows': 3, 'source': 'csv', 'schema': {'cols': ['a', 'b']}}


def test_metadata_subscripts():
    assert one("{{$.inputs.artifacts['data'].metadata['rows']}}") == '3'
    assert one("{{$.inputs.artifacts['data'].metadata['source']}}") == 'csv'     # a string: unquoted
    assert json.loads(one("{{$.inputs.artifacts['data'].metadata['schema']}}")) == {'cols': ['a', 'b']}
    assert one("{{$.outputs.artifacts['model'].metadata['framework']}}") == 'x'


def test_a_list_of_artifacts_is_its_runtime_json():
    listed = json.loads(one("{{$.inputs.artifacts['data']}}"))
    assert [a['uri'] for a in listed] == ['/runs/r/tasks/up/out/artifacts/data', '/runs/r/tasks/up/out/artifacts/data.1']
    assert listed[0]['type'] == DATASET and listed[0]['metadata']['rows'] == 3


def test_an_input_artifact_with_no_value_is_empty():
    assert one("{{$.inputs.artifacts['none-yet'].path}}") == ''
    assert one("{{$.inputs.artifacts['never-declared'].uri}}") == ''


def test_outputs():
    assert one("{{$.outputs.parameters['Output'].output_file}}") == '/t/out/parameters/Output'
    assert one("{{$.outputs.artifacts['model'].path}}") == '/t/out/artifacts/model'
    assert one("{{$.outputs.artifacts['model'].uri}}") == '/t/out/artifacts/model'
    assert json.loads(one("{{$.outputs.artifacts['model'].metadata}}")) == {'framework': 'x'}
    assert one('{{$.outputs.output_file}}') == '/t/out/executor_output.json'


@pytest.mark.parametrize('placeholder,value', [
    ('{{$.pipeline_job_name}}', CTX.job_name),
    ('{{$.pipeline_job_resource_name}}', CTX.job_name),
    ('{{$.pipeline_job_uuid}}', CTX.job_id),
    ('{{$.pipeline_task_name}}', 'train'),
    ('{{$.pipeline_task_uuid}}', '6f1c'),
    ('{{$.pipeline_job_create_time_utc}}', '2024-01-01T00:00:00Z'),
    ('{{$.pipeline_job_schedule_time_utc}}', '2024-01-01T00:00:00Z'),
    ('{{$.pipeline_root}}', '/root/runs/pipe'),
    ('{{$.workspace_path}}', '/root/runs/pipe/workspace'),
])
def test_run_metadata_names(placeholder, value):
    assert one(placeholder) == value
    assert one(f'prefix/{placeholder}/suffix') == f'prefix/{value}/suffix'


def test_run_metadata_needs_a_run_context():
    with pytest.raises(PlaceholderError):
        one('{{$.pipeline_job_name}}', ctx=None)
    assert one("{{$.inputs.parameters['count']}}", ctx=None) == '3'


@pytest.mark.parametrize('item', ['{{$.inputs.whatever}}', '{{$.pipeline_nonsense}}',
                                  "{{$.inputs.artifacts['data'].name}}", '{{$.outputs}}'])
def test_an_unknown_placeholder_is_an_error_that_names_it(item):
    with pytest.raises(PlaceholderError) as e:
        one(item)
    assert item in str(e.value)


def test_text_without_placeholders_is_untouched():
    items = ['python3', '-c', 'print("{{ not a kfp placeholder }}")', '{"json": true}', '']
    assert resolve_argv(items, EXECUTOR_INPUT, CTX) == items


# ----------------------------------------------------------------- structured placeholders
def s(node: dict) -> str:
    """The IR carries a structured placeholder as one JSON string argument."""
    return json.dumps(node)


def test_concat_joins_into_one_argument():
    assert resolve_argv([s({'Concat': ['--n=', "{{$.inputs.parameters['count']}}", '!']})],
                        EXECUTOR_INPUT, CTX) == ['--n=3!']
    assert resolve_argv([s({'Concat': []})], EXECUTOR_INPUT, CTX) == ['']


@pytest.mark.parametrize('input_name,present', [('text', True), ('empty', True), ('off', True), ('data', True),
                                                ('nothing', False), ('none-yet', False), ('undeclared', False)])
def test_if_present_then_else(input_name, present):
    node = {'IfPresent': {'InputName': input_name, 'Then': ['--yes', 'x'], 'Else': ['--no']}}
    assert resolve_argv(['a', s(node), 'b'], EXECUTOR_INPUT, CTX) == (['a', '--yes', 'x', 'b'] if present
                                                                      else ['a', '--no', 'b'])


def test_if_present_without_else_drops_the_argument():
    node = {'IfPresent': {'InputName': 'nothing', 'Then': ['--n', "{{$.inputs.parameters['nothing']}}"]}}
    assert resolve_argv(['a', s(node), 'b'], EXECUTOR_INPUT, CTX) == ['a', 'b']


def test_if_present_branches_may_be_a_single_string():
    node = {'IfPresent': {'InputName': 'nothing', 'Then': '--then', 'Else': '--else'}}
    assert resolve_argv([s(node)], EXECUTOR_INPUT, CTX) == ['--else']


def test_nested_structures():
    node = {'IfPresent': {'InputName': 'count', 'Then': [
        {'Concat': ['--count=', "{{$.inputs.parameters['count']}}"]},
        {'IfPresent': {'InputName': 'nothing', 'Then': ['--never']}},
        {'IfPresent': {'InputName': 'data', 'Then': {'Concat': ['--data=', "{{$.inputs.artifacts['data'].path}}"]}}},
    ]}}
    assert resolve_argv([s(node)], EXECUTOR_INPUT, CTX) == [
        '--count=3', '--data=/runs/r/tasks/up/out/artifacts/data']
    inside_concat = {'Concat': ['[', {'IfPresent': {'InputName': 'nothing', 'Then': 'x', 'Else': 'y'}},
                                {'IfPresent': {'InputName': 'nothing', 'Then': 'z'}}, ']']}
    assert resolve_argv([s(inside_concat)], EXECUTOR_INPUT, CTX) == ['[y]']


def test_an_unknown_structure_inside_one_is_an_error():
    with pytest.raises(PlaceholderError):
        resolve_argv([s({'Concat': [{'Bogus': 1}]})], EXECUTOR_INPUT, CTX)


def test_an_argument_that_only_looks_structured_is_plain_text():
    assert resolve_argv(['{"Concat": oops', '{"Other": 1}'], EXECUTOR_INPUT, CTX) == ['{"Concat": oops', '{"Other": 1}']


# ----------------------------------------------------------------- constants (the driver's share)
def test_substitute_run_metadata_in_constants():
    assert substitute_run_metadata('run {{$.pipeline_job_name}} task {{$.pipeline_task_name}}', CTX) == \
        f'run {CTX.job_name} task train'
    # only run metadata: other placeholders in a constant are left for nobody to resolve
    assert substitute_run_metadata("{{$.inputs.parameters['x']}}", CTX) == "{{$.inputs.parameters['x']}}"
    for value in (5, 2.5, True, None, ['{{$.pipeline_job_name}}'], {'k': 'v'}, 'plain {{x}}'):
        assert substitute_run_metadata(value, CTX) == value


@pytest.mark.parametrize('value,text', [(5.0, '5'), (1e-05, '0.00001'), (1e21, '1000000000000000000000')])
def test_numbers_render_as_kfps_launcher_renders_them(value, text):
    """kubeflow/pipelines backend/src/v2/component/launcher_v2.go getPlaceholders: a number
    parameter becomes strconv.FormatFloat(v, 'f', -1, 64)."""
    executor_input = {'inputs': {'parameterValues': {'x': value}}, 'outputs': {}}
    assert one("{{$.inputs.parameters['x']}}", executor_input) == text
