import os
import subprocess
import sys

import pytest

from localrunner_cache import CAS, StatMemo, digest_bytes, digest_file
from localrunner_cache import memo as memo_module


def _age(path, seconds=100):
    """Make a file look last modified ``seconds`` ago (out of the racy window)."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - seconds * 10**9))


@pytest.fixture
def counting(monkeypatch):
    calls = []
    real = memo_module.digest_fileobj

    def counted(f):
        calls.append(f.name)
        return real(f)

    monkeypatch.setattr(memo_module, "digest_fileobj", counted)
    return calls


def test_unchanged_file_is_hashed_once(tmp_path, counting):
    memo = StatMemo(tmp_path / "memo.db")
    f = tmp_path / "f"
    f.write_bytes(b"abc" * 1000)
    _age(f)
    assert memo.digest_file(f) == digest_bytes(b"abc" * 1000)
    assert digest_file(f, memo) == digest_bytes(b"abc" * 1000)
    assert memo.digest_file(str(f)) == digest_bytes(b"abc" * 1000)
    assert len(counting) == 1
    assert len(memo) == 1


def test_memo_persists_across_instances(tmp_path, counting):
    f = tmp_path / "f"
    f.write_bytes(b"x")
    _age(f)
    StatMemo(tmp_path / "memo.db").digest_file(f)
    assert StatMemo(tmp_path / "memo.db").digest_file(f) == digest_bytes(b"x")
    assert len(counting) == 1


def test_changed_content_is_rehashed_even_with_same_size_and_mtime(tmp_path, counting):
    memo = StatMemo(tmp_path / "memo.db")
    f = tmp_path / "f"
    f.write_bytes(b"aaaa")
    _age(f)
    assert memo.digest_file(f) == digest_bytes(b"aaaa")
    old = os.stat(f)
    f.write_bytes(b"bbbb")
    os.utime(f, ns=(old.st_atime_ns, old.st_mtime_ns))  # same size, same mtime: ctime moves
    assert memo.digest_file(f) == digest_bytes(b"bbbb")
    assert len(counting) == 2


def test_replaced_file_is_rehashed(tmp_path, counting):
    memo = StatMemo(tmp_path / "memo.db")
    f = tmp_path / "f"
    f.write_bytes(b"one")
    _age(f)
    memo.digest_file(f)
    tmp = tmp_path / "g"
    tmp.write_bytes(b"two")
    os.replace(tmp, f)
    assert memo.digest_file(f) == digest_bytes(b"two")


def test_recently_modified_file_is_not_trusted(tmp_path, counting):
    memo = StatMemo(tmp_path / "memo.db")
    f = tmp_path / "f"
    f.write_bytes(b"fresh")  # modified "now": a later write could keep the same mtime
    memo.digest_file(f)
    memo.digest_file(f)
    assert len(counting) == 2


def test_symlinked_path_shares_the_entry_of_its_target(tmp_path, counting):
    memo = StatMemo(tmp_path / "memo.db")
    f = tmp_path / "f"
    f.write_bytes(b"data")
    _age(f)
    os.symlink(f, tmp_path / "link")
    memo.digest_file(f)
    assert memo.digest_file(tmp_path / "link") == digest_bytes(b"data")
    assert len(counting) == 1


def test_cas_put_file_with_memo_skips_reading_known_objects(tmp_path, counting):
    memo = StatMemo(tmp_path / "memo.db")
    cas = CAS(tmp_path / "store")
    f = tmp_path / "f"
    f.write_bytes(b"payload")
    _age(f)
    d = cas.put_file(f, memo)
    assert d == digest_bytes(b"payload")
    assert cas.put_file(f, memo) == d
    assert len(counting) == 1  # the second put trusted the memo and found the object


def test_memo_shared_by_concurrent_processes(tmp_path):
    files = []
    for i in range(50):
        f = tmp_path / f"f{i}"
        f.write_bytes(os.urandom(1000 + i))
        _age(f)
        files.append(str(f))
    db = str(tmp_path / "memo.db")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from localrunner_cache import StatMemo;"
        "m = StatMemo(sys.argv[2]);"
        "print(' '.join(m.digest_file(f) for f in sys.argv[3:] for _ in range(3)))"
    )
    pkg = os.path.join(os.path.dirname(__file__), "..")
    procs = [subprocess.Popen([sys.executable, "-c", code, pkg, db, *files], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    expected = " ".join(digest_file(f) for f in files for _ in range(3))
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        assert out.strip() == expected
    assert len(StatMemo(db)) == 50
