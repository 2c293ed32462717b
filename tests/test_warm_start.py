"""Warm start (issue 15, item 3): lightweight tasks forked from a per-environment zygote
(localrunner/backends/warm.py) behave exactly as exec'd ones (--no-warm-start).

Everything here runs real processes: the CLI or the engine in this process, the zygote, its
forked tasks; crashes, kill -9, SIGINT/SIGTERM and timeouts are real signals, and "no process
left" is checked in /proc.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from kfp import dsl, kubernetes

from localrunner.api import run_pipeline
from localrunner.backends import warm, zygotes
from localrunner.backends.base import BackendOptions
from localrunner.backends.subprocess_backend import SubprocessBackend
from localrunner.environments.python_env import lift_prologue
from localrunner.spec import load_pipeline
from tests import control_flow_pipelines as cf
from tests.helpers import compile_pipeline, run_pipeline_file, task
from tests.test_engine_run import contract_pipeline, failing_pipeline, placeholder_pipeline

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZYGOTE = 'warm_zygote.py'

pytestmark = pytest.mark.skipif(not zygotes.supported(), reason='warm start needs Linux with pidfds')


# ---------------------------------------------------------------------------- components

@dsl.component
def whoami(tag: str) -> str:
    """Where this task runs: its pid, its parent (the reaper when forked), the zygote above
    that, and the parent's command line."""
    import json
    import os
    parent = os.getppid()
    with open(f'/proc/{parent}/stat') as f:
        grandparent = int(f.read().rsplit(')', 1)[1].split()[1])
    with open(f'/proc/{parent}/cmdline', 'rb') as f:
        parent_cmd = f.read().replace(b'\0', b' ').decode()
    return json.dumps({'tag': tag, 'pid': os.getpid(), 'parent': parent, 'grandparent': grandparent,
                       'parent_cmd': parent_cmd, 'pgid': os.getpgid(0), 'sid': os.getsid(0)})


@dsl.component
def crash(kind: str) -> str:
    import ctypes
    import os
    import sys
    print(f'about to {kind}', flush=True)
    if kind == 'segfault':
        ctypes.string_at(0)
    if kind == 'os_exit_7':
        os._exit(7)
    if kind == 'sys_exit_3':
        sys.exit(3)
    if kind == 'exception':
        raise ValueError('boom')
    return kind


@dsl.pipeline(name='crashes')
def crash_pipeline():
    before = whoami(tag='before')
    crashes = [crash(kind=k).after(before).set_display_name(k)
               for k in ('segfault', 'os_exit_7', 'sys_exit_3', 'exception')]
    whoami(tag='after').after(*crashes).ignore_upstream_failure()


@dsl.pipeline(name='crashes-only')
def crash_only_pipeline():
    for kind in ('segfault', 'os_exit_7', 'sys_exit_3', 'exception', 'none'):
        crash(kind=kind)


@dsl.component
def hold(folder: str, tag: str, ignore_term: bool = False) -> str:
    """Records where it runs (and starts a child in its process group), then waits for
    <folder>/go (two minutes at most). With ignore_term it notes SIGTERM and carries on."""
    import json
    import os
    import signal
    import subprocess
    import time
    if ignore_term:
        def noted(signum, frame):
            with open(os.path.join(folder, tag + '.term'), 'w') as f:
                f.write('SIGTERM')
        signal.signal(signal.SIGTERM, noted)
    child = subprocess.Popen(['sleep', '300'])
    parent = os.getppid()
    with open(f'/proc/{parent}/stat') as f:
        zygote = int(f.read().rsplit(')', 1)[1].split()[1])
    info = {'pid': os.getpid(), 'child': child.pid, 'reaper': parent, 'zygote': zygote}
    with open(os.path.join(folder, tag + '.tmp'), 'w') as f:
        json.dump(info, f)
    os.rename(os.path.join(folder, tag + '.tmp'), os.path.join(folder, tag + '.json'))
    deadline = time.time() + 120
    while not os.path.exists(os.path.join(folder, 'go')) and time.time() < deadline:
        time.sleep(0.05)
    child.kill()
    return tag


@dsl.pipeline(name='held')
def held_pipeline(folder: str):
    first = hold(folder=folder, tag='first')
    whoami(tag='next').after(first)


@dsl.pipeline(name='two-held')
def two_held_pipeline(folder: str):
    hold(folder=folder, tag='a')
    hold(folder=folder, tag='b')


@dsl.pipeline(name='timeouts')
def timeout_pipeline(folder: str):
    plain = hold(folder=folder, tag='plain')
    kubernetes.set_timeout(plain, 2)
    stubborn = hold(folder=folder, tag='stubborn', ignore_term=True)
    kubernetes.set_timeout(stubborn, 2)


@dsl.component
def introspect(out: dsl.Output[dsl.Artifact]) -> str:
    """Everything a task can see of how it was started."""
    import json
    import os
    import re
    import resource
    import signal
    import sys
    tmp = os.environ['TMPDIR']

    def norm(value):      # the per-attempt folder, and mktemp's name for the program's folder
        return re.sub(r'/tmp\.[A-Za-z0-9]{10}', '/tmp.X', value.replace(tmp, '<TMPDIR>'))
    umask = os.umask(0)
    os.umask(umask)
    seen = {
        'env': sorted((k, norm(v)) for k, v in os.environ.items()),
        'cwd': os.getcwd(), 'argv': [norm(a) for a in sys.argv], 'orig_argv': [norm(a) for a in sys.orig_argv],
        'path': [norm(p) for p in sys.path], 'executable': sys.executable, 'flags': repr(sys.flags),
        'umask': umask, 'rlimits': {n: resource.getrlimit(getattr(resource, n))
                                    for n in dir(resource) if n.startswith('RLIMIT_')},
        'signals': {s.name: repr(signal.getsignal(s)) for s in signal.Signals
                    if s not in (signal.SIGKILL, signal.SIGSTOP)},
        'blocked': sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
        # (exec'd, sh leads that session and group; forked, the task itself does)
        'own_session': os.getsid(0) == os.getpgid(0),
        'fds': sorted(os.listdir('/proc/self/fd')),
        'stdio': [(s.name, s.encoding, s.errors, s.line_buffering, s.write_through, s.seekable(), s.isatty())
                  for s in (sys.stdout, sys.stderr)],
        'stdin': (sys.stdin.name, os.path.realpath('/proc/self/fd/0')),
        'main': sorted(vars(sys.modules['__main__'])),
        'file': norm(__file__),
    }
    with open(out.path, 'w') as f:
        json.dump(seen, f, indent=1, sort_keys=True)
    return json.dumps(seen, sort_keys=True)


@dsl.pipeline(name='introspection')
def introspect_pipeline():
    task = introspect()
    task.set_env_variable('COMPONENT_VAR', 'from the IR')
    task.set_env_variable('PWD', '/nonexistent/pwd')     # dash replaces a PWD that is not the cwd


@dsl.component
def noisy_start() -> str:
    return 'ran'


@dsl.pipeline(name='verbose-interpreter')
def verbose_pipeline():
    # PYTHONVERBOSE makes the interpreter print every import: a zygote for it would print in
    # its own log, not the task's; that environment must run exec'd
    noisy_start().set_env_variable('PYTHONVERBOSE', '1')


# ---------------------------------------------------------------------------- helpers

def _lightweight_command(pipeline_func, tmp_path):
    """(environment, argv) of a one-task pipeline's component, its pip prologue lifted."""
    path = compile_pipeline(pipeline_func, tmp_path / f'{pipeline_func.name}.yaml')
    [executor] = load_pipeline(path).executors.values()
    container = executor['container']
    env, argv = lift_prologue(container['command'], container['args'])
    assert env is not None
    return env, argv


def _subprocess_backend(warm_start: bool) -> SubprocessBackend:
    """The backend as the engine makes it, warm start on or off (the one place that knows
    the constructor's signature). One run id for both: it reaches the tasks' environment
    (LOCALRUNNER_RUN_ID, the reaper's marker), which the comparisons see."""
    return SubprocessBackend(BackendOptions(warm_start=warm_start, run_id='warm-vs-exec'))


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (FileNotFoundError, ProcessLookupError):
        return False


def _processes_in(folder: str) -> list[str]:
    """Processes whose working directory is inside folder (every runner, zygote, reaper and
    task of these tests works there)."""
    found = []
    folder = os.path.realpath(folder)
    for pid in os.listdir('/proc'):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cwd = os.readlink(f'/proc/{pid}/cwd')
            if (cwd == folder or cwd.startswith(folder + os.sep)) and _alive(int(pid)):
                with open(f'/proc/{pid}/cmdline', 'rb') as f:
                    found.append(pid + ': ' + f.read().replace(b'\0', b' ').decode()[:200])
        except OSError:
            pass
    return found


def _wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f'timed out waiting for {what}'
        time.sleep(0.05)


def _wait_for_json(path, proc=None, timeout: float = 180) -> dict:
    def ready():
        assert proc is None or proc.poll() is None, proc.stdout.read() if proc.stdout else proc.returncode
        return os.path.exists(path)
    _wait_until(ready, timeout, str(path))
    with open(path) as f:
        return json.load(f)


def _start_cli(pipeline: str, root, cwd, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, '-m', 'localrunner.cli', 'run', pipeline, '--root', str(root),
                             '--result-json', str(root) + '.json', *args], cwd=str(cwd),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _who(result: dict, name: str) -> dict:
    return json.loads(task(result, name)['outputs']['parameters']['Output'])


def _forked(info: dict) -> bool:
    return ZYGOTE in info['parent_cmd']


# ---------------------------------------------------------------------------- which commands

def test_only_kfps_lightweight_command_is_recognised(tmp_path):
    _, argv = _lightweight_command(verbose_pipeline, tmp_path)
    module, source, args = warm.kfp_program(argv)
    assert module == 'kfp.dsl.executor_main'
    assert source == argv[3] and 'def noisy_start' in source
    assert args == argv[4:] and args[0] == '--executor_input'
    script = argv[2]
    for changed in (
            ['sh', '-c'] + argv[2:],                                           # not -e
            argv[:2] + [script.replace('mktemp -d', 'mktemp -d -p /x')] + argv[3:],
            argv[:2] + [script + 'echo done\n'] + argv[3:],                    # one more command
            argv[:2] + [script.replace('\n', ' ', 2)] + argv[3:],              # joined lines mean other things
            argv[:2] + [script.replace('_KFP_RUNTIME=true ', '')] + argv[3:],
            argv[:2] + [script.replace('"$@"', '"$@" --extra')] + argv[3:],
            argv[:3],                                                          # no source
            ['python3', '-m', 'kfp.dsl.executor_main'] + argv[4:]):
        assert warm.kfp_program(changed) is None, changed


# ---------------------------------------------------------------------------- same results

def _ml_params():
    return {'data_path': os.path.join(REPO, 'examples', 'data', 'iris.csv')}


COMPARED = {
    'conditions': (cf.conditions_pipeline, {'n': 2, 'x': 1.5}),
    'loops': (cf.loops_pipeline, {}),
    'collected': (cf.collected_pipeline, {}),
    'nested': (cf.nested_pipeline, {}),
    'exit-handlers': (cf.exit_handler_pipeline, {}),
    'oneof': (cf.oneof_pipeline, {'n': 2}),
    'failures': (cf.failure_pipeline, {}),
    'retries': (cf.retry_pipeline, {}),
    'defaults': (cf.defaults_pipeline, {}),
    'artifact-loop': (cf.artifact_loop_pipeline, {}),
    'nesting': (cf.nesting_pipeline, {}),
    'nested-exit': (cf.nested_exit_pipeline, {}),
    'child-collected': (cf.child_collected_pipeline, {}),
    'contract': (contract_pipeline, {'rows': 7}),
    'placeholders': (placeholder_pipeline, {}),
    'failing': (failing_pipeline, {}),
    'crashes': (crash_only_pipeline, {}),
    'introspection': (introspect_pipeline, {}),
    'ml-example': (os.path.join(REPO, 'examples', 'ml_pipeline.yaml'), None),
}


def _normalizer(result: dict):
    """Names that differ between two runs by construction (run folder, run id, a task's
    private temp folder, executor log timestamps, task uuids)."""
    swaps = [(result['run_dir'], '<RUN>'), (os.path.dirname(os.path.dirname(result['run_dir'])), '<ROOT>'),
             (result['run_id'], '<RUN_ID>')]
    patterns = [(re.compile(r'/[^\s"\']*/lr-[a-z0-9_]+/tmp\.[A-Za-z0-9]+'), '<PROGRAM_PATH>'),
                (re.compile(r'/[^\s"\']*/lr-[a-z0-9_]+'), '<TMPDIR>'),
                (re.compile(r'\[KFP Executor [0-9-]+ [0-9:,]+ '), '[KFP Executor <TIME> '),
                (re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'), '<UUID>')]

    def norm(value):
        if isinstance(value, str):
            for old, new in swaps:
                value = value.replace(old, new)
            for pattern, new in patterns:
                value = pattern.sub(new, value)
            return value
        if isinstance(value, dict):
            return {k: norm(v) for k, v in value.items()}
        if isinstance(value, list):
            return [norm(v) for v in value]
        return value
    return norm


def _observable(result: dict) -> dict:
    """Per task: state, error, attempts, output parameters, artifacts (type, content digest,
    metadata) and every attempt's log."""
    norm = _normalizer(result)
    seen = {'state': result['state'], 'outputs': norm(result['outputs']['parameters']), 'tasks': {}}
    for t in result['tasks']:
        outputs = t.get('outputs') or {}
        logs = []
        for path in t.get('logs') or []:
            if os.path.exists(path):
                with open(path, errors='replace') as f:
                    logs.append(norm(f.read()))
        seen['tasks'][t['name']] = {
            'state': t['state'], 'error': norm(t.get('error')), 'attempts': t.get('attempts'),
            'parameters': norm(outputs.get('parameters', {})),
            'artifacts': {name: [(a['type'], _content_identity(a, norm), norm(a.get('metadata'))) for a in arts]
                          for name, arts in (outputs.get('artifacts') or {}).items()},
            'logs': logs}
    return seen


def _content_identity(artifact: dict, norm):
    """The artifact's content digest; for content that names this run's own folders (a
    manifest with the model's path, a file of placeholder values), its normalized text."""
    path = artifact.get('path')
    if not path or not os.path.exists(path):
        return artifact.get('digest')
    files = ([os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs] if os.path.isdir(path) else [path])
    texts = {}
    for file in sorted(files):
        with open(file, 'rb') as f:
            raw = f.read()
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            return artifact.get('digest')
        texts[os.path.relpath(file, path)] = text
    normalized = {k: norm(v) for k, v in texts.items()}
    return artifact.get('digest') if normalized == texts else normalized


def _run_in_process(path: str, params: dict, root, warm_start: bool):
    backend = _subprocess_backend(warm_start)
    try:
        result = run_pipeline(path, params, root=str(root), backend=backend, use_cache=False)
        return result.to_json(), (backend.warm.launched if backend.warm else 0)
    finally:
        backend.close()


def _lightweight_attempts(result: dict) -> int:
    """Attempts of the tasks that ran a lightweight component (the container component of
    the placeholders pipeline execs)."""
    return sum(t.get('attempts') or 0 for t in result['tasks']
               if t['type'] == 'container' and t['state'] not in ('CACHED', 'SKIPPED')
               and not t['name'].startswith('every-placeholder'))


@pytest.mark.parametrize('name', sorted(COMPARED))
def test_outputs_identical_with_and_without_warm_start(tmp_path, monkeypatch, name):
    pipeline, params = COMPARED[name]
    if isinstance(pipeline, str):
        path, params = pipeline, _ml_params()
    else:
        path = compile_pipeline(pipeline, tmp_path / f'{name}.yaml')
    out_dir = tmp_path / 'out'
    needs = load_pipeline(path).root.get('inputDefinitions', {}).get('parameters', {})
    for key in ('out_dir', 'folder'):
        if key in needs:
            params = dict(params, **{key: str(out_dir)})
    monkeypatch.chdir(tmp_path)
    observed = {}
    for mode in ('exec', 'warm'):
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir()
        result, launched = _run_in_process(path, params, tmp_path / f'root-{mode}', warm_start=mode == 'warm')
        observed[mode] = _observable(result)
        if mode == 'warm':
            assert launched == _lightweight_attempts(result) > 0
        else:
            assert launched == 0
    assert observed['warm'] == observed['exec'], _first_difference(observed['warm'], observed['exec'])


def _first_difference(a, b, where='') -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f'{where}/{k}')
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f'{where}[{i}]')
    if isinstance(a, str) and isinstance(b, str):
        import difflib
        return where + ':\n' + ''.join(difflib.unified_diff(b.splitlines(True), a.splitlines(True), 'exec', 'warm'))
    return f'{where}: warm {a!r} != exec {b!r}'


def test_task_sees_the_same_process_state_warm_or_exec(tmp_path):
    """The CLI both ways: environment (the component's own variables, PWD as dash sets it,
    LC_CTYPE as the interpreter coerces it), cwd, argv, sys.path, flags, umask, rlimits,
    signal dispositions and mask, session, open fds, stdio, __main__."""
    path = compile_pipeline(introspect_pipeline, tmp_path / 'introspect.yaml')
    seen = {}
    for mode, extra in (('warm', ()), ('exec', ('--no-warm-start',))):
        rc, result, proc = run_pipeline_file(path, tmp_path / f'root-{mode}', *extra, cwd=str(tmp_path),
                                             env={'PWD': '/somewhere/else'})
        assert rc == 0, proc.stdout + proc.stderr
        output = task(result, 'introspect')['outputs']['parameters']['Output']
        seen[mode] = json.loads(output.replace(result['run_dir'], '<RUN>').replace(f'root-{mode}', '<ROOT>')
                                .replace(result['run_id'], '<RUN_ID>'))    # LOCALRUNNER_RUN_ID: the reaper's marker
    assert seen['warm'] == seen['exec']
    env = dict(seen['warm']['env'])
    assert env['COMPONENT_VAR'] == 'from the IR' and env['_KFP_RUNTIME'] == 'true'
    assert env['PWD'] == os.path.realpath(tmp_path) and env['TMPDIR'] == '<TMPDIR>'
    assert seen['warm']['own_session'] and seen['warm']['fds'] == ['0', '1', '2', '3']


# ---------------------------------------------------------------------------- crashes

def test_crashing_tasks_fail_alone_and_the_next_task_is_still_forked(tmp_path):
    path = compile_pipeline(crash_pipeline, tmp_path / 'crashes.yaml')
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', cwd=str(tmp_path))
    assert rc == 1, proc.stdout + proc.stderr
    errors = {t['display_name']: (t['state'], t.get('error')) for t in result['tasks'] if t['type'] == 'container'}
    # as the exec path reports them: sh -ec's status for python3 (128+N when a signal killed it)
    assert errors['segfault'] == ('FAILED', 'exited with code 139')
    assert errors['os_exit_7'] == ('FAILED', 'exited with code 7')
    assert errors['sys_exit_3'] == ('FAILED', 'exited with code 3')
    assert errors['exception'] == ('FAILED', 'exited with code 1')
    with open(task(result, 'crash')['logs'][-1]) as f:
        assert f.read().endswith('about to segfault\nSegmentation fault\n')
    before, after = _who(result, 'whoami'), _who(result, 'whoami-2')
    assert _forked(before) and _forked(after)
    assert before['grandparent'] == after['grandparent']          # the same zygote, unharmed
    assert before['pid'] == before['pgid'] == before['sid']


def test_no_warm_start_execs_every_task(tmp_path):
    path = compile_pipeline(crash_pipeline, tmp_path / 'crashes.yaml')
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', '--no-warm-start', cwd=str(tmp_path))
    assert rc == 1
    before = _who(result, 'whoami')
    assert not _forked(before) and 'sh' in before['parent_cmd']
    assert task(result, 'crash')['error'] == 'exited with code 139'


# ---------------------------------------------------------------------------- the zygote dies

def test_zygote_killed_mid_run_is_restarted_and_the_run_completes(tmp_path):
    path = compile_pipeline(held_pipeline, tmp_path / 'held.yaml')
    folder = tmp_path / 'f'
    folder.mkdir()
    proc = _start_cli(path, tmp_path / 'root', tmp_path, '-p', f'folder={folder}')
    try:
        first = _wait_for_json(folder / 'first.json', proc)
        os.kill(first['zygote'], signal.SIGKILL)
        _wait_until(lambda: not _alive(first['zygote']), 10, 'the zygote to die')
        assert _alive(first['pid'])                  # a running task does not need its zygote
        (folder / 'go').write_text('')
        out = proc.communicate(timeout=180)[0]
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    _wait_until(lambda: not _alive(first['reaper']), 10, 'its reaper to leave after its task')
    result = json.loads((tmp_path / 'root.json').read_text())
    assert task(result, 'hold')['state'] == 'SUCCEEDED'
    after = _who(result, 'whoami')
    assert _forked(after) and after['grandparent'] != first['zygote']


# ---------------------------------------------------------------------------- the runner stops

@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_runner_stopped_leaves_no_process(tmp_path, sig):
    """Ctrl-C and SIGTERM cancel the run (exit 128+N); kill -9 ends the runner at once: the
    zygote dies with it (parent-death signal, EOF) and each reaper kills its task's group."""
    path = compile_pipeline(two_held_pipeline, tmp_path / 'two.yaml')
    folder = tmp_path / 'f'
    folder.mkdir()
    proc = _start_cli(path, tmp_path / 'root', tmp_path, '-p', f'folder={folder}')
    try:
        infos = [_wait_for_json(folder / f'{tag}.json', proc) for tag in ('a', 'b')]
        assert infos[0]['reaper'] != infos[1]['reaper']        # two at once: the pool has two reapers
        pids = [p for info in infos for p in (info['pid'], info['child'], info['reaper'], info['zygote'])]
        assert all(_alive(p) for p in pids)
        proc.send_signal(sig)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == (-sig if sig == signal.SIGKILL else 128 + sig)
    _wait_until(lambda: not any(_alive(p) for p in pids), 10, 'every task, reaper and zygote to end')
    _wait_until(lambda: not _processes_in(str(tmp_path)), 10, f'no process left: {_processes_in(str(tmp_path))}')


def test_set_timeout_terminates_warm_tasks_term_then_kill(tmp_path):
    path = compile_pipeline(timeout_pipeline, tmp_path / 'timeouts.yaml')
    folder = tmp_path / 'f'
    folder.mkdir()
    started = time.time()
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', '-p', f'folder={folder}', cwd=str(tmp_path))
    assert rc == 1, proc.stdout + proc.stderr
    assert time.time() - started < 100                 # not the tasks' own two minutes
    for name, tag in (('hold', 'plain'), ('hold-2', 'stubborn')):
        entry = task(result, name)
        assert entry['state'] == 'FAILED' and entry['error'] == 'timed out after 2s (kubernetes.set_timeout)'
        info = json.loads((folder / f'{tag}.json').read_text())
        assert not any(_alive(p) for p in (info['pid'], info['child'], info['reaper']))
    assert (folder / 'stubborn.term').read_text() == 'SIGTERM'     # asked first, killed after the grace
    assert not (folder / 'plain.term').exists()
    assert not _processes_in(str(tmp_path))


@dsl.component
def state_probe(n: int) -> str:
    """Module-level state left by an earlier task, and the random generator's next value."""
    import json
    import random
    import kfp
    kfp._probe_count = getattr(kfp, '_probe_count', 0) + 1
    return json.dumps({'count': kfp._probe_count, 'random': random.getrandbits(64)})


@dsl.pipeline(name='state')
def state_pipeline():
    first = state_probe(n=1)
    state_probe(n=2).after(first)


def test_no_state_leaks_from_one_forked_task_to_the_next(tmp_path):
    path = compile_pipeline(state_pipeline, tmp_path / 'state.yaml')
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', cwd=str(tmp_path))
    assert rc == 0, proc.stdout + proc.stderr
    first, second = (json.loads(task(result, n)['outputs']['parameters']['Output'])
                     for n in ('state-probe', 'state-probe-2'))
    assert first['count'] == second['count'] == 1
    assert first['random'] != second['random']          # reseeded at fork, as a fresh process is


@dsl.component
def graceful(folder: str) -> str:
    """Exits 0 on SIGTERM, after saying so."""
    import os
    import signal
    import sys
    import time

    def bye(signum, frame):
        print('terminated politely', flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, bye)
    open(os.path.join(folder, 'started'), 'w').close()
    time.sleep(120)
    return 'slept'


@dsl.pipeline(name='graceful')
def graceful_pipeline(folder: str):
    graceful(folder=folder)


def _backend_spec(pipeline_func, tmp_path, params: dict):
    """The task's launch spec as the engine makes it (command lifted, executor input in)."""
    from localrunner.backends.base import LaunchSpec
    env, argv = _lightweight_command(pipeline_func, tmp_path)
    executor_input = {'inputs': {'parameterValues': params},
                      'outputs': {'parameters': {'Output': {'outputFile': str(tmp_path / 'Output')}},
                                  'outputFile': str(tmp_path / 'executor_output.json')}}
    argv = [a.replace('{{$}}', json.dumps(executor_input)) for a in argv]
    return LaunchSpec(task='t', image='', argv=argv, env={}, workdir=str(tmp_path),
                      log_path=str(tmp_path / 'log.txt'), python_env=env)


@pytest.mark.parametrize('warm_start', [True, False])
def test_terminated_task_reports_what_sh_reports(tmp_path, warm_start):
    """Exec'd, the runner's SIGTERM kills `sh` (status -15) whatever python3 does with it."""
    folder = tmp_path / 'f'
    folder.mkdir()
    spec = _backend_spec(graceful_pipeline, tmp_path, {'folder': str(folder)})
    backend = _subprocess_backend(warm_start)
    try:
        backend.prepare(spec, lambda line: None)
        execution = backend.launch(spec, lambda line: None)
        _wait_until(lambda: (folder / 'started').exists(), 60, 'the task to start')
        execution.terminate()
        assert execution.wait() == -signal.SIGTERM
        assert (backend.warm.launched if backend.warm else 0) == (1 if warm_start else 0)
    finally:
        backend.close()
    assert (tmp_path / 'log.txt').read_text().endswith('terminated politely\n')


# ---------------------------------------------------------------------------- environments

def test_a_zygote_that_cannot_serve_an_environment_leaves_it_exec(tmp_path):
    path = compile_pipeline(verbose_pipeline, tmp_path / 'verbose.yaml')
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', cwd=str(tmp_path))
    assert rc == 0, proc.stdout + proc.stderr
    with open(task(result, 'noisy-start')['logs'][-1]) as f:
        log = f.read()
    assert re.search(r'^import \'?kfp', log, re.M), log[:2000]     # the interpreter's own lines are there


@dsl.component
def length(s: str) -> int:
    return len(s)


@dsl.pipeline(name='long-argument')
def long_argument_pipeline(s: str):
    length(s=s)


@pytest.mark.parametrize('size, state', [(100_000, 'SUCCEEDED'), (200_000, 'FAILED')])
def test_a_command_too_long_to_exec_is_not_forked_either(tmp_path, size, state):
    """execve refuses a 200 kB argument (Linux: 128 kB per string); a forked task would not
    notice, so such a command takes the exec path and fails as it does there."""
    path = compile_pipeline(long_argument_pipeline, tmp_path / 'long.yaml')
    params = tmp_path / 'params.json'
    params.write_text(json.dumps({'s': 'x' * size}))
    seen = []
    for extra in ((), ('--no-warm-start',)):
        rc, result, proc = run_pipeline_file(path, tmp_path / 'root', '--params-file', str(params), '--no-cache',
                                             *extra, cwd=str(tmp_path))
        entry = task(result, 'length')
        seen.append((rc, entry['state'], entry.get('error'), entry['outputs']['parameters']))
    assert seen[0] == seen[1] and seen[0][1] == state
    if state == 'FAILED':
        assert seen[0][2] == 'length: cannot start sh: Argument list too long'
    else:
        assert seen[0][3] == {'Output': size}


def test_zygotes_start_lazily_per_environment_and_stop_with_the_backend(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = compile_pipeline(crash_pipeline, tmp_path / 'crashes.yaml')
    backend = _subprocess_backend(True)
    assert backend.warm is not None and not backend.warm._zygotes
    result = run_pipeline(path, {}, root=str(tmp_path / 'root'), backend=backend, use_cache=False)
    zygotes = [z.proc.pid for z in backend.warm._zygotes.values()]
    assert len(zygotes) == 1 and _alive(zygotes[0])
    assert _who(result.to_json(), 'whoami')['grandparent'] == zygotes[0]
    backend.close()
    assert not _alive(zygotes[0]) and not _processes_in(str(tmp_path))
    # a closed backend execs
    result = run_pipeline(path, {}, root=str(tmp_path / 'root2'), backend=backend, use_cache=False)
    assert not _forked(_who(result.to_json(), 'whoami'))


@dsl.pipeline(name='who')
def who_pipeline():
    whoami(tag='only')


def test_reapers_are_reused_and_a_killed_idle_one_is_replaced(tmp_path, monkeypatch):
    """A task goes to an idle reaper of the zygote's pool (one fork a task, not two); a reaper
    killed while idle is replaced, never handed a task; every reaper leaves with the zygote."""
    monkeypatch.chdir(tmp_path)
    path = compile_pipeline(who_pipeline, tmp_path / 'who.yaml')
    backend = _subprocess_backend(True)

    def who(n: int) -> dict:
        result = run_pipeline(path, {}, root=str(tmp_path / f'root{n}'), backend=backend, use_cache=False)
        assert result.state.value == 'SUCCEEDED', result.to_json()
        info = _who(result.to_json(), 'whoami')
        assert _forked(info)
        return info

    def idle(reaper: int) -> bool:
        # an idle reaper holds stdin, stdout, stderr and its channel to the zygote; a task's
        # socket, log pipe and pidfd only while it serves one
        return len(os.listdir(f'/proc/{reaper}/fd')) == 4

    try:
        first = who(1)
        _wait_until(lambda: idle(first['parent']), 10, 'the reaper to be idle again')
        second = who(2)
        zygote = first['grandparent']
        assert second['parent'] == first['parent'] and second['pid'] != first['pid']   # idle again, reused
        assert second['grandparent'] == zygote and _alive(first['parent'])
        os.kill(first['parent'], signal.SIGKILL)
        _wait_until(lambda: not _alive(first['parent']), 10, 'the reaper to die')
        third = who(3)
        assert third['grandparent'] == zygote and _alive(zygote)       # the same zygote, unharmed
        assert third['parent'] != first['parent'] and _alive(third['parent'])
    finally:
        backend.close()
    assert not _alive(zygote) and not _alive(third['parent'])
    assert not _processes_in(str(tmp_path))
