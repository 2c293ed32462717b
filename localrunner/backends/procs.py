"""This machine's processes, as the lifecycle code needs them (Linux /proc).

- Who a process is: a pid alone is reused, so a process is named by (boot id, pid
  namespace, pid, start time in clock ticks). `identity()` gives this process's; `is_alive()`
  answers for a recorded one, and only where it can tell (same boot, same pid namespace).
- Which processes carry a marker (NAME=VALUE) in their environment: how a run finds the
  processes it started that left their process group (setsid, double fork).
- Killing a process group without an exception for "already gone".

Standard library only: the reaper helper (backends/reaper.py) imports this module in a bare
interpreter (`python -I -S`).
"""
from __future__ import annotations

import os
import signal
from typing import Optional

_BOOT_ID = '/proc/sys/kernel/random/boot_id'


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ''


def boot_id() -> str:
    """This boot of this machine's kernel ('' when unknown): pids mean nothing across boots."""
    return _read(_BOOT_ID)


def pid_namespace() -> str:
    """This process's pid namespace ('' when unknown): a pid means nothing in another one
    (a runner in a container sharing the Docker engine)."""
    try:
        return os.readlink('/proc/self/ns/pid')
    except OSError:
        return ''


def _stat(pid: int) -> Optional[tuple[str, int]]:
    """(state letter, start time in clock ticks since boot) of PID, None when it is gone."""
    text = _read(f'/proc/{int(pid)}/stat')
    if not text:
        return None
    # the command name (field 2) is in parentheses and may hold spaces or ')': split after the last ')'
    fields = text[text.rfind(')') + 2:].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def start_ticks(pid: int) -> Optional[int]:
    found = _stat(pid)
    return found[1] if found else None


def identity(pid: Optional[int] = None) -> dict:
    """{'pid', 'start', 'boot', 'pidns'} of PID (default: this process)."""
    pid = os.getpid() if pid is None else pid
    return {'pid': pid, 'start': start_ticks(pid), 'boot': boot_id(), 'pidns': pid_namespace()}


def can_judge(ident: dict) -> bool:
    """Whether a process recorded as IDENT can be looked up here: same boot, same pid namespace."""
    return bool(ident.get('boot')) and ident.get('boot') == boot_id() and ident.get('pidns') == pid_namespace()


def is_alive(ident: dict) -> bool:
    """Whether the process recorded as IDENT still runs. Only meaningful when can_judge():
    callers decide what an unjudgeable process means. A zombie is not alive."""
    try:
        pid = int(ident['pid'])
    except (KeyError, TypeError, ValueError):
        return False
    found = _stat(pid)
    if found is None or found[0] in ('Z', 'X', 'x'):
        return False
    return ident.get('start') is None or found[1] == ident.get('start')


def marked_pids(marker: str) -> list[int]:
    """Pids of this user's processes whose environment holds MARKER ('NAME=VALUE') exactly.
    Other users' environments cannot be read, and are not ours to kill anyway."""
    want = marker.encode()
    me = os.getpid()
    found = []
    try:
        names = os.listdir('/proc')
    except OSError:
        return found
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f'/proc/{name}/environ', 'rb') as f:
                environ = f.read()
        except OSError:
            continue
        if want in environ.split(b'\0'):
            found.append(int(name))
    return found


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    """Sends SIG to process group PGID; False when no process is left in it."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:      # the id now names somebody else's group: not ours
        return False


def kill(pid: int, sig: int = signal.SIGKILL) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
