"""The run root on disk: the one place that turns names into paths under it.

    <root>/runs/<run id>/result.json               the run's record (docs/architecture.md); RUNNING while it runs
    <root>/runs/<run id>/runner.json               only while it runs: who runs it (engine/recovery.py)
    <root>/runs/<run id>/workspace/                KFP's pipeline workspace
    <root>/runs/<run id>/tasks/<task path>/        host-only: executor_input.json, logs/
        logs/attempt-<n>.log                       each attempt's output (never writable by the task)
        out/                                       the ONLY folder a task may write (its workdir)
            artifacts/<name>[.<i>]                 output artifacts (uri == path)
            parameters/<name>                      output parameter files
            executor_output.json
        empty-dirs/<volume>/                       kfp-kubernetes empty_dir_mount, writable
        tmp/                                       a container's /tmp (isolated backends), writable
    <root>/cache/                                  localrunner_cache (cas/, actions/, memo.db, last/, leases/,
                                                   secret.key)
    <root>/pvcs/<claim>/                           local folders behind PVCs (CreatePVC / mount_pvc)
    <root>/compiled/                               pipelines compiled from .py by `run PIPELINE.py`
    <root>/quarantine/                             damaged state files moved aside

Every path is built by `within(base, *names)`: each name must be one plain path component
(no separator, no '..', no NUL or control characters), and the result — with any symlink
already on disk resolved — must stay inside its base. A pipeline, a container or a cache
entry names things; only this module turns those names into places.

What a task wrote is read back with open_beneath() / check_links(): every component below
the task's folder is opened relative to its parent's descriptor with O_NOFOLLOW, so a link
a task planted (where the host expects a file, or inside a folder output, pointing out of
it) is refused, never followed. Host logs are opened with open_log() (O_NOFOLLOW too).
"""
from __future__ import annotations

import errno
import functools
import os
import re
import stat
from typing import BinaryIO, Iterable

MAX_NAME_BYTES = 200
_CONTROL = re.compile(r'[\x00-\x1f\x7f]')


class PathEscape(ValueError):
    """A name that is not one plain path component, or a path that leaves its base."""


def check_name(name: str, what: str = 'name') -> str:
    """`name` if it can be one path component; PathEscape naming `what` otherwise."""
    if not isinstance(name, str) or not name:
        raise PathEscape(f'{what}: empty name {name!r}')
    if '/' in name or '\\' in name:
        raise PathEscape(f'{what}: {name!r} contains a path separator')
    if name in ('.', '..'):
        raise PathEscape(f'{what}: {name!r} is not a name')
    if _CONTROL.search(name):
        raise PathEscape(f'{what}: {name!r} contains a control character')
    if len(name.encode('utf-8', 'surrogatepass')) > MAX_NAME_BYTES:
        raise PathEscape(f'{what}: {name[:40]!r}... is longer than {MAX_NAME_BYTES} bytes')
    return name


def printable(text: str) -> str:
    """`text` with control characters escaped: a message naming a path or a link target a
    task chose (a newline in a file name) stays one line."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], str(text))


def is_inside(path: str, base: str) -> bool:
    """`path` is `base` or below it, by spelling (both normalised absolute paths)."""
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


@functools.lru_cache(maxsize=64)
def _real(base: str) -> str:
    # a run asks for thousands of paths under the same few bases
    return os.path.realpath(base)


def within(base: str, *names: str, what: str = 'name') -> str:
    """base/names... — each name one checked component (so the path can't leave `base` by
    its spelling); then every component that exists on disk is checked for a symlink (a task
    may have planted one) that resolves outside `base`. Walking stops at the first component
    that doesn't exist: nothing below it can be a link."""
    path = base
    for name in names:
        path = os.path.join(path, check_name(name, what))
    walked = base
    for name in names:
        walked = os.path.join(walked, name)
        try:
            mode = os.lstat(walked).st_mode
        except FileNotFoundError:
            break
        except OSError:
            mode = 0
        # resolved only where a link is: a run asks for thousands of paths, almost none of them links
        if stat.S_ISLNK(mode) and not is_inside(os.path.realpath(walked), _real(base)):
            raise PathEscape(f'{what}: {os.path.join(*names)!r} leads outside {base} '
                             f'(through a link to {printable(os.path.realpath(walked))})')
    return path


def split_task_path(task: str) -> list[str]:
    """A '/'-joined task path ('for-loop-2.0/condition-3/train') as checked components."""
    parts = task.split('/')
    for part in parts:
        check_name(part, 'task')
    return parts


class TaskLayout:
    """The folders of one task of a run (see the module docstring)."""

    def __init__(self, tasks_dir: str, task: str):
        self.name = task
        self.dir = within(tasks_dir, *split_task_path(task), what='task')
        self.out = os.path.join(self.dir, 'out')
        self.executor_input = os.path.join(self.dir, 'executor_input.json')
        self.executor_output = os.path.join(self.out, 'executor_output.json')
        self.logs_dir = os.path.join(self.dir, 'logs')

    def log(self, attempt: int) -> str:
        # the folder may not lead out of the task's; a link in the file's place is replaced by open_log
        return os.path.join(within(self.dir, 'logs', what='log folder'), f'attempt-{int(attempt)}.log')

    def artifact(self, name: str, index: int = 0) -> str:
        check_name(name, 'output artifact')
        return os.path.join(self.out, 'artifacts', name if index == 0 else f'{name}.{int(index)}')

    def parameter(self, name: str) -> str:
        return within(os.path.join(self.out, 'parameters'), name, what='output parameter')

    def empty_dir(self, volume: str) -> str:
        return within(os.path.join(self.dir, 'empty-dirs'), volume, what='empty_dir volume')

    def tmp(self) -> str:
        """The host folder behind a container's /tmp (where KFP's Artifact.set_path usually
        points): what a task leaves there can be collected, as KFP's launcher collects it."""
        return os.path.join(self.dir, 'tmp')

    def imports(self) -> str:
        return os.path.join(self.dir, 'imports')


class RunLayout:
    def __init__(self, run_dir: str):
        self.dir = run_dir
        self.result = os.path.join(run_dir, 'result.json')
        self.runner = os.path.join(run_dir, 'runner.json')
        self.workspace = os.path.join(run_dir, 'workspace')
        self.tasks_dir = os.path.join(run_dir, 'tasks')

    def task(self, task: str) -> TaskLayout:
        return TaskLayout(self.tasks_dir, task)


class RootLayout:
    def __init__(self, root: str):
        self.root = os.path.abspath(os.path.expanduser(root))
        self.runs_dir = os.path.join(self.root, 'runs')
        self.cache_dir = os.path.join(self.root, 'cache')
        self.cas_dir = os.path.join(self.cache_dir, 'cas')
        self.actions_dir = os.path.join(self.cache_dir, 'actions')
        self.memo_db = os.path.join(self.cache_dir, 'memo.db')
        self.last_dir = os.path.join(self.cache_dir, 'last')          # each task's last key, to explain a miss
        self.secret_key = os.path.join(self.cache_dir, 'secret.key')
        self.leases_dir = os.path.join(self.cache_dir, 'leases')
        self.pvcs_dir = os.path.join(self.root, 'pvcs')
        self.compiled_dir = os.path.join(self.root, 'compiled')
        self.quarantine_dir = os.path.join(self.root, 'quarantine')

    def run(self, run_id: str, run_dir: str | None = None) -> RunLayout:
        """The run's folders; `run_dir` overrides where (a dry run's scratch folder)."""
        return RunLayout(run_dir or within(self.runs_dir, run_id, what='run id'))

    def run_ids(self) -> list[str]:
        """Run folders (never a link), oldest first by modification time."""
        try:
            names = [e.name for e in os.scandir(self.runs_dir) if e.is_dir(follow_symlinks=False)]
        except OSError:
            return []
        return sorted(names, key=self.run_mtime)

    def run_mtime(self, run_id: str) -> float:
        try:
            return os.stat(os.path.join(self.runs_dir, run_id)).st_mtime
        except OSError:                 # removed meanwhile (a concurrent runs prune)
            return 0.0

    def pvc(self, claim: str) -> str:
        return within(self.pvcs_dir, claim, what='PVC name')


def ensure_dirs(paths: Iterable[str]) -> None:
    """os.makedirs(path, exist_ok=True) for each path in turn (a parent listed before its
    folders), in fewer system calls: one mkdir for a folder whose parent exists, where makedirs
    first stats every level (thousands of tasks a run, each call a trip out of the GIL)."""
    for path in paths:
        try:
            os.mkdir(path)
        except FileNotFoundError:       # a parent is missing
            os.makedirs(path, exist_ok=True)
        except FileExistsError:
            if not os.path.isdir(path):         # as makedirs: there, but not a folder
                raise


# ---------------------------------------------------------------------------- what a task wrote
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO a task left must not hang the host (fstat refuses it after)
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISREG, 'file'), (stat.S_ISDIR, 'folder'), (stat.S_ISLNK, 'link'),
                       (stat.S_ISFIFO, 'FIFO'), (stat.S_ISSOCK, 'socket'), (stat.S_ISCHR, 'device'),
                       (stat.S_ISBLK, 'device')):
        if test(mode):
            return name
    return 'special file'


def _refuse_link(dir_fd: int, name: str, shown: str, what: str) -> PathEscape:
    try:
        target = os.readlink(name, dir_fd=dir_fd)
    except OSError:
        target = '?'
    if not os.path.isabs(target):
        target = f'{target} (= {os.path.normpath(os.path.join(os.path.dirname(shown), target))})'
    return PathEscape(f'{what}: {printable(shown)} is a link to {printable(target)}; '
                      'links a task leaves are never followed')


def _open_at(dir_fd: int, name: str, shown: str, what: str, folder: bool) -> int:
    """`name` in the folder `dir_fd`, never through a link; a file or a folder only."""
    mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    if stat.S_ISLNK(mode):
        raise _refuse_link(dir_fd, name, shown, what)
    if not (stat.S_ISDIR(mode) or (stat.S_ISREG(mode) and not folder)):
        raise PathEscape(f'{what}: {printable(shown)} is a {file_kind(mode)}, expected a '
                         f'{"folder" if folder else "file or folder"}')
    try:
        fd = os.open(name, _DIR_FLAGS if folder else _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENXIO):   # swapped meanwhile
            raise PathEscape(f'{what}: {printable(shown)} changed while it was read ({e.strerror})') from None
        raise
    if file_kind(os.fstat(fd).st_mode) != file_kind(mode):
        os.close(fd)
        raise PathEscape(f'{what}: {printable(shown)} changed while it was read')
    return fd


def open_beneath(base: str, path: str, what: str = 'output') -> int:
    """A descriptor of `path` (a regular file or a folder at or below `base`), opened
    without following any link: `base` itself and each component below it are opened
    relative to their parent's descriptor with O_NOFOLLOW, and each must be a folder (the
    last one a file or a folder). A link, a FIFO, a device... is PathEscape naming `what`
    and, for a link, where it points; nothing there is FileNotFoundError. The caller
    closes the descriptor (/proc/self/fd/N reads exactly what was checked)."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(base))
    if rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
        raise PathEscape(f'{what}: {printable(path)} is outside {base}')
    try:
        fd = os.open(base, _DIR_FLAGS)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise PathEscape(f'{what}: {base} is not a folder (a link?)') from None
        raise
    parts = [] if rel == os.curdir else rel.split(os.sep)
    shown = base
    try:
        for i, name in enumerate(parts):
            shown = os.path.join(shown, name)
            last = i == len(parts) - 1
            child = _open_at(fd, name, shown, what, folder=not last)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def fd_path(fd: int) -> str:
    """A path that opens exactly what `fd` is (Linux /proc): hands a checked descriptor to
    code that takes paths (the CAS), without a second lookup through the task's names."""
    return f'/proc/self/fd/{fd}'


def read_beneath(base: str, path: str, what: str, limit: int) -> bytes:
    """The bytes of the regular file `path` below `base` (open_beneath), at most `limit`:
    PathEscape when it is a folder, ValueError when it is longer."""
    fd = open_beneath(base, path, what)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PathEscape(f'{what}: {printable(path)} is a folder, expected a file')
        chunks, size = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b''.join(chunks)
            size += len(chunk)
            if size > limit:
                raise ValueError(f'{what}: {printable(path)} is larger than {limit} bytes')
            chunks.append(chunk)
    finally:
        os.close(fd)


def check_links(dir_fd: int, shown: str, inside: str, what: str) -> None:
    """Every entry of the folder `dir_fd` (shown as `shown`), at any depth, is a file, a
    folder or a link that resolves inside the folder `inside` (a task's out folder): a link
    out of it, a FIFO, a socket or a device is PathEscape naming `what` and where it leads."""
    real_inside = os.path.realpath(inside)
    for entry in sorted(os.listdir(dir_fd)):
        here = os.path.join(shown, entry)
        mode = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False).st_mode
        if stat.S_ISLNK(mode):
            target = os.readlink(entry, dir_fd=dir_fd)
            resolved = os.path.realpath(os.path.join(shown, target))
            if not is_inside(resolved, real_inside):
                raise PathEscape(f'{what}: {printable(here)} is a link to {printable(target)}, '
                                 f'outside the task\'s out folder '
                                 f'{inside}; links a task leaves are never followed out of it')
        elif stat.S_ISDIR(mode):
            child = _open_at(dir_fd, entry, here, what, folder=True)
            try:
                check_links(child, here, inside, what)
            finally:
                os.close(child)
        elif not stat.S_ISREG(mode):
            raise PathEscape(f'{what}: {printable(here)} is a {file_kind(mode)}, expected files and folders')


def open_log(path: str) -> BinaryIO:
    """A host-only log opened for append, never through a link: the path is the engine's
    (TaskLayout.log), so a link in its place (one a task planted) is removed — the link,
    not what it points to — and the log made anew."""
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    # O_NONBLOCK: a FIFO in its place must not block the host (no effect on a regular file)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    for _ in range(3):
        try:
            return os.fdopen(os.open(path, flags, 0o644), 'ab')
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
            os.unlink(path)
    raise OSError(errno.ELOOP, f'cannot create the log {path}: something keeps putting a link in its place')
