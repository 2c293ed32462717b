"""Which GPUs this machine has, and which task holds which.

The scheduler (engine/slots.py) gives an accelerator task exact device ids (not just a
count) from the one GpuInventory of the run, so two tasks never share a GPU: the Docker
backend turns them into DeviceRequests, the subprocess backend into CUDA_VISIBLE_DEVICES.
Pure Python; no CUDA import.
"""
from __future__ import annotations

import shutil
import subprocess
import threading
from typing import Iterable, Optional, Sequence

from localrunner.errors import LaunchError


MAX_DECLARED = 1024        # a declared count beyond any machine's (a DGX holds 16) is a mistake


class GpuRequestError(LaunchError):
    """A request no waiting can satisfy (more GPUs than exist, a bad --gpus value)."""

    def __init__(self, message: str):
        super().__init__(message, retryable=False)


def detect_gpus(timeout: float = 10.0) -> tuple[str, ...]:
    """GPU indices nvidia-smi reports; () when it is absent or fails (no driver)."""
    exe = shutil.which('nvidia-smi')
    if exe is None:
        return ()
    try:
        out = subprocess.run([exe, '--query-gpu=index', '--format=csv,noheader'],
                             capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return ()
    if out.returncode != 0:
        return ()
    return tuple(line.strip() for line in out.stdout.splitlines() if line.strip())


def describe(ids: Sequence[str]) -> str:
    return f"ids {','.join(ids)}" if ids else 'none detected'


def _ids(text: str) -> tuple[str, ...]:
    """'0,2' -> ('0', '2'): unique non-negative integers (as nvidia-smi numbers GPUs and
    CUDA_VISIBLE_DEVICES takes them), lowest first."""
    parts = [part.strip() for part in text.split(',')]
    if parts and parts[-1] == '':
        parts.pop()                     # '1,' is the list of one id
    numbers = []
    for part in parts:
        if not part.isdigit() or not part.isascii():
            which = f'{part!r} is not a GPU id' if len(parts) > 1 else 'not a GPU id'
            raise GpuRequestError(f'{which} (expected all, none, a count, or ids such as 0,2)')
        numbers.append(int(part))
    if not numbers:
        raise GpuRequestError('no GPU id given (expected all, none, a count, or ids such as 0,2)')
    if len(set(numbers)) != len(numbers):
        raise GpuRequestError('a GPU id is listed twice')
    return tuple(str(n) for n in sorted(numbers))


def parse_gpus(text: Optional[str], detected: Sequence[str]) -> tuple[str, ...]:
    """Reads a `--gpus` declaration: 'all' (= detected), N (first N of detected, or 0..N-1
    when nothing is detected: the user knows better than a missing nvidia-smi), or a list
    '0,2' (also docker's 'device=0,2'; a lone id needs that form or a comma, '1,', because
    a bare '1' is a count as in `docker run --gpus 1`). None / '' means 'what was detected';
    'none' or '0' means no GPUs. GpuRequestError for anything else, and for more GPUs or
    other ids than were detected."""
    detected = tuple(detected)
    spoken = (text or '').strip().strip('"').strip()
    if not spoken or spoken.lower() == 'all':
        return detected
    if spoken.lower() == 'none':
        return ()
    if spoken.isdigit() and spoken.isascii():
        count = int(spoken)
        if count > MAX_DECLARED:     # ids 0..N-1 are made for it: a typo must not fill memory
            raise GpuRequestError(f'{spoken} GPUs is more than a machine holds (at most {MAX_DECLARED})')
        if not detected:
            return tuple(str(i) for i in range(count))
        if count > len(detected):
            raise GpuRequestError(f'only {len(detected)} GPUs exist ({describe(detected)})')
        return detected[:count]
    ids = _ids(spoken[len('device='):] if spoken.lower().startswith('device=') else spoken)
    unknown = [i for i in ids if detected and i not in detected]
    if unknown:
        raise GpuRequestError(f"no GPU with id {','.join(unknown)} ({describe(detected)})")
    return ids


class GpuInventory:
    """The GPU ids of a run, handed out as disjoint sets to concurrent holders.

    try_acquire() never blocks (the scheduler waits on its own condition). Ids go out lowest
    first and come back in order, so a run is reproducible and a task asking for two GPUs
    after others released theirs sees "0,1", never "1,0"."""

    def __init__(self, ids: Iterable[str] = ()):
        self.ids: tuple[str, ...] = tuple(str(i) for i in ids)
        if len(set(self.ids)) != len(self.ids):
            raise ValueError(f'duplicate GPU ids in {self.ids}')
        self._order = {gid: n for n, gid in enumerate(self.ids)}
        self._free: list[str] = list(self.ids)
        self._lock = threading.Lock()

    @property
    def available(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._free)

    def check(self, count: int) -> None:
        """GpuRequestError when COUNT exceeds what exists (waiting would never help)."""
        if count < 0:
            raise ValueError(f'GPU count must be >= 0, got {count}')
        if count > len(self.ids):
            have = f'{len(self.ids)} exist' + (f' ({describe(self.ids)})' if self.ids else '; declare them with --gpus')
            raise GpuRequestError(f'task asks for {count} GPU{"s" if count != 1 else ""}; only {have}')

    def fits(self, count: int) -> bool:
        with self._lock:
            return count <= len(self._free)

    def try_acquire(self, count: int) -> Optional[tuple[str, ...]]:
        """COUNT free ids now (lowest first), or None when others hold them."""
        self.check(count)
        with self._lock:
            if count > len(self._free):
                return None
            taken, self._free = tuple(self._free[:count]), self._free[count:]
            return taken

    def release(self, ids: Iterable[str]) -> None:
        ids = tuple(ids)
        if len(set(ids)) != len(ids):
            raise ValueError(f'GPU ids {ids} released twice')
        with self._lock:
            for i in ids:
                if i not in self._order:
                    raise ValueError(f'GPU id {i!r} is not in this inventory {self.ids}')
                if i in self._free:
                    raise ValueError(f'GPU id {i!r} released twice')
            self._free = sorted(self._free + list(ids), key=self._order.__getitem__)

    def __repr__(self) -> str:
        return f'GpuInventory(ids={self.ids}, free={self.available})'
