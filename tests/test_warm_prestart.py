"""Pre-start (backends/warm_prestart.py): the CLI starts, before it imports the engine, the
zygotes the last run of the same pipeline file served; the backend adopts them. A memo is
checked, never trusted, and a zygote started ahead never outlives the command."""
import json
import os
import subprocess
import sys
import time

import pytest
from kfp import dsl

from localrunner.backends import zygotes
from localrunner.backends.warm_prestart import WarmMemo
from localrunner.user_cache import default_env_dir
from tests.helpers import compile_pipeline, run_pipeline_file, task

pytestmark = pytest.mark.skipif(not zygotes.supported(), reason='warm start needs Linux with pidfds')


@dsl.component
def zygote_started() -> str:
    """When the zygote above this task (task -> reaper -> zygote) started, as an epoch time
    (the kernel's start tick, 10 ms), and whether this task was forked at all."""
    import json
    import os
    import time

    def stat(pid):
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()
    reaper = os.getppid()
    zygote = int(stat(reaper)[1])
    ticks = int(stat(zygote)[19])                     # field 22: start time, ticks after boot
    since = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf('SC_CLK_TCK')
    with open(f'/proc/{reaper}/cmdline', 'rb') as f:
        forked = b'warm_zygote.py' in f.read()
    return json.dumps({'zygote': zygote, 'started': time.time() - since, 'forked': forked})


@dsl.pipeline(name='prestart')
def prestart_pipeline(n: int = 1):
    zygote_started().set_caching_options(False)


@dsl.pipeline(name='prestart-cached')
def cached_pipeline():
    zygote_started()


def _zygote(result: dict) -> dict:
    return json.loads(task(result, 'zygote-started')['outputs']['parameters']['Output'])


def _memo(path, cwd, env_dir=None) -> WarmMemo:
    return WarmMemo(str(path), str(cwd), env_dir or default_env_dir())


def test_the_next_run_adopts_a_zygote_started_before_the_run(tmp_path):
    path = compile_pipeline(prestart_pipeline, tmp_path / 'p.yaml')
    rc, first, proc = run_pipeline_file(path, tmp_path / 'root', cwd=str(tmp_path))
    assert rc == 0, proc.stdout + proc.stderr
    one = _zygote(first)
    assert one['forked'] and one['started'] > first['started'] - 0.02    # started by the run's first task
    [(python, module)] = _memo(path, tmp_path).zygotes()          # what the next run starts ahead
    venv = os.path.dirname(os.path.dirname(python))
    assert module == 'kfp.dsl.executor_main' and os.path.dirname(venv) == default_env_dir()

    rc, second, proc = run_pipeline_file(path, tmp_path / 'root', cwd=str(tmp_path))
    assert rc == 0, proc.stdout + proc.stderr
    two = _zygote(second)
    assert two['forked'] and two['zygote'] != one['zygote']
    assert two['started'] < second['started']          # before the run began: started ahead, adopted


def test_a_cached_rerun_records_that_it_needed_no_zygote(tmp_path):
    path = compile_pipeline(cached_pipeline, tmp_path / 'c.yaml')
    rc, first, proc = run_pipeline_file(path, tmp_path / 'root', cwd=str(tmp_path))
    assert rc == 0 and len(_memo(path, tmp_path).zygotes()) == 1
    rc, second, proc = run_pipeline_file(path, tmp_path / 'root', cwd=str(tmp_path))
    assert rc == 0 and task(second, 'zygote-started')['state'] == 'CACHED'
    assert _memo(path, tmp_path).zygotes() == []     # the next run starts none ahead


def _fake_venv(env_dir, name: str, marker) -> str:
    """A venv whose python3 writes its arguments to MARKER, then sleeps (a zygote that never
    greets): whether it was started, and whether it was left running, can be seen."""
    bindir = os.path.join(env_dir, name, 'bin')
    os.makedirs(bindir)
    python = os.path.join(bindir, 'python3')
    with open(python, 'w') as f:
        f.write(f'#!/bin/sh\necho "$@" > {marker}\nexec sleep 31.4159\n')
    os.chmod(python, 0o755)
    return python


def _sleepers() -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                if f.read() == b'sleep\x0031.4159\x00':
                    found.append(int(pid))
        except OSError:
            pass
    return found


def test_a_memo_is_checked_and_what_it_starts_ends_with_a_refused_command(tmp_path):
    """Only bin/python3 of a venv in this run's environment folder, with KFP's executor, is
    started ahead; a bad command line still exits 2 in one line, and leaves nothing running."""
    path = compile_pipeline(prestart_pipeline, tmp_path / 'p.yaml')
    env_dir, outside = str(tmp_path / 'envs'), str(tmp_path / 'elsewhere')
    good = _fake_venv(env_dir, 'good', tmp_path / 'good.started')
    other_module = _fake_venv(env_dir, 'module', tmp_path / 'module.started')
    elsewhere = _fake_venv(outside, 'venv', tmp_path / 'elsewhere.started')
    _memo(path, tmp_path, env_dir).record([(elsewhere, 'kfp.dsl.executor_main'), (other_module, 'os')])
    env = dict(os.environ, LOCALRUNNER_ENV_DIR=env_dir)
    cli = [sys.executable, '-m', 'localrunner.cli', 'run', path, '--root', str(tmp_path / 'root')]

    proc = subprocess.run(cli + ['-p', 'nope=1'], cwd=str(tmp_path), env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not os.path.exists(tmp_path / 'elsewhere.started')     # outside the environment folder
    assert not os.path.exists(tmp_path / 'module.started')        # not KFP's executor

    _memo(path, tmp_path, env_dir).record([(good, 'kfp.dsl.executor_main')])
    proc = subprocess.run(cli + ['-p', 'nope=1'], cwd=str(tmp_path), env=env, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    started = (tmp_path / 'good.started').read_text().split()       # the zygote's own argv
    assert started[0].endswith('warm_zygote.py') and started[-1] == 'kfp.dsl.executor_main'
    deadline = time.time() + 5
    while _sleepers() and time.time() < deadline:
        time.sleep(0.05)
    assert not _sleepers(), 'a zygote started ahead outlived the command'
    assert not os.path.exists(tmp_path / 'root')                  # nothing written for a refused run


def test_the_zygote_starts_before_the_engine_is_imported(tmp_path):
    """The pre-start's whole point is to start early: prestart() (what `localrunner run` calls
    before it imports the engine) starts the memo's zygote having imported no part of the
    engine, the backends' framework, the spec package or concurrent.futures."""
    path = compile_pipeline(prestart_pipeline, tmp_path / 'p.yaml')
    env_dir = str(tmp_path / 'envs')
    good = _fake_venv(env_dir, 'good', tmp_path / 'good.started')
    _memo(path, tmp_path, env_dir).record([(good, 'kfp.dsl.executor_main')])
    probe = (
        'import sys\n'
        'from localrunner import cli\n'
        'from localrunner.backends import warm_prestart, zygotes\n'
        f'args = cli.build_parser().parse_args(["run", {str(path)!r}])\n'
        'assert warm_prestart.prestart(args) is not None\n'
        'started = [z.proc.pid for z in zygotes.AHEAD._zygotes.values()]\n'
        'heavy = sorted(m for m in sys.modules if m.startswith(("localrunner.engine.runtime", '
        '"localrunner.engine.assembly", "localrunner.backends.base", "localrunner.backends.warm", '
        '"localrunner.backends.subprocess_backend", "localrunner.spec", "localrunner.environments", '
        '"concurrent.futures", "asyncio")) and m != "localrunner.backends.warm_prestart")\n'
        'print(len(started), heavy)\n'
        'import os, time\n'                       # the zygote's own start, before this process ends
        'deadline = time.time() + 10\n'
        f'while not os.path.exists({str(tmp_path / "good.started")!r}) and time.time() < deadline:\n'
        '    time.sleep(0.02)\n')
    env = dict(os.environ, LOCALRUNNER_ENV_DIR=env_dir)
    proc = subprocess.run([sys.executable, '-c', probe], cwd=str(tmp_path), env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split(None, 1) == ['1', '[]\n'], proc.stdout
    deadline = time.time() + 5
    assert (tmp_path / 'good.started').read_text().split()[-1] == 'kfp.dsl.executor_main'
    while _sleepers() and time.time() < deadline:
        time.sleep(0.05)
    assert not _sleepers(), 'a zygote started ahead outlived its process'
