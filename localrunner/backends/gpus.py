"""Which GPUs this machine has, and which task holds which.

The scheduler gives an accelerator task exact device ids (not just a count), so two tasks
never share a GPU: the Docker backend turns them into DeviceRequests, the subprocess backend
into CUDA_VISIBLE_DEVICES. Pure Python and thread-safe; no CUDA import.
"""
from __future__ import annotations

import shutil
import subprocess
import threading
from typing import Iterable, Optional, Sequence

from localrunner.backends.base import LaunchError


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


def _describe(ids: Sequence[str]) -> str:
    return f"ids {','.join(ids)}" if ids else 'none detected'


def parse_gpus(text: Optional[str], detected: Sequence[str]) -> tuple[str, ...]:
    """Reads a `--gpus` declaration: 'all' (= detected), N (first N of detected, or 0..N-1
    when nothing is detected: the user knows better than a missing nvidia-smi), or a list
    '0,2' (also docker's 'device=0,2'; a lone id needs that form or a comma, '1,', because
    a bare '1' is a count as in `docker run --gpus 1`). None / '' means 'what was detected';
    'none' or '0' means no GPUs."""
    detected = tuple(detected)
    if text is None or not text.strip() or text.strip().lower() == 'all':
        return detected
    text = text.strip()
    if text.lower() == 'none':
        return ()
    if text.isdigit():
        count = int(text)
        if not detected:
            return tuple(str(i) for i in range(count))
        if count > len(detected):
            raise GpuRequestError(f'--gpus {count}: only {len(detected)} GPUs exist '
                                  f'({_describe(detected)})')
        return detected[:count]
    if text.startswith('device='):
        text = text[len('device='):]
    ids = tuple(part.strip() for part in text.split(',') if part.strip())
    if len(set(ids)) != len(ids):
        raise GpuRequestError(f'--gpus {text}: an id is listed twice')
    unknown = [i for i in ids if detected and i not in detected]
    if unknown:
        raise GpuRequestError(f"--gpus {text}: no GPU with id {','.join(unknown)} "
                              f'({_describe(detected)})')
    return ids


class GpuInventory:
    """Hands out disjoint sets of GPU ids to concurrent holders.

    try_acquire() never blocks (for an event-loop scheduler); acquire() waits. Ids are handed
    out lowest first, so a run is reproducible."""

    def __init__(self, ids: Iterable[str] = ()):
        self.ids: tuple[str, ...] = tuple(str(i) for i in ids)
        if len(set(self.ids)) != len(self.ids):
            raise ValueError(f'duplicate GPU ids in {self.ids}')
        self._free: list[str] = list(self.ids)
        self._cond = threading.Condition()

    @classmethod
    def from_declaration(cls, text: Optional[str] = None,
                         detected: Optional[Sequence[str]] = None) -> 'GpuInventory':
        """The inventory for `--gpus TEXT` (None: what nvidia-smi reports)."""
        return cls(parse_gpus(text, detect_gpus() if detected is None else detected))

    @property
    def available(self) -> tuple[str, ...]:
        with self._cond:
            return tuple(self._free)

    def _check(self, count: int) -> None:
        if count < 0:
            raise ValueError(f'GPU count must be >= 0, got {count}')
        if count > len(self.ids):
            raise GpuRequestError(f'task asks for {count} GPUs; only {len(self.ids)} exist '
                                  f'({_describe(self.ids)})')

    def try_acquire(self, count: int) -> Optional[tuple[str, ...]]:
        """COUNT free ids now, or None when they are held by others. Raises GpuRequestError
        when COUNT exceeds what exists (waiting would never help)."""
        self._check(count)
        with self._cond:
            if count > len(self._free):
                return None
            # keep the free list sorted by inventory order: lowest ids go out first
            taken, self._free = tuple(self._free[:count]), self._free[count:]
            return taken

    def acquire(self, count: int, timeout: Optional[float] = None) -> tuple[str, ...]:
        """Waits until COUNT ids are free and takes them; TimeoutError after TIMEOUT s."""
        self._check(count)
        with self._cond:
            if not self._cond.wait_for(lambda: count <= len(self._free), timeout):
                raise TimeoutError(f'{count} GPUs not free after {timeout}s '
                                   f'(free: {len(self._free)} of {len(self.ids)})')
            taken, self._free = tuple(self._free[:count]), self._free[count:]
            return taken

    def release(self, ids: Iterable[str]) -> None:
        ids = tuple(ids)
        with self._cond:
            for i in ids:
                if i not in self.ids:
                    raise ValueError(f'GPU id {i!r} is not in this inventory {self.ids}')
                if i in self._free:
                    raise ValueError(f'GPU id {i!r} released twice')
            order = {gid: n for n, gid in enumerate(self.ids)}
            self._free = sorted(self._free + list(ids), key=order.__getitem__)
            self._cond.notify_all()

    def __repr__(self) -> str:
        return f'GpuInventory(ids={self.ids}, free={self.available})'
