"""What a person sees: plain lines without control codes in CI, a live view in a real terminal
(a pseudo-terminal), loop progress instead of a line per iteration, failures the moment they
happen, and a summary that separates environment builds from the tasks' own time."""
import os
import pty
import re
import select
import subprocess
import sys
import time

from kfp import dsl

from tests.helpers import compile_pipeline

ANSI = re.compile(r'\x1b\[')


@dsl.component
def numbers(n: int) -> list:
    return list(range(n))


@dsl.component
def work(x: int) -> int:
    import time
    time.sleep(0.05)
    if x == 7:
        raise RuntimeError(f'seven is unlucky ({x})')
    return x


@dsl.pipeline(name='console-loop')
def loop_pipeline(n: int = 40):
    with dsl.ParallelFor(numbers(n=n).output, parallelism=4) as x:
        work(x=x)


@dsl.component(packages_to_install=['six==1.16.0'])
def with_env() -> str:
    import six
    return six.__version__


@dsl.pipeline(name='console-env')
def env_pipeline():
    with_env()


def _cli(args, env=None):
    full = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, '-m', 'localrunner.cli', *args], capture_output=True, text=True,
                          env=full, timeout=600)


def _in_pty(args, env=None, timeout=300) -> str:
    """Runs the CLI on a real terminal and returns everything it drew."""
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update(env or {})
        os.environ.pop('CI', None)
        os.execv(sys.executable, [sys.executable, '-m', 'localrunner.cli', *args])
    out, deadline = b'', time.time() + timeout
    while time.time() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    os.waitpid(pid, 0)
    return out.decode(errors='replace')


def test_plain_output_in_ci_has_no_control_codes_and_sums_up_loops(tmp_path):
    path = compile_pipeline(loop_pipeline, tmp_path / 'loop.yaml')
    proc = _cli(['run', path, '--root', str(tmp_path / 'root')], env={'CI': 'true'})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert not ANSI.search(out)
    assert out.count('done    for-loop') == 0                  # no line per iteration ...
    progress = [line for line in out.splitlines() if line.strip().startswith('loop ')]
    assert 5 <= len(progress) <= 11 and '40/40' in progress[-1] and '1 failed' in progress[-1]
    # ... but the failure, at once, with its log tail
    assert 'FAILED  for-loop-1.7/work' in out and 'seven is unlucky' in out


@dsl.component
def quick(x: int) -> int:
    return x


@dsl.pipeline(name='console-nested')
def nested_loops_pipeline():
    with dsl.ParallelFor([1, 2, 3]) as x:
        with dsl.If(x > 1):
            quick(x=x)
        with dsl.ParallelFor([10, 20]) as y:
            quick(x=y)
        quick(x=x)


def test_loop_progress_counts_each_loops_own_tasks_and_conditions_skipped_whole(tmp_path):
    """The outer loop counts its 3 iterations' own 2 tasks (one of them under a condition that
    is false once, which ends it too), not the inner loop's; each inner loop counts its 2."""
    path = compile_pipeline(nested_loops_pipeline, tmp_path / 'nested.yaml')
    proc = _cli(['run', path, '--root', str(tmp_path / 'root')], env={'CI': 'true'})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = {}
    for line in proc.stdout.splitlines():
        m = re.match(r'\s*loop\s+(\S+): (\d+)/(\d+) \((.*)\)$', line)
        if m:
            last[m.group(1)] = (int(m.group(2)), int(m.group(3)), m.group(4))
    outer = [n for n in last if '/' not in n]
    assert len(outer) == 1 and last[outer[0]][:2] == (6, 6), last
    assert '1 skipped' in last[outer[0]][2], last
    inner = [v for n, v in last.items() if '/' in n]
    assert len(inner) == 3 and all(v[:2] == (2, 2) for v in inner), last


def test_live_view_in_a_terminal(tmp_path):
    path = compile_pipeline(loop_pipeline, tmp_path / 'loop.yaml')
    drawn = _in_pty(['run', path, '--root', str(tmp_path / 'root'), '-p', 'n=60'])
    assert ANSI.search(drawn)                                   # a live view was drawn
    assert re.search(r'for-loop-1\s+\d+/60', drawn)            # the loop's progress bar line
    assert 'running' in drawn and 'FAILED' in drawn and 'seven is unlucky' in drawn
    assert 'console-loop: FAILED in' in drawn                  # the summary after it


def test_environment_build_is_shown_and_timed_apart(tmp_path):
    path = compile_pipeline(env_pipeline, tmp_path / 'env.yaml')
    proc = _cli(['run', path, '--root', str(tmp_path / 'root')],
                env={'CI': 'true', 'LOCALRUNNER_ENV_DIR': str(tmp_path / 'envs')})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert 'env     with-env: building environment' in out and 'environment built in' in out
    assert re.search(r'console-env: SUCCEEDED in [\d.]+s \(environment builds [\d.]+s, tasks [\d.]+s\)', out)
    again = _cli(['run', path, '--root', str(tmp_path / 'root2')],
                 env={'CI': 'true', 'LOCALRUNNER_ENV_DIR': str(tmp_path / 'envs')})
    assert 'environment builds' not in again.stdout               # built once, reused


def test_summary_folds_a_loops_iterations_but_never_a_failure(tmp_path):
    path = compile_pipeline(loop_pipeline, tmp_path / 'loop.yaml')
    proc = _cli(['run', path, '--root', str(tmp_path / 'root'), '-p', 'n=30'], env={'CI': 'true', 'COLUMNS': '200'})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    table = proc.stdout[proc.stdout.index('console-loop: FAILED in'):]
    rows = [line for line in table.splitlines() if '/work' in line and '│' in line]
    # the 29 that succeeded are one row; the one that failed has its own
    assert len(rows) == 2, table
    assert re.search(r'for-loop-1\.\*/work\s.*SUCCEEDED x29', rows[0]), table
    assert 'for-loop-1.7/work' in rows[1] and 'FAILED' in rows[1] and ' x' not in rows[1].split('FAILED')[1][:3]
    assert 'for-loop-1.7/work failed: exited with code 1' in table


@dsl.component
def score(x: int, metrics: dsl.Output[dsl.Metrics]):
    metrics.log_metric('accuracy', x / 10)


@dsl.pipeline(name='console-sweep')
def sweep_pipeline(n: int = 12):
    with dsl.ParallelFor(numbers(n=n).output) as x:
        score(x=x)


def test_folded_rows_give_each_metrics_range_and_small_loops_stay_row_by_row(tmp_path):
    path = compile_pipeline(sweep_pipeline, tmp_path / 'sweep.yaml')
    big = _cli(['run', path, '--root', str(tmp_path / 'root')], env={'CI': 'true', 'COLUMNS': '200'})
    assert big.returncode == 0, big.stdout + big.stderr
    rows = [line for line in big.stdout.splitlines() if 'for-loop-1' in line and '│' in line]
    assert len(rows) == 1 and 'SUCCEEDED x12' in rows[0] and 'accuracy=0..1.1' in rows[0], big.stdout
    again = _cli(['run', path, '--root', str(tmp_path / 'root')], env={'CI': 'true', 'COLUMNS': '200'})
    rows = [line for line in again.stdout.splitlines() if 'for-loop-1' in line and '│' in line]
    assert len(rows) == 1 and 'CACHED x12' in rows[0], again.stdout
    run_id = re.search(r'^run (\S+)', big.stdout, re.M).group(1)
    assert run_id in rows[0]                                 # every iteration came from that run
    # where to see each iteration, and that command does list them all
    hint = f'12 loop iterations summed up above; each one: localrunner runs show {run_id} --root {tmp_path / "root"}'
    assert hint in big.stdout.replace('\n', ' '), big.stdout
    shown = _cli(['runs', 'show', run_id, '--root', str(tmp_path / 'root')])
    assert all(f'for-loop-1.{i}/score' in shown.stdout for i in range(12)), shown.stdout
    small = _cli(['run', path, '--root', str(tmp_path / 'root'), '-p', 'n=3', '--no-cache'],
                 env={'CI': 'true', 'COLUMNS': '200'})
    rows = [line for line in small.stdout.splitlines() if 'for-loop-1' in line and '│' in line]
    assert [re.search(r'for-loop-1\.\d', r).group(0) for r in rows] == ['for-loop-1.0', 'for-loop-1.1',
                                                                        'for-loop-1.2'], small.stdout
    assert 'accuracy=0.2' in rows[2] and 'summed up' not in small.stdout
