"""The pytest plugin (localrunner.pytest_plugin), exercised through pytester.

Each test writes a small test module, runs pytest on it in-process and checks the outcome:
1 registration (pytest11 entry point, no conftest), 2 running components / pipelines / YAML
with typed results, 3 input artifacts, 4 backend marker + option + Docker skip / CI failure,
5 isolation (own action cache per test, shared environments), 6 failure reports.
"""
import os
import textwrap
from importlib import metadata

import pytest

from localrunner.user_cache import default_env_dir

# The inner sessions run in this process and pytester forgets the modules they import;
# numpy (pandas) cannot be loaded twice per process, so import them here, before any of them.
import kfp.dsl  # noqa: E402,F401
try:
    import pandas  # noqa: F401
except ImportError:      # pragma: no cover - the DataFrame test needs it (test extra)
    pass

pytest_plugins = ['pytester']

HEADER = '''
import json
import os
from typing import NamedTuple

import pytest
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

IMG = 'python:3.11-slim'
'''


# pytester points HOME at a fresh folder; keep the machine's venv cache (as users have it)
ENV_DIR = default_env_dir()


@pytest.fixture
def run(pytester, monkeypatch):
    """Writes the module (HEADER + source) and runs pytest on it in-process."""
    monkeypatch.delenv('CI', raising=False)
    monkeypatch.setenv('LOCALRUNNER_ENV_DIR', ENV_DIR)

    def go(source: str, *args: str, name: str = 'test_inner'):
        pytester.makepyfile(**{name: HEADER + textwrap.dedent(source)})
        return pytester.runpytest('-p', 'no:cacheprovider', '-W', 'ignore::FutureWarning', *args)
    return go


# ---------------------------------------------------------------------- 1 registration
def test_registered_through_the_pytest11_entry_point(run):
    eps = [ep for ep in metadata.entry_points(group='pytest11') if ep.name == 'localrunner']
    assert [ep.value for ep in eps] == ['localrunner.pytest_plugin']
    source = '''
        def test_uses_fixture(localrunner):
            assert localrunner.backend == 'subprocess'
    '''
    run(source).assert_outcomes(passed=1)                       # no conftest.py anywhere
    disabled = run(source, '-p', 'no:localrunner')
    disabled.assert_outcomes(errors=1)
    disabled.stdout.fnmatch_lines(["*fixture 'localrunner' not found*"])


def test_fixtures_are_listed_with_their_docstrings(pytester):
    result = pytester.runpytest('--fixtures')
    result.stdout.fnmatch_lines([
        '*fixtures defined from localrunner.pytest_plugin*',
        '*localrunner_shared_root*session*',
        '*A localrunner run root shared by every test of the session*',
        '*localrunner_backend*',
        '*The localrunner backend this test runs on*',
        'localrunner -- *',
        '*Runs KFP components and pipelines locally and returns typed results:*',
        '*localrunner.run_component(fn_or_yaml, **inputs) -> ComponentResult,*',
        '*localrunner.artifact(path=|bytes=|text=|dataframe=*',
        '*.metrics, .tasks?name?, .logs and .raise_for_state()*',
    ])


# ---------------------------------------------------------------------- 2 running things, typed results
def test_run_component_with_python_values_gives_typed_results(run):
    result = run('''
        @dsl.component(base_image=IMG)
        def summarize(values: list, scale: float, label: str, cfg: dict, flag: bool,
                      report: Output[Artifact], stats: Output[Metrics]) -> NamedTuple('Out', [('total', float), ('tag', str), ('ok', bool)]):
            total = sum(values) * scale
            with open(report.path, 'w') as f:
                f.write(f'{label}: {total}')
            report.metadata['label'] = label
            stats.log_metric('count', len(values))
            stats.log_metric('total', total)
            print('summarized', cfg['k'])
            Out = NamedTuple('Out', [('total', float), ('tag', str), ('ok', bool)])
            return Out(total, label.upper(), flag)

        def test_it(localrunner, tmp_path):
            r = localrunner.run_component(summarize, values=[1, 2, 3], scale=0.5, label='sum', cfg={'k': 'v'},
                                          flag=True)
            assert r.state == 'SUCCEEDED' and r.succeeded and r.task.name == 'summarize'
            assert r.outputs == {'total': 3.0, 'tag': 'SUM', 'ok': True}
            assert type(r.outputs['total']) is float and r.outputs['ok'] is True
            report = r.artifacts['report']
            assert report.type == 'system.Artifact'
            assert os.path.isabs(report.path) and report.uri == report.path
            assert report.path.startswith(str(tmp_path))
            assert report.read_text() == 'sum: 3.0' and report.read_bytes() == b'sum: 3.0'
            assert report.metadata == {'label': 'sum'}
            assert r.metrics == {'count': 3, 'total': 3.0}
            assert 'summarized v' in r.logs
            assert r.tasks['summarize'].outputs['tag'] == 'SUM'
            with pytest.raises(KeyError, match='Output'):
                r.output                        # several outputs: none is named Output

        def test_wrong_inputs_are_type_errors(localrunner):
            with pytest.raises(TypeError, match="no input named 'nope'"):
                localrunner.run_component(summarize, values=[], scale=1.0, label='', cfg={}, flag=True, nope=1)
            with pytest.raises(TypeError, match='scale'):
                localrunner.run_component(summarize, values=[], scale='much', label='', cfg={}, flag=True)
            with pytest.raises(TypeError, match='not a kfp component'):
                localrunner.run_component(lambda: 1)
    ''')
    result.assert_outcomes(passed=2)


def test_run_pipeline_function_and_compiled_yaml_files(run):
    result = run('''
        from kfp import compiler

        @dsl.component(base_image=IMG)
        def add(a: int, b: int) -> int:
            return a + b

        @dsl.component(base_image=IMG)
        def emit(n: int, out: Output[Dataset]):
            with open(out.path, 'w') as f:
                f.write('x' * n)
            out.metadata['n'] = n

        @dsl.pipeline(name='arith')
        def arith(x: int = 1, y: int = 2) -> int:
            first = add(a=x, b=y)
            emit(n=first.output)
            return add(a=first.output, b=10).output

        def test_pipeline_function(localrunner):
            r = localrunner.run_pipeline(arith, x=5)
            r.raise_for_state()
            assert r.output == 17 and r.outputs == {'Output': 17}
            assert set(r.tasks) == {'add', 'add-2', 'emit'}
            assert r.tasks['add'].output == 7 and r.tasks['add'].state == 'SUCCEEDED'
            out = r.tasks['emit'].artifacts['out']
            assert out.read_text() == 'xxxxxxx' and out.metadata == {'n': 7}
            assert '=== add ===' in r.logs

        def test_pipeline_and_component_yaml(localrunner, tmp_path):
            compiler.Compiler().compile(arith, str(tmp_path / 'arith.yaml'))
            compiler.Compiler().compile(add, str(tmp_path / 'add.yaml'))
            assert localrunner.run_pipeline(str(tmp_path / 'arith.yaml')).output == 13     # defaults
            assert localrunner.run_component(tmp_path / 'add.yaml', a=2, b=3).output == 5
            with pytest.raises(TypeError, match='use run_pipeline'):
                localrunner.run_component(str(tmp_path / 'arith.yaml'))
    ''')
    result.assert_outcomes(passed=2)


# ---------------------------------------------------------------------- 3 input artifacts
def test_input_artifacts_from_path_bytes_text_and_dataframe(run):
    result = run('''
        import pandas as pd

        @dsl.component(base_image=IMG)
        def describe(data: Input[Dataset]) -> str:
            import json
            import os
            size = (sum(len(open(os.path.join(data.path, n)).read()) for n in sorted(os.listdir(data.path)))
                    if os.path.isdir(data.path) else len(open(data.path).read()))
            return json.dumps({'size': size, 'first': open(data.path).readline().strip()
                               if not os.path.isdir(data.path) else sorted(os.listdir(data.path)),
                               'meta': dict(data.metadata), 'type': data.schema_title})

        @dsl.component(base_image=IMG)
        def load(model: Input[Model], out: Output[Model]) -> str:
            import shutil
            shutil.copyfile(model.path, out.path)
            out.metadata.update(model.metadata)
            return open(model.path).read()

        def info(r):
            r.raise_for_state()
            return json.loads(r.output)

        def test_each_way(localrunner, tmp_path):
            (tmp_path / 'in.csv').write_text('a,b\\n1,2\\n')
            got = info(localrunner.run_component(describe, data=localrunner.artifact(path=tmp_path / 'in.csv')))
            assert got == {'size': 8, 'first': 'a,b', 'meta': {}, 'type': 'system.Dataset'}
            got = info(localrunner.run_component(describe, data=str(tmp_path / 'in.csv')))        # a plain path
            assert got['size'] == 8
            got = info(localrunner.run_component(describe, data=localrunner.artifact(
                bytes=b'\\x00\\x01\\n', metadata={'source': 'bytes'})))
            assert got['size'] == 3 and got['meta'] == {'source': 'bytes'}
            got = info(localrunner.run_component(describe, data=localrunner.artifact(text='hello\\n', type=Dataset)))
            assert got['first'] == 'hello'
            df = pd.DataFrame({'x': [1, 2, 3], 'y': ['a', 'b', 'c']})
            got = info(localrunner.run_component(describe, data=localrunner.artifact(dataframe=df)))
            assert got['first'] == 'x,y' and got['size'] == len('x,y\\n1,a\\n2,b\\n3,c\\n')
            assert info(localrunner.run_component(describe, data=df))['first'] == 'x,y'      # a DataFrame as is
            (tmp_path / 'folder').mkdir()
            (tmp_path / 'folder' / 'one.txt').write_text('12345')
            got = info(localrunner.run_component(describe, data=localrunner.artifact(path=tmp_path / 'folder')))
            assert got['first'] == ['one.txt'] and got['size'] == 5

        def test_model_inputs_and_chaining(localrunner):
            model = localrunner.artifact(bytes=b'weights', type=Model, metadata={'framework': 'none'})
            first = localrunner.run_component(load, model=model).raise_for_state()
            assert first.output == 'weights'
            second = localrunner.run_component(load, model=first.artifacts['out']).raise_for_state()
            assert second.output == 'weights'
            assert second.artifacts['out'].metadata == {'framework': 'none'}
            assert second.artifacts['out'].type == 'system.Model'
            with pytest.raises(TypeError, match='is a system.Model; got a system.Dataset'):
                localrunner.run_component(load, model=localrunner.artifact(text='x', type=Dataset))
            with pytest.raises(TypeError, match="missing input artifact 'model'"):
                localrunner.run_component(load)
            with pytest.raises(TypeError, match='exactly one of'):
                localrunner.artifact(text='a', bytes=b'b')

        def test_content_enters_the_cache_key(localrunner):
            a = localrunner.run_component(describe, data=localrunner.artifact(text='same\\n'))
            b = localrunner.run_component(describe, data=localrunner.artifact(text='same\\n'))
            c = localrunner.run_component(describe, data=localrunner.artifact(text='other\\n'))
            assert (a.cached, b.cached, c.cached) == (False, True, False)
    ''')
    result.assert_outcomes(passed=3)


# ---------------------------------------------------------------------- 4 backends
BACKEND_SOURCE = '''
    def test_unmarked(localrunner, localrunner_backend):
        assert localrunner.backend == localrunner_backend
        print('BACKEND', localrunner_backend)

    @pytest.mark.localrunner(backend='subprocess')
    def test_marked_subprocess(localrunner, localrunner_backend):
        assert localrunner_backend == 'subprocess'
'''


def test_backend_comes_from_the_marker_then_the_option_then_the_ini(run, pytester):
    run(BACKEND_SOURCE, '-s').stdout.fnmatch_lines(['*BACKEND subprocess*'])
    pytester.makeini('[pytest]\nlocalrunner_backend = from-ini\n')
    run(BACKEND_SOURCE, '-s').stdout.fnmatch_lines(['*BACKEND from-ini*'])
    result = run(BACKEND_SOURCE + '''
    @pytest.mark.localrunner(backend='nope')
    def test_unknown_backend(localrunner):
        with pytest.raises(TypeError, match='unknown backend'):
            localrunner.run_component(dsl.component(base_image=IMG)(lambda: None))
''', '-s', '--localrunner-backend', 'kubernetes-like')
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(['*BACKEND kubernetes-like*'])


def test_docker_without_an_engine_is_skipped_with_the_reason(run, monkeypatch):
    monkeypatch.setenv('DOCKER_HOST', 'unix:///nonexistent/docker.sock')
    result = run(BACKEND_SOURCE, '-rs', '--localrunner-backend', 'docker')
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(['SKIPPED*localrunner backend "docker": no Docker engine answers*'])


def test_docker_without_an_engine_fails_under_ci(run, monkeypatch):
    monkeypatch.setenv('DOCKER_HOST', 'unix:///nonexistent/docker.sock')
    monkeypatch.setenv('CI', 'true')           # after `run` took it away for the other tests
    result = run('''
        @pytest.mark.localrunner(backend='docker')
        def test_docker(localrunner):
            pass
    ''')
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(['*no Docker engine answers*CI=true: Docker tests must run, not be skipped*'])


@pytest.mark.docker
def test_docker_backend_runs_a_component(run, tmp_path):
    from tests.support import docker_image, require_base_image
    require_base_image()
    (tmp_path / 'only-on-the-host').write_text('')
    result = run(f'''
        HOST_FILE = {str(tmp_path / 'only-on-the-host')!r}
    ''' + '''
        @dsl.component(base_image=IMG)
        def sees(path: str) -> bool:
            import os
            return os.path.exists(path)

        @pytest.mark.localrunner(backend='docker')
        def test_in_docker(localrunner):
            r = localrunner.run_component(sees, path=HOST_FILE).raise_for_state()
            assert r.backend == 'docker' and r.output is False         # not mounted in the container

        @pytest.mark.localrunner(backend='docker', mounts=[HOST_FILE])
        def test_in_docker_with_a_mount(localrunner):
            assert localrunner.run_component(sees, path=HOST_FILE).output is True

        def test_on_host(localrunner):
            assert localrunner.run_component(sees, path=HOST_FILE).output is True
    ''', f'--localrunner-image=python:3.11-slim={docker_image.DEFAULT_TAG}')
    result.assert_outcomes(passed=3)


# ---------------------------------------------------------------------- 5 isolation
def test_each_test_has_its_own_cache_and_environments_are_shared(run, tmp_path):
    env_dir = tmp_path / 'envs'
    source = '''
        @dsl.component(base_image=IMG, packages_to_install=['pandas'])
        def rows(n: int) -> int:
            import pandas as pd
            return len(pd.DataFrame({'a': range(n)}))

        def test_first(localrunner, tmp_path):
            r = localrunner.run_component(rows, n=3)
            assert r.output == 3 and not r.cached
            assert r.run_dir.startswith(str(tmp_path))
            print('FIRST BUILT', bool(r.environment_log))
            assert localrunner.run_component(rows, n=3).cached           # same test: a hit

        def test_second(localrunner):
            r = localrunner.run_component(rows, n=3)
            assert r.output == 3 and not r.cached                        # its own cache: a miss
            assert r.environment_log == []                               # the venv is shared: no install

        @pytest.mark.localrunner(shared_cache=True)
        def test_shared_one(localrunner, localrunner_shared_root):
            r = localrunner.run_component(rows, n=4)
            assert r.run_dir.startswith(localrunner_shared_root) and not r.cached

        @pytest.mark.localrunner(shared_cache=True)
        def test_shared_two(localrunner):
            assert localrunner.run_component(rows, n=4).cached           # asked for the shared cache

        @pytest.mark.localrunner(use_cache=False)
        def test_no_cache(localrunner):
            localrunner.run_component(rows, n=5)
            assert not localrunner.run_component(rows, n=5).cached
    '''
    first = run(source, '-s', f'--localrunner-env-dir={env_dir}')
    first.assert_outcomes(passed=5)
    first.stdout.fnmatch_lines(['*FIRST BUILT True*'])
    again = run(source, '-s', f'--localrunner-env-dir={env_dir}')       # a later session
    again.assert_outcomes(passed=5)
    again.stdout.fnmatch_lines(['*FIRST BUILT False*'])


# ---------------------------------------------------------------------- 6 failure reports
def test_a_failing_component_shows_its_traceback_and_log_in_the_report(run):
    result = run('''
        @dsl.component(base_image=IMG)
        def explode(x: int) -> int:
            print(f'about to explode with {x}')
            raise ValueError(f'kaboom-{x}')

        @dsl.component(base_image=IMG)
        def after(x: int) -> int:
            return x

        @dsl.pipeline(name='chain')
        def chain():
            after(x=explode(x=11).output)

        def test_plain_assert(localrunner):
            r = localrunner.run_component(explode, x=7)
            assert r.succeeded

        def test_raise_for_state(localrunner):
            localrunner.run_component(explode, x=8).raise_for_state()

        def test_output_of_a_failed_run(localrunner):
            localrunner.run_component(explode, x=9).output

        def test_pipeline(localrunner):
            r = localrunner.run_pipeline(chain)
            assert r.tasks['after'].state == 'SKIPPED'
            r.raise_for_state()

        def test_expected_failure_passes(localrunner):
            r = localrunner.run_component(explode, x=10)
            assert r.state == 'FAILED' and 'kaboom-10' in r.logs and r.error == 'exited with code 1'
            assert [t.name for t in r.failed_tasks] == ['explode']
    ''')
    result.assert_outcomes(failed=4, passed=1)
    out = result.stdout.str()
    for x in (7, 8, 9, 11):
        assert f'ValueError: kaboom-{x}' in out and f'about to explode with {x}' in out
    assert 'localrunner: explode FAILED' in out               # the report section of the plain assert
    assert 'Traceback (most recent call last):' in out
    assert 'task explode FAILED: exited with code 1' in out
    assert 'kaboom-10' not in out                             # a passing test adds nothing
    assert 'Got executor_input' not in out                    # KFP's input dump is left out
    assert out.count('localrunner: ') == 1                    # failures that say it all get no extra section
