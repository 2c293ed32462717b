"""KFP's placeholder forms, resolved as the launcher does."""
import json

import pytest

from localrunner.engine.placeholders import PlaceholderError, RunContext, resolve_argv, substitute_run_metadata

ARTS = [{'name': 'a', 'type': {'schemaTitle': 'system.Dataset', 'schemaVersion': '0.0.1'}, 'uri': '/r/a',
         'metadata': {'rows': 3, 'note': 'x'}},
        {'name': 'b', 'type': {'schemaTitle': 'system.Dataset', 'schemaVersion': '0.0.1'}, 'uri': '/r/b',
         'metadata': {}}]
EXECUTOR_INPUT = {
    'inputs': {'parameterValues': {'text': 'say "hi"', 'n': 3, 'conf': {'k': [1]}, 'absent': None},
               'artifacts': {'data': {'artifacts': ARTS}}},
    'outputs': {'parameters': {'out': {'outputFile': '/t/params/out'}},
                'artifacts': {'model': {'artifacts': [{'name': 'model', 'uri': '/t/model', 'metadata': {}}]}},
                'outputFile': '/t/executor_output.json'},
}
CTX = RunContext(job_name='run-1', job_id='run-1', task_name='train', task_id='tid', create_time='T',
                 pipeline_root='/root', workspace='/ws')


def resolve(*items):
    return resolve_argv(list(items), EXECUTOR_INPUT, CTX)


def test_values_paths_and_files():
    assert resolve("{{$.inputs.parameters['text']}}", "{{$.inputs.parameters['n']}}",
                   "{{$.inputs.parameters['conf']}}") == ['say "hi"', '3', '{"k": [1]}']
    assert resolve("{{$.inputs.artifacts['data'].path}}", "{{$.inputs.artifacts['data'].uri}}") == ['/r/a', '/r/a']
    assert resolve("{{$.outputs.parameters['out'].output_file}}", "{{$.outputs.artifacts['model'].path}}",
                   '{{$.outputs.output_file}}') == ['/t/params/out', '/t/model', '/t/executor_output.json']
    assert json.loads(resolve('{{$}}')[0]) == EXECUTOR_INPUT


def test_artifact_metadata_and_whole_list():
    assert json.loads(resolve("{{$.inputs.artifacts['data'].metadata}}")[0]) == {'rows': 3, 'note': 'x'}
    assert resolve("{{$.inputs.artifacts['data'].metadata['rows']}}") == ['3']
    assert [a['uri'] for a in json.loads(resolve("{{$.inputs.artifacts['data']}}")[0])] == ['/r/a', '/r/b']


def test_json_escape_embeds_in_a_json_string():
    [arg] = resolve('{"msg": "{{$.inputs.parameters[\'text\'].json_escape}}"}')
    assert json.loads(arg) == {'msg': 'say "hi"'}


def test_concat_and_if_present():
    assert resolve('{"Concat": ["a=", "{{$.inputs.parameters[\'n\']}}", "!"]}') == ['a=3!']
    present = '{"IfPresent": {"InputName": "text", "Then": ["--t", "{{$.inputs.parameters[\'text\']}}"]}}'
    absent = '{"IfPresent": {"InputName": "absent", "Then": ["--a", "x"], "Else": ["--none"]}}'
    missing = '{"IfPresent": {"InputName": "absent", "Then": ["--a"]}}'
    nested = ('{"IfPresent": {"InputName": "data", "Then": {"Concat": ["--d=", '
              '"{{$.inputs.artifacts[\'data\'].path}}"]}}}')
    assert resolve('x', present, absent, missing, nested) == ['x', '--t', 'say "hi"', '--none', '--d=/r/a']


def test_run_metadata():
    assert resolve('{{$.pipeline_job_name}}/{{$.pipeline_task_name}}/{{$.pipeline_root}}') == ['run-1/train//root']
    assert substitute_run_metadata('job {{$.pipeline_job_uuid}}', CTX) == 'job run-1'


def test_unknown_placeholder_is_an_error():
    with pytest.raises(PlaceholderError):
        resolve('{{$.inputs.whatever}}')


# ---------------------------------------------------------------------------- checked at load
from localrunner.engine.placeholders import Declared, Reference, check_item, parse  # noqa: E402

DECLARED = Declared(input_parameters=frozenset({'text', 'n'}), input_artifacts=frozenset({'data'}),
                    output_parameters=frozenset({'out'}), output_artifacts=frozenset({'model'}))


def test_parse_is_the_grammar_resolution_uses():
    assert parse('') == Reference('executor_input')
    assert parse('.outputs.output_file') == parse('.outputMetadataUri') == Reference('output_file')
    assert parse('.pipeline_task_uuid') == Reference('run', name='pipeline_task_uuid')
    assert parse(".inputs.artifacts['data'].metadata['rows']") == Reference(
        'artifacts', name='data', side='inputs', attr='metadata', key='rows')
    assert parse(".inputs.parameters[''text''].json_escape") == Reference(
        'parameters', name='text', side='inputs', json_escape=True)
    for bad in (".inputs.parameters['x'].uri", ".outputs.artifacts['m'].size", ".inputs.artifacts['d'].uri['k']",
                '.inputs.whatever', ".inputs.parameters[x]"):
        with pytest.raises(PlaceholderError):
            parse(bad)


def test_outputmetadatauri_resolves_like_the_output_file():
    assert resolve('{{$.outputMetadataUri}}') == ['/t/executor_output.json']


@pytest.mark.parametrize('item', [
    "--t={{$.inputs.parameters['text']}}", "{{$.inputs.artifacts['data'].path}}", '{{$}}',
    "{{$.outputs.parameters['out'].output_file}}", "{{$.outputs.artifacts['model'].metadata}}",
    '{{$.pipeline_job_name}}/{{$.workspace_path}}', 'no placeholder at all', 'go template {{$x}} stays text',
    '{"IfPresent": {"InputName": "n", "Then": ["--n", "{{$.inputs.parameters[\'n\']}}"], "Else": "--none"}}',
    '{"Concat": ["a", {"IfPresent": {"InputName": "data", "Then": "b"}}]}',
    '{"Concat": not json, so resolved as text}',
])
def test_check_accepts_what_resolves(item):
    assert check_item(item, DECLARED) is None


@pytest.mark.parametrize('item, why', [
    ("{{$.inputs.parameters['nope']}}", "names no input parameter of this component (it has: n, text)"),
    ("{{$.inputs.artifacts['text']}}", 'names no input artifact'),
    ("{{$.outputs.parameters['model'].output_file}}", 'names no output parameter'),
    ('{{$.pipeline_job}}', 'unsupported placeholder'),
    ('{"IfPresent": {"InputName": "ghost", "Then": "x"}}', "IfPresent names no input of this component ('ghost')"),
    ('{"IfPresent": {"Then": "x"}}', 'IfPresent names no input'),
    ('{"Concat": [{"Other": 1}]}', 'unsupported structured placeholder'),
    ('{"Concat": ["{{$.inputs.parameters[\'zz\']}}"]}', "'zz'"),
])
def test_check_refuses_what_would_not_resolve(item, why):
    assert why in check_item(item, DECLARED)
