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
