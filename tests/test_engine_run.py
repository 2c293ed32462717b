"""The engine against real processes and files: component kinds, the result contract,
run records, parallelism, failure handling and Ctrl-C."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from tests.helpers import compile_pipeline, run_pipeline_file, states, task


# ---------------------------------------------------------------- lightweight components + contract
@dsl.component
def make_data(rows: int, out: Output[Dataset], stats: Output[Metrics]) -> int:
    with open(out.path, 'w') as f:
        f.write('\n'.join(str(i) for i in range(rows)))
    out.metadata['rows'] = rows
    stats.log_metric('rows', rows)
    return rows * 2


@dsl.component
def train(data: Input[Dataset], model: Output[Model]) -> float:
    import os
    lines = open(data.path).read().split()
    os.makedirs(model.path)
    with open(os.path.join(model.path, 'weights.txt'), 'w') as f:
        f.write(str(len(lines)))
    model.metadata['framework'] = 'toy'
    return len(lines) / 10


@dsl.pipeline(name='contract')
def contract_pipeline(rows: int = 5) -> float:
    d = make_data(rows=rows)
    t = train(data=d.outputs['out'])
    return t.outputs['Output']


def test_result_contract_and_run_records(tmp_path):
    path = compile_pipeline(contract_pipeline, tmp_path / 'c.yaml')
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', '-p', 'rows=4')
    assert rc == 0, proc.stdout + proc.stderr
    assert result['state'] == 'SUCCEEDED' and result['pipeline'] == 'contract' and result['run_id']
    assert result['outputs']['parameters'] == {'Output': 0.4}
    md = task(result, 'make-data')
    assert md['outputs']['parameters'] == {'Output': 8}
    [out] = md['outputs']['artifacts']['out']
    assert out['metadata'] == {'rows': 4} and len(out['digest']) == 32
    assert open(out['path']).read() == '0\n1\n2\n3' and out['uri'] == out['path']
    [stats] = md['outputs']['artifacts']['stats']
    assert stats['metadata'] == {'rows': 4}
    [model] = task(result, 'train')['outputs']['artifacts']['model']
    assert os.listdir(model['path']) == ['weights.txt'] and model['metadata'] == {'framework': 'toy'}
    # run records: executor input/output and one log per attempt, result.json in the run folder
    run_dir = result['run_dir']
    tdir = os.path.join(run_dir, 'tasks', 'train')
    assert json.load(open(os.path.join(tdir, 'executor_input.json')))['inputs']['artifacts']['data']
    assert os.path.exists(os.path.join(tdir, 'out', 'executor_output.json'))      # the task's own folder
    assert os.path.exists(os.path.join(tdir, 'logs', 'attempt-1.log'))            # the host's, not the task's
    assert json.load(open(os.path.join(run_dir, 'result.json')))['run_id'] == result['run_id']


# ---------------------------------------------------------------- container components, placeholders
@dsl.container_component
def every_placeholder(text: str, data: Input[Dataset], out_text: dsl.OutputPath(str), out_art: Output[Dataset],
                      maybe: str = None):
    return dsl.ContainerSpec(
        image='alpine',
        command=['sh', '-c', '''
            printf '%s' "$0" > "$3"
            { echo "text=$0"; echo "path=$1"; echo "meta=$2"; echo "extra=$6"; echo "concat=$7"; echo "job=$8"
              echo "task=$9"; } > "$4"
            cat "$1" >> "$4"
        '''],
        args=[text, data.path, data.metadata, out_text, out_art.path,
              dsl.IfPresentPlaceholder(input_name='maybe', then=['--maybe', maybe], else_=['--none', 'NONE']),
              dsl.ConcatPlaceholder(['v=', text]),
              dsl.PIPELINE_JOB_NAME_PLACEHOLDER, dsl.PIPELINE_TASK_NAME_PLACEHOLDER])


@dsl.component
def source(out: Output[Dataset]):
    with open(out.path, 'w') as f:
        f.write('payload')
    out.metadata['origin'] = 'src'


@dsl.pipeline(name='placeholders')
def placeholder_pipeline(text: str = 'he said "hi"'):
    s = source()
    every_placeholder(text=text, data=s.outputs['out'])


def test_container_component_placeholders_on_host(tmp_path):
    path = compile_pipeline(placeholder_pipeline, tmp_path / 'p.yaml')
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root')
    assert rc == 0, proc.stdout + proc.stderr
    t = task(result, 'every-placeholder')
    assert t['outputs']['parameters']['out_text'] == 'he said "hi"'
    [art] = t['outputs']['artifacts']['out_art']
    body = open(art['path']).read().splitlines()
    src_path = task(result, 'source')['outputs']['artifacts']['out'][0]['path']
    assert body[0] == 'text=he said "hi"'
    assert body[1] == f'path={src_path}'
    assert json.loads(body[2][len('meta='):]) == {'origin': 'src'}
    assert body[3] == 'extra=NONE'              # IfPresent took Else: ["--none", "NONE"]
    assert body[4] == 'concat=v=he said "hi"'
    assert body[5] == f'job={result["run_id"]}'
    assert body[6] == 'task=every-placeholder'
    assert body[-1] == 'payload'


@dsl.container_component
def task_ids(given: str, out: dsl.OutputPath(str)):
    return dsl.ContainerSpec(image='alpine', command=['sh', '-c', 'printf "%s %s" "$0" "$1" > "$2"'],
                             args=[given, dsl.PIPELINE_TASK_ID_PLACEHOLDER, out])


@dsl.pipeline(name='task-ids')
def task_id_pipeline():
    task_ids(given=dsl.PIPELINE_TASK_ID_PLACEHOLDER)
    with dsl.ParallelFor([1, 2]):
        task_ids(given=dsl.PIPELINE_TASK_ID_PLACEHOLDER)


def test_the_task_id_given_as_an_input_is_the_tasks_own(tmp_path):
    """dsl.PIPELINE_TASK_ID_PLACEHOLDER as an input value is resolved, as KFP's driver resolves
    it, to the id of the task it is given to: the one on its command line, another in every
    loop iteration and every run (so such a task is never served from the cache)."""
    path = compile_pipeline(task_id_pipeline, tmp_path / 'p.yaml')
    ids = []
    for _ in range(2):
        rc, result, proc = run_pipeline_file(path, tmp_path / 'root')
        assert rc == 0, proc.stdout + proc.stderr
        assert set(states(result).values()) <= {'SUCCEEDED'}, states(result)
        for t in result['tasks']:
            if t['type'] == 'container':
                given, own = t['outputs']['parameters']['out'].split(' ')
                assert given == own and len(own) == 36, t['outputs']
                ids.append(own)
    assert len(ids) == 6 and len(set(ids)) == 6, ids


@dsl.component
def total_of(xs: list, d: dict) -> int:
    return sum(xs) + d['k']


@dsl.pipeline(name='nested-numbers')
def nested_numbers_pipeline(xs: list = [1, 2], d: dict = {'k': 3}) -> int:
    return total_of(xs=xs, d=d).output


def test_whole_numbers_inside_list_and_dict_inputs_reach_the_component_as_ints(tmp_path):
    """The compiler writes the defaults as doubles ([1.0, 2.0]); KFP's driver hands them over
    as protojson, where a whole double has no fraction: sum() of them is an int, as on a
    cluster. A value given on the command line goes the same way."""
    path = compile_pipeline(nested_numbers_pipeline, tmp_path / 'p.yaml')
    assert '- 1.0' in open(path).read()
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root')
    assert rc == 0 and result['outputs']['parameters']['Output'] == 6, proc.stdout + proc.stderr
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', '-p', 'xs=[4.0, 5]', '-p', 'd={"k": 1.0}')
    assert rc == 0 and result['outputs']['parameters']['Output'] == 10, proc.stdout + proc.stderr


@dsl.component
def with_nul() -> str:
    return 'a\x00b'


@dsl.container_component
def echoes(x: str):
    return dsl.ContainerSpec(image='alpine', command=['echo', x])


@dsl.pipeline(name='nul-input')
def nul_input_pipeline():
    echoes(x=with_nul().output)


def test_an_input_value_with_a_nul_byte_fails_its_task_saying_so(tmp_path):
    """A NUL can't be in a command line: the consumer FAILS naming it, not 'internal error'."""
    path = compile_pipeline(nul_input_pipeline, tmp_path / 'p.yaml')
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root')
    assert rc == 1 and 'internal error' not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert task(result, 'echoes')['state'] == 'FAILED'
    assert "command line holds a NUL byte, which no process can be given: 'a\\x00b'" in task(result, 'echoes')['error']


# ---------------------------------------------------------------- importer
@dsl.component
def read_it(data: Input[Dataset]) -> str:
    return open(data.path).read() + '|' + str(data.metadata.get('note'))


@dsl.pipeline(name='imports')
def import_pipeline(uri: str):
    imp = dsl.importer(artifact_uri=uri, artifact_class=Dataset, metadata={'note': 'given'})
    read_it(data=imp.output)


@pytest.mark.parametrize('form', ['path', 'file-uri'])
def test_importer_local_path_and_file_uri(tmp_path, form):
    data = tmp_path / 'in.csv'
    data.write_text('a,b\n1,2\n')
    uri = str(data) if form == 'path' else f'file://{data}'
    path = compile_pipeline(import_pipeline, tmp_path / 'i.yaml')
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', '-p', f'uri={uri}')
    assert rc == 0, proc.stdout + proc.stderr
    assert task(result, 'read-it')['outputs']['parameters']['Output'] == 'a,b\n1,2\n|given'
    [art] = task(result, 'importer')['outputs']['artifacts']['artifact']
    assert art['digest'] and art['metadata'] == {'note': 'given'}


# ---------------------------------------------------------------- failure, parallelism
@dsl.component
def stamp(folder: str, name: str, seconds: float) -> str:
    import os
    import time
    start = time.time()
    time.sleep(seconds)
    with open(os.path.join(folder, name), 'w') as f:
        f.write(f'{start} {time.time()}')
    return name


@dsl.component
def boom(msg: str) -> str:
    raise RuntimeError(f'kaboom: {msg}')


@dsl.pipeline(name='failing')
def failing_pipeline(folder: str):
    bad = boom(msg='xyz')
    stamp(folder=folder, name='after-bad', seconds=0.0).after(bad)
    stamp(folder=folder, name='unrelated', seconds=0.5)


def test_failure_skips_dependents_and_finishes_unrelated(tmp_path):
    folder = tmp_path / 'out'
    folder.mkdir()
    path = compile_pipeline(failing_pipeline, tmp_path / 'f.yaml')
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', '-p', f'folder={folder}')
    assert rc == 1 and result['state'] == 'FAILED'
    st = states(result)
    assert st['boom'] == 'FAILED' and st['stamp'] == 'SKIPPED' and st['stamp-2'] == 'SUCCEEDED'
    assert sorted(os.listdir(folder)) == ['unrelated']
    # the console shows the traceback's last lines and where the full log is
    assert 'kaboom: xyz' in proc.stdout and 'attempt-1.log' in proc.stdout


@dsl.pipeline(name='parallel')
def parallel_pipeline(folder: str):
    for i in range(3):
        stamp(folder=folder, name=f't{i}', seconds=1.0)


def _intervals(folder):
    return sorted(tuple(map(float, open(os.path.join(folder, n)).read().split())) for n in os.listdir(folder))


@pytest.mark.parametrize('max_parallel, overlap', [('3', True), ('1', False)])
def test_independent_tasks_run_in_parallel_up_to_max(tmp_path, max_parallel, overlap):
    folder = tmp_path / 'out'
    folder.mkdir()
    path = compile_pipeline(parallel_pipeline, tmp_path / 'par.yaml')
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', '-p', f'folder={folder}',
                                         '--max-parallel', max_parallel)
    assert rc == 0, proc.stdout + proc.stderr
    spans = _intervals(folder)
    assert len(spans) == 3
    overlapping = any(b[0] < a[1] for a, b in zip(spans, spans[1:]))
    assert overlapping == overlap, spans


@dsl.component
def cpu_heavy(folder: str, name: str) -> str:
    import os
    import time
    start = time.time()
    time.sleep(1.0)
    with open(os.path.join(folder, name), 'w') as f:
        f.write(f'{start} {time.time()}')
    return name


@dsl.pipeline(name='cpu-bound')
def cpu_pipeline(folder: str):
    for i in range(2):
        cpu_heavy(folder=folder, name=f'c{i}').set_cpu_request(str(os.cpu_count() or 2))


def test_declared_cpu_requests_limit_concurrency(tmp_path):
    folder = tmp_path / 'out'
    folder.mkdir()
    path = compile_pipeline(cpu_pipeline, tmp_path / 'cpu.yaml')
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', '-p', f'folder={folder}', '--max-parallel', '4')
    assert rc == 0, proc.stdout + proc.stderr
    a, b = _intervals(folder)
    assert b[0] >= a[1], 'two tasks each asking for every core must not overlap'


# ---------------------------------------------------------------- Ctrl-C
@dsl.component
def sleeper(folder: str) -> str:
    import os
    import time
    with open(os.path.join(folder, 'pid'), 'w') as f:
        f.write(str(os.getpid()))
    time.sleep(120)
    return 'done'


@dsl.pipeline(name='interrupt')
def interrupt_pipeline(folder: str):
    sleeper(folder=folder)


def test_ctrl_c_terminates_tasks_and_marks_canceled(tmp_path):
    folder = tmp_path / 'out'
    folder.mkdir()
    path = compile_pipeline(interrupt_pipeline, tmp_path / 'int.yaml')
    result_path = tmp_path / 'r.json'
    proc = subprocess.Popen([sys.executable, '-m', 'localrunner.cli', 'run', path, '-p', f'folder={folder}',
                             '--root', str(tmp_path / 'root'), '--result-json', str(result_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while not (folder / 'pid').exists():
        assert time.time() < deadline and proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.1)
    time.sleep(0.3)
    task_pid = int((folder / 'pid').read_text())
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 130, out
    result = json.loads(result_path.read_text())
    assert result['state'] == 'CANCELED'
    assert states(result)['sleeper'] == 'CANCELED'
    with pytest.raises(ProcessLookupError):
        for _ in range(50):
            os.kill(task_pid, 0)
            time.sleep(0.1)
