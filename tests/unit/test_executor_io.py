"""executor_io.py: what a task reads (typed inputs) and what it leaves behind (executor output,
output parameter files), read with real files."""
import json
import os

import pytest

from localrunner.engine.executor_io import (OutputError, build, coerce_inputs, output_artifacts,
                                            output_parameter_files, read_outputs)
from localrunner.engine.model import Artifact
from localrunner.layout import RootLayout
from tests.ir_views import component_view

TYPES = {'s': 'STRING', 'i': 'NUMBER_INTEGER', 'f': 'NUMBER_DOUBLE', 'b': 'BOOLEAN', 'l': 'LIST', 'st': 'STRUCT'}
COMPONENT = component_view({'outputDefinitions': {
    'parameters': {**{n: {'parameterType': t} for n, t in TYPES.items()},
                   'opt': {'parameterType': 'STRING', 'isOptional': True}},
    'artifacts': {'model': {'artifactType': {'schemaTitle': 'system.Model', 'schemaVersion': '0.0.1'}},
                  'metrics': {'artifactType': {'schemaTitle': 'system.Metrics', 'schemaVersion': '0.0.1'}}}}})
GOOD = {'s': 'hello\n', 'i': ' 42\n', 'f': '2.5', 'b': 'True\n', 'l': '[1, "a"]', 'st': '{"k": {"n": 1}}'}


@pytest.fixture
def task(tmp_path):
    layout = RootLayout(str(tmp_path)).run('run-1').task('train')
    files = output_parameter_files(COMPONENT, layout)
    os.makedirs(os.path.dirname(files['s']))
    return layout, files, output_artifacts(COMPONENT, layout)


def write(files, values):
    for name, text in values.items():
        with open(files[name], 'w') as f:
            f.write(text)


def read(task):
    layout, files, arts = task
    return read_outputs(COMPONENT, arts, files, layout.executor_output)


# ----------------------------------------------------------------- inputs
def test_coerce_inputs_gives_each_number_its_declared_type():
    defs = {'i': {'parameterType': 'NUMBER_INTEGER'}, 'f': {'parameterType': 'NUMBER_DOUBLE'},
            'frac': {'parameterType': 'NUMBER_INTEGER'}, 'flag': {'parameterType': 'NUMBER_DOUBLE'},
            's': {'parameterType': 'STRING'}, 'absent': {'parameterType': 'NUMBER_INTEGER'}}
    defs = component_view({'inputDefinitions': {'parameters': defs}}).inputs.parameters
    out = coerce_inputs({'i': 5.0, 'f': 5, 'frac': 5.5, 'flag': True, 's': '5', 'extra': 1.0}, defs)
    assert out == {'i': 5, 'f': 5.0, 'frac': 5.5, 'flag': True, 's': '5', 'extra': 1.0}
    assert type(out['i']) is int and type(out['f']) is float and out['flag'] is True
    assert 'absent' not in out


def test_numbers_inside_lists_and_structs_are_what_the_drivers_executor_input_says():
    """protojson writes a double as Go's encoding/json does: a whole one below 1e21 with no
    fraction (json.loads: an int), others as floats; strings and booleans stay what they are."""
    defs = {'l': {'parameterType': 'LIST'}, 'st': {'parameterType': 'STRUCT'}, 's': {'parameterType': 'STRING'}}
    defs = component_view({'inputDefinitions': {'parameters': defs}}).inputs.parameters
    out = coerce_inputs({'l': [1.0, 2.5, [3.0, True, '4.0'], -0.0, 1e21, float('inf')],
                         'st': {'k': 1.0, 'n': {'m': [2.0]}, 'b': False}, 's': '[1.0]'}, defs)
    assert out['l'] == [1, 2.5, [3, True, '4.0'], 0, 1e21, float('inf')]
    assert [type(v) for v in out['l']] == [int, float, list, int, float, float]
    assert type(out['l'][2][0]) is int and out['l'][2][1] is True
    assert out['st'] == {'k': 1, 'n': {'m': [2]}, 'b': False} and type(out['st']['k']) is int
    assert out['s'] == '[1.0]'


def test_build_the_executor_input(task):
    layout, files, arts = task
    data = Artifact('data', 'system.Dataset', '0.0.1', '/r/data', {'rows': 2})
    doc = build({'n': 3}, {'data': [data]}, arts, files, layout.executor_output)
    assert doc['inputs']['parameterValues'] == {'n': 3}
    assert doc['inputs']['artifacts']['data']['artifacts'][0]['uri'] == '/r/data'
    assert doc['outputs']['parameters']['s'] == {'outputFile': layout.parameter('s')}
    assert doc['outputs']['artifacts']['model']['artifacts'][0]['uri'] == layout.artifact('model')
    assert doc['outputs']['outputFile'] == layout.executor_output
    json.dumps(doc)                                        # it is what the task reads: JSON


# ----------------------------------------------------------------- output parameter files
def test_parameter_files_of_each_type(task):
    write(task[1], GOOD)
    assert read(task) == {'s': 'hello\n', 'i': 42, 'f': 2.5, 'b': True, 'l': [1, 'a'], 'st': {'k': {'n': 1}}}


@pytest.mark.parametrize('text,value', [('true', True), ('1', True), (' TRUE ', True),
                                        ('false', False), ('0', False), ('False\n', False)])
def test_booleans(task, text, value):
    write(task[1], {**GOOD, 'b': text})
    assert read(task)['b'] is value


@pytest.mark.parametrize('name,bad', [('i', 'abc'), ('i', ''), ('f', 'x'), ('b', 'maybe'), ('l', '[1,'),
                                      ('st', '{'), ('st', 'not json')])
def test_a_bad_value_is_an_output_error_naming_it(task, name, bad):
    write(task[1], {**GOOD, name: bad})
    with pytest.raises(OutputError) as e:
        read(task)
    assert repr(name) in str(e.value) and TYPES[name] in str(e.value)


@pytest.mark.parametrize('name,bad', [('i', '3.7'), ('l', '{"a": 1}'), ('st', '[1, 2]')])
def test_a_value_of_the_wrong_kind_is_an_output_error(task, name, bad):
    """kubeflow/pipelines backend/src/v2/metadata/converter.go TextToPbValue: an integer is
    strconv.ParseInt, a LIST must parse to a list, a STRUCT to an object."""
    write(task[1], {**GOOD, name: bad})
    with pytest.raises(OutputError):
        read(task)


def test_a_missing_required_output_is_an_error_naming_where_it_was_expected(task):
    layout, files, _ = task
    write(files, {k: v for k, v in GOOD.items() if k != 'f'})
    with pytest.raises(OutputError) as e:
        read(task)
    assert "'f'" in str(e.value) and files['f'] in str(e.value)


def test_an_optional_output_may_be_missing(task):
    write(task[1], GOOD)
    assert 'opt' not in read(task)


# ----------------------------------------------------------------- executor output JSON
def test_executor_output_parameters_win_over_files(task):
    layout, files, _ = task
    write(files, {k: v for k, v in GOOD.items() if k != 's'})
    with open(layout.executor_output, 'w') as f:
        json.dump({'parameterValues': {'s': 'from executor output', 'i': 7}}, f)
    params = read(task)
    assert params['s'] == 'from executor output' and params['i'] == 7 and params['f'] == 2.5


def test_executor_output_updates_artifact_metadata_and_uri(task):
    layout, files, arts = task
    write(files, GOOD)
    with open(layout.executor_output, 'w') as f:
        json.dump({'artifacts': {'metrics': {'artifacts': [{'name': 'metrics', 'uri': arts['metrics'][0].uri,
                                                           'metadata': {'accuracy': 0.9}}]},
                                 'model': {'artifacts': [{'name': 'model', 'uri': '/elsewhere/model',
                                                         'metadata': {'framework': 'x'}}]},
                                 'undeclared': {'artifacts': [{'uri': '/x'}]}}}, f)
    read(task)
    assert arts['metrics'][0].metadata == {'accuracy': 0.9} and arts['metrics'][0].schema_title == 'system.Metrics'
    assert arts['model'][0].uri == '/elsewhere/model' and arts['model'][0].metadata == {'framework': 'x'}
    assert 'undeclared' not in arts


def test_a_custom_path_is_copied_to_the_artifacts_uri(task, tmp_path):
    layout, files, arts = task
    write(files, GOOD)
    custom = tmp_path / 'written-elsewhere'
    custom.mkdir()
    (custom / 'weights.bin').write_bytes(b'\x00\x01')
    uri = arts['model'][0].uri
    with open(layout.executor_output, 'w') as f:
        json.dump({'artifacts': {'model': {'artifacts': [{'name': 'model', 'uri': uri, 'metadata': {},
                                                         'custom_path': str(custom)}]}}}, f)
    read(task)
    assert arts['model'][0].uri == uri                     # the uri stays; the content moved there
    assert (open(os.path.join(uri, 'weights.bin'), 'rb').read()) == b'\x00\x01'


def test_executor_output_that_is_not_json_is_an_output_error(task):
    layout, files, _ = task
    write(files, GOOD)
    with open(layout.executor_output, 'w') as f:
        f.write('{"parameterValues": ')
    with pytest.raises(OutputError, match='not JSON'):
        read(task)


@pytest.mark.parametrize('text', ['[1, 2]', '"text"', '5'])
def test_executor_output_that_is_not_an_object_is_an_output_error(task, text):
    layout, files, _ = task
    write(files, GOOD)
    with open(layout.executor_output, 'w') as f:
        f.write(text)
    with pytest.raises(OutputError):
        read(task)
