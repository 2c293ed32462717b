import json
import os

import pytest
import xxhash

from lrcache_helpers import write_tree
from localrunner_cache import CacheError, digest_bytes, digest_file, digest_tree
from localrunner_cache.digest import TREE_MAGIC, decode_tree, encode_tree


def test_digest_bytes_is_xxh3_128_hex():
    d = digest_bytes(b"hello")
    assert d == xxhash.xxh3_128_hexdigest(b"hello")
    assert len(d) == 32 and d == d.lower() and int(d, 16) >= 0
    assert digest_bytes(b"") != digest_bytes(b"\0")


@pytest.mark.parametrize("size", [0, 1, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 * (1 << 20) + 7])
def test_digest_file_matches_digest_bytes_across_chunk_boundaries(tmp_path, size):
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    assert digest_file(path) == digest_bytes(data)
    assert digest_file(str(path)) == digest_bytes(data)


def test_digest_file_missing_raises_oserror(tmp_path):
    with pytest.raises(OSError):
        digest_file(tmp_path / "nope")


def test_tree_object_is_canonical_json_of_sorted_entries(tmp_path):
    root = write_tree(tmp_path / "t", {"b": b"B", "a": ("exec", b"A"), "d/x": b"X", "l": ("symlink", "a")})
    d = digest_tree(root)
    entries = [
        {"name": "a", "mode": "exec", "digest": digest_bytes(b"A")},
        {"name": "b", "mode": "file", "digest": digest_bytes(b"B")},
        {"name": "d", "mode": "dir", "digest": digest_bytes(encode_tree([{"name": "x", "mode": "file", "digest": digest_bytes(b"X")}]))},
        {"name": "l", "mode": "symlink", "digest": digest_bytes(b"a")},
    ]
    expected = TREE_MAGIC + json.dumps(entries, sort_keys=True, separators=(",", ":")).encode()
    assert encode_tree(list(reversed(entries))) == expected
    assert d == digest_bytes(expected)
    assert decode_tree(expected) == entries


def test_digest_tree_depends_on_content_not_location(tmp_path):
    spec = {"a": b"1", "sub/b": b"2", "empty": {}}
    assert digest_tree(write_tree(tmp_path / "x", spec)) == digest_tree(write_tree(tmp_path / "y", spec))


@pytest.mark.parametrize("change", [
    {"a": b"changed"},
    {"renamed": b"1"},
    {"a": ("exec", b"1")},
    {"extra": b""},
    {"emptydir": {}},
    {"link": ("symlink", "elsewhere")},
])
def test_digest_tree_changes_with_any_change(tmp_path, change):
    base = {"a": b"1", "link": ("symlink", "a")}
    changed = dict(base)
    if "renamed" in change:
        del changed["a"]
    changed.update(change)
    assert digest_tree(write_tree(tmp_path / "x", base)) != digest_tree(write_tree(tmp_path / "y", changed))


def test_digest_tree_rejects_special_files(tmp_path):
    root = write_tree(tmp_path / "t", {"a": b"1"})
    os.mkfifo(os.path.join(root, "fifo"))
    with pytest.raises(CacheError, match="unsupported file type"):
        digest_tree(root)


def test_decode_tree_rejects_unsafe_names():
    bad = encode_tree([{"name": "..", "mode": "file", "digest": "0" * 32}])
    with pytest.raises(CacheError):
        decode_tree(bad)
    with pytest.raises(CacheError):
        decode_tree(b"not a tree")


def test_library_never_imports_localrunner():
    import subprocess
    import sys

    code = (
        "import sys, localrunner_cache, localrunner_cache.remote, localrunner_cache.gc;"
        "bad = [m for m in sys.modules if m == 'localrunner' or m.startswith('localrunner.')];"
        "assert not bad, bad"
    )
    pkg = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {pkg!r}); {code}"], check=True)
