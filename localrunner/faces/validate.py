"""Command-line values, checked before anything runs: each bad one is one line, exit 2.

The `type=` functions are argparse's (cli.py): a bad value becomes argparse's one-line
usage error naming the option. `check_destinations` runs after parsing: the run root and
every file the command will write must be writable places, so a run never does hours of
work and then fails to write its result (and never leaves half a run behind).
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import re

from localrunner.errors import UsageError
from localrunner.units import parse_duration

# S3 bucket naming rules (AWS "Bucket naming rules"; MinIO applies the same): 3-63 characters
# of lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit
_BUCKET = re.compile(r'^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$')
_CONTROL = re.compile(r'[\x00-\x1f\x7f]')


def _bad(text: str, why: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(f'{text!r}: {why}')


def _whole(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise _bad(text, f'expected a whole number >= {least}')
    return value


def positive_int(text: str) -> int:
    """--max-parallel: a whole number >= 1."""
    return _whole(text, 1)


def non_negative_int(text: str) -> int:
    """--keep, --keep-runs: a whole number >= 0."""
    return _whole(text, 0)


def duration(text: str) -> str:
    """--cache-max-age, --older-than: checked with the one duration parser (units.py); the
    text itself is kept, for the command that reads it."""
    try:
        parse_duration(text)
    except ValueError:
        raise _bad(text, 'not a duration (e.g. 90s, 15m, 12h, 7d, 2w)') from None
    return text


def gpus(text: str) -> str:
    """--gpus: all | none | a count | ids (0,2 or device=0,2). Which ids exist is known only
    after detection (run_command.build_options); this checks the form."""
    from localrunner.backends.gpus import GpuRequestError, parse_gpus
    try:
        parse_gpus(text, ())
    except GpuRequestError as e:
        raise _bad(text, str(e)) from None
    return text


def s3_url(text: str) -> str:
    """--remote-cache: s3://BUCKET[/PREFIX] with a valid bucket name."""
    if not text.startswith('s3://'):
        raise _bad(text, 'expected s3://BUCKET[/PREFIX]')
    bucket, _, prefix = text[len('s3://'):].partition('/')
    if not bucket:
        raise _bad(text, 'no bucket (expected s3://BUCKET[/PREFIX])')
    if not _BUCKET.match(bucket) or '..' in bucket or _is_ip(bucket):
        raise _bad(text, f'{bucket!r} is not a valid bucket name (3-63 lowercase letters, digits, dots or '
                         'hyphens, starting and ending with a letter or digit)')
    if _CONTROL.search(prefix):
        raise _bad(text, 'the prefix contains a control character')
    return text


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------------------- destinations
def _existing_ancestor(path: str) -> str:
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _probe(folder: str) -> None:
    """Creates and removes a file in FOLDER: the one test of writability that also holds
    for root, read-only mounts and ACLs (os.access does not)."""
    import tempfile                     # here: `localrunner --help` and the like need none
    fd, probe = tempfile.mkstemp(dir=folder, prefix='.localrunner-probe-')
    os.close(fd)
    os.unlink(probe)


def _folder_of(flag: str, shown: str, folder: str) -> str:
    """The nearest existing folder at or above FOLDER; UsageError when that is a file."""
    if not shown.strip():
        raise UsageError(f'{flag}: empty path')
    there = _existing_ancestor(folder)
    if not os.path.isdir(there):
        what = 'is a file' if there == os.path.abspath(os.path.expanduser(shown)) else f'{there} is a file'
        raise UsageError(f'{flag} {shown}: {what}, not a folder')
    return there


def writable_folder(flag: str, path: str, shown: str = '') -> None:
    """PATH is (or can be made as) a folder we can write in."""
    shown = shown or path
    there = _folder_of(flag, shown, os.path.abspath(os.path.expanduser(path)))
    try:
        _probe(there)
    except OSError as e:
        raise UsageError(f'{flag} {shown}: cannot write in {there} ({e.strerror or e})') from None


def writable_file(flag: str, path: str) -> None:
    """PATH can be (re)written: not a folder, and its folder is (or can be made) writable."""
    full = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(full):
        raise UsageError(f'{flag} {path}: is a folder, expected a file name')
    writable_folder(flag, os.path.dirname(full), shown=path)


def root_folder(flag: str, path: str) -> None:
    """A root that is only read: it may be missing, but it may not be a file."""
    _folder_of(flag, path, os.path.abspath(os.path.expanduser(path)))


def outside_root(flag: str, path: str, root: str) -> None:
    """A file the run writes at its end must not be a folder the run makes: the root, a
    folder above it, or one of the root's own folders (layout.py)."""
    from localrunner.layout import RootLayout
    layout = RootLayout(root)
    full = os.path.abspath(os.path.expanduser(path))
    own = (layout.runs_dir, layout.cache_dir, layout.pvcs_dir, layout.compiled_dir, layout.quarantine_dir)
    if full in own or os.path.commonpath([full, layout.root]) == full:
        raise UsageError(f'{flag} {path}: is a folder this run makes under --root {root}, expected a file name')


def check_destinations(args: argparse.Namespace) -> None:
    """Every place the command will write, checked before it starts."""
    command = args.command
    if command in ('run', 'explain-cache'):
        dry = command == 'explain-cache' or args.dry_run
        writable_folder('--root', args.root)        # a dry run too: it opens the cache there
        outputs = [('--result-json', args.result_json)]
        if not dry:                                 # written after a real run only
            outputs += [('--report', args.report), ('--junit-xml', getattr(args, 'junit_xml', None))]
        for flag, path in outputs:
            if path:
                writable_file(flag, path)
                outside_root(flag, path, args.root)
    elif command in ('cache', 'runs'):
        if (command, args.action) in (('cache', 'gc'), ('cache', 'prune'), ('cache', 'verify'), ('runs', 'prune')):
            writable_folder('--root', args.root)
        else:
            root_folder('--root', args.root)
        if command == 'runs' and args.action == 'report' and args.output:
            writable_file('-o', args.output)
        if command == 'runs' and getattr(args, 'html', None):     # runs compare --html FILE
            writable_file('--html', args.html)
