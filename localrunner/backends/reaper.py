"""A run's last line of defence for the processes it started on this machine.

The subprocess backend starts every task in its own session (its own process group), so a
Ctrl-C at the terminal reaches only the runner, which then stops the tasks itself. The other
side of that coin: when the runner dies without stopping them (kill -9, the OOM killer, a
crash), nothing would. prctl(PR_SET_PDEATHSIG) does not cover it: it fires when the *thread*
that forked dies (a pool thread, here), reaches only the direct child (not a shell's
children), and needs a preexec_fn, which is unsafe in a threaded process.

So each run has a reaper: a tiny helper process in its own session, started on the run's
first launch, that holds the read end of a pipe. The runner writes '+PGID' when a task's
group starts and '-PGID' when it is gone. When the pipe reaches EOF -- the runner closed it
at the end of the run, or the kernel closed it because the runner died -- the helper sends
SIGTERM to every group still registered and to every process of this user whose environment
carries the run's marker (LOCALRUNNER_RUN_ID=<run id>: what left its group with setsid or a
double fork), then SIGKILL after a grace period; then it removes the tasks' private temp
folders still registered ('+D/tmp/lr-...', '-D...': made and removed by the backend around
each attempt, outside the run root), and exits.

    Reaper(marker, grace).watch(pgid) / .forget(pgid) / .watch_folder(path) /
        .forget_folder(path) / .close()                              (the runner's side)
    python -I -S -c ... reaper.main([fd, marker, grace])             (the helper's side)
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from localrunner.backends import procs

MARKER_VAR = 'LOCALRUNNER_RUN_ID'
_BOOT = ('import sys; sys.path.insert(0, sys.argv.pop(1)); '
         'from localrunner.backends.reaper import main; main(sys.argv[1:])')


class Reaper:
    """The runner's side: lazily starts the helper; never raises (it is a safety net)."""

    def __init__(self, marker: str, grace: float = 2.0):
        self.marker = marker
        self.grace = grace
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._helper: subprocess.Popen | None = None
        self._closed = False

    def _start(self) -> None:
        read, write = os.pipe()          # both ends non-inheritable (PEP 446): tasks never hold one
        package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = {k: v for k, v in os.environ.items() if k != MARKER_VAR}   # it must not match itself
        try:
            self._helper = subprocess.Popen(
                [sys.executable, '-I', '-S', '-c', _BOOT, package_parent, str(read), self.marker,
                 str(self.grace)],
                pass_fds=(read,), start_new_session=True, cwd='/', env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError:
            os.close(write)
            write = -1
        finally:
            os.close(read)
        self._fd = write if write >= 0 else None

    def _send(self, line: str) -> None:
        with self._lock:
            if self._closed:
                return
            if self._fd is None and self._helper is None:
                self._start()
            fd = self._fd
        if fd is None:
            return
        try:
            os.write(fd, line.encode())     # < PIPE_BUF: atomic, whichever thread writes
        except OSError:
            pass                            # the helper is gone: nothing more we can do here

    def watch(self, pgid: int) -> None:
        self._send(f'+{int(pgid)}\n')

    def forget(self, pgid: int) -> None:
        if self._fd is not None:
            self._send(f'-{int(pgid)}\n')

    def watch_folder(self, path: str) -> None:
        """A task's private temp folder: removed by the helper if the runner dies first."""
        if _folder_line(path):
            self._send(f'+D{path}\n')

    def forget_folder(self, path: str) -> None:
        if self._fd is not None and _folder_line(path):
            self._send(f'-D{path}\n')

    def close(self, timeout: float = 30.0) -> None:
        """End of the run: the helper sweeps what is left (escaped daemons) and exits."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        if self._helper is not None:
            try:
                self._helper.wait(timeout)
            except subprocess.TimeoutExpired:
                pass


def _folder_line(path: str) -> bool:
    """Only what the backend makes: an absolute lr-* folder, one line, one atomic write."""
    return (os.path.isabs(path) and os.path.basename(path).startswith('lr-') and '\n' not in path
            and len(path) < 400)


# ---------------------------------------------------------------- the helper process

class _Stop(Exception):
    pass


def _stop(signum, frame):
    raise _Stop()


def _read_registered(fd: int) -> tuple[set[int], set[bytes]]:
    """Registered groups and temp folders, until EOF (or a signal to this helper)."""
    groups: set[int] = set()
    folders: set[bytes] = set()
    pending = b''
    try:
        while True:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b'\n')
            for line in lines:
                if line[1:2] == b'D':
                    (folders.add if line.startswith(b'+') else folders.discard)(line[2:])
                    continue
                try:
                    pgid = int(line[1:])
                except ValueError:
                    continue
                if line.startswith(b'+'):
                    groups.add(pgid)
                elif line.startswith(b'-'):
                    groups.discard(pgid)
    except (_Stop, OSError):
        pass
    return groups, folders


def sweep(groups: set[int], marker: str, grace: float) -> None:
    """SIGTERM the groups and the marked processes; SIGKILL what is left after GRACE."""
    def marked() -> list[int]:
        return procs.marked_pids(marker)

    alive = {g for g in groups if procs.kill_group(g, signal.SIGTERM)}
    targets = marked()
    for pid in targets:
        procs.kill(pid, signal.SIGTERM)
    if not alive and not targets:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        time.sleep(0.05)
        alive = {g for g in alive if procs.kill_group(g, 0)}
        if not alive and not marked():
            return
    for _ in range(10):          # again for anything forked meanwhile
        alive = {g for g in alive if procs.kill_group(g, signal.SIGKILL)}
        left = marked()
        for pid in left:
            procs.kill(pid, signal.SIGKILL)
        if not left:
            return
        time.sleep(0.05)


def main(argv: list[str]) -> None:
    fd, marker, grace = int(argv[0]), argv[1], float(argv[2])
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop)          # asked to go: do the job first
    groups, folders = _read_registered(fd)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    sweep(groups, marker, grace)
    if folders:                 # the tasks are gone: nothing writes there any more
        import shutil
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)      # never through a link (fd-based)
