"""GPU ids are the scheduler's: disjoint per concurrent task, queued when none are free,
CUDA_VISIBLE_DEVICES on the subprocess backend, DeviceRequests on Docker. The machine is made
one with four GPUs by an nvidia-smi that lists them, first on PATH: the scheduler is what is
tested, and the answers are the same on a machine with real GPUs or none. (A container start
on Docker without the NVIDIA runtime then fails cleanly and is not retried.)"""
import os

import pytest
from kfp import dsl

from tests.helpers import compile_pipeline, run_cli, run_pipeline_file, task
from tests.support import require_base_image, require_docker
from tests.support.docker_image import DEFAULT_TAG


@dsl.component
def visible_gpus(folder: str, name: str) -> str:
    import os
    import time
    start = time.time()
    time.sleep(1.0)
    with open(os.path.join(folder, name), 'w') as f:
        f.write(f'{start} {time.time()} {os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")}')
    return os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')


@dsl.pipeline(name='gpu-pair')
def gpu_pair(folder: str, count: int = 2):
    for i in range(3):
        t = visible_gpus(folder=folder, name=f'g{i}')
        t.set_accelerator_type('nvidia.com/gpu').set_accelerator_limit(1)


@pytest.fixture
def gpus4(tmp_path):
    """The environment of a machine with GPUs 0-3 (for run_cli / run_pipeline_file)."""
    bin_dir = tmp_path / 'fake-bin'
    bin_dir.mkdir()
    smi = bin_dir / 'nvidia-smi'
    smi.write_text('#!/bin/sh\nprintf "0\\n1\\n2\\n3\\n"\n')
    smi.chmod(0o755)
    return {'PATH': f'{bin_dir}{os.pathsep}{os.environ.get("PATH", "")}'}


def _spans(folder):
    out = []
    for name in sorted(os.listdir(folder)):
        start, end, ids = open(os.path.join(folder, name)).read().split()
        out.append((float(start), float(end), ids))
    return out


def test_disjoint_gpu_ids_and_queueing_on_subprocess(tmp_path, gpus4):
    folder = tmp_path / 'out'
    folder.mkdir()
    path = compile_pipeline(gpu_pair, tmp_path / 'g.yaml')
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', '-p', f'folder={folder}', '--gpus', '0,1',
                                         '--max-parallel', '3', env=gpus4)
    assert rc == 0, proc.stdout + proc.stderr
    spans = _spans(folder)
    assert len(spans) == 3 and {s[2] for s in spans} <= {'0', '1'}, spans
    # at any moment no two running tasks hold the same id, and never three at once (only 2 GPUs):
    # the most running at once is reached at some task's start
    for i, a in enumerate(spans):
        overlapping = [b for j, b in enumerate(spans) if j != i and b[0] < a[1] and a[0] < b[1]]
        assert all(b[2] != a[2] for b in overlapping), spans
        assert len([b for b in spans if b[0] <= a[0] < b[1]]) <= 2, spans


@dsl.component
def mark(folder: str, name: str) -> str:
    import os
    open(os.path.join(folder, name), 'w').close()
    return name


@dsl.component
def greedy(after: str) -> str:
    return 'never'


@dsl.pipeline(name='gpu-greedy')
def gpu_greedy(folder: str):
    upstream = mark(folder=folder, name='upstream-ran')
    greedy(after=upstream.output).set_accelerator_type('nvidia.com/gpu').set_accelerator_limit(3).set_retry(3)


def _one_line_usage_error(proc):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in proc.stderr, proc.stderr
    return lines[0]


def test_asking_more_gpus_than_exist_is_refused_before_anything_runs(tmp_path, gpus4):
    """Planned, not reached: the upstream task must not run first (it could take hours)."""
    folder = tmp_path / 'out'
    folder.mkdir()
    path = compile_pipeline(gpu_greedy, tmp_path / 'greedy.yaml')
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', '-p', f'folder={folder}', '--gpus', '0,1',
                                         env=gpus4)
    line = _one_line_usage_error(proc)
    assert 'root.dag.tasks.greedy' in line and 'asks for 3 GPUs' in line and 'ids 0,1' in line, line
    assert result is None and not os.listdir(folder)
    assert not os.path.exists(tmp_path / 'root' / 'runs')
    # a count is checked against the inventory, declared (--gpus 2) or as listed
    proc = run_cli('run', path, '--root', str(tmp_path / 'root'), '-p', f'folder={folder}', '--gpus', '2', env=gpus4)
    assert 'only 2 exist (ids 0,1)' in _one_line_usage_error(proc)
    # enough GPUs: planned fine (explain runs nothing)
    proc = run_cli('explain-cache', path, '--root', str(tmp_path / 'root'), '-p', f'folder={folder}',
                   '--gpus', '0,1,2', env=gpus4)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # nothing declared: all four detected are the inventory
    proc = run_cli('explain-cache', path, '--root', str(tmp_path / 'root'), '-p', f'folder={folder}', env=gpus4)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not os.listdir(folder)


def test_no_gpu_anywhere_runs_accelerator_tasks_on_the_cpu(tmp_path):
    """Nothing detected, nothing declared: kept as before, a warning and a CPU run."""
    folder = tmp_path / 'out'
    folder.mkdir()
    path = compile_pipeline(gpu_greedy, tmp_path / 'greedy.yaml')
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', '-p', f'folder={folder}', '--gpus', 'none')
    assert rc == 0, proc.stdout + proc.stderr
    assert task(result, 'greedy')['state'] == 'SUCCEEDED'
    assert any('no GPU here' in w for w in result['warnings']), result['warnings']


@dsl.component
def how_many() -> int:
    return 3


@dsl.pipeline(name='gpu-from-output')
def gpu_from_output():
    count = how_many()
    greedy(after='x').set_accelerator_type('nvidia.com/gpu').set_accelerator_limit(count.output)


def test_a_count_set_by_a_placeholder_is_checked_when_resolved(tmp_path, gpus4):
    path = compile_pipeline(gpu_from_output, tmp_path / 'fo.yaml')
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', '--gpus', '0,1', env=gpus4)
    assert rc == 1, proc.stdout + proc.stderr
    t = task(result, 'greedy')
    assert t['state'] == 'FAILED' and '3 GPUs' in t['error'] and '0,1' in t['error'], t
    assert t['attempts'] == 0


@dsl.component
def hold(folder: str, name: str) -> str:
    """Holds its GPU longer when it got id 0, so id 1 is always released first."""
    import os
    import time
    ids = os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')
    if ids == '0':
        time.sleep(2.0)
    with open(os.path.join(folder, name), 'w') as f:
        f.write(ids)
    return ids


@dsl.component
def both(folder: str, a: str, b: str) -> str:
    import os
    ids = os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')
    with open(os.path.join(folder, 'both'), 'w') as f:
        f.write(ids)
    return ids


@dsl.pipeline(name='gpu-order')
def gpu_order(folder: str):
    a = hold(folder=folder, name='a').set_accelerator_type('nvidia.com/gpu').set_accelerator_limit(1)
    b = hold(folder=folder, name='b').set_accelerator_type('nvidia.com/gpu').set_accelerator_limit(1)
    both(folder=folder, a=a.output, b=b.output).set_accelerator_type('nvidia.com/gpu').set_accelerator_limit(2)


def test_released_ids_come_back_in_order(tmp_path, gpus4):
    """Two one-GPU tasks hold 0 and 1; the holder of 1 finishes first; the two-GPU task
    after them must see CUDA_VISIBLE_DEVICES=0,1 (it saw "1,0" when ids were appended back)."""
    folder = tmp_path / 'out'
    folder.mkdir()
    path = compile_pipeline(gpu_order, tmp_path / 'order.yaml')
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', '-p', f'folder={folder}', '--gpus', '0,1',
                                         '--max-parallel', '2', '--no-cache', env=gpus4)
    assert rc == 0, proc.stdout + proc.stderr
    assert sorted((folder / n).read_text() for n in ('a', 'b')) == ['0', '1']
    assert (folder / 'both').read_text() == '0,1'


IMAGE = DEFAULT_TAG


@dsl.container_component
def on_gpu():
    return dsl.ContainerSpec(image=IMAGE, command=['nvidia-smi'])


@dsl.pipeline(name='docker-gpus')
def docker_gpus():
    for _ in range(2):
        on_gpu().set_accelerator_type('nvidia.com/gpu').set_accelerator_limit(1).set_retry(2)


def test_docker_gpu_start_failure_is_clean_and_not_retried(tmp_path, gpus4):
    client = require_docker()
    require_base_image()
    if 'nvidia' in (client.info().get('Runtimes') or {}):
        pytest.skip('this engine has the NVIDIA runtime: the start would not fail')
    path = compile_pipeline(docker_gpus, tmp_path / 'dg.yaml')
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', '--backend', 'docker', '--gpus', '0,1', env=gpus4)
    assert rc == 1
    for name in ('on-gpu', 'on-gpu-2'):
        t = task(result, name)
        assert t['state'] == 'FAILED' and t['attempts'] == 1, t
    assert not client.containers.list(all=True, ignore_removed=True, filters={'label': f'localrunner.run={result["run_id"]}'})


@dsl.container_component
def from_missing_image():
    return dsl.ContainerSpec(image='localrunner-test/no-such-image:never', command=['true'])


@dsl.pipeline(name='missing-image')
def missing_image():
    from_missing_image().set_retry(3)


def test_missing_image_fails_fast_naming_it(tmp_path):
    require_docker()
    path = compile_pipeline(missing_image, tmp_path / 'mi.yaml')
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', '--backend', 'docker')
    assert rc == 1
    t = task(result, 'from-missing-image')
    assert t['state'] == 'FAILED' and 'localrunner-test/no-such-image:never' in t['error']
    assert t['attempts'] <= 1
