"""Every bad value is exit 2 and ONE line naming the field and the value, before anything
runs: command-line values, the places a run writes to, and hostile compiled pipelines
(sections of the wrong kind, names that would become paths outside the run, placeholders
that resolve to nothing, references to nothing). Each case also asserts what did NOT
happen: no run folder, no result file, nothing written outside."""
import copy
import json
import os

import pytest
import yaml
from kfp import dsl

from localrunner.cli import main
from tests.helpers import compile_pipeline, run_cli


@dsl.component
def produce(text: str, data: dsl.Output[dsl.Dataset]) -> str:
    open(data.path, 'w').write(text)
    return text


@dsl.container_component
def show(msg: str, data: dsl.Input[dsl.Dataset], out: dsl.OutputPath(str)):
    return dsl.ContainerSpec(image='alpine', command=['sh', '-c', 'echo "$0" "$1" > "$2"'],
                             args=[msg, data.path, out])


@dsl.pipeline(name='victim')
def victim(text: str = 'hi'):
    p = produce(text=text).set_retry(2).set_caching_options(True)
    s = show(msg=p.outputs['Output'], data=p.outputs['data'])
    s.set_accelerator_type('nvidia.com/gpu').set_accelerator_limit(1).set_cpu_limit('500m').set_memory_limit('1G')
    with dsl.ParallelFor([1, 2]):
        produce(text='x')


@pytest.fixture(scope='module')
def victim_spec(tmp_path_factory):
    path = compile_pipeline(victim, tmp_path_factory.mktemp('victim') / 'victim.yaml')
    with open(path) as f:
        return yaml.safe_load(f)


def usage_error(capsys, argv) -> str:
    """Runs the CLI in-process; asserts exit 2 with one line and no traceback; returns it."""
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and 'Traceback' not in err, err
    assert lines[0].startswith('localrunner: error: '), lines[0]
    return lines[0]


def unwritable_folder(tmp_path) -> str:
    """A folder no one may create files in: permission bits for a normal user; root writes
    through those, so as root, sysfs (which refuses new files to everyone)."""
    if os.geteuid() != 0:
        folder = tmp_path / 'read-only'
        folder.mkdir()
        folder.chmod(0o500)
        return str(folder)
    if not os.path.isdir('/sys/kernel'):
        pytest.skip('running as root without /sys: no folder refuses root')
    return '/sys/kernel'


# ============================================================================ CLI values
HELLO = os.path.join(os.path.dirname(__file__), '..', 'examples', 'hello_pipeline.yaml')


@pytest.mark.parametrize('argv, words', [
    (['--gpus', 'banana'], ['--gpus', "'banana'", 'not a GPU id']),
    (['--gpus', '-1'], ['--gpus', "'-1'", 'not a GPU id']),
    (['--gpus', '0,1,0'], ['--gpus', "'0,1,0'", 'listed twice']),
    (['--gpus', 'device=0,x'], ['--gpus', "'x' is not a GPU id"]),
    (['--max-parallel', '0'], ['--max-parallel', "'0'", '>= 1']),
    (['--max-parallel', '-4'], ['--max-parallel', "'-4'", '>= 1']),
    (['--max-parallel', 'many'], ['--max-parallel', "'many'"]),
    (['--cache-max-age', 'soon'], ['--cache-max-age', "'soon'", 'not a duration']),
    (['--cache-max-age', 'nan'], ['--cache-max-age', "'nan'"]),
    (['--cache-max-age', '1e999s'], ['--cache-max-age', "'1e999s'"]),
    (['--remote-cache', 's3://'], ['--remote-cache', "'s3://'", 'no bucket']),
    (['--remote-cache', 's3:///prefix'], ['--remote-cache', 'no bucket']),
    (['--remote-cache', 'gs://bucket'], ['--remote-cache', 'expected s3://']),
    (['--remote-cache', 's3://Has_Upper'], ['--remote-cache', "'Has_Upper' is not a valid bucket name"]),
    (['--remote-cache', 's3://ab'], ['--remote-cache', "'ab' is not a valid bucket name"]),
    (['--remote-cache', 's3://a..b/p'], ['--remote-cache', "'a..b'"]),
    (['--remote-cache', 's3://10.0.0.1/p'], ['--remote-cache', "'10.0.0.1'"]),
    (['--remote-cache', 's3://bucket/a\nb'], ['--remote-cache', 'control character']),
])
def test_bad_run_option_values(capsys, tmp_path, argv, words):
    root = tmp_path / 'root'
    line = usage_error(capsys, ['run', HELLO, '--root', str(root), *argv])
    for word in words:
        assert word in line, line
    assert not root.exists()


@pytest.mark.parametrize('argv, words', [
    (['cache', 'prune', '--older-than', 'forever'], ['--older-than', "'forever'", 'not a duration']),
    (['cache', 'gc', '--keep-runs', '-1'], ['--keep-runs', "'-1'"]),
    (['runs', 'prune', '--keep', '-1'], ['--keep', "'-1'", '>= 0']),
    (['runs', 'prune', '--older-than', '3 days'], ['--older-than', "'3 days'"]),
    (['envs', 'prune', '--older-than', '-'], ['--older-than']),
    (['envs', 'prune', '--older-than', 'inf'], ['--older-than', "'inf'"]),
])
def test_bad_maintenance_option_values(capsys, tmp_path, argv, words):
    runs = tmp_path / 'root' / 'runs' / 'r1'
    runs.mkdir(parents=True)
    extra = ['--root', str(tmp_path / 'root')] if argv[0] != 'envs' else ['--env-dir', str(tmp_path / 'envs')]
    line = usage_error(capsys, [*argv, *extra])
    for word in words:
        assert word in line, line
    assert runs.is_dir(), 'nothing may be pruned'


def test_good_values_still_pass(tmp_path):
    """The checks are not stricter than the options' meaning (real process)."""
    root = tmp_path / 'root'
    proc = run_cli('explain-cache', HELLO, '--root', str(root), '--gpus', 'device=0,2', '--max-parallel', '1',
                   '--cache-max-age', '1.5h', '--remote-cache', 's3://my-bucket.example/team/cache',
                   env={'LOCALRUNNER_S3_ENDPOINT': '127.0.0.1:9'})
    assert proc.returncode == 0, proc.stdout + proc.stderr     # an unreachable remote is a warning
    proc = run_cli('runs', 'prune', '--keep', '0', '--older-than', '2w', '--root', str(root))
    assert proc.returncode == 0, proc.stderr


# ============================================================================ destinations
def test_root_that_is_a_file(capsys, tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('not a folder')
    line = usage_error(capsys, ['run', HELLO, '--root', str(blocker)])
    assert f'--root {blocker}: is a file' in line
    line = usage_error(capsys, ['run', HELLO, '--root', str(blocker / 'below')])
    assert f'{blocker} is a file' in line
    line = usage_error(capsys, ['cache', 'stats', '--root', str(blocker)])
    assert '--root' in line and 'is a file' in line
    assert blocker.read_text() == 'not a folder'


def test_unwritable_root_and_outputs_are_refused_up_front(capsys, tmp_path):
    locked = unwritable_folder(tmp_path)
    root = tmp_path / 'root'
    line = usage_error(capsys, ['run', HELLO, '--root', os.path.join(locked, 'lr')])
    assert '--root' in line and 'cannot write' in line
    line = usage_error(capsys, ['explain-cache', HELLO, '--root', os.path.join(locked, 'lr')])
    assert '--root' in line
    result = os.path.join(locked, 'result.json')
    line = usage_error(capsys, ['run', HELLO, '--root', str(root), '--result-json', result])
    assert f'--result-json {result}: cannot write' in line
    report = os.path.join(locked, 'sub', 'run.html')
    line = usage_error(capsys, ['run', HELLO, '--root', str(root), '--report', report])
    assert f'--report {report}' in line
    assert not root.exists(), 'the run must not have started'
    assert not os.path.exists(result) and not os.path.exists(os.path.dirname(report))


def test_result_and_report_destinations_that_are_folders_or_under_files(capsys, tmp_path):
    root = tmp_path / 'root'
    folder = tmp_path / 'out'
    folder.mkdir()
    line = usage_error(capsys, ['run', HELLO, '--root', str(root), '--result-json', str(folder)])
    assert '--result-json' in line and 'is a folder' in line
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    line = usage_error(capsys, ['run', HELLO, '--root', str(root), '--report', str(blocker / 'r.html')])
    assert '--report' in line and f'{blocker} is a file' in line
    line = usage_error(capsys, ['runs', 'report', 'some-run', '--root', str(root), '-o', str(blocker / 'r.html')])
    assert '-o' in line
    assert not root.exists() and blocker.read_text() == 'x'


def test_missing_folders_for_outputs_are_fine(tmp_path):
    """A destination whose folders do not exist yet is writable: they are made (real process)."""
    root = tmp_path / 'root'
    result = tmp_path / 'new' / 'deeper' / 'result.json'
    proc = run_cli('explain-cache', HELLO, '--root', str(root), '--result-json', str(result))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(result.read_text())['pipeline'] == 'hello-pipeline'


# ============================================================================ the IR
def _write(tmp_path, spec, platform=None) -> str:
    path = tmp_path / 'p.yaml'
    docs = [spec] + ([platform] if platform is not None else [])
    path.write_text(yaml.safe_dump_all(docs))
    return str(path)


def _tasks(spec):
    return spec['root']['dag']['tasks']


def _executor(spec, label):
    return spec['deploymentSpec']['executors'][label]


SECTIONS = [
    # (what, mutate(spec), words that must be in the line)
    ('components a list', lambda s: s.__setitem__('components', [1, 2]), ['components', 'a mapping', '[1, 2]']),
    ('root a string', lambda s: s.__setitem__('root', 'x'), ['root', 'expected a mapping', '"x"']),
    ('root dag a list', lambda s: s['root'].__setitem__('dag', [1]), ['root.dag', 'a list']),
    ('tasks a number', lambda s: s['root']['dag'].__setitem__('tasks', 5), ['root.dag.tasks', 'a number', '(5)']),
    ('a task a string', lambda s: _tasks(s).__setitem__('show', 'oops'), ['root.dag.tasks.show', '"oops"']),
    ('inputs a list', lambda s: _tasks(s)['show'].__setitem__('inputs', []), ['root.dag.tasks.show.inputs']),
    ('parameters null', lambda s: _tasks(s)['show']['inputs'].__setitem__('parameters', None),
     ['root.dag.tasks.show.inputs.parameters', 'null']),
    ('a parameter a list', lambda s: _tasks(s)['show']['inputs']['parameters'].__setitem__('msg', ['a']),
     ['root.dag.tasks.show.inputs.parameters.msg']),
    ('executors a string', lambda s: s['deploymentSpec'].__setitem__('executors', 'x'), ['deploymentSpec.executors']),
    ('executors null', lambda s: s['deploymentSpec'].__setitem__('executors', None), ['deploymentSpec.executors']),
    ('container a list', lambda s: _executor(s, 'exec-show').__setitem__('container', ['alpine']),
     ['deploymentSpec.executors.exec-show.container']),
    ('args a string', lambda s: _executor(s, 'exec-show')['container'].__setitem__('args', 'x'),
     ['deploymentSpec.executors.exec-show.container.args']),
    ('an arg a number', lambda s: _executor(s, 'exec-show')['container']['args'].__setitem__(1, 7),
     ['deploymentSpec.executors.exec-show.container.args[1]', '(7)']),
    ('cachingOptions a list', lambda s: _tasks(s)['show'].__setitem__('cachingOptions', [True]),
     ['root.dag.tasks.show.cachingOptions']),
    ('enableCache a string', lambda s: _tasks(s)['show']['cachingOptions'].__setitem__('enableCache', 'yes'),
     ['root.dag.tasks.show.cachingOptions.enableCache']),
    ('retryPolicy a number', lambda s: _tasks(s)['produce'].__setitem__('retryPolicy', 3),
     ['root.dag.tasks.produce.retryPolicy']),
    ('maxRetryCount a word', lambda s: _tasks(s)['produce']['retryPolicy'].__setitem__('maxRetryCount', 'lots'),
     ['root.dag.tasks.produce.retryPolicy.maxRetryCount', '"lots"']),
    ('maxRetryCount absurd', lambda s: _tasks(s)['produce']['retryPolicy'].__setitem__('maxRetryCount', 10 ** 9),
     ['root.dag.tasks.produce.retryPolicy.maxRetryCount']),
    ('backoff nonsense', lambda s: _tasks(s)['produce']['retryPolicy'].__setitem__('backoffDuration', 'soon'),
     ['root.dag.tasks.produce.retryPolicy.backoffDuration', '"soon"']),
    ('triggerPolicy a string', lambda s: _tasks(s)['show'].__setitem__('triggerPolicy', 'always'),
     ['root.dag.tasks.show.triggerPolicy']),
    ('resources a list', lambda s: _executor(s, 'exec-show')['container'].__setitem__('resources', []),
     ['deploymentSpec.executors.exec-show.container.resources']),
    ('cpu limit nonsense', lambda s: _executor(s, 'exec-show')['container']['resources'].__setitem__(
        'resourceCpuLimit', 'lots'), ['container.resources.resourceCpuLimit', 'lots']),
    ('memory limit nonsense', lambda s: _executor(s, 'exec-show')['container']['resources'].__setitem__(
        'resourceMemoryLimit', '1 bushel'), ['container.resources.resourceMemoryLimit']),
    ('accelerator count negative', lambda s: _executor(s, 'exec-show')['container']['resources']['accelerator']
     .__setitem__('resourceCount', '-2'), ['container.resources.accelerator.resourceCount', '"-2"']),
    ('componentRef missing', lambda s: _tasks(s)['show'].pop('componentRef'), ['root.dag.tasks.show.componentRef',
                                                                              'missing']),
    ('loop items not a list', lambda s: _tasks(s)['for-loop-2']['parameterIterator']['items'].__setitem__(
        'raw', '{"a": 1}'), ['root.dag.tasks.for-loop-2.parameterIterator.items.raw']),
    ('component without dag or executor', lambda s: s['components']['comp-show'].pop('executorLabel'),
     ['components.comp-show', 'neither']),
    ('dependentTasks a string', lambda s: _tasks(s)['show'].__setitem__('dependentTasks', 'produce'),
     ['root.dag.tasks.show.dependentTasks']),
]


@pytest.mark.parametrize('what, mutate, words', SECTIONS, ids=[c[0] for c in SECTIONS])
def test_sections_of_the_wrong_kind_name_the_ir_path(capsys, tmp_path, victim_spec, what, mutate, words):
    spec = copy.deepcopy(victim_spec)
    mutate(spec)
    path = _write(tmp_path, spec)
    line = usage_error(capsys, ['run', path, '--root', str(tmp_path / 'root')])
    assert f'{path}: ' in line
    for word in words:
        assert word in line, line
    assert not (tmp_path / 'root').exists()


@pytest.mark.parametrize('platform, words', [
    ({'platforms': [1]}, ['platforms', 'a list']),
    ({'platforms': {'kubernetes': 'x'}}, ['platforms.kubernetes']),
    ({'platforms': {'kubernetes': {'deploymentSpec': {'executors': {'exec-show': []}}}}},
     ['platforms.kubernetes.deploymentSpec.executors.exec-show']),
    ({'platforms': {'kubernetes': {'deploymentSpec': {'executors': {'exec-show': {'secretAsEnv': {}}}}}}},
     ['exec-show.secretAsEnv', 'a list']),
    ({'platforms': {'kubernetes': {'deploymentSpec': {'executors': {'exec-show': {'pvcMount': [{'constant': 'x'}]}}}}}},
     ['exec-show.pvcMount[0].mountPath', 'missing']),
    ({'platforms': {'kubernetes': {'deploymentSpec': {'executors': {'exec-show': {
        'fieldPathAsEnv': [{'name': 'X', 'fieldPath': ['a']}]}}}}}}, ['exec-show.fieldPathAsEnv[0].fieldPath']),
    ({'platforms': {'kubernetes': {'deploymentSpec': {'executors': {'exec-show': {
        'emptyDirMounts': [{'volumeName': '../up', 'mountPath': '/m'}]}}}}}},
     ['exec-show.emptyDirMounts[0].volumeName', "'../up'"]),
    ({'platforms': {'kubernetes': {'deploymentSpec': {'executors': {'exec-show': {
        'activeDeadlineSeconds': 'soon'}}}}}}, ['exec-show.activeDeadlineSeconds', '"soon"']),
    ([1, 2], ['second document']),
])
def test_kfp_kubernetes_document_of_the_wrong_kind(capsys, tmp_path, victim_spec, platform, words):
    path = _write(tmp_path, victim_spec, platform)
    line = usage_error(capsys, ['run', path, '--root', str(tmp_path / 'root')])
    for word in words:
        assert word in line, line


def _rename(mapping: dict, old: str, new: str) -> None:
    mapping[new] = mapping.pop(old)


HOSTILE = ['../escape', '/etc/evil', 'a/b', 'back\\slash', '..', '', 'nul\x00byte', 'tab\there', 'x' * 201]


def _rename_task(spec, name):
    _rename(_tasks(spec), 'show', name)


def _rename_output_parameter(spec, name):
    _rename(spec['components']['comp-show']['outputDefinitions']['parameters'], 'out', name)


def _rename_output_artifact(spec, name):
    _rename(spec['components']['comp-produce']['outputDefinitions']['artifacts'], 'data', name)


def _rename_component(spec, name):
    _rename(spec['components'], 'comp-show', name)
    _tasks(spec)['show']['componentRef']['name'] = name


def _rename_executor(spec, name):
    _rename(spec['deploymentSpec']['executors'], 'exec-show', name)
    spec['components']['comp-show']['executorLabel'] = name


def _rename_pipeline(spec, name):
    spec['pipelineInfo']['name'] = name


@pytest.mark.parametrize('rename, field', [
    (_rename_task, 'root.dag.tasks'), (_rename_output_parameter, 'components.comp-show.outputDefinitions.parameters'),
    (_rename_output_artifact, 'components.comp-produce.outputDefinitions.artifacts'),
    (_rename_component, 'components'), (_rename_executor, 'deploymentSpec.executors'),
    (_rename_pipeline, 'pipelineInfo.name')])
@pytest.mark.parametrize('name', HOSTILE, ids=['dotdot', 'absolute', 'slash', 'backslash', 'parent', 'empty', 'nul',
                                               'control', 'long'])
def test_names_that_become_paths_are_refused_at_load(capsys, tmp_path, victim_spec, rename, field, name):
    spec = copy.deepcopy(victim_spec)
    rename(spec, name)
    work = tmp_path / 'work'
    work.mkdir()
    path = _write(work, spec)
    line = usage_error(capsys, ['run', path, '--root', str(work / 'root')])
    assert field in line, line
    assert repr(name)[:40] in line or (name == '' and "''" in line), line
    assert sorted(os.listdir(work)) == ['p.yaml'], 'nothing may be written'
    assert sorted(os.listdir(tmp_path)) == ['work'] and not os.path.exists('/etc/evil')


def test_kfp_style_names_are_accepted(capsys, tmp_path, victim_spec):
    """What KFP emits (Python identifiers, [a-z0-9-] keys, dots inside a name) loads."""
    spec = copy.deepcopy(victim_spec)
    _rename_output_parameter(spec, 'Output_2')
    _executor(spec, 'exec-show')['container']['args'][2] = "{{$.outputs.parameters['Output_2'].output_file}}"
    _rename_task(spec, 'show-2.v1')
    path = _write(tmp_path, spec)
    assert main(['graph', path]) == 0
    assert 'show-2.v1' in capsys.readouterr().out


PLACEHOLDERS = [
    ("{{$.inputs.parameters['nope']}}", ['args[0]', "names no input parameter", 'msg', 'nope']),
    ("{{$.inputs.parameters[nope]}}", ['args[0]', 'unsupported placeholder']),
    ("{{$.inputs.artifacts['data'].size}}", ['args[0]', 'unsupported input artifact attribute']),
    ("{{$.outputs.parameters['missing'].output_file}}", ['args[0]', 'names no output parameter', 'out']),
    ("{{$.outputs.artifacts['data'].path}}", ['args[0]', 'names no output artifact']),
    ("{{$.pipeline_job_nam}}", ['args[0]', 'unsupported placeholder']),
    ('prefix-{{$.whatever}}-suffix', ['args[0]', 'unsupported placeholder']),
    ('{"IfPresent": {"InputName": "ghost", "Then": ["x"]}}', ['args[0]', 'IfPresent', 'ghost']),
    ('{"Concat": ["a", 5]}', ['args[0]', 'structured placeholder']),
    ('{"Concat": ["--m=", "{{$.inputs.parameters[\'nope\']}}"]}', ['args[0]', 'nope']),
]


@pytest.mark.parametrize('text, words', PLACEHOLDERS)
def test_unknown_or_malformed_placeholders_name_the_ir_path(capsys, tmp_path, victim_spec, text, words):
    spec = copy.deepcopy(victim_spec)
    _executor(spec, 'exec-show')['container']['args'][0] = text
    path = _write(tmp_path, spec)
    line = usage_error(capsys, ['run', path, '--root', str(tmp_path / 'root')])
    assert 'deploymentSpec.executors.exec-show.container.' in line, line
    for word in words:
        assert word in line, line


def test_placeholder_in_env_and_resources(capsys, tmp_path, victim_spec):
    spec = copy.deepcopy(victim_spec)
    _executor(spec, 'exec-show')['container']['env'] = [{'name': 'MSG', 'value': "{{$.inputs.parameters['nope']}}"}]
    line = usage_error(capsys, ['run', _write(tmp_path, spec), '--root', str(tmp_path / 'root')])
    assert 'deploymentSpec.executors.exec-show.container.env.MSG' in line and 'nope' in line
    spec = copy.deepcopy(victim_spec)
    _executor(spec, 'exec-show')['container']['resources']['resourceCpuLimit'] = "{{$.inputs.parameters['cpu']}}"
    line = usage_error(capsys, ['run', _write(tmp_path, spec), '--root', str(tmp_path / 'root')])
    assert 'exec-show.container.resources.resourceCpuLimit' in line and "'cpu'" in line


REFERENCES = [
    ('unknown producer output', lambda s: _tasks(s)['show']['inputs']['parameters']['msg']['taskOutputParameter']
     .__setitem__('outputParameterKey', 'Nope'),
     ['root.dag.tasks.show.inputs.parameters.msg', "no output parameter 'Nope'", 'Output']),
    ('unknown producer artifact', lambda s: _tasks(s)['show']['inputs']['artifacts']['data']['taskOutputArtifact']
     .__setitem__('outputArtifactKey', 'dta'), ['root.dag.tasks.show.inputs.artifacts.data', "'dta'"]),
    ('unknown pipeline input', lambda s: _tasks(s)['produce']['inputs']['parameters']['text'].__setitem__(
        'componentInputParameter', 'txt'), ['root.dag.tasks.produce.inputs.parameters.text', "'txt'", 'text']),
    ('unknown producer task', lambda s: _tasks(s)['show']['inputs']['parameters']['msg']['taskOutputParameter']
     .__setitem__('producerTask', 'ghost'), ['root.dag.tasks.show', "unknown task 'ghost'"]),
    ('unknown component', lambda s: _tasks(s)['show']['componentRef'].__setitem__('name', 'comp-ghost'),
     ['root.dag.tasks.show.componentRef.name', 'comp-ghost']),
    ('unknown executor', lambda s: s['components']['comp-show'].__setitem__('executorLabel', 'exec-ghost'),
     ['components.comp-show.executorLabel', 'exec-ghost']),
    ('loop item not an input of the body', lambda s: _tasks(s)['for-loop-2']['parameterIterator'].__setitem__(
        'itemInput', 'ghost'), ['root.dag.tasks.for-loop-2.parameterIterator.itemInput', "'ghost'"]),
    ('value from nowhere', lambda s: _tasks(s)['produce']['inputs']['parameters'].__setitem__('text', {}),
     ['root.dag.tasks.produce.inputs.parameters.text', 'names no value']),
    # found by the fuzz test (a KeyError then)
    ('empty producer task', lambda s: _tasks(s)['show']['inputs']['parameters']['msg']['taskOutputParameter']
     .__setitem__('producerTask', ''), ['root.dag.tasks.show.inputs.parameters.msg.taskOutputParameter.producerTask',
                                        'empty']),
]


@pytest.mark.parametrize('what, mutate, words', REFERENCES, ids=[c[0] for c in REFERENCES])
def test_references_to_nothing(capsys, tmp_path, victim_spec, what, mutate, words):
    spec = copy.deepcopy(victim_spec)
    mutate(spec)
    line = usage_error(capsys, ['run', _write(tmp_path, spec), '--root', str(tmp_path / 'root')])
    for word in words:
        assert word in line, line
    assert not (tmp_path / 'root').exists()


def test_a_real_process_says_the_same_one_line(tmp_path, victim_spec):
    spec = copy.deepcopy(victim_spec)
    _executor(spec, 'exec-show')['container']['args'][2] = "{{$.inputs.parameters['nope']}}"
    path = _write(tmp_path, spec)
    proc = run_cli('run', path, '--root', str(tmp_path / 'root'))
    assert proc.returncode == 2 and proc.stdout == ''
    assert proc.stderr.strip().splitlines() == [
        f"localrunner: error: {path}: deploymentSpec.executors.exec-show.container.args[2]: "
        f"{{{{$.inputs.parameters['nope']}}}} names no input parameter of this component (it has: msg) "
        f"(\"{{{{$.inputs.parameters['nope']}}}}\")"]


# ============================================================================ hostile files
def _billion_laughs(tail: str) -> str:
    """Eleven levels of nine aliases: 9**11 (31 billion) strings once expanded."""
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f'a{i}: &a{i} [' + ','.join([f'*a{i - 1}'] * 9) + ']' for i in range(1, 12)]
    return '\n'.join(lines) + '\n' + tail


def test_yaml_aliases_are_refused_before_they_expand(capsys, tmp_path):
    """A small file that expands into billions of nodes: refused at once, as pipeline and as
    params file (a compiled pipeline has no aliases)."""
    bomb = tmp_path / 'bomb.yaml'
    bomb.write_text(_billion_laughs('pipelineInfo: {name: bomb}\nroot: {dag: {tasks: {}}}\n'))
    line = usage_error(capsys, ['run', str(bomb), '--root', str(tmp_path / 'root')])
    assert 'malformed YAML at line 1' in line and 'alias' in line
    line = usage_error(capsys, ['run', HELLO, '--root', str(tmp_path / 'root'), '--params-file', str(bomb)])
    assert 'malformed params file' in line and 'alias' in line
    assert not (tmp_path / 'root').exists()


@pytest.mark.parametrize('content, words', [
    (b'1: 2\nname: x\n', ['parameter names must be text', '1']),
    (b'\xff\xfe\x00binary', ['not UTF-8']),
    (b'[' * 100000, ['malformed params file']),
    (b'{' + b'"a": [' * 50000, ['malformed params file']),
    (b'name: a\n---\nname: b\n', ['one mapping', '2 YAML documents']),
    (b'- a\n- b\n', ['must hold a mapping']),
    # YAML reads dates, binary and non-text keys, which no KFP parameter holds: named, with the
    # value (it was a traceback from deep in the conversion)
    (b'name: 2024-01-01\n', ["parameter 'name'", '2024-01-01 is a YAML date', 'quote it']),
    (b'name: [1, 2024-01-01T10:00:00Z]\n', ["parameter 'name'", 'YAML datetime']),
    (b'name: !!binary aGVsbG8=\n', ["parameter 'name'", 'YAML bytes']),
    (b'name: {1: 2}\n', ["parameter 'name'", 'YAML int key']),
    # a key written twice: the last would silently win (KFP's Go YAML reader refuses it)
    (b'name: a\nname: b\n', ['malformed params file', "the key 'name' appears twice"]),
    (b'{"name": "a", "name": "b"}', ['malformed params file', "the key 'name' appears twice"]),
])
def test_hostile_params_files(capsys, tmp_path, content, words):
    params = tmp_path / 'params.yaml'
    params.write_bytes(content)
    line = usage_error(capsys, ['run', HELLO, '--root', str(tmp_path / 'root'), '--params-file', str(params)])
    for word in words:
        assert word in line, line
    assert not (tmp_path / 'root').exists()


@pytest.mark.parametrize('kind', ['fifo', 'device'])
def test_a_pipeline_or_params_file_that_is_no_regular_file(capsys, tmp_path, kind):
    """A FIFO would block the command forever and /dev/zero would fill its memory: both are
    refused at once, as pipeline, params file and secret file."""
    if kind == 'fifo':
        path = str(tmp_path / 'p.yaml')
        os.mkfifo(path)
    else:
        path = str(tmp_path / 'zero.yaml')
        os.symlink('/dev/zero', path)
    word = 'a FIFO' if kind == 'fifo' else 'a device'
    root = str(tmp_path / 'root')
    line = usage_error(capsys, ['run', path, '--root', root])
    assert f'{path}: cannot read: {word}, not a regular file' in line, line
    line = usage_error(capsys, ['run', HELLO, '--root', root, '--params-file', path])
    assert f'{path}: cannot read params file: {word}, not a regular file' in line, line
    line = usage_error(capsys, ['run', HELLO, '--root', root, '--secret', f's={path}'])
    assert f'--secret s={path}' in line and f'{word}, not a regular file' in line, line
    assert not os.path.exists(root)


@pytest.mark.parametrize('form', ['yaml', 'json'])
def test_a_key_written_twice_in_the_ir(capsys, tmp_path, victim_spec, form):
    """The last of two equal keys would silently win: refused, naming the key (and, in YAML, where)."""
    path = tmp_path / f'p.{form}'
    if form == 'yaml':
        text = yaml.safe_dump(victim_spec) + 'pipelineInfo: {name: second}\n'
    else:
        text = json.dumps(victim_spec)[:-1] + ', "pipelineInfo": {"name": "second"}}'
    path.write_text(text)
    line = usage_error(capsys, ['run', str(path), '--root', str(tmp_path / 'root')])
    assert "the key 'pipelineInfo' appears twice" in line, line
    assert (form != 'yaml') or 'malformed YAML at line' in line, line
    assert not (tmp_path / 'root').exists()


def test_an_integer_too_large_for_a_double_in_the_ir(capsys, tmp_path, victim_spec):
    spec = copy.deepcopy(victim_spec)
    [param] = [p for p in spec['root']['inputDefinitions']['parameters'].values()][:1]
    param['defaultValue'] = 10 ** 400
    path = _write(tmp_path, spec)
    line = usage_error(capsys, ['run', path, '--root', str(tmp_path / 'root')])
    assert f'{path}: invalid pipeline spec' in line and 'too large' in line, line
    assert not (tmp_path / 'root').exists()


@pytest.mark.parametrize('text', ['٥', '1_000', '５'])
def test_numbers_on_the_command_line_are_ascii_digits(capsys, tmp_path, text):
    """Python's int() reads other scripts' digits and underscores; JSON and Go's strconv do not."""
    path = _write(tmp_path, {'pipelineInfo': {'name': 'n'}, 'schemaVersion': '2.1.0', 'sdkVersion': 'kfp-2.17.3',
                             'components': {}, 'deploymentSpec': {'executors': {}},
                             'root': {'dag': {'tasks': {}}, 'inputDefinitions': {'parameters': {
                                 'n': {'parameterType': 'NUMBER_INTEGER'}, 'f': {'parameterType': 'NUMBER_DOUBLE'}}}}})
    line = usage_error(capsys, ['run', path, '--root', str(tmp_path / 'root'), '-p', f'n={text}', '-p', 'f=1'])
    assert "parameter 'n'" in line and 'NUMBER_INTEGER' in line, line
    line = usage_error(capsys, ['run', path, '--root', str(tmp_path / 'root'), '-p', 'n=1', '-p', f'f={text}.5'])
    assert "parameter 'f'" in line and 'NUMBER_DOUBLE' in line, line


def test_deeply_nested_values_on_the_command_line(capsys, tmp_path, victim_spec):
    spec = copy.deepcopy(victim_spec)
    spec['root']['inputDefinitions']['parameters']['text']['parameterType'] = 'LIST'
    spec['root']['inputDefinitions']['parameters']['text'].pop('defaultValue')
    line = usage_error(capsys, ['run', _write(tmp_path, spec), '--root', str(tmp_path / 'root'),
                                '-p', 'text=' + '[' * 100000])
    assert "parameter 'text'" in line and 'LIST' in line


@pytest.mark.parametrize('where', ['root', 'above', 'cache'])
def test_an_output_file_that_the_run_would_make_a_folder(capsys, tmp_path, where):
    """Found by the fuzz test: `--root x --result-json x` ran, then could not write x."""
    root = tmp_path / 'a' / 'root'
    target = {'root': root, 'above': tmp_path / 'a', 'cache': root / 'cache'}[where]
    line = usage_error(capsys, ['run', HELLO, '--root', str(root), '--result-json', str(target)])
    assert f'--result-json {target}: is a folder this run makes' in line
    assert not (tmp_path / 'a').exists()
