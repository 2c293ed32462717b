"""`localrunner run file.py[:name]`: compile with the user's kfp SDK, then run the IR."""
import textwrap

from tests.helpers import run_cli, run_pipeline_file, states

SOURCE = textwrap.dedent('''
    from kfp import dsl

    @dsl.component
    def double(x: int) -> int:
        return 2 * x

    @dsl.pipeline(name='from-python')
    def twice(x: int = 4) -> int:
        return double(x=double(x=x).output).output
''')


def test_run_a_python_pipeline(tmp_path):
    src = tmp_path / 'mine.py'
    src.write_text(SOURCE)
    rc, result, proc = run_pipeline_file(str(src), tmp_path / 'root')
    assert rc == 0, proc.stdout + proc.stderr
    assert result['outputs']['parameters']['Output'] == 16
    rc, result, proc = run_pipeline_file(f'{src}:twice', tmp_path / 'root', '-p', 'x=1')
    assert result['outputs']['parameters']['Output'] == 4
    rc, result, proc = run_pipeline_file(f'{src}:double', tmp_path / 'root', '-p', 'x=5')   # a component alone
    assert rc == 0 and states(result)['double'] in ('SUCCEEDED', 'CACHED')


def test_ambiguous_or_broken_python_is_a_usage_error(tmp_path):
    two = tmp_path / 'two.py'
    two.write_text(SOURCE + textwrap.dedent('''
        @dsl.pipeline(name='other')
        def other() -> int:
            return double(x=1).output
    '''))
    proc = run_cli('run', str(two))
    assert proc.returncode == 2 and 'other, twice' in proc.stderr
    broken = tmp_path / 'broken.py'
    broken.write_text('import nonexistent_module_xyz\n')
    proc = run_cli('run', str(broken))
    assert proc.returncode == 2 and 'nonexistent_module_xyz' in proc.stderr and 'Traceback' not in proc.stderr
