"""`run --watch`: a changed input re-runs exactly what depends on it; Ctrl-C stops."""
import json
import signal
import subprocess
import sys
import time

from kfp import dsl
from kfp.dsl import Dataset, Input

from tests.helpers import compile_pipeline, states


@dsl.component
def word_count(data: Input[Dataset]) -> int:
    return len(open(data.path).read().split())


@dsl.component
def constant() -> str:
    return 'same'


@dsl.pipeline(name='watched')
def watched_pipeline(uri: str):
    word_count(data=dsl.importer(artifact_uri=uri, artifact_class=Dataset).output)
    constant()


def _wait_for(proc, lines, text, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline().decode()
        lines.append(line)
        if text in line:
            return
        assert proc.poll() is None, ''.join(lines)
    raise AssertionError(f'no {text!r} in {"".join(lines)}')


def test_watch_reruns_on_change_and_stops_on_ctrl_c(tmp_path):
    data = tmp_path / 'words.txt'
    data.write_text('a b c')
    path = compile_pipeline(watched_pipeline, tmp_path / 'w.yaml')
    result = tmp_path / 'r.json'
    proc = subprocess.Popen([sys.executable, '-m', 'localrunner.cli', 'run', path, '-p', f'uri={data}', '--watch',
                             '-q', '--root', str(tmp_path / 'root'), '--result-json', str(result)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    try:
        _wait_for(proc, lines, 'watching')
        first = json.loads(result.read_text())
        assert first['tasks'] and states(first)['word-count'] == 'SUCCEEDED'
        time.sleep(0.1)
        data.write_text('a b c d e')
        _wait_for(proc, lines, 'changed:')
        _wait_for(proc, lines, 'watching')
        second = json.loads(result.read_text())
        assert second['run_id'] != first['run_id']
        st = states(second)
        assert st['word-count'] == 'SUCCEEDED' and st['constant'] == 'CACHED'
        assert [t for t in second['tasks'] if t['name'] == 'word-count'][0]['outputs']['parameters']['Output'] == 5
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert proc.returncode == 0, ''.join(lines)
