"""Bad input: one clear line naming the file/field/parameter, exit 2, nothing half-written."""
import json
import os

import pytest
import yaml
from kfp import dsl

from tests.helpers import compile_pipeline, run_cli, run_pipeline_file


@dsl.component
def typed(n: int, x: float, flag: bool, s: str, items: list, conf: dict, opt: str) -> str:
    return f'{n}|{x}|{flag}|{s}{opt}|{items}|{conf}'


@dsl.pipeline(name='typed-params')
def typed_pipeline(n: int, x: float, flag: bool, s: str, items: list, conf: dict, opt: str = 'dflt'):
    typed(n=n, x=x, flag=flag, s=s, items=items, conf=conf, opt=opt)


@pytest.fixture(scope='module')
def typed_yaml(tmp_path_factory):
    return compile_pipeline(typed_pipeline, tmp_path_factory.mktemp('p') / 'typed.yaml')


GOOD = ['-p', 'n=3', '-p', 'x=2.5', '-p', 'flag=true', '-p', 's=hi', '-p', 'items=[1, "a"]',
        '-p', 'conf={"k": [1]}']


def _assert_usage_error(proc, *must_contain):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line]
    assert len(lines) == 1, proc.stderr
    assert 'Traceback' not in proc.stderr
    for text in must_contain:
        assert text in lines[0], lines[0]


def test_parameters_are_converted_by_declared_type(typed_yaml, tmp_path):
    rc, result, proc = run_pipeline_file(typed_yaml, tmp_path / 'root', *GOOD)
    assert rc == 0, proc.stdout + proc.stderr
    out = result['tasks'][0]['outputs']['parameters']['Output']
    assert out == "3|2.5|True|hidflt|[1, 'a']|{'k': [1]}"


def test_params_file_yaml_and_cli_override(typed_yaml, tmp_path):
    pf = tmp_path / 'p.yaml'
    pf.write_text(yaml.safe_dump({'n': 7, 'x': 1, 'flag': False, 's': 'f', 'items': [], 'conf': {}, 'opt': '!'}))
    rc, result, proc = run_pipeline_file(typed_yaml, tmp_path / 'root', '--params-file', str(pf), '-p', 'n=8')
    assert rc == 0, proc.stderr
    assert result['tasks'][0]['outputs']['parameters']['Output'] == '8|1.0|False|f!|[]|{}'


@pytest.mark.parametrize('bad, words', [
    (['-p', 'n=3.5'], ["'n'", 'NUMBER_INTEGER']),
    (['-p', 'flag=maybe'], ["'flag'", 'BOOLEAN']),
    (['-p', 'items={"a": 1}'], ["'items'", 'LIST']),
    (['-p', 'conf=[1'], ["'conf'", 'STRUCT']),
    (['-p', 'nope=1'], ["'nope'", 'conf, flag, items, n, opt, s, x']),
])
def test_bad_parameter_names_it(typed_yaml, tmp_path, bad, words):
    args = [a for a in GOOD]
    args += bad
    proc = run_cli('run', typed_yaml, '--root', str(tmp_path / 'root'), *args)
    _assert_usage_error(proc, *words)
    assert not os.path.exists(tmp_path / 'root' / 'runs'), 'nothing may be half-written'


def test_missing_required_parameter_lists_known_names(typed_yaml, tmp_path):
    proc = run_cli('run', typed_yaml, '--root', str(tmp_path / 'root'), '-p', 'n=1')
    _assert_usage_error(proc, 'missing required parameter', 'conf, flag, items, n, opt, s, x')


def test_missing_file(tmp_path):
    proc = run_cli('run', str(tmp_path / 'nope.yaml'))
    _assert_usage_error(proc, 'nope.yaml', 'no such file')


def test_malformed_yaml_names_line(tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('root:\n  dag: [unclosed\n')
    proc = run_cli('run', str(bad))
    _assert_usage_error(proc, 'bad.yaml', 'malformed YAML', 'line')


def test_not_a_pipeline(tmp_path):
    bad = tmp_path / 'other.yaml'
    bad.write_text('apiVersion: v1\nkind: Pod\n')
    proc = run_cli('run', str(bad))
    _assert_usage_error(proc, 'other.yaml', 'not a KFP pipeline')


def test_schema_violation_names_field(typed_yaml, tmp_path):
    spec = yaml.safe_load(open(typed_yaml))
    spec['root']['dag']['tasks']['typed']['cachingOptions'] = {'enableCash': True}
    bad = tmp_path / 'schema.yaml'
    bad.write_text(yaml.safe_dump(spec))
    proc = run_cli('run', str(bad))
    _assert_usage_error(proc, 'schema.yaml', 'enableCash')


def test_unknown_component_reference(typed_yaml, tmp_path):
    spec = yaml.safe_load(open(typed_yaml))
    spec['root']['dag']['tasks']['typed']['componentRef']['name'] = 'comp-missing'
    bad = tmp_path / 'ref.yaml'
    bad.write_text(json.dumps(spec))          # JSON is accepted too
    proc = run_cli('run', str(bad))
    _assert_usage_error(proc, 'ref.yaml', 'comp-missing')


def test_dependency_cycle_is_reported(tmp_path):
    @dsl.component
    def step(x: str) -> str:
        return x

    @dsl.pipeline(name='cyc')
    def two():
        a = step(x='a')
        step(x=a.output)

    path = compile_pipeline(two, tmp_path / 'c.yaml')
    spec = yaml.safe_load(open(path))
    tasks = spec['root']['dag']['tasks']
    tasks['step']['dependentTasks'] = ['step-2']
    bad = tmp_path / 'cycle.yaml'
    bad.write_text(yaml.safe_dump(spec))
    proc = run_cli('run', str(bad))
    _assert_usage_error(proc, 'cycle', 'step')


def test_usage_errors_exit_2(tmp_path, typed_yaml):
    _assert_usage_error(run_cli('run'), 'pipeline')
    _assert_usage_error(run_cli('run', typed_yaml, *GOOD, '--cache-max-age', 'soon'), '--cache-max-age')
    _assert_usage_error(run_cli('run', typed_yaml, *GOOD, '--backend', 'nomad'), 'nomad', 'subprocess')
    _assert_usage_error(run_cli('run', typed_yaml, *GOOD, '--secret', 'x'), '--secret')


@dsl.component
def count_words(data: dsl.Input[dsl.Dataset]) -> int:
    return len(open(data.path).read().split())


@dsl.pipeline(name='root-artifact')
def root_artifact_pipeline(data: dsl.Input[dsl.Dataset]) -> int:
    return count_words(data=data).output


def test_pipeline_input_artifacts_by_content(tmp_path):
    path = compile_pipeline(root_artifact_pipeline, tmp_path / 'ra.yaml')
    words = tmp_path / 'w.txt'
    words.write_text('a b c')
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', '-a', f'data={words}', '-v')
    assert rc == 0, proc.stdout + proc.stderr
    assert result['outputs']['parameters']['Output'] == 3
    assert '[count-words]' in proc.stdout                 # -v streams task output
    copy = tmp_path / 'elsewhere.txt'
    copy.write_text('a b c')
    rc, result, _ = run_pipeline_file(path, tmp_path / 'root', '-a', f'data={copy}')
    assert [t['state'] for t in result['tasks'] if t['name'] == 'count-words'] == ['CACHED']
    _assert_usage_error(run_cli('run', path, '--root', str(tmp_path / 'root')), "'data'", '--artifact')
    _assert_usage_error(run_cli('run', path, '-a', f'other={words}'), "'other'", 'data')
    _assert_usage_error(run_cli('run', path, '-a', f'data={tmp_path / "nope"}'), 'does not exist')


def test_unusable_backend_is_a_usage_error(typed_yaml, tmp_path):
    env = {k: '' for k in ('LOCALRUNNER_S3_ENDPOINT', 'AWS_ENDPOINT_URL')}
    proc = run_cli('run', typed_yaml, *GOOD, '--cluster', '--root', str(tmp_path / 'r'), env=env)
    _assert_usage_error(proc, '--backend kubernetes', 'LOCALRUNNER_S3_ENDPOINT')
    proc = run_cli('run', typed_yaml, *GOOD, '--backend', 'docker', '--root', str(tmp_path / 'r'),
                   env={'DOCKER_HOST': 'unix:///nonexistent/docker.sock'})
    _assert_usage_error(proc, '--backend docker', 'Docker engine')
    assert not os.path.exists(tmp_path / 'r' / 'runs')
