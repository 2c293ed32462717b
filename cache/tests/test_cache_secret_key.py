"""The per-cache secret key: made once, atomically, private; keyed digests of secrets."""

import os
import stat
import subprocess

import pytest

from lrcache_helpers import run_worker
from localrunner_cache import CacheError, load_or_create_key, secret_digest
from localrunner_cache.secret_key import read_key


def test_key_is_made_once_private_and_kept(tmp_path):
    path = tmp_path / "cache" / "secret.key"
    key = load_or_create_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(key) == 64 and int(key, 16) >= 0
    assert load_or_create_key(path) == key
    assert not [n for n in os.listdir(path.parent) if n.endswith(".tmp")]


def test_processes_creating_the_key_at_once_agree(tmp_path):
    path, workdir = tmp_path / "secret.key", tmp_path / "work"
    workdir.mkdir()
    procs = [run_worker("key", path, workdir, stdout=subprocess.PIPE) for _ in range(6)]
    for p in procs:
        assert p.stdout.readline().strip() == b"ready"
    (workdir / "go").touch()
    keys = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert [p.returncode for p in procs] == [0] * 6
    assert len(keys) == 1 and keys == {read_key(path)}
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


@pytest.mark.parametrize("damage", [b"", b"short", "folder"])
def test_a_damaged_key_is_quarantined_and_replaced(tmp_path, damage):
    path = tmp_path / "secret.key"
    if damage == "folder":
        path.mkdir()
    else:
        path.write_bytes(damage)
    warnings = []
    key = load_or_create_key(path, quarantine_dir=tmp_path / "quarantine", warnings=warnings)
    assert len(key) == 64 and read_key(path) == key
    assert len(warnings) == 1 and "replaced by a new key" in warnings[0]
    assert len(os.listdir(tmp_path / "quarantine")) == 1


def test_a_team_key_file_is_read_as_given(tmp_path):
    team = tmp_path / "team.key"
    team.write_bytes(os.urandom(32))
    assert read_key(team) == open(team, "rb").read().strip()
    team.write_bytes(b"too short\n")
    with pytest.raises(CacheError, match="needs at least 16"):
        read_key(team)
    with pytest.raises(CacheError, match="cannot read"):
        read_key(tmp_path / "absent.key")


def test_secret_digest_is_keyed(tmp_path):
    a = secret_digest(b"k" * 32, b"hunter2")
    assert a.startswith("hmac-sha256:") and len(a) == len("hmac-sha256:") + 64
    assert a == secret_digest(b"k" * 32, b"hunter2")
    assert a != secret_digest(b"j" * 32, b"hunter2"), "another cache, another digest"
    assert a != secret_digest(b"k" * 32, b"hunter3")
