"""Admission control: a task starts when a slot, its cpu, its memory and its GPUs are free."""
from __future__ import annotations

import asyncio
import dataclasses
import os
from typing import Optional, Sequence


def machine_memory() -> int:
    try:
        return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    except (ValueError, OSError):
        return 8 << 30


@dataclasses.dataclass
class Grant:
    cpu: float
    memory: int
    gpu_ids: tuple[str, ...]


class GpuShortage(Exception):
    pass


class ResourcePool:
    """FIFO-fair enough for a local run: waiters are woken on every release and re-check."""

    def __init__(self, max_parallel: int, cpus: Optional[float] = None, memory: Optional[int] = None,
                 gpu_ids: Sequence[str] = ()):
        self.max_parallel = max(1, max_parallel)
        self.cpus = float(cpus or os.cpu_count() or 1)
        self.memory = int(memory or machine_memory())
        self.gpu_ids = tuple(gpu_ids)
        self._running = 0
        self._cpu_used = 0.0
        self._mem_used = 0
        self._free_gpus = list(self.gpu_ids)
        self._cond: Optional[asyncio.Condition] = None

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    def check(self, gpus: int) -> None:
        if gpus > len(self.gpu_ids):
            have = f'{len(self.gpu_ids)} exist' + (f' (ids {",".join(self.gpu_ids)})' if self.gpu_ids else
                                                     '; declare them with --gpus')
            raise GpuShortage(f'task asks for {gpus} GPU{"s" if gpus != 1 else ""}; only {have}')

    def _fits(self, cpu: float, memory: int, gpus: int) -> bool:
        if self._running >= self.max_parallel or len(self._free_gpus) < gpus:
            return False
        if self._running == 0:
            return True          # a task larger than the machine still runs, alone
        return self._cpu_used + cpu <= self.cpus + 1e-9 and self._mem_used + memory <= self.memory

    async def acquire(self, cpu: float = 0.0, memory: int = 0, gpus: int = 0) -> Grant:
        self.check(gpus)
        cond = self._condition()
        async with cond:
            await cond.wait_for(lambda: self._fits(cpu, memory, gpus))
            self._running += 1
            self._cpu_used += cpu
            self._mem_used += memory
            ids = tuple(self._free_gpus[:gpus])
            del self._free_gpus[:gpus]
            return Grant(cpu, memory, ids)

    async def release(self, grant: Grant) -> None:
        cond = self._condition()
        async with cond:
            self._running -= 1
            self._cpu_used -= grant.cpu
            self._mem_used -= grant.memory
            self._free_gpus.extend(grant.gpu_ids)
            cond.notify_all()
