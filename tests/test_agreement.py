"""What the console, the history and the exit code say is what happened: for runs that
succeed, fail, are served from the cache, skip a branch, are canceled by a signal and are
only predicted, the exit code, the --result-json document, the run folder's result.json and
the console's summary agree on the run's state and on every task's state."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from kfp import dsl

from tests.helpers import compile_pipeline

EXIT = {'SUCCEEDED': 0, 'FAILED': 1, 'CANCELED': 130}


@dsl.component
def ok(x: int) -> int:
    return x + 1


@dsl.component
def maybe_fail(x: int, fail: bool) -> int:
    if fail:
        raise RuntimeError('failing on purpose')
    return x


@dsl.component
def slow(x: int, seconds: float) -> int:
    import time
    time.sleep(seconds)
    return x


@dsl.pipeline(name='agreement')
def agreement(fail: bool = False, seconds: float = 0.0, x: int = 1):
    first = ok(x=x)
    second = maybe_fail(x=first.output, fail=fail)
    slow(x=second.output, seconds=seconds)
    with dsl.If(x > 5):
        ok(x=x).set_display_name('big')


def _summary_states(stdout: str) -> dict:
    """task -> state from the console's summary table (rich, plain: no colour codes)."""
    states = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split('│')]
        if len(cells) >= 4 and cells[2] in ('SUCCEEDED', 'CACHED', 'FAILED', 'SKIPPED', 'CANCELED'):
            states[cells[1]] = cells[2]
    return states


def _check(proc_rc: int, stdout: str, result_json: str, predicted: bool = False) -> dict:
    with open(result_json) as f:
        result = json.load(f)
    assert not re.search(r'^Traceback', stdout, re.M)     # (a failing task's own, in its log tail, is shown indented)
    assert proc_rc == EXIT[result['state']], (proc_rc, result['state'])
    leaves = {t['name']: t['state'] for t in result['tasks'] if t['type'] in ('container', 'importer')}
    if predicted:
        return result           # a dry run writes no history and prints predictions instead
    with open(os.path.join(result['run_dir'], 'result.json'), 'rb') as f, open(result_json, 'rb') as g:
        assert f.read() == g.read(), 'the run folder keeps the same document --result-json got, byte for byte'
    shown = _summary_states(stdout)
    assert shown == {n: s for n, s in leaves.items() if n in shown} and set(shown) == set(leaves), (shown, leaves)
    assert f'agreement: {result["state"]} in' in stdout
    return result


def _run(tmp_path, *args, env=None):
    out = tmp_path / f'r{len(os.listdir(tmp_path))}.json'
    proc = subprocess.run([sys.executable, '-m', 'localrunner.cli', 'run', str(tmp_path / 'p.yaml'),
                           '--root', str(tmp_path / 'root'), '--result-json', str(out), *args],
                          capture_output=True, text=True, timeout=600, env={**os.environ, 'CI': 'true', **(env or {})})
    return proc, str(out)


@pytest.fixture
def pipeline(tmp_path):
    compile_pipeline(agreement, tmp_path / 'p.yaml')
    return tmp_path


def test_success_then_cached_then_a_branch_taken(pipeline):
    proc, out = _run(pipeline)
    first = _check(proc.returncode, proc.stdout, out)
    assert first['state'] == 'SUCCEEDED'
    proc, out = _run(pipeline)
    again = _check(proc.returncode, proc.stdout, out)
    assert {t['state'] for t in again['tasks'] if t['type'] == 'container'} == {'CACHED'}
    proc, out = _run(pipeline, '-p', 'x=7')
    branch = _check(proc.returncode, proc.stdout, out)
    # the branch ran: its task is the root's ok(x=7) again, so it is served that result in the run
    assert {t['name']: t['state'] for t in branch['tasks']}['condition-1/ok-2'] in ('SUCCEEDED', 'CACHED')


def test_failure(pipeline):
    proc, out = _run(pipeline, '-p', 'fail=true')
    result = _check(proc.returncode, proc.stdout, out)
    states = {t['name']: t['state'] for t in result['tasks']}
    assert result['state'] == 'FAILED' and states['maybe-fail'] == 'FAILED' and states['slow'] == 'SKIPPED'


def test_canceled_by_a_signal(pipeline):
    out = pipeline / 'canceled.json'
    proc = subprocess.Popen([sys.executable, '-m', 'localrunner.cli', 'run', str(pipeline / 'p.yaml'),
                             '--root', str(pipeline / 'root'), '--result-json', str(out), '-p', 'seconds=120'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, 'CI': 'true'})
    deadline = time.monotonic() + 120
    runs = pipeline / 'root' / 'runs'
    while not (runs.exists() and any((r / 'tasks' / 'slow' / 'logs').exists() for r in runs.iterdir())):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=120)
    result = _check(proc.returncode, stdout, str(out))
    states = {t['name']: t['state'] for t in result['tasks']}
    assert result['state'] == 'CANCELED' and states['slow'] == 'CANCELED' and states['ok'] == 'SUCCEEDED'


def test_a_dry_run_exits_as_it_predicts_and_records_nothing(pipeline):
    proc, out = _run(pipeline, '--dry-run')
    result = _check(proc.returncode, proc.stdout, out, predicted=True)
    assert result['state'] == 'SUCCEEDED'
    assert not (pipeline / 'root' / 'runs').exists() or not os.listdir(pipeline / 'root' / 'runs')
    assert 'explain-cache: 0 task(s) would be served from the cache, 3 would run' in proc.stdout
