"""Admission control: a task starts when a slot, its cpu, its memory and its GPUs are free."""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
from typing import Optional, Sequence

from localrunner.backends.gpus import GpuInventory, GpuRequestError, describe
from localrunner.errors import UsageError
from localrunner.spec import Pipeline

# a request more GPUs than exist; the one error for it, whoever checks (kept under this name
# for the engine's callers)
GpuShortage = GpuRequestError


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


class ResourcePool:
    """Waiters queue in arrival order; a release grants, in that order, every waiter that now
    fits (a small task may pass a larger one still waiting for room), and wakes only those:
    a release costs O(granted + skipped), never a wake-up of every waiter (with 10,000 tasks
    queued on 2 slots, waking all on each release was quadratic). GPU ids come from the run's
    one GpuInventory (lowest first, returned in order)."""

    def __init__(self, max_parallel: int, cpus: Optional[float] = None, memory: Optional[int] = None,
                 gpu_ids: Sequence[str] = ()):
        self.max_parallel = max(1, max_parallel)
        self.cpus = float(cpus or os.cpu_count() or 1)
        self.memory = int(memory or machine_memory())
        self.gpus = GpuInventory(gpu_ids)
        self._running = 0
        self._cpu_used = 0.0
        self._mem_used = 0
        self._waiters: collections.deque = collections.deque()    # (future, cpu, memory, gpus)

    @property
    def gpu_ids(self) -> tuple[str, ...]:
        return self.gpus.ids

    def check(self, gpus: int) -> None:
        """GpuShortage when more GPUs are asked than exist: waiting would never help."""
        self.gpus.check(gpus)

    def _fits(self, cpu: float, memory: int, gpus: int) -> bool:
        if self._running >= self.max_parallel or not self.gpus.fits(gpus):
            return False
        if self._running == 0:
            return True          # a task larger than the machine still runs, alone
        return self._cpu_used + cpu <= self.cpus + 1e-9 and self._mem_used + memory <= self.memory

    def _take(self, cpu: float, memory: int, gpus: int) -> Grant:
        ids = self.gpus.try_acquire(gpus)           # it fits, and only the loop's thread takes ids
        self._running += 1
        self._cpu_used += cpu
        self._mem_used += memory
        return Grant(cpu, memory, ids)

    def try_acquire(self, cpu: float = 0.0, memory: int = 0, gpus: int = 0) -> Optional[Grant]:
        """The grant when it fits now (as acquire() would give it at once), else None."""
        self.check(gpus)
        return self._take(cpu, memory, gpus) if self._fits(cpu, memory, gpus) else None

    async def acquire(self, cpu: float = 0.0, memory: int = 0, gpus: int = 0) -> Grant:
        grant = self.try_acquire(cpu, memory, gpus)
        if grant is not None:
            return grant
        future = asyncio.get_running_loop().create_future()
        entry = (future, cpu, memory, gpus)
        self._waiters.append(entry)
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                await self.release(future.result())  # granted as it was cancelled: give it back
            else:
                try:
                    self._waiters.remove(entry)
                except ValueError:
                    pass
            raise

    async def release(self, grant: Grant) -> None:
        self._running -= 1
        self._cpu_used -= grant.cpu
        self._mem_used -= grant.memory
        self.gpus.release(grant.gpu_ids)
        self._grant_waiters()

    def _grant_waiters(self) -> None:
        skipped = []
        while self._waiters and self._running < self.max_parallel:
            entry = self._waiters.popleft()
            future, cpu, memory, gpus = entry
            if future.done():                       # cancelled while waiting
                continue
            if self._fits(cpu, memory, gpus):
                future.set_result(self._take(cpu, memory, gpus))
            else:
                skipped.append(entry)
        self._waiters.extendleft(reversed(skipped))  # still first in line


def check_gpu_requests(pipeline: Pipeline, gpu_ids: Sequence[str], remote: bool) -> None:
    """Before a run starts: UsageError naming the first task whose executor asks for more
    GPUs than exist (a constant count; a count set by a placeholder is checked when it is
    resolved). Nothing to check when no GPU exists or was declared (such tasks then run on
    the CPU, with a warning: engine/container_task.py), nor for a backend that runs
    elsewhere (`remote`: a cluster schedules its own GPUs)."""
    if not gpu_ids or remote:
        return
    view = pipeline.view
    for dag in view.dags():
        for task in dag.dag.tasks.values():
            component = view.components[task.component]
            executor = view.executor_of(component)
            acc = executor.container.resources.accelerator if executor and executor.container else None
            if acc is not None and acc.count is not None and acc.count > len(gpu_ids):
                raise UsageError(f'{pipeline.path}: {task.path}: task {task.key} asks for {acc.count} GPUs '
                                 f'({acc.type}); only {len(gpu_ids)} exist ({describe(tuple(gpu_ids))})')
