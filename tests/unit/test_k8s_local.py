"""k8s_local.py: the local meaning of kfp-kubernetes settings. The config below is what
kfp-kubernetes 2.17 compiles (use_secret_as_env/volume, use_config_map_as_env/volume,
mount_pvc, use_field_path_as_env, add_pod_label/annotation, set_timeout, empty_dir_mount,
add_node_selector) for one task."""
import json
import os

import pytest

from localrunner.engine import k8s_local
from localrunner.engine.inputs import Scope, parameter_value
from localrunner.engine.k8s_local import (LocalSources, apply, check_claim_name, claim_name, read_key_values,
                                          resolve_names)
from localrunner.engine.model import Outcome, State
from localrunner.engine.placeholders import RunContext
from localrunner.layout import RootLayout

CTX = RunContext('run-1', 'run-1', 'train', 'tid', 'T', '/root', '/ws')
CONFIG = {
    'activeDeadlineSeconds': '30',
    'configMapAsEnv': [{'configMapName': 'cfg', 'configMapNameParameter': {'runtimeValue': {'constant': 'cfg'}},
                        'keyToEnv': [{'configMapKey': 'A', 'envVar': 'CFG_A'}], 'optional': False}],
    'configMapAsVolume': [{'configMapName': 'cfg', 'configMapNameParameter': {'runtimeValue': {'constant': 'cfg'}},
                           'mountPath': '/etc/cfg', 'optional': False}],
    'emptyDirMounts': [{'mountPath': '/scratch', 'volumeName': 'scratch'}],
    'fieldPathAsEnv': [{'fieldPath': 'metadata.name', 'name': 'POD'},
                       {'fieldPath': "metadata.labels['team']", 'name': 'TEAM'},
                       {'fieldPath': "metadata.annotations['note']", 'name': 'NOTE'},
                       {'fieldPath': 'metadata.namespace', 'name': 'NS'}],
    'nodeSelector': {'labels': {'disk': 'ssd'}},
    'podMetadata': {'annotations': {'note': 'x'}, 'labels': {'team': 'ml'}},
    'pvcMount': [{'mountPath': '/data',
                  'pvcNameParameter': {'taskOutputParameter': {'outputParameterKey': 'name', 'producerTask': 'createpvc'}},
                  'taskOutputParameter': {'outputParameterKey': 'name', 'producerTask': 'createpvc'}},
                 {'constant': 'static', 'mountPath': '/static', 'pvcNameParameter': {'runtimeValue': {'constant': 'static'}}}],
    'secretAsEnv': [{'keyToEnv': [{'envVar': 'DB_USER', 'secretKey': 'user'}], 'optional': False, 'secretName': 'db',
                     'secretNameParameter': {'runtimeValue': {'constant': 'db'}}},
                    {'keyToEnv': [{'envVar': 'DB_PASS', 'secretKey': 'pass'}], 'optional': True,
                     'secretNameParameter': {'componentInputParameter': 'sname'}}],
    'secretAsVolume': [{'mountPath': '/etc/tls', 'optional': False, 'secretName': 'tls',
                        'secretNameParameter': {'runtimeValue': {'constant': 'tls'}}}],
}


@pytest.fixture
def world(tmp_path):
    """Local stand-ins: a secret folder, a secret file, a config map of KEY=VALUE lines."""
    (tmp_path / 'db').mkdir()
    (tmp_path / 'db' / 'user').write_text('admin')
    (tmp_path / 'db' / 'pass').write_text('hunter2')
    (tmp_path / 'tls').mkdir()
    (tmp_path / 'tls' / 'tls.crt').write_text('CERT')
    (tmp_path / 'cfg.env').write_text('A=1\nB=two\n')
    sources = LocalSources(secrets={'db': str(tmp_path / 'db'), 'tls': str(tmp_path / 'tls')},
                           config_maps={'cfg': str(tmp_path / 'cfg.env')})
    root = RootLayout(str(tmp_path / 'root'))
    task_layout = root.run('run-1').task('train')
    scope = Scope({'sname': 'db'}, {}, {'createpvc': Outcome(State.SUCCEEDED, parameters={'name': 'run-1-my-pvc'})}, '')

    private = tmp_path / 'private'
    private.mkdir()

    def private_dir(label):
        import tempfile
        return tempfile.mkdtemp(prefix=label + '-', dir=str(private))

    def go(config=CONFIG, srcs=sources):
        return apply(config, lambda ref: parameter_value(ref, scope, CTX)[1], srcs, pod_name='run-1-abcd1234',
                     task='train', empty_dir=task_layout.empty_dir, pvc_folder=root.pvc, private_dir=private_dir)
    return tmp_path, root, go


# ----------------------------------------------------------------- read_key_values
def test_a_folder_is_one_key_per_file(tmp_path):
    (tmp_path / 's').mkdir()
    (tmp_path / 's' / 'user').write_text('admin')
    (tmp_path / 's' / 'pass').write_text('p@ss\n')
    (tmp_path / 's' / 'sub').mkdir()                        # not a key
    assert read_key_values(str(tmp_path / 's')) == {'pass': 'p@ss\n', 'user': 'admin'}


def test_json_values_become_strings(tmp_path):
    (tmp_path / 's.json').write_text(json.dumps({'user': 'admin', 'port': 5432, 'opts': {'ssl': True}}))
    assert read_key_values(str(tmp_path / 's.json')) == {'user': 'admin', 'port': '5432', 'opts': '{"ssl": true}'}


def test_yaml(tmp_path):
    (tmp_path / 's.yaml').write_text('user: admin\nport: 5432\nurl: http://db:5432/x\n')
    assert read_key_values(str(tmp_path / 's.yaml')) == {'user': 'admin', 'port': '5432', 'url': 'http://db:5432/x'}


def test_key_value_lines(tmp_path):
    (tmp_path / 's.env').write_text('# a comment\nUSER=admin\n  URL = http://h:80/?a=b  \n\nnot a pair\n')
    assert read_key_values(str(tmp_path / 's.env')) == {'USER': 'admin', 'URL': 'http://h:80/?a=b'}


def test_an_empty_file_has_no_keys(tmp_path):
    (tmp_path / 'empty').write_text('')
    assert read_key_values(str(tmp_path / 'empty')) == {}


@pytest.mark.parametrize('text', ['# database credentials\nuser: admin\n', '---\nuser: admin\n'])
def test_yaml_with_a_header_line(tmp_path, text):
    (tmp_path / 's.yaml').write_text(text)
    assert read_key_values(str(tmp_path / 's.yaml')) == {'user': 'admin'}


def test_yaml_with_an_equals_sign_in_the_first_value(tmp_path):
    (tmp_path / 's.yaml').write_text('url: http://h/?a=b\nuser: admin\n')
    assert read_key_values(str(tmp_path / 's.yaml')) == {'url': 'http://h/?a=b', 'user': 'admin'}


# ----------------------------------------------------------------- apply
def test_secrets_and_config_maps_as_env(world):
    _, _, go = world
    effect = go()
    assert effect.env['DB_USER'] == 'admin'
    assert effect.env['DB_PASS'] == 'hunter2'          # its name from a pipeline parameter
    assert effect.env['CFG_A'] == '1'
    # secret values are marked so that the cache key holds only their digest; config maps are not
    assert effect.secret_env == {'DB_USER', 'DB_PASS'}


def test_secrets_and_config_maps_as_volumes(world):
    tmp_path, _, go = world
    volumes = go().volumes
    assert volumes[str(tmp_path / 'tls')] == '/etc/tls'
    # a config map given as a file of KEY=VALUE lines mounts as a folder of one file per key
    [cfg] = [host for host, mount in volumes.items() if mount == '/etc/cfg']
    assert cfg.startswith(str(tmp_path / 'private')) and sorted(os.listdir(cfg)) == ['A', 'B']
    assert open(os.path.join(cfg, 'B')).read() == 'two'


def test_a_secret_file_mounts_as_a_folder_of_keys(world):
    tmp_path, _, go = world
    (tmp_path / 'tls.json').write_text(json.dumps({'tls.crt': 'CERT', 'tls.key': 'KEY'}))
    sources = LocalSources(secrets={'tls': str(tmp_path / 'tls.json'), 'db': str(tmp_path / 'db')},
                           config_maps={'cfg': str(tmp_path / 'cfg.env')})
    [host] = [h for h, m in go(srcs=sources).volumes.items() if m == '/etc/tls']
    assert os.path.isdir(host)
    assert open(os.path.join(host, 'tls.crt')).read() == 'CERT'


def test_what_is_not_defined_locally_is_a_warning_unless_optional(world):
    tmp_path, _, go = world
    effect = go(srcs=LocalSources())
    said = '\n'.join(effect.warnings)
    assert "secret 'db' is not defined locally" in said and '--secret db=PATH' in said
    assert "secret 'tls'" in said and "config map 'cfg'" in said and '--config-map cfg=PATH' in said
    assert 'DB_PASS' not in effect.env and "'db'" in said
    assert not any('DB_PASS' in w for w in effect.warnings)        # the optional one is silent
    assert effect.env.keys() == {'POD', 'TEAM', 'NOTE', 'NS'} and effect.secret_env == set()


def test_a_missing_key_is_a_warning(world):
    _, _, go = world
    config = {'secretAsEnv': [{'secretName': 'db', 'keyToEnv': [{'secretKey': 'token', 'envVar': 'T'}]}]}
    effect = go(config)
    assert 'T' not in effect.env
    assert effect.warnings == ["train: secret 'db' has no key 'token'"]


def test_pod_metadata_and_field_paths(world):
    _, _, go = world
    effect = go()
    assert effect.labels == {'team': 'ml'} and effect.annotations == {'note': 'x'}
    assert effect.env['POD'] == 'run-1-abcd1234'
    assert effect.env['TEAM'] == 'ml' and effect.env['NOTE'] == 'x'
    assert effect.env['NS'] == 'local'


def test_timeout_empty_dirs_and_ignored_settings(world):
    _, root, go = world
    effect = go()
    assert effect.timeout_s == 30.0
    [scratch] = [h for h, m in effect.volumes.items() if m == '/scratch']
    assert os.path.isdir(scratch) and scratch.startswith(root.run('run-1').task('train').dir)
    assert effect.ignored == ['nodeSelector']
    assert go({}).timeout_s is None


def test_pvc_mounts_are_folders_under_the_root_or_given(world):
    tmp_path, root, go = world
    volumes = go().volumes
    assert volumes[root.pvc('run-1-my-pvc')] == '/data'           # named by CreatePVC's output
    assert volumes[root.pvc('static')] == '/static'
    assert os.path.isdir(root.pvc('static'))
    mine = tmp_path / 'my-data'
    sources = LocalSources(secrets={'db': str(tmp_path / 'db'), 'tls': str(tmp_path / 'tls')},
                           config_maps={'cfg': str(tmp_path / 'cfg.env')}, pvcs={'static': str(mine)})
    assert go(srcs=sources).volumes[str(mine)] == '/static'        # --pvc static=DIR


def test_a_pvc_mount_naming_nothing_is_a_warning(world):
    _, _, go = world
    effect = go({'pvcMount': [{'mountPath': '/x'}]})
    assert effect.volumes == {} and effect.warnings == ['train: pvcMount at /x names no PVC']


@pytest.mark.parametrize('name', ['../etc', '/etc', 'UPPER', 'a_b', '-a', 'a-', 'a..b', 'x' * 254])
def test_a_pvc_name_that_could_leave_the_root_is_refused(world, name):
    tmp_path, _, go = world
    with pytest.raises(ValueError, match='DNS-1123'):
        go({'pvcMount': [{'constant': name, 'mountPath': '/x'}]})
    assert not (tmp_path / 'etc').exists()


@pytest.mark.parametrize('name', ['my-claim', 'a', '0', 'a.b', 'run-1-my-pvc', 'x' * 253])
def test_check_claim_name_accepts_dns_names(name):
    assert check_claim_name(name) == name


@pytest.mark.parametrize('name', ['My-Claim', 'a/b', '..', 'a.', '.a', 'a b', None, 5])
def test_check_claim_name_refuses(name):
    with pytest.raises(ValueError):
        check_claim_name(name)


def test_claim_name():
    assert claim_name({'pvc_name': 'given'}, 'pipe-1') == 'given'
    named = claim_name({'pvc_name_suffix': '-my-pvc'}, 'Pipe-20240101-abc')
    assert named.startswith('pipe-20240101-abc') and named.endswith('-my-pvc')
    assert check_claim_name(named) == named
    assert claim_name({}, 'pipe-1') == 'pipe-1-pvc'
    assert claim_name({'pvc_name': '', 'pvc_name_suffix': ''}, 'pipe-1') == 'pipe-1-pvc'


def test_create_and_delete_pvc(tmp_path):
    root = RootLayout(str(tmp_path))
    mine = tmp_path / 'mine'
    mine.mkdir()
    (mine / 'keep').write_text('x')
    sources = LocalSources(pvcs={'mine': str(mine)})
    name = k8s_local.create_pvc({'pvc_name_suffix': '-data'}, sources, 'run-1', root.pvc)
    assert os.path.isdir(root.pvc(name))
    k8s_local.delete_pvc({'pvc_name': name}, sources, root.pvc)
    assert not os.path.exists(root.pvc(name))
    k8s_local.delete_pvc({'pvc_name': 'mine'}, sources, root.pvc)       # a folder the user mapped in: kept
    assert (mine / 'keep').read_text() == 'x'
    with pytest.raises(ValueError):
        k8s_local.delete_pvc({'pvc_name': '../mine'}, sources, root.pvc)


def test_resolve_names_for_a_cluster_backend():
    resolved = resolve_names(CONFIG, {'sname': 'db-prod'})
    assert [i['secretName'] for i in resolved['secretAsEnv']] == ['db', 'db-prod']
    assert resolved['pvcMount'][1]['pvcName'] == 'static'
    assert 'secretName' not in CONFIG['secretAsEnv'][1]                 # the input is not changed
