"""Secrets (item 6): secret and config-map volumes are mounted read-only; a secret's value
(env or volume) enters the cache key only as a keyed digest under the cache's own
secret.key, so rotating a secret is a miss and its bytes are nowhere under the root nor in
a remote bucket; results of a task that read a secret are not pushed to a remote cache
unless the user opts in (--remote-cache-secrets).
"""
import os
import secrets
import shutil
import stat

import pytest
from kfp import dsl, kubernetes

from tests.security.conftest import assert_nowhere, bucket_objects, compile_to, run, task
from tests.support.docker_image import DEFAULT_TAG as IMAGE

SCRIPT = r'''
mount="$0"; out="$1"; mkdir -p "$(dirname "$out")"
val=$(cat "$mount/token" 2>/dev/null || echo none)
if (echo overwritten > "$mount/token") 2>/dev/null; then w=WRITABLE; else w=read-only; fi
if (touch "$mount/new") 2>/dev/null; then w="$w,CREATED"; fi
printf '%s|%s|%s' "${#API_TOKEN}" "$(printf %s "$val" | sha256sum | cut -c1-12)" "$w" > "$out"
'''


@dsl.container_component
def uses_secret(mount: str, out: dsl.OutputPath(str)):
    # what it hands over: the secret's length, a digest of the mounted value, and whether it could write there
    return dsl.ContainerSpec(image=IMAGE, command=['sh', '-c', SCRIPT], args=[mount, out])


@dsl.container_component
def env_only(out: dsl.OutputPath(str)):
    return dsl.ContainerSpec(image=IMAGE, args=[out],
                             command=['sh', '-c', 'mkdir -p "$(dirname "$0")"; echo "${#API_TOKEN}" > "$0"'])


@dsl.container_component
def plain(out: dsl.OutputPath(str)):
    return dsl.ContainerSpec(image=IMAGE, command=['sh', '-c', 'mkdir -p "$(dirname "$0")"; echo plain > "$0"'],
                             args=[out])


@dsl.pipeline(name='secret-volume')
def volume_pipeline():
    t = uses_secret(mount='/mnt/creds')
    kubernetes.use_secret_as_env(t, secret_name='api', secret_key_to_env={'token': 'API_TOKEN'})
    kubernetes.use_secret_as_volume(t, secret_name='api', mount_path='/mnt/creds')
    c = uses_secret(mount='/mnt/config')
    kubernetes.use_config_map_as_volume(c, config_map_name='settings', mount_path='/mnt/config')


@dsl.pipeline(name='secret-env')
def env_pipeline():
    t = env_only()
    kubernetes.use_secret_as_env(t, secret_name='api', secret_key_to_env={'token': 'API_TOKEN'})
    # the volume does not reach a host process, but what it holds is still part of the key
    kubernetes.use_secret_as_volume(t, secret_name='api', mount_path='/mnt/creds')
    plain()


@pytest.fixture
def secret(tmp_path):
    folder = tmp_path / 'api'
    folder.mkdir()
    value = f'hunter2-{secrets.token_hex(8)}'
    (folder / 'token').write_text(value)
    (folder / 'other').write_text('only-in-the-volume')
    return folder, value


@pytest.mark.docker
def test_secret_and_config_map_volumes_are_read_only_and_keyed_by_content(docker_image, secret, sentinel, root,
                                                                         tmp_path):
    folder, value = secret
    config = tmp_path / 'settings'
    config.mkdir()
    (config / 'token').write_text('a setting')
    pipeline = compile_to(volume_pipeline, tmp_path / 'v.yaml')
    args = ['--backend', 'docker', '--secret', f'api={folder}', '--config-map', f'settings={config}']
    rc, result, proc = run(pipeline, root, *args)
    assert rc == 0, proc.stdout + proc.stderr
    length, _, access = task(result, 'uses-secret')['outputs']['parameters']['out'].split('|')
    assert length == str(len(value)) and access == 'read-only'
    assert task(result, 'uses-secret-2')['outputs']['parameters']['out'].endswith('|read-only')
    assert (folder / 'token').read_text() == value and sorted(os.listdir(folder)) == ['other', 'token']
    assert sorted(os.listdir(config)) == ['token']
    rc, again, _ = run(pipeline, root, *args)
    assert {t['name']: t['state'] for t in again['tasks']} == {'uses-secret': 'CACHED', 'uses-secret-2': 'CACHED'}
    (folder / 'other').write_text('rotated')          # only in the volume: its content is in the key
    (config / 'token').write_text('another setting')
    rc, rotated, _ = run(pipeline, root, *args)
    assert {t['name']: t['state'] for t in rotated['tasks']} == {'uses-secret': 'SUCCEEDED',
                                                                 'uses-secret-2': 'SUCCEEDED'}
    assert_nowhere(value.encode(), root)
    sentinel.assert_unchanged()


def test_rotating_a_secret_is_a_miss_and_its_value_is_nowhere_under_the_root(secret, sentinel, root, tmp_path):
    folder, value = secret
    pipeline = compile_to(env_pipeline, tmp_path / 'e.yaml')
    rc, result, proc = run(pipeline, root, '--secret', f'api={folder}')
    assert rc == 0, proc.stdout + proc.stderr
    assert task(result, 'env-only')['outputs']['parameters']['out'].strip() == str(len(value))
    rc, result, _ = run(pipeline, root, '--secret', f'api={folder}')
    assert task(result, 'env-only')['state'] == 'CACHED'
    (folder / 'other').write_text('rotated')          # the volume's content, not the env value
    rc, result, _ = run(pipeline, root, '--secret', f'api={folder}')
    assert task(result, 'env-only')['state'] == 'SUCCEEDED'
    assert task(result, 'plain')['state'] == 'CACHED'
    (folder / 'token').write_text(value + '-rotated')   # the env value
    rc, result, _ = run(pipeline, root, '--secret', f'api={folder}')
    assert task(result, 'env-only')['state'] == 'SUCCEEDED'
    key = os.path.join(root, 'cache', 'secret.key')
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert_nowhere(value.encode(), root)
    sentinel.assert_unchanged()


def test_a_secret_reading_task_is_not_pushed_unless_the_user_opts_in(s3, secret, sentinel, tmp_path):
    env, client = s3
    folder, value = secret
    pipeline = compile_to(env_pipeline, tmp_path / 'e.yaml')
    alice = str(tmp_path / 'alice')
    remote = ['--secret', f'api={folder}', '--remote-cache', 's3://team-cache/kept']
    rc, result, proc = run(pipeline, alice, *remote, env=env)
    assert rc == 0, proc.stdout + proc.stderr
    pushed = bucket_objects(client, 'team-cache', 'kept/')
    names = ' '.join(pushed)
    assert task(result, 'plain')['cache_key'] in names
    assert task(result, 'env-only')['cache_key'] not in names       # kept on this machine
    # bob, with his own cache key, runs the secret task himself; the plain one comes from alice
    bob = str(tmp_path / 'bob')
    rc, result, proc = run(pipeline, bob, *remote, env=env)
    assert {t['name']: t['state'] for t in result['tasks']} == {'env-only': 'SUCCEEDED', 'plain': 'CACHED'}
    for data in bucket_objects(client, 'team-cache').values():
        assert value.encode() not in data
    assert_nowhere(value.encode(), alice, bob)
    sentinel.assert_unchanged()


def test_opting_in_pushes_it_keyed_by_the_teams_secret_key(s3, secret, sentinel, tmp_path):
    env, client = s3
    folder, value = secret
    pipeline = compile_to(env_pipeline, tmp_path / 'e.yaml')
    alice, carol = str(tmp_path / 'alice'), str(tmp_path / 'carol')
    remote = ['--secret', f'api={folder}', '--remote-cache', 's3://team-cache/shared', '--remote-cache-secrets']
    rc, result, proc = run(pipeline, alice, *remote, env=env)
    assert rc == 0, proc.stdout + proc.stderr
    assert task(result, 'env-only')['cache_key'] in ' '.join(bucket_objects(client, 'team-cache', 'shared/'))
    # a teammate holding the same secret key computes the same keyed digest: a hit
    os.makedirs(os.path.join(carol, 'cache'))
    shutil.copy2(os.path.join(alice, 'cache', 'secret.key'), os.path.join(carol, 'cache', 'secret.key'))
    rc, result, proc = run(pipeline, carol, *remote, env=env)
    assert rc == 0, proc.stdout + proc.stderr
    assert task(result, 'env-only')['state'] == 'CACHED'
    for data in bucket_objects(client, 'team-cache').values():
        assert value.encode() not in data
    sentinel.assert_unchanged()
