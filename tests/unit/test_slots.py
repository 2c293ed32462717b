"""slots.py: a task starts when a slot, its cpu, its memory and its GPUs are free."""
import asyncio

import pytest

from localrunner.engine.slots import GpuShortage, ResourcePool


async def settle():
    """Let every runnable coroutine run until it blocks (no clock involved)."""
    for _ in range(20):
        await asyncio.sleep(0)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_max_parallel_is_the_number_of_slots():
    async def main():
        pool = ResourcePool(max_parallel=2, cpus=64, memory=1 << 40)
        a, b = await pool.acquire(), await pool.acquire()
        third = asyncio.create_task(pool.acquire())
        await settle()
        assert not third.done()
        await pool.release(a)
        await third
        await pool.release(b)
        await pool.release(third.result())
    run(main())


def test_cpu_is_admitted_up_to_the_machine():
    async def main():
        pool = ResourcePool(max_parallel=10, cpus=4, memory=1 << 40)
        a = await pool.acquire(cpu=2)
        b = await pool.acquire(cpu=2)                      # 4 of 4: fits exactly
        c = asyncio.create_task(pool.acquire(cpu=0.5))
        await settle()
        assert not c.done()
        await pool.release(a)
        assert (await c).cpu == 0.5
        d = await pool.acquire(cpu=1.5)                    # 2 + 0.5 + 1.5 = 4
        for g in (b, c.result(), d):
            await pool.release(g)
    run(main())


def test_memory_is_admitted_up_to_the_machine():
    async def main():
        pool = ResourcePool(max_parallel=10, cpus=64, memory=1000)
        a = await pool.acquire(memory=600)
        b = asyncio.create_task(pool.acquire(memory=500))
        await settle()
        assert not b.done()
        small = await pool.acquire(memory=400)             # a smaller one still fits beside a
        await pool.release(a)
        await pool.release(small)
        assert (await b).memory == 500
    run(main())


def test_a_task_larger_than_the_machine_runs_alone():
    async def main():
        pool = ResourcePool(max_parallel=4, cpus=2, memory=100)
        big = await pool.acquire(cpu=8, memory=1000)      # would never fit: it runs, alone
        small = asyncio.create_task(pool.acquire(cpu=0.1, memory=1))
        await settle()
        assert not small.done()
        await pool.release(big)
        await small
        # and while anything runs, the big one waits
        big_again = asyncio.create_task(pool.acquire(cpu=8, memory=1000))
        await settle()
        assert not big_again.done()
        await pool.release(small.result())
        await big_again
    run(main())


def test_gpu_ids_are_disjoint_and_lowest_first():
    async def main():
        pool = ResourcePool(max_parallel=8, cpus=64, memory=1 << 40, gpu_ids=['0', '1', '2', '3'])
        a = await pool.acquire(gpus=2)
        b = await pool.acquire(gpus=1)
        assert a.gpu_ids == ('0', '1') and b.gpu_ids == ('2',)
        none = await pool.acquire(gpus=0)
        assert none.gpu_ids == ()
        c = asyncio.create_task(pool.acquire(gpus=2))      # only '3' is free
        await settle()
        assert not c.done()
        await pool.release(a)
        assert set((await c).gpu_ids).isdisjoint(b.gpu_ids) and len(c.result().gpu_ids) == 2
    run(main())


def test_gpus_wait_even_when_cpu_and_memory_are_free():
    async def main():
        pool = ResourcePool(max_parallel=8, cpus=64, memory=1 << 40, gpu_ids=['0'])
        a = await pool.acquire(gpus=1)
        b = asyncio.create_task(pool.acquire(gpus=1))
        cpu_only = await pool.acquire(cpu=1)               # no GPU asked: not held up
        await settle()
        assert not b.done()
        await pool.release(a)
        assert (await b).gpu_ids == ('0',)
        await pool.release(cpu_only)
    run(main())


def test_released_gpu_ids_go_back_in_order():
    async def main():
        pool = ResourcePool(max_parallel=8, cpus=64, memory=1 << 40, gpu_ids=['0', '1', '2', '3'])
        grants = [await pool.acquire(gpus=1) for _ in range(4)]
        for g in reversed(grants):                         # '3' first, then '2', '1', '0'
            await pool.release(g)
        again = await pool.acquire(gpus=2)
        assert again.gpu_ids == ('0', '1')
    run(main())


def test_check_refuses_more_gpus_than_exist():
    with pytest.raises(GpuShortage, match=r'asks for 5 GPUs; only 4 exist \(ids 0,1,2,3\)'):
        ResourcePool(1, gpu_ids=['0', '1', '2', '3']).check(5)
    with pytest.raises(GpuShortage, match='asks for 1 GPU; only 0 exist; declare them with --gpus'):
        ResourcePool(1).check(1)
    ResourcePool(1, gpu_ids=['0']).check(1)
    ResourcePool(1).check(0)


def test_acquire_refuses_at_once_rather_than_wait_forever():
    async def main():
        pool = ResourcePool(2, cpus=1, memory=1, gpu_ids=['7'])
        with pytest.raises(GpuShortage):
            await pool.acquire(gpus=2)
        # nothing was taken by the refused request
        assert (await pool.acquire(gpus=1)).gpu_ids == ('7',)
    run(main())


def test_zero_or_negative_parallelism_still_runs_one():
    async def main():
        pool = ResourcePool(max_parallel=0, cpus=1, memory=1)
        g = await pool.acquire()
        second = asyncio.create_task(pool.acquire())
        await settle()
        assert not second.done()
        await pool.release(g)
        await second
    run(main())
