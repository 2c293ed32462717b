"""Run history faces on real runs: `runs ls|show|compare|prune`, `logs [-f]`, live runs (a
real process holding the lease), and a damaged history (random bytes, truncation, missing
files): one line, never a traceback."""
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from localrunner.faces.history import lease_path, run_is_live
from tests.helpers import compile_pipeline, run_cli, run_pipeline_file, task
from tests.report_pipelines import Page


@dsl.component
def measure(scale: float, data: Output[Dataset], quality: Output[Metrics]):
    with open(data.path, 'w') as f:
        f.write(f'scaled by {scale}')
    quality.log_metric('accuracy', 0.5 + scale / 10)
    quality.log_metric('rows', 100)
    print(f'measured {scale}')


@dsl.component
def constant(data: Output[Dataset]):
    with open(data.path, 'w') as f:
        f.write('always the same')


@dsl.component
def flaky(counter_dir: str) -> int:
    import os
    import sys
    path = os.path.join(counter_dir, 'count')
    n = int(open(path).read()) + 1 if os.path.exists(path) else 1
    with open(path, 'w') as f:
        f.write(str(n))
    print(f'attempt number {n} speaking')
    if n == 1:
        sys.exit(3)
    return n


@dsl.pipeline(name='history')
def history_pipeline(scale: float, counter_dir: str):
    measure(scale=scale)
    constant()
    flaky(counter_dir=counter_dir).set_caching_options(False).set_retry(num_retries=1, backoff_duration='0s')


@dsl.component
def gated(gate: str):
    """Prints a line, then waits for the test to create `gate` (no sleeps to guess at)."""
    import os
    import time
    print('first line from the gated task', flush=True)
    deadline = time.time() + 300
    while not os.path.exists(gate) and time.time() < deadline:
        time.sleep(0.05)
    print('last line from the gated task', flush=True)


@dsl.pipeline(name='gated')
def gated_pipeline(gate: str):
    gated(gate=gate)


def one_line_error(proc) -> str:
    """The CLI's answer to something it can't do: exit 2, one line on stderr, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert 'Traceback' not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope='module')
def history(tmp_path_factory):
    """Runs A (scale 1) and B (scale 2) of one pipeline, then a run of another pipeline."""
    tmp = tmp_path_factory.mktemp('history')
    root = tmp / 'root'
    path = compile_pipeline(history_pipeline, tmp / 'h.yaml')
    out = {}
    for name, scale in (('a', 1), ('b', 2)):
        counter = tmp / f'counter-{name}'
        counter.mkdir()
        rc, out[name], proc = run_pipeline_file(path, root, '-p', f'scale={scale}', '-p', f'counter_dir={counter}')
        assert rc == 0, proc.stdout + proc.stderr
    gate = tmp / 'open'
    gate.write_text('')
    rc, out['other'], proc = run_pipeline_file(compile_pipeline(gated_pipeline, tmp / 'g.yaml'), root,
                                               '-p', f'gate={gate}')
    assert rc == 0, proc.stdout + proc.stderr
    out['root'] = root
    return out


def cli(root, *args):
    return run_cli(*args, '--root', str(root))


# ---------------------------------------------------------------------------- ls, show, logs

def test_ls_lists_state_duration_counts_and_key_metrics(history):
    proc = cli(history['root'], 'runs', 'ls')
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == [history[k]['run_id'] for k in ('a', 'b', 'other')]
    a, b, _ = lines
    assert 'SUCCEEDED' in a and '3 ran, 0 cached' in a and 'accuracy=0.6' in a
    assert '2 ran, 1 cached' in b and 'accuracy=0.7' in b        # constant() came from the cache


def test_show_prints_a_human_view_and_json_on_request(history):
    b = history['b']
    proc = cli(history['root'], 'runs', 'show', b['run_id'])
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.startswith('history  SUCCEEDED')
    row = next(line for line in text.splitlines() if line.startswith('constant '))
    assert row.split()[1] == 'CACHED' and row.split()[-1] == history['a']['run_id']
    assert 'quality (system.Metrics): accuracy=0.7  rows=100' in text
    flaky_logs = task(b, 'flaky')['logs']
    assert len(flaky_logs) == 2
    assert f'flaky attempt 1: {flaky_logs[0]}' in text and f'flaky attempt 2: {flaky_logs[1]}' in text
    proc = cli(history['root'], 'runs', 'show', b['run_id'], '--json')
    assert json.loads(proc.stdout) == b


def test_logs_prints_every_attempt_of_a_task_and_all_tasks(history):
    proc = cli(history['root'], 'logs', history['b']['run_id'], 'flaky')
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.index('==> flaky attempt 1') < out.index('attempt number 1 speaking') \
        < out.index('==> flaky attempt 2') < out.index('attempt number 2 speaking')
    proc = cli(history['root'], 'logs', history['b']['run_id'])
    assert proc.returncode == 0 and '==> measure attempt 1' in proc.stdout and 'measured 2.0' in proc.stdout
    proc = cli(history['root'], 'logs', history['b']['run_id'], 'constant')     # cached: ran nothing here
    assert proc.returncode == 0 and proc.stdout.strip() == 'constant: no log (cached: it ran no process here)'
    assert 'no such task' in one_line_error(cli(history['root'], 'logs', history['b']['run_id'], 'nope'))
    assert 'no such run' in one_line_error(cli(history['root'], 'logs', 'nope'))


# ---------------------------------------------------------------------------- compare

def test_compare_shows_parameters_cache_use_metric_deltas_and_changed_artifacts(history, tmp_path):
    a, b = history['a'], history['b']
    page = tmp_path / 'cmp.html'
    proc = cli(history['root'], 'runs', 'compare', a['run_id'], b['run_id'], '--html', str(page))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    params = out[out.index('parameters that differ'):out.index('TASK')]
    # the run records its pipeline parameters: those are what differ
    assert re.search(r'\n  scale +1(\.0)? -> 2(\.0)?\n', params) and 'counter_dir' in params
    assert 'constant' not in params                                     # no parameter of its own changed
    row = next(line for line in out.splitlines() if line.strip().startswith('constant '))
    assert row.split()[1:3] == ['ran', 'cached']
    assert re.search(r'B ran 2 \((measure, flaky|flaky, measure)\), 1 cached', out), out
    acc = next(line for line in out.splitlines() if 'quality.accuracy' in line)
    assert acc.split()[-3:] == ['0.6', '0.7', '+0.1']
    rows = next(line for line in out.splitlines() if 'quality.rows' in line)
    assert rows.split()[-1] == '='
    changed = out[out.index('artifacts whose content changed'):]
    digest = lambda r: task(r, 'measure')['outputs']['artifacts']['data'][0]['digest'][:12]  # noqa: E731
    assert f'measure data: {digest(a)} -> {digest(b)}' in changed
    assert 'constant' not in changed
    html = Page(page.read_text())
    assert html.find('tr', data_param='scale') and html.find('tr', data_task='constant')
    assert '+0.1' in page.read_text() and not html.find('script')
    # --last: the newest run that has an earlier run of its pipeline (the gated run has none)
    proc = cli(history['root'], 'runs', 'compare', '--last')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].split()[1] == a['run_id']
    assert proc.stdout.splitlines()[1].split()[1] == b['run_id']


# ---------------------------------------------------------------------------- live runs

HOLD_LEASE = r'''
import errno, fcntl, os, sys
path = sys.argv[1]
os.makedirs(os.path.dirname(path), exist_ok=True)
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError as e:
    if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
        print('held by the run itself', flush=True)
        sys.exit(0)
    raise
print('held', flush=True)
sys.stdin.read()          # until the test closes our stdin (or kills us)
'''


def hold_lease(root, run_id):
    """A real process holding the run's lease, as a live run does."""
    proc = subprocess.Popen([sys.executable, '-c', HOLD_LEASE, lease_path(str(root), run_id)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    first = proc.stdout.readline().strip()
    assert first in ('held', 'held by the run itself'), first
    return proc, first == 'held'


def test_run_is_live_while_a_process_holds_the_lease(tmp_path):
    root = tmp_path / 'root'
    assert not run_is_live(str(root), 'r1')                      # no lease file: not live
    holder, _ = hold_lease(root, 'r1')
    try:
        assert run_is_live(str(root), 'r1')
        assert run_is_live(str(root), 'r1')                      # looking did not take the lock away
    finally:
        holder.send_signal(signal.SIGKILL)                        # a crashed run releases it too
        holder.wait()
    assert os.path.exists(lease_path(str(root), 'r1')) and not run_is_live(str(root), 'r1')


def test_prune_never_removes_a_live_run(history, tmp_path):
    root = tmp_path / 'root'
    shutil.copytree(history['root'], root, symlinks=True)
    live = history['a']['run_id']                                 # the oldest: first to go otherwise
    holder, _ = hold_lease(root, live)
    try:
        proc = cli(root, 'runs', 'prune', '--keep', '0')
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == 'removed 2 run(s), kept 1 (1 still running, left alone)'
        assert os.listdir(root / 'runs') == [live]
        assert 'RUNNING' not in cli(root, 'runs', 'ls').stdout           # it has its result: finished
    finally:
        holder.stdin.close()
        holder.wait()
    proc = cli(root, 'runs', 'prune', '--keep', '0')
    assert proc.stdout.strip() == 'removed 1 run(s), kept 0' and os.listdir(root / 'runs') == []


class Lines:
    """A process's stdout lines, read in a thread (so a test can wait for one)."""

    def __init__(self, proc):
        self.proc, self.lines, self.queue = proc, [], queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.queue.put(line)
        self.queue.put(None)

    def wait_for(self, text, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.queue.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            if text in line:
                return
        raise AssertionError(f'no {text!r} in {"".join(self.lines)}')

    def rest(self, timeout=60):
        self.proc.wait(timeout=timeout)
        while (line := self.queue.get(timeout=timeout)) is not None:
            self.lines.append(line)
        return ''.join(self.lines)


def test_logs_follow_prints_as_the_task_writes_until_the_run_ends(tmp_path):
    root = tmp_path / 'root'
    (root / 'runs').mkdir(parents=True)
    gate = tmp_path / 'go'
    path = compile_pipeline(gated_pipeline, tmp_path / 'g.yaml')
    run = subprocess.Popen([sys.executable, '-m', 'localrunner.cli', 'run', path, '-p', f'gate={gate}',
                            '--root', str(root), '-q'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    holder = follower = None
    try:
        deadline = time.monotonic() + 120
        while not os.listdir(root / 'runs'):
            assert run.poll() is None and time.monotonic() < deadline, 'the run did not start'
            time.sleep(0.05)
        [run_id] = os.listdir(root / 'runs')
        holder, we_hold = hold_lease(root, run_id)
        # a run in progress keeps its result document current (state RUNNING)
        deadline = time.monotonic() + 60
        while not os.path.exists(root / 'runs' / run_id / 'result.json'):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        listed = cli(root, 'runs', 'ls').stdout.split()
        assert listed[0] == run_id and listed[3] == 'RUNNING', listed
        shown = cli(root, 'runs', 'show', run_id)
        assert shown.returncode == 0 and shown.stdout.split()[:2] == ['gated', 'RUNNING'], shown.stdout
        follower = subprocess.Popen([sys.executable, '-m', 'localrunner.cli', 'logs', run_id, 'gated', '-f',
                                     '--root', str(root)], stdout=subprocess.PIPE, text=True)
        lines = Lines(follower)
        lines.wait_for('first line from the gated task')   # printed while the task still waits
        assert run.poll() is None
        gate.write_text('')
        assert run.wait(timeout=120) == 0
        if we_hold:
            # the run's process is gone but its lease is held: the run counts as live, -f goes on
            assert follower.poll() is None
            holder.stdin.close()
        out = lines.rest()
        assert follower.returncode == 0
        assert out.index('first line from the gated task') < out.index('last line from the gated task')
    finally:
        for proc in (run, follower, holder):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


# ---------------------------------------------------------------------------- damaged history

def _damaged_root(history, tmp_path):
    """A copy of the history plus damaged runs next to the good ones."""
    root = tmp_path / 'root'
    shutil.copytree(history['root'], root, symlinks=True)
    runs = root / 'runs'
    good = runs / history['b']['run_id']
    damaged = {}
    for name in ('random', 'truncated', 'noresult', 'shape', 'deep', 'nolog'):
        shutil.copytree(good, runs / f'zz-{name}', symlinks=True)
        damaged[name] = f'zz-{name}'
    (runs / 'zz-random' / 'result.json').write_bytes(os.urandom(4096))
    text = (good / 'result.json').read_text()
    (runs / 'zz-truncated' / 'result.json').write_text(text[:len(text) // 2])
    os.remove(runs / 'zz-noresult' / 'result.json')
    data = json.loads(text)
    data['tasks'][0]['outputs'] = ['not', 'a', 'mapping']
    (runs / 'zz-shape' / 'result.json').write_text(json.dumps(data))
    (runs / 'zz-deep' / 'result.json').write_text('[' * 200000)
    data = json.loads(text)
    data['run_dir'] = str(runs / 'zz-nolog')
    for t in data['tasks']:
        t['logs'] = [p.replace(str(good), str(runs / 'zz-nolog')) for p in t.get('logs', [])]
    (runs / 'zz-nolog' / 'result.json').write_text(json.dumps(data))
    os.remove(task(data, 'measure')['logs'][0])
    # executor inputs with the wrong shape, or not JSON at all
    (runs / 'zz-nolog' / 'tasks' / 'measure' / 'executor_input.json').write_text(json.dumps(
        {'inputs': {'parameterValues': 'nope', 'artifacts': {'x': {'artifacts': [{'uri': ['a', 'list']}, 7]}}}}))
    (runs / 'zz-nolog' / 'tasks' / 'flaky' / 'executor_input.json').write_bytes(os.urandom(512))
    return root, damaged


def test_damaged_history_is_one_line_never_a_traceback(history, tmp_path):
    root, d = _damaged_root(history, tmp_path)
    proc = cli(root, 'runs', 'ls')
    assert proc.returncode == 0 and 'Traceback' not in proc.stderr and not proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.strip().splitlines()}
    assert len(lines) == 3 + len(d)
    assert 'UNREADABLE  result.json: not UTF-8 text' in lines['zz-random']
    assert 'UNREADABLE  result.json: not valid JSON' in lines['zz-truncated']
    assert 'INCOMPLETE  no result.json' in lines['zz-noresult']
    assert 'UNREADABLE  result.json: tasks[0].outputs is list, expected dict' in lines['zz-shape']
    assert 'UNREADABLE  result.json: nested too deeply' in lines['zz-deep']
    assert 'SUCCEEDED' in lines['zz-nolog']
    for name in ('random', 'truncated', 'noresult', 'shape', 'deep'):
        for args in (('runs', 'show', d[name]), ('runs', 'show', d[name], '--json'), ('runs', 'report', d[name]),
                     ('runs', 'compare', history['a']['run_id'], d[name])):
            line = one_line_error(cli(root, *args))
            assert d[name] in line and ('result.json' in line), line
    # the logs of a run whose record is damaged are still on disk, and shown
    proc = cli(root, 'logs', d['truncated'], 'measure')
    assert proc.returncode == 0 and 'measured 2.0' in proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1 and 'not valid JSON' in proc.stderr
    # a log that went missing: said in one line, the rest still shown
    proc = cli(root, 'logs', d['nolog'])
    assert proc.returncode == 0 and '(log missing: ' in proc.stdout and 'attempt number 2 speaking' in proc.stdout
    proc = cli(root, 'runs', 'show', d['nolog'])
    assert proc.returncode == 0 and '(missing)' in proc.stdout
    proc = cli(root, 'runs', 'report', d['nolog'], '-o', str(tmp_path / 'r.html'))
    assert proc.returncode == 0 and 'the log is missing' in (tmp_path / 'r.html').read_text()
    proc = cli(root, 'runs', 'compare', '--last')
    assert proc.returncode == 0 and 'Traceback' not in proc.stderr
    proc = cli(root, 'runs', 'compare', history['b']['run_id'], d['nolog'])
    # its executor inputs can't be read; the run's own parameters are what compare uses
    assert proc.returncode == 0 and 'parameters that differ\n  (none)' in proc.stdout
    proc = cli(root, 'runs', 'prune', '--keep', '2')
    assert proc.returncode == 0 and proc.stdout.strip() == f'removed {len(d) + 1} run(s), kept 2'
