"""`localrunner envs`: the shared environments can be listed and pruned safely."""
import os

from kfp import dsl

from tests.helpers import compile_pipeline, run_cli, run_pipeline_file, states


@dsl.component
def tiny() -> int:
    return 1


@dsl.pipeline(name='envs')
def envs_pipeline():
    tiny()


def test_list_prune_and_rebuild(tmp_path):
    env_dir = str(tmp_path / 'envs')
    env = {'LOCALRUNNER_ENV_DIR': env_dir}
    path = compile_pipeline(envs_pipeline, tmp_path / 'e.yaml')
    rc, _, proc = run_pipeline_file(path, tmp_path / 'root', env=env)
    assert rc == 0, proc.stdout + proc.stderr
    listing = run_cli('envs', 'ls', '--kind', 'venv', env=env)
    assert listing.returncode == 0 and listing.stdout.count('venv') == 1 and env_dir in listing.stdout
    kept = run_cli('envs', 'prune', '--kind', 'venv', '--older-than', '1h', env=env)
    assert 'removed 0' in kept.stdout
    gone = run_cli('envs', 'prune', '--kind', 'venv', '--all', env=env)
    assert 'removed 1' in gone.stdout
    assert [d for d in os.listdir(env_dir) if not d.startswith('.')] == []
    rc, result, proc = run_pipeline_file(path, tmp_path / 'root', '--no-cache', env=env)
    assert rc == 0 and states(result)['tiny'] == 'SUCCEEDED'
    assert 'building environment' in proc.stdout
