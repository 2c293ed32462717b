"""The kubernetes backend brings a pod's outputs back as out.tar.gz (a real S3 server here):
what a pod packs is unpacked into its writable folders and nowhere else. A member that is a
link out of the folder (absolute or relative), a hard link to a file outside, or a file
that lands outside through a link an earlier member made is refused: the attempt fails
and nothing outside the folder changes."""
import io
import os
import tarfile

import pytest

from localrunner.backends.kubernetes.pod_spec import Staging
from localrunner.backends.kubernetes.staging import S3Settings, Stager


def _member(name: str, kind: str = 'file', target: str = '', data: bytes = b'') -> tuple:
    info = tarfile.TarInfo(name.lstrip('/'))
    if kind == 'dir':
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    elif kind == 'symlink':
        info.type, info.linkname = tarfile.SYMTYPE, target
    elif kind == 'hardlink':
        info.type, info.linkname = tarfile.LNKTYPE, target.lstrip('/')
    else:
        info.size, info.mode = len(data), 0o644
    return info, (io.BytesIO(data) if kind == 'file' else None)


def _stage_out(s3, out: str, members: list, name: str) -> None:
    env, client = s3
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w:gz') as tar:
        for info, data in members:
            tar.addfile(info, data)
    prefix = f'staging/{name}'
    client.put_object('team-cache', f'{prefix}/out.tar.gz', io.BytesIO(buf.getvalue()), len(buf.getvalue()))
    stager = Stager(S3Settings(endpoint=env['LOCALRUNNER_S3_ENDPOINT'], bucket='team-cache', access_key='testing',
                               secret_key='testing', secure=False))
    stager.stage_out(prefix, Staging(downloads=[], upload_url='', upload_paths=[out], volumes=[]), set())


@pytest.fixture
def out(tmp_path):
    folder = tmp_path / 'root' / 'runs' / 'r' / 'tasks' / 't' / 'out'
    folder.mkdir(parents=True)
    return str(folder)


def test_a_pods_files_are_unpacked_into_its_folder(s3, out, sentinel):
    _stage_out(s3, out, [_member(out, 'dir'), _member(f'{out}/artifacts', 'dir'),
                         _member(f'{out}/artifacts/model', data=b'weights'),
                         _member(f'{out}/artifacts/latest', 'symlink', 'model'),
                         _member('/elsewhere/ignored', data=b'not in a writable folder')], 'good')
    assert open(os.path.join(out, 'artifacts', 'model'), 'rb').read() == b'weights'
    assert os.readlink(os.path.join(out, 'artifacts', 'latest')) == 'model'
    assert not os.path.exists('/elsewhere/ignored')
    sentinel.assert_unchanged()


@pytest.mark.parametrize('case', ['absolute-link', 'relative-link', 'hard-link'])
def test_a_pod_cannot_write_outside_its_folder_through_a_link(case, s3, out, sentinel):
    up = os.path.relpath(sentinel.dir, out)
    members = {
        'absolute-link': [_member(f'{out}/esc', 'symlink', sentinel.dir),
                          _member(f'{out}/esc/secret.txt', data=b'overwritten')],
        'relative-link': [_member(f'{out}/esc', 'symlink', up),
                          _member(f'{out}/esc/secret.txt', data=b'overwritten')],
        'hard-link': [_member(f'{out}/esc', 'hardlink', sentinel.secret)],
    }[case]
    with pytest.raises(tarfile.FilterError):
        _stage_out(s3, out, [_member(out, 'dir')] + members, case)
    assert not os.path.lexists(os.path.join(out, 'esc', 'secret.txt')) or os.path.islink(os.path.join(out, 'esc'))
    sentinel.assert_unchanged()
