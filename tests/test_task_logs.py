"""A task's output: always whole in its log file; line by line to a view only when one
reads lines (--verbose). A run nobody follows line by line makes no event per line
(engine/events.py EventBus.wants), and its log must not lose a byte for it."""
import glob
import os

from kfp import dsl

from tests.helpers import compile_pipeline, run_pipeline_file

PRINTED = ['first line', 'ünïcödé line', '', 'last line, no newline']


@dsl.component
def printer():
    import sys
    sys.stdout.write('first line\nünïcödé line\n\n')
    sys.stdout.flush()
    sys.stdout.write('last line, no newline')


@dsl.pipeline(name='task-logs')
def printing_pipeline():
    printer().set_caching_options(False)


def _log_of(root) -> bytes:
    [path] = glob.glob(os.path.join(str(root), 'runs', '*', 'tasks', 'printer', 'logs', 'attempt-1.log'))
    with open(path, 'rb') as f:
        return f.read()


def test_the_log_is_whole_with_or_without_a_line_reader(tmp_path):
    ir = compile_pipeline(printing_pipeline, tmp_path / 'p.yaml')
    rc, result, proc = run_pipeline_file(ir, tmp_path / 'quiet')
    assert rc == 0, proc.stderr
    quiet_log = _log_of(tmp_path / 'quiet')
    assert '\n'.join(PRINTED).encode() in quiet_log
    assert '[printer]' not in proc.stdout                # no line shown without --verbose

    rc, result, proc = run_pipeline_file(ir, tmp_path / 'verbose', '-v')
    assert rc == 0, proc.stderr
    verbose_log = _log_of(tmp_path / 'verbose')
    assert '\n'.join(PRINTED).encode() in verbose_log
    shown = [line.split('] ', 1)[1] if '] ' in line else '' for line in proc.stdout.splitlines()
             if line.strip().startswith('[printer]')]
    # every line of the log is shown, in order, and nothing else
    assert shown == verbose_log.decode().splitlines()
    assert PRINTED[:3] == shown[shown.index(PRINTED[0]):][:3]
