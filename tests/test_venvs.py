"""Environments for the subprocess backend: built once, shared, never half-made."""
import multiprocessing
import os

import pytest

from localrunner.backends.base import LaunchError
from localrunner.environments.python_env import InstallStep, PythonEnv, lift_prologue
from localrunner.environments.venvs import VenvCache

KFP_STEP = InstallStep(('kfp==2.17.3',), no_deps=True)


def _build(root, marker_dir):
    env = PythonEnv((KFP_STEP,))
    cache = VenvCache(root)
    log_lines = []
    cache.ensure(env, log_lines.append)
    built = any(line.startswith('building environment') for line in log_lines)
    if built:
        open(os.path.join(marker_dir, f'built-{os.getpid()}'), 'w').close()


def test_concurrent_builders_build_once(tmp_path):
    markers = tmp_path / 'markers'
    markers.mkdir()
    ctx = multiprocessing.get_context('spawn')
    procs = [ctx.Process(target=_build, args=(str(tmp_path / 'envs'), str(markers))) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    assert len(os.listdir(markers)) == 1
    [venv] = [d for d in os.listdir(tmp_path / 'envs') if not d.endswith('.lock')]
    assert os.path.exists(tmp_path / 'envs' / venv / '.complete')
    assert os.path.isdir(tmp_path / 'envs' / venv / 'lib')


def test_failed_build_names_the_package_and_leaves_nothing(tmp_path):
    env = PythonEnv((InstallStep(('localrunner-no-such-package-xyz==9.9.9',)), KFP_STEP))
    cache = VenvCache(str(tmp_path / 'envs'))
    with pytest.raises(LaunchError) as info:
        cache.ensure(env, lambda line: None)
    assert 'localrunner-no-such-package-xyz' in str(info.value)
    assert info.value.retryable is False
    assert not os.path.exists(cache.path(env))


def test_prologue_is_lifted_and_keyed_by_its_steps():
    command = ['sh', '-c', "\nPIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip install --quiet 'pandas' && "
               "python3 -m pip install --quiet --no-warn-script-location 'kfp==2.17.3' '--no-deps' && \"$0\" \"$@\"\n",
               'sh', '-ec', 'run it']
    env, argv = lift_prologue(command, ['--executor_input', '{{$}}'])
    assert argv == ['sh', '-ec', 'run it', '--executor_input', '{{$}}']
    assert env.packages == ('pandas', 'kfp==2.17.3')
    other, _ = lift_prologue([c.replace("'pandas'", "'pandas==2.2.3'") for c in command], [])
    assert other.key() != env.key()
    # not KFP's form: left alone
    assert lift_prologue(['echo', 'hi'], ['x']) == (None, ['echo', 'hi', 'x'])
