"""A run's life and death, for real: the real CLI as a process, real signals, kill -9 of the
runner, background children holding a task's output, environment builds stopped midway.

Every test gives its tasks a marker of its own (in their command line and environment) and
asserts afterwards that no process carrying it is left on this machine (a scan of /proc), and,
on Docker, that no container of the run is left (by label)."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest
from kfp import dsl

from tests.helpers import compile_pipeline, run_cli, states, task

IMAGE = 'python:3.11-slim'          # the test base image stands in for it on Docker (--image-map)
# the marker ($0 of `sh -c`) goes into the environment of everything the shell starts
MARK = 'export LR_MARKER="$0";'
DOCKER = ['--backend', 'docker', '--image-map', f'{IMAGE}=localrunner-test-base:bookworm']


# ---------------------------------------------------------------- helpers

def marked(marker: str) -> list[int]:
    """Live processes whose command line or environment holds MARKER (zombies have neither)."""
    found = []
    want = marker.encode()
    for name in os.listdir('/proc'):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        for part in ('cmdline', 'environ'):
            try:
                with open(f'/proc/{name}/{part}', 'rb') as f:
                    if want in f.read():
                        found.append(int(name))
                        break
            except OSError:
                pass
    return found


def wait_gone(marker: str, timeout: float = 20.0) -> list[int]:
    """[] once nothing carries MARKER; what is left after TIMEOUT otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        left = marked(marker)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


class Cli:
    """`localrunner ARGS` as a real process; its output is collected line by line."""

    def __init__(self, *args: str, env: dict | None = None):
        self.proc = subprocess.Popen([sys.executable, '-m', 'localrunner.cli', *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, **(env or {})})
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip('\n'))

    @property
    def output(self) -> str:
        return '\n'.join(self.lines)

    def wait_for(self, text: str, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None, f'exited ({self.proc.returncode}) before {text!r}:\n{self.output}'
            assert time.monotonic() < deadline, f'no {text!r} after {timeout}s:\n{self.output}'
            time.sleep(0.05)

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def finish(self, timeout: float = 60.0) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f'the runner did not end within {timeout}s:\n{self.output}')
        self._reader.join(10)
        return rc


def run_dir(root, run_id: str) -> str:
    return os.path.join(str(root), 'runs', run_id)


def load(path) -> dict:
    with open(path) as f:
        return json.load(f)


def only_run(root) -> str:
    [run_id] = os.listdir(os.path.join(str(root), 'runs'))
    return run_id


def leftovers(root, run_id: str) -> list[str]:
    """What marks a run as in progress, still on disk."""
    paths = [os.path.join(run_dir(root, run_id), 'runner.json'),
             os.path.join(str(root), 'cache', 'leases', run_id + '.lease')]
    return [p for p in paths if os.path.exists(p)]


@pytest.fixture
def marker():
    return f'lr-lifecycle-{uuid.uuid4().hex}'


# ---------------------------------------------------------------- pipelines

@dsl.container_component
def quick(marker: str):
    return dsl.ContainerSpec(image=IMAGE, command=['sh', '-c', 'echo "quick $0"', marker])


@dsl.container_component
def sleeper(marker: str, name: str):
    # sh stays the parent of a background sleep: the whole process group must be stopped
    # TMPDIR: the attempt's private temp folder (outside the run root), shown for the kill -9 test
    return dsl.ContainerSpec(image=IMAGE, command=['sh', '-c', f'{MARK} echo "started $1 tmp=$TMPDIR"; '
                                                   'sleep 600 & wait', marker, name])


@dsl.container_component
def stubborn(marker: str):
    # ignores SIGTERM, and so does its child: only SIGKILL ends it
    return dsl.ContainerSpec(image=IMAGE, command=['sh', '-c', f'{MARK} trap "" TERM; echo "stubborn $0"; '
                                                   'sleep 600 & wait; sleep 600', marker])


@dsl.container_component
def failing(marker: str, folder: str):
    return dsl.ContainerSpec(image=IMAGE, command=['sh', '-c', 'echo "failing $0"; touch "$1/failed"; exit 3',
                                                   marker, folder])


@dsl.container_component
def gate(marker: str, folder: str):
    # holds a slot until `failing` has failed once (and so sleeps in its retry backoff)
    return dsl.ContainerSpec(image=IMAGE, command=['sh', '-c', 'while [ ! -e "$1/failed" ]; do sleep 0.05; done',
                                                   marker, folder])


@dsl.pipeline(name='lifecycle-signal')
def signal_pipeline(marker: str):
    first = quick(marker=marker).set_caching_options(False)
    a = sleeper(marker=marker, name='a').after(first)
    sleeper(marker=marker, name='b').after(first)
    quick(marker=marker).after(a)          # waits for a: never starts


@dsl.pipeline(name='lifecycle-stubborn')
def stubborn_pipeline(marker: str):
    stubborn(marker=marker)


@dsl.pipeline(name='lifecycle-waiting')
def waiting_pipeline(marker: str, folder: str):
    failing(marker=marker, folder=folder).set_retry(num_retries=3, backoff_duration='600s', backoff_factor=1.0)
    opened = gate(marker=marker, folder=folder)
    sleeper(marker=marker, name='one').after(opened)
    sleeper(marker=marker, name='two').after(opened)


def _compile(fn, tmp_path) -> str:
    return compile_pipeline(fn, tmp_path / f'{fn.name}.yaml')


# ---------------------------------------------------------------- signals

SIGNALS = [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]


def _signal_run(tmp_path, marker, sig, code, extra=()):
    root, result_json = tmp_path / 'root', tmp_path / 'result.json'
    cli = Cli('run', _compile(signal_pipeline, tmp_path), '--root', str(root), '--result-json', str(result_json),
              '-v', '-p', f'marker={marker}', *extra)
    cli.wait_for('started a')
    cli.wait_for('started b')
    cli.send(sig)
    rc = cli.finish()
    assert rc == code, cli.output
    assert f'{sig.name}: canceling the run' in cli.output
    result = load(result_json)
    on_disk = load(os.path.join(run_dir(root, result['run_id']), 'result.json'))
    for doc in (result, on_disk):
        assert doc['state'] == 'CANCELED' and doc['signal'] == sig.name
        assert states(doc) == {'quick': 'SUCCEEDED', 'sleeper': 'CANCELED', 'sleeper-2': 'CANCELED',
                               'quick-2': 'CANCELED'}
    assert wait_gone(marker) == [], 'a task process outlived the run'
    assert leftovers(root, result['run_id']) == []
    return result


@pytest.mark.parametrize('sig, code', SIGNALS, ids=[s.name for s, _ in SIGNALS])
def test_a_signal_cancels_the_run_and_stops_every_task(tmp_path, marker, sig, code):
    _signal_run(tmp_path, marker, sig, code)


def test_a_second_signal_kills_at_once(tmp_path, marker):
    """The task ignores SIGTERM and the grace is 10 minutes: only the second Ctrl-C's SIGKILL
    can end the run within the test's minute."""
    root, result_json = tmp_path / 'root', tmp_path / 'result.json'
    cli = Cli('run', _compile(stubborn_pipeline, tmp_path), '--root', str(root), '--result-json',
              str(result_json), '-v', '-p', f'marker={marker}', '--stop-grace', '600')
    cli.wait_for(f'stubborn {marker}')
    cli.send(signal.SIGINT)
    cli.wait_for('SIGINT: canceling the run')
    time.sleep(1.0)
    assert marked(marker), 'SIGTERM is ignored: the task must still be in its grace period'
    assert cli.proc.poll() is None
    cli.send(signal.SIGINT)
    assert cli.finish() == 130, cli.output
    assert 'SIGINT again: killing everything now' in cli.output
    result = load(result_json)
    assert result['state'] == 'CANCELED' and states(result) == {'stubborn': 'CANCELED'}
    assert wait_gone(marker) == []


def test_tasks_waiting_for_a_slot_or_a_retry_end_canceled_at_once(tmp_path, marker):
    """--max-parallel 2: `failing` sleeps in a 600 s retry backoff holding one slot; once it
    has failed, `gate` ends and frees the other: one sleeper runs there, the other waits for a
    slot. A SIGTERM ends all three now."""
    root, result_json = tmp_path / 'root', tmp_path / 'result.json'
    cli = Cli('run', _compile(waiting_pipeline, tmp_path), '--root', str(root), '--result-json',
              str(result_json), '-v', '-p', f'marker={marker}', '-p', f'folder={tmp_path}', '--max-parallel', '2')
    cli.wait_for('retry   failing after attempt 1')
    cli.wait_for('started ')
    cli.send(signal.SIGTERM)
    assert cli.finish() == 143, cli.output
    result = load(result_json)
    assert states(result) == {'failing': 'CANCELED', 'gate': 'SUCCEEDED', 'sleeper': 'CANCELED',
                              'sleeper-2': 'CANCELED'}
    assert task(result, 'failing')['attempts'] == 1
    assert sorted(task(result, n)['attempts'] for n in ('sleeper', 'sleeper-2')) == [0, 1], \
        'one sleeper ran, the other never got a slot'
    assert wait_gone(marker) == []


# ---------------------------------------------------------------- kill -9 of the runner

def _wait_checkpoint(root, want: dict, cli: Cli, timeout: float = 60.0) -> dict:
    """The run's result.json as saved while it runs, once it shows WANT's task states."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            doc = load(os.path.join(run_dir(root, only_run(root)), 'result.json'))
            if doc['state'] == 'RUNNING' and all(states(doc).get(k) == v for k, v in want.items()):
                return doc
        except (OSError, ValueError, KeyError):
            pass
        assert cli.proc.poll() is None and time.monotonic() < deadline, cli.output
        time.sleep(0.05)


def test_kill_9_of_the_runner_kills_its_tasks_and_the_next_command_records_it(tmp_path, marker):
    root = tmp_path / 'root'
    cli = Cli('run', _compile(signal_pipeline, tmp_path), '--root', str(root), '-v', '-p', f'marker={marker}')
    cli.wait_for('started a')
    cli.wait_for('started b')
    _wait_checkpoint(root, {'quick': 'SUCCEEDED', 'sleeper': 'RUNNING', 'sleeper-2': 'RUNNING'}, cli)
    run_id = only_run(root)

    # a live run is left alone by another command
    listing = run_cli('runs', 'ls', '--root', str(root))
    assert listing.returncode == 0 and 'RUNNING' in listing.stdout, listing.stdout + listing.stderr
    assert load(os.path.join(run_dir(root, run_id), 'result.json'))['state'] == 'RUNNING'

    temps = re.findall(r'^.*started [ab] tmp=(\S+)', cli.output, re.M)
    assert len(temps) == 2 and all(os.path.isdir(t) for t in temps), cli.output
    cli.send(signal.SIGKILL)
    cli.finish()
    assert wait_gone(marker) == [], 'the tasks of a killed runner must die with it'
    deadline = time.monotonic() + 20
    while any(os.path.exists(t) for t in temps) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(os.path.exists(t) for t in temps), 'their private temp folders (outside the root) go too'
    # nobody has looked at the root since: the run still says RUNNING
    assert load(os.path.join(run_dir(root, run_id), 'result.json'))['state'] == 'RUNNING'
    assert len(leftovers(root, run_id)) == 2

    listing = run_cli('runs', 'ls', '--root', str(root))
    assert listing.returncode == 0, listing.stderr
    assert f'run {run_id}: its runner' in listing.stderr and 'recorded CANCELED' in listing.stderr
    assert 'CANCELED' in listing.stdout
    doc = load(os.path.join(run_dir(root, run_id), 'result.json'))
    assert doc['state'] == 'CANCELED'
    assert states(doc) == {'quick': 'SUCCEEDED', 'sleeper': 'CANCELED', 'sleeper-2': 'CANCELED'}
    assert any('ended without finishing' in w for w in doc['warnings'])
    assert leftovers(root, run_id) == []
    again = run_cli('runs', 'ls', '--root', str(root))       # once only
    assert 'its runner' not in again.stderr


@dsl.pipeline(name='lifecycle-sleepers')
def sleepers_pipeline(marker: str):
    sleeper(marker=marker, name='a')
    sleeper(marker=marker, name='b')


def test_kill_9_before_any_task_ended_still_lists_the_running_ones(tmp_path, marker):
    """A task's start is saved as its end is: killed before any task ended, the run's record
    lists both running tasks, and recovery records each CANCELED (it listed none)."""
    root = tmp_path / 'root'
    cli = Cli('run', _compile(sleepers_pipeline, tmp_path), '--root', str(root), '-v', '-p', f'marker={marker}')
    cli.wait_for('started a')
    cli.wait_for('started b')
    _wait_checkpoint(root, {'sleeper': 'RUNNING', 'sleeper-2': 'RUNNING'}, cli)
    run_id = only_run(root)
    cli.send(signal.SIGKILL)
    cli.finish()
    assert wait_gone(marker) == []
    listing = run_cli('runs', 'ls', '--root', str(root))
    assert 'recorded CANCELED (2 task(s) were still running)' in listing.stderr, listing.stderr
    doc = load(os.path.join(run_dir(root, run_id), 'result.json'))
    assert doc['state'] == 'CANCELED' and states(doc) == {'sleeper': 'CANCELED', 'sleeper-2': 'CANCELED'}


# ---------------------------------------------------------------- background children

@dsl.container_component
def leaves_a_child(marker: str):
    # the background sleep keeps the task's stdout open for 1000 s
    return dsl.ContainerSpec(image=IMAGE, command=['sh', '-c', f'{MARK} sleep 1000 & echo "done $0"', marker])


@dsl.container_component
def leaves_a_daemon(marker: str):
    # setsid: the child leaves the task's process group, and still holds its stdout
    return dsl.ContainerSpec(image=IMAGE, command=['sh', '-c', f'{MARK} setsid sleep 1000 & echo "done $0"', marker])


@dsl.container_component
def closes_its_output(marker: str, folder: str):
    # no output any more, but not done: it must not be taken for finished (nor killed)
    return dsl.ContainerSpec(image=IMAGE, command=['sh', '-c', f'{MARK} exec >/dev/null 2>&1; sleep 2; '
                                                   'touch "$1/finished"', marker, folder])


@dsl.pipeline(name='lifecycle-children')
def children_pipeline(marker: str, folder: str):
    leaves_a_child(marker=marker)
    leaves_a_daemon(marker=marker)
    closes_its_output(marker=marker, folder=folder)


@dsl.container_component
def times_out(marker: str):
    return dsl.ContainerSpec(image=IMAGE, command=['sh', '-c', f'{MARK} sleep 1000 & echo "waiting $0"; wait', marker])


@dsl.pipeline(name='lifecycle-timeout')
def timeout_pipeline(marker: str):
    from kfp import kubernetes
    t = times_out(marker=marker)
    kubernetes.set_timeout(t, 2)


def test_a_background_child_holding_stdout_does_not_block_the_task(tmp_path, marker):
    root, result_json = tmp_path / 'root', tmp_path / 'result.json'
    cli = Cli('run', _compile(children_pipeline, tmp_path), '--root', str(root), '--result-json',
              str(result_json), '-p', f'marker={marker}', '-p', f'folder={tmp_path}')
    assert cli.finish(120) == 0, cli.output
    result = load(result_json)
    assert states(result) == {'leaves-a-child': 'SUCCEEDED', 'leaves-a-daemon': 'SUCCEEDED',
                              'closes-its-output': 'SUCCEEDED'}
    assert (tmp_path / 'finished').exists()
    for name in ('leaves-a-child', 'leaves-a-daemon'):
        with open(task(result, name)['logs'][-1]) as f:
            assert f'done {marker}' in f.read()
    assert wait_gone(marker) == [], 'the children must not outlive the run'


def test_a_timeout_stops_the_whole_process_group(tmp_path, marker):
    root, result_json = tmp_path / 'root', tmp_path / 'result.json'
    cli = Cli('run', _compile(timeout_pipeline, tmp_path), '--root', str(root), '--result-json',
              str(result_json), '-p', f'marker={marker}')
    assert cli.finish(120) == 1, cli.output
    t = task(load(result_json), 'times-out')
    assert t['state'] == 'FAILED' and 'timed out' in t['error']
    assert wait_gone(marker) == []


# ---------------------------------------------------------------- environment builds

class HangingIndex:
    """A package index that accepts connections and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self):
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def hanging_index():
    index = HangingIndex()
    yield index
    index.close()


def _build_pipeline(url: str, base_image: str):
    @dsl.component(base_image=base_image, packages_to_install=['lr-never-there'], pip_index_urls=[url])
    def needs_a_package() -> str:
        return 'never'

    @dsl.pipeline(name='lifecycle-build')
    def build_pipeline():
        needs_a_package()
    return build_pipeline


def test_ctrl_c_stops_a_venv_build(tmp_path, marker, hanging_index):
    url = f'http://127.0.0.1:{hanging_index.port}/{marker}/simple'
    path = compile_pipeline(_build_pipeline(url, IMAGE), tmp_path / 'build.yaml')
    root, result_json = tmp_path / 'root', tmp_path / 'result.json'
    cli = Cli('run', path, '--root', str(root), '--result-json', str(result_json),
              env={'LOCALRUNNER_ENV_DIR': str(tmp_path / 'envs')})
    cli.wait_for('building environment')
    deadline = time.monotonic() + 60
    while not marked(marker):          # the installer is trying our index
        assert time.monotonic() < deadline, cli.output
        time.sleep(0.1)
    cli.send(signal.SIGINT)
    assert cli.finish() == 130, cli.output
    result = load(result_json)
    assert result['state'] == 'CANCELED' and states(result) == {'needs-a-package': 'CANCELED'}
    assert wait_gone(marker) == [], 'the installer must be stopped'


# ---------------------------------------------------------------- the Python API

def test_the_python_api_cancels_then_hands_the_signal_on(tmp_path, marker):
    path = _compile(signal_pipeline, tmp_path)
    root = tmp_path / 'root'
    script = textwrap.dedent(f'''
        from localrunner.api import run_pipeline
        try:
            run_pipeline({path!r}, {{'marker': {marker!r}}}, root={str(root)!r})
        except KeyboardInterrupt:
            print('KeyboardInterrupt after the run', flush=True)
            raise SystemExit(7)
        print('returned', flush=True)
    ''')
    proc = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.monotonic() + 180
    while len([p for p in marked(marker) if p != proc.pid]) < 2:   # both sleepers started
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 7 and 'KeyboardInterrupt after the run' in out, out
    doc = load(os.path.join(run_dir(root, only_run(root)), 'result.json'))
    assert doc['state'] == 'CANCELED' and doc['signal'] == 'SIGINT'
    assert wait_gone(marker) == []


# ---------------------------------------------------------------- Docker

@pytest.fixture(scope='module')
def docker_client():
    from tests.support import require_base_image, require_docker
    client = require_docker()
    require_base_image()
    return client


def _containers(client, run_id: str) -> list:
    return client.containers.list(all=True, ignore_removed=True, filters={'label': f'localrunner.run={run_id}'})


@pytest.mark.docker
@pytest.mark.parametrize('sig, code', SIGNALS[:2], ids=[s.name for s, _ in SIGNALS[:2]])
def test_docker_a_signal_cancels_the_run_and_removes_its_containers(docker_client, tmp_path, marker, sig, code):
    result = _signal_run(tmp_path, marker, sig, code, extra=DOCKER)
    assert _containers(docker_client, result['run_id']) == []


@pytest.mark.docker
def test_docker_a_second_signal_kills_at_once(docker_client, tmp_path, marker):
    root, result_json = tmp_path / 'root', tmp_path / 'result.json'
    cli = Cli('run', _compile(stubborn_pipeline, tmp_path), '--root', str(root), '--result-json',
              str(result_json), '-v', '-p', f'marker={marker}', '--stop-grace', '600', *DOCKER)
    cli.wait_for(f'stubborn {marker}')
    cli.send(signal.SIGINT)
    cli.wait_for('SIGINT: canceling the run')
    time.sleep(1.0)
    assert cli.proc.poll() is None, 'the container ignores SIGTERM: the run waits out its grace'
    cli.send(signal.SIGINT)
    assert cli.finish() == 130, cli.output
    result = load(result_json)
    assert result['state'] == 'CANCELED'
    assert _containers(docker_client, result['run_id']) == []
    assert wait_gone(marker) == []


@pytest.mark.docker
def test_docker_kill_9_leaves_containers_that_the_next_command_removes(docker_client, tmp_path, marker):
    root = tmp_path / 'root'
    cli = Cli('run', _compile(signal_pipeline, tmp_path), '--root', str(root), '-v', '-p', f'marker={marker}',
              *DOCKER)
    cli.wait_for('started a')
    cli.wait_for('started b')
    _wait_checkpoint(root, {'quick': 'SUCCEEDED'}, cli)
    run_id = only_run(root)
    cli.send(signal.SIGKILL)
    cli.finish()
    running = _containers(docker_client, run_id)
    assert len(running) == 2, 'the engine runs containers on: only the next command can remove them'
    for c in running:
        labels = c.labels
        assert labels['localrunner.runner.pid'] == str(cli.proc.pid)
        assert labels['localrunner.runner.boot'] == open('/proc/sys/kernel/random/boot_id').read().strip()

    listing = run_cli('runs', 'ls', '--root', str(root))
    assert listing.returncode == 0, listing.stderr
    assert 'removed 2 container(s)' in listing.stderr, listing.stderr
    assert _containers(docker_client, run_id) == []
    doc = load(os.path.join(run_dir(root, run_id), 'result.json'))
    assert doc['state'] == 'CANCELED' and states(doc)['quick'] == 'SUCCEEDED'
    assert {states(doc)[n] for n in ('sleeper', 'sleeper-2')} == {'CANCELED'}
    assert wait_gone(marker) == []


@pytest.mark.docker
@pytest.mark.slow
def test_docker_ctrl_c_stops_an_image_build(docker_client, tmp_path, marker, hanging_index):
    url = f'http://127.0.0.1:{hanging_index.port}/{marker}/simple'
    path = compile_pipeline(_build_pipeline(url, IMAGE), tmp_path / 'build.yaml')
    root, result_json = tmp_path / 'root', tmp_path / 'result.json'
    cli = Cli('run', path, '--root', str(root), '--result-json', str(result_json), *DOCKER)
    cli.wait_for('building environment image')
    deadline = time.monotonic() + 120
    while not marked(marker):          # pip in the build container is trying our index
        assert time.monotonic() < deadline, cli.output
        time.sleep(0.1)
    cli.send(signal.SIGINT)
    assert cli.finish() == 130, cli.output
    result = load(result_json)
    assert result['state'] == 'CANCELED' and states(result) == {'needs-a-package': 'CANCELED'}
    assert _containers(docker_client, result['run_id']) == []
    assert wait_gone(marker) == []


# ---------------------------------------------------------------- the saved state, recovery by hand

class _Final:
    """A finished run's result document, as RunFinished carries it."""

    def to_json(self):
        return {'state': 'SUCCEEDED', 'tasks': []}

    def final_text(self):
        return json.dumps(self.to_json())


def test_the_saved_state_is_rate_limited_and_the_final_write_always_lands(tmp_path):
    from localrunner.engine import events as ev
    from localrunner.engine.assembly import HistoryWriter
    path = tmp_path / 'result.json'
    taken = []

    def snapshot():
        taken.append(1)
        return {'state': 'RUNNING', 'snapshot': len(taken)}

    writer = HistoryWriter(str(path), snapshot=snapshot, interval=3600)
    writer(ev.RunStarted(run_id='r', pipeline='p', run_dir=str(tmp_path), total=1000))
    assert load(path) == {'state': 'RUNNING', 'snapshot': 1}
    for i in range(1000):
        writer(ev.TaskSucceeded(task=f't{i}', duration_s=0.0))
    assert writer.writes == 1, '1000 endings within the interval: no rewrite yet'
    writer(ev.RunFinished(result=_Final()))
    assert writer.writes == 2 and load(path) == {'state': 'SUCCEEDED', 'tasks': []}

    # a change after a write is saved once the interval has passed, without another event
    path2 = tmp_path / 'result2.json'
    taken.clear()
    writer = HistoryWriter(str(path2), snapshot=snapshot, interval=0.2)
    writer(ev.RunStarted(run_id='r', pipeline='p', run_dir=str(tmp_path), total=1))
    writer(ev.TaskFailed(task='t', error='x'))
    deadline = time.monotonic() + 30
    while load(path2)['snapshot'] != 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    writer(ev.RunFinished(result=_Final()))
    assert load(path2)['state'] == 'SUCCEEDED'


def _planted_run(runs, name, runner, result):
    folder = runs / name
    folder.mkdir(parents=True)
    if runner is not None:
        (folder / 'runner.json').write_text(runner if isinstance(runner, str) else json.dumps(runner))
    if result is not None:
        (folder / 'result.json').write_text(result if isinstance(result, str) else json.dumps(result))
    return folder


def _running_doc(run_id):
    return {'run_id': run_id, 'state': 'RUNNING', 'started': time.time() - 5, 'finished': None,
            'tasks': [{'name': 'done', 'state': 'SUCCEEDED', 'type': 'container'},
                      {'name': 'busy', 'state': 'RUNNING', 'type': 'container'}], 'warnings': []}


def test_recovery_survives_damaged_files_and_never_touches_a_live_run_or_a_path_outside(tmp_path):
    root = tmp_path / 'root'
    runs = root / 'runs'
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True)
    gone = {'pid': int(dead.stdout), 'start': 1, 'boot': open('/proc/sys/kernel/random/boot_id').read().strip(),
            'pidns': os.readlink('/proc/self/ns/pid')}
    _planted_run(runs, 'damaged-runner', '{not json', _running_doc('damaged-runner'))
    _planted_run(runs, 'damaged-result', {'runner': gone, 'containers': False}, '\x00garbage')
    outside = tmp_path / 'outside'
    outside.mkdir()
    (outside / 'runner.json').write_text(json.dumps({'runner': gone, 'containers': False}))
    (outside / 'result.json').write_text(json.dumps(_running_doc('escape')))
    os.symlink(outside, runs / 'escape')
    # a live run: another process holds its lease
    _planted_run(runs, 'live', {'runner': gone, 'containers': False}, _running_doc('live'))
    leases = root / 'cache' / 'leases'
    leases.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, '-c', textwrap.dedent(f'''
        import fcntl, sys, time
        f = open({str(leases / 'live.lease')!r}, 'w')
        fcntl.flock(f, fcntl.LOCK_EX)
        print('held', flush=True)
        time.sleep(600)
    ''')], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        listing = run_cli('runs', 'ls', '--root', str(root))
    finally:
        holder.kill()
        holder.wait()
    assert listing.returncode == 0 and 'Traceback' not in listing.stderr, listing.stderr
    doc = load(runs / 'damaged-runner' / 'result.json')
    assert doc['state'] == 'CANCELED' and [t['state'] for t in doc['tasks']] == ['SUCCEEDED', 'CANCELED']
    assert not (runs / 'damaged-runner' / 'runner.json').exists()
    assert (runs / 'damaged-result' / 'result.json').read_text() == '\x00garbage'
    assert not (runs / 'damaged-result' / 'runner.json').exists()
    assert load(outside / 'result.json')['state'] == 'RUNNING', 'a run folder may not lead outside the root'
    assert (outside / 'runner.json').exists()
    assert load(runs / 'live' / 'result.json')['state'] == 'RUNNING', 'its lease is held: it is alive'
    assert (runs / 'live' / 'runner.json').exists()
    # the holder is gone now: the next command records that run too
    again = run_cli('runs', 'ls', '--root', str(root))
    assert 'run live: its runner' in again.stderr, again.stderr
    assert load(runs / 'live' / 'result.json')['state'] == 'CANCELED'
