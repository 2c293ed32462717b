"""spec/schema_memo.py: a file that passed KFP's schema check is not checked against it again
(protobuf is not even imported); a changed file, a damaged or planted marker, and our own
checks (references, names) never ride on a marker. Real files and processes; the user cache
dir is a temp folder (XDG_CACHE_HOME)."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from localrunner.cli import main
from localrunner.spec.schema_memo import SchemaMemo

HELLO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'examples', 'hello_pipeline.yaml')

# Loads a pipeline in a fresh process; says whether protobuf's json_format was imported (the
# schema check ran) and the pipeline's name.
_LOAD = ('import sys\nfrom localrunner.spec import load_pipeline\n'
         'p = load_pipeline(sys.argv[1])\n'
         'print("checked" if "google.protobuf.json_format" in sys.modules else "memo", p.name)\n')


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    home = tmp_path / 'user-cache'
    monkeypatch.setenv('XDG_CACHE_HOME', str(home))     # platformdirs' user cache dir, here and in children
    return home


def load_in_process(path: str) -> str:
    proc = subprocess.run([sys.executable, '-c', _LOAD, path], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()[0]


def markers(cache_home) -> list[str]:
    folder = cache_home / 'localrunner' / 'validated'
    return sorted(n for n in os.listdir(folder) if not n.startswith('.')) if folder.exists() else []


def refused(capsys, path: str, root) -> str:
    rc = main(['run', path, '--root', str(root), '-q'])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in err, err
    assert not os.path.exists(root)                          # nothing ran
    return lines[0]


def test_an_unchanged_file_is_checked_once(tmp_path, cache_home):
    path = shutil.copy(HELLO, tmp_path / 'p.yaml')
    assert load_in_process(path) == 'checked'
    assert len(markers(cache_home)) == 1
    assert load_in_process(path) == 'memo'
    assert len(markers(cache_home)) == 1


def test_a_changed_file_is_checked_again(tmp_path, cache_home):
    path = shutil.copy(HELLO, tmp_path / 'p.yaml')
    load_in_process(path)
    with open(path, 'a') as f:
        f.write('\n# an edit\n')                              # same pipeline, other bytes
    assert load_in_process(path) == 'checked'
    assert len(markers(cache_home)) == 2


def test_an_invalid_file_is_refused_beside_a_marker_of_its_valid_version(tmp_path, cache_home, capsys):
    path = tmp_path / 'p.yaml'
    shutil.copy(HELLO, path)
    load_in_process(str(path))
    spec = yaml.safe_load(open(HELLO))
    spec['root']['notAField'] = 1                             # only KFP's schema knows it is wrong
    path.write_text(yaml.safe_dump(spec))
    line = refused(capsys, str(path), tmp_path / 'root')
    assert 'invalid pipeline spec' in line and 'notAField' in line, line
    assert len(markers(cache_home)) == 1                      # the refused text left no marker


@pytest.mark.parametrize('damage', ['garbage', 'another key', 'empty', 'a folder'])
def test_a_damaged_marker_is_ignored(tmp_path, cache_home, capsys, damage):
    """Planted at the very key of an invalid file: still refused. At a valid file's key: it is
    checked again and the marker is whole afterwards."""
    spec = yaml.safe_load(open(HELLO))
    spec['root']['notAField'] = 1
    bad = tmp_path / 'bad.yaml'
    bad.write_text(yaml.safe_dump(spec))
    good = shutil.copy(HELLO, tmp_path / 'good.yaml')
    for target in (str(bad), good):
        memo = SchemaMemo.for_text(open(target, encoding='utf-8').read())
        os.makedirs(os.path.dirname(memo.path), exist_ok=True)
        if damage == 'a folder':
            os.mkdir(memo.path)
        else:
            content = {'garbage': b'\x00\xff{not json', 'another key': json.dumps({'key': '0' * 64}).encode(),
                       'empty': b''}[damage]
            with open(memo.path, 'wb') as f:
                f.write(content)
        if target == str(bad):
            assert 'invalid pipeline spec' in refused(capsys, target, tmp_path / 'root')
        else:
            assert load_in_process(target) == 'checked'
            if damage != 'a folder':                          # a folder is not replaced: checked every time
                assert memo.passed() and load_in_process(target) == 'memo'


def test_our_own_checks_run_whatever_a_marker_says(tmp_path, cache_home, capsys):
    """A marker with the right key (as if planted) skips only KFP's schema: references and
    names that become paths are still refused."""
    spec = yaml.safe_load(open(HELLO))
    spec['root']['dag']['tasks']['echo']['dependentTasks'] = ['ghost']
    ref = tmp_path / 'ref.yaml'
    ref.write_text(yaml.safe_dump(spec))
    spec = yaml.safe_load(open(HELLO))
    spec['pipelineInfo']['name'] = '../escape'
    name = tmp_path / 'name.yaml'
    name.write_text(yaml.safe_dump(spec))
    for path, words in ((ref, 'ghost'), (name, '../escape')):
        memo = SchemaMemo.for_text(path.read_text())
        os.makedirs(os.path.dirname(memo.path), exist_ok=True)
        with open(memo.path, 'w') as f:
            json.dump({'key': memo.key}, f)
        assert memo.passed()
        line = refused(capsys, str(path), tmp_path / 'root')
        assert words in line and 'invalid pipeline spec' not in line, line


def test_old_markers_make_room(tmp_path, cache_home):
    """Past MAX_MARKERS, the oldest half goes and the new marker stays."""
    from localrunner import user_cache
    folder = cache_home / 'localrunner' / 'validated'
    folder.mkdir(parents=True)
    for i in range(user_cache.MAX_MARKERS):
        old = folder / f'{i:064x}'
        old.write_text('{}')
        os.utime(old, (1_000_000 + i, 1_000_000 + i))
    path = shutil.copy(HELLO, tmp_path / 'p.yaml')
    assert load_in_process(path) == 'checked'
    left = markers(cache_home)
    assert len(left) == user_cache.MAX_MARKERS + 1 - (user_cache.MAX_MARKERS + 1) // 2
    assert f'{0:064x}' not in left and f'{user_cache.MAX_MARKERS - 1:064x}' in left
    assert load_in_process(path) == 'memo'


# ---------------------------------------------------------------------------- the parse memo

# Loads a pipeline in a fresh process; says whether PyYAML was imported (the text was parsed)
# and a digest of everything loaded (the spec and the platform document).
_PARSE = ('import hashlib, json, sys\nfrom localrunner.spec import load_pipeline\n'
          'p = load_pipeline(sys.argv[1])\n'
          'doc = json.dumps([p.spec, p.platform], sort_keys=True).encode()\n'
          'print("parsed" if "yaml" in sys.modules else "memo", hashlib.sha256(doc).hexdigest())\n')


def parse_in_process(path: str) -> tuple[str, str]:
    proc = subprocess.run([sys.executable, '-c', _PARSE, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    how, digest = proc.stdout.split()
    return how, digest


def parse_memos(cache_home) -> list:
    folder = cache_home / 'localrunner' / 'parsed'
    return sorted(p for p in folder.iterdir() if not p.name.startswith('.')) if folder.exists() else []


def test_an_unchanged_yaml_file_is_parsed_once_into_the_same_pipeline(tmp_path, cache_home):
    path = shutil.copy(HELLO, tmp_path / 'p.yaml')
    first = parse_in_process(path)
    again = parse_in_process(path)
    assert first[0] == 'parsed' and again == ('memo', first[1])        # PyYAML not even imported
    assert len(parse_memos(cache_home)) == 1
    with open(path, 'a') as f:
        f.write('\n# an edit\n')                                       # other bytes: parsed again
    assert parse_in_process(path) == ('parsed', first[1])
    assert len(parse_memos(cache_home)) == 2


@pytest.mark.parametrize('damage', ['garbage', 'empty', 'other key', 'not a list'])
def test_a_damaged_or_foreign_parse_memo_is_not_used(tmp_path, cache_home, damage):
    path = shutil.copy(HELLO, tmp_path / 'p.yaml')
    how, digest = parse_in_process(path)
    [memo] = parse_memos(cache_home)
    planted = {'garbage': '{"key": ', 'empty': '',
               'other key': json.dumps({'key': '0' * 64, 'docs': [{'pipelineInfo': {'name': 'planted'}}]}),
               'not a list': json.dumps({'key': memo.name, 'docs': {'pipelineInfo': {'name': 'planted'}}})}[damage]
    memo.write_text(planted)
    assert parse_in_process(path) == ('parsed', digest)                # parsed again, the same pipeline
    assert parse_in_process(path) == ('memo', digest)                  # and memoized afresh


@pytest.mark.parametrize('planted', ['binary', 'link'])
def test_binary_bytes_or_a_link_in_place_of_a_parse_memo(tmp_path, cache_home, planted):
    """Bytes that are not UTF-8 are no memo; a link planted in its place is read like any
    file (it holds no key: parsed again) and the rewrite replaces the link, never writing
    through it: the file it pointed at is unchanged."""
    path = shutil.copy(HELLO, tmp_path / 'p.yaml')
    how, digest = parse_in_process(path)
    [memo] = parse_memos(cache_home)
    outside = tmp_path / 'outside.json'
    outside.write_bytes(b'{"not": "a memo"}')
    memo.unlink()
    if planted == 'binary':
        memo.write_bytes(b'\xff\xfe\x00garbage\x80')
    else:
        memo.symlink_to(outside)
    assert parse_in_process(path) == ('parsed', digest)
    assert parse_in_process(path) == ('memo', digest)
    assert not memo.is_symlink() and outside.read_bytes() == b'{"not": "a memo"}'


def test_what_json_cannot_hold_exactly_is_never_memoized(tmp_path, cache_home):
    import datetime

    from localrunner.spec.schema_memo import ParseMemo
    for i, docs in enumerate(([{'when': datetime.date(2026, 12, 4)}], [{1: 'a number key'}], [{'x': float('nan')}],
                              [{'b': b'bytes'}])):
        memo = ParseMemo.for_text(f'text {i}')
        memo.record(docs)
        assert not os.path.exists(memo.path) and memo.load() is None, docs
    memo = ParseMemo.for_text('plain')
    memo.record([{'a': [1, 2.5, True, None, 'x']}])
    assert memo.load() == [{'a': [1, 2.5, True, None, 'x']}]
