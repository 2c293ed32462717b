"""The one GPU inventory: detection, --gpus parsing, disjoint hand-out (lowest first, released
ids back in order) under concurrency, and the scheduler's pool built on it."""
import asyncio
import threading
import time

import pytest

from localrunner.backends import gpus
from localrunner.backends.base import LaunchError
from localrunner.backends.gpus import GpuInventory, GpuRequestError, parse_gpus
from localrunner.engine.slots import GpuShortage, ResourcePool


@pytest.mark.parametrize('text, detected, expected', [
    ('all', ('0', '1', '2'), ('0', '1', '2')),
    (None, ('0', '1'), ('0', '1')),
    ('all', (), ()),
    ('2', ('0', '1', '2'), ('0', '1')),
    ('3', (), ('0', '1', '2')),          # declared without detection: trust the user
    ('0', ('0', '1'), ()),               # a bare number is a count, as in docker --gpus
    ('none', ('0',), ()),
    ('0,2', ('0', '1', '2'), ('0', '2')),
    ('device=1', ('0', '1'), ('1',)),
    ('1,', ('0', '1'), ('1',)),
    ('4,5', (), ('4', '5')),
    ('2,0', (), ('0', '2')),             # a set of ids: handed out lowest first
    (' "device=0,2" ', (), ('0', '2')),  # docker's quoted form
    ('07,', (), ('7',)),
])
def test_parse_gpus(text, detected, expected):
    assert parse_gpus(text, detected) == expected


@pytest.mark.parametrize('text, detected, message', [
    ('3', ('0', '1'), 'only 2 GPUs exist (ids 0,1)'),
    ('0,7', ('0', '1'), 'no GPU with id 7'),
    ('0,0', (), 'listed twice'),
    ('0,00', (), 'listed twice'),
    ('banana', (), 'not a GPU id'),
    ('banana', ('0',), 'not a GPU id'),
    ('-1', (), 'not a GPU id'),
    ('0,-1', (), "'-1' is not a GPU id"),
    ('1,,2', (), "'' is not a GPU id"),
    ('device=', (), 'no GPU id given'),
    ('GPU-1234', (), 'not a GPU id'),
    ('\u0661', (), 'not a GPU id'),         # a digit, but not one nvidia-smi prints
    ('99999999999', (), 'more than a machine holds'),   # found by tests/test_fuzz.py: ids were made for it
    ('1025', ('0',), 'more than a machine holds'),
])
def test_parse_gpus_rejects(text, detected, message):
    with pytest.raises(GpuRequestError, match=message.replace('(', r'\(').replace(')', r'\)')):
        parse_gpus(text, detected)


def test_detect_without_nvidia_smi(monkeypatch):
    monkeypatch.setattr(gpus.shutil, 'which', lambda name: None)
    assert gpus.detect_gpus() == ()


def test_detect_parses_nvidia_smi(monkeypatch, tmp_path):
    fake = tmp_path / 'nvidia-smi'
    fake.write_text('#!/bin/sh\nprintf "0\\n1\\n"\n')
    fake.chmod(0o755)
    monkeypatch.setattr(gpus.shutil, 'which', lambda name: str(fake))
    assert gpus.detect_gpus() == ('0', '1')
    broken = tmp_path / 'broken'
    broken.write_text('#!/bin/sh\necho "NVIDIA-SMI has failed" >&2; exit 9\n')
    broken.chmod(0o755)
    monkeypatch.setattr(gpus.shutil, 'which', lambda name: str(broken))
    assert gpus.detect_gpus() == ()


def test_acquire_release_disjoint_lowest_first():
    inv = GpuInventory(['0', '1', '2'])
    a = inv.try_acquire(2)
    assert a == ('0', '1')
    assert inv.try_acquire(2) is None          # held by others: wait, don't fail
    b = inv.try_acquire(1)
    assert b == ('2',) and not set(a) & set(b)
    inv.release(['1'])
    inv.release(['0'])                          # released out of order, back in order
    assert inv.available == ('0', '1')
    assert inv.try_acquire(2) == ('0', '1')
    assert inv.try_acquire(0) == ()
    with pytest.raises(ValueError, match='released twice'):
        inv.release(['2', '2'])
    inv.release(['2'])
    with pytest.raises(ValueError, match='released twice'):
        inv.release(['2'])
    with pytest.raises(ValueError, match='not in this inventory'):
        inv.release(['7'])


def test_asking_more_than_exist_is_a_clear_non_retryable_error():
    inv = GpuInventory(['0', '1'])
    with pytest.raises(GpuRequestError) as err:
        inv.try_acquire(3)
    assert str(err.value) == 'task asks for 3 GPUs; only 2 exist (ids 0,1)'
    assert isinstance(err.value, LaunchError) and err.value.retryable is False
    with pytest.raises(GpuRequestError, match='only 0 exist; declare them with --gpus'):
        GpuInventory().check(1)
    assert GpuShortage is GpuRequestError       # the engine catches the one error


def test_pool_waits_for_gpus_and_hands_them_back_in_order():
    """The scheduler's pool takes ids from the one inventory: a task asking for two GPUs
    waits while others hold them, and then gets "0,1" whatever order they came back in."""
    async def scenario():
        pool = ResourcePool(max_parallel=4, cpus=4, memory=1 << 30, gpu_ids=('0', '1'))
        first = await pool.acquire(gpus=1)
        second = await pool.acquire(gpus=1)
        assert (first.gpu_ids, second.gpu_ids) == (('0',), ('1',))
        waiter = asyncio.ensure_future(pool.acquire(gpus=2))
        await asyncio.sleep(0)
        assert not waiter.done()
        await pool.release(second)              # '1' back first ...
        await asyncio.sleep(0)
        assert not waiter.done()                # ... one GPU is not enough
        await pool.release(first)               # ... then '0'
        both = await asyncio.wait_for(waiter, 5)
        assert both.gpu_ids == ('0', '1')
        with pytest.raises(GpuShortage, match='asks for 3 GPUs; only 2 exist'):
            await pool.acquire(gpus=3)
        await pool.release(both)
        assert pool.gpus.available == ('0', '1')
    asyncio.run(scenario())


def test_concurrent_holders_never_share_an_id():
    inv = GpuInventory([str(i) for i in range(4)])
    in_use, errors = set(), []
    guard = threading.Lock()

    def worker(count):
        for _ in range(200):
            ids = inv.try_acquire(count)
            while ids is None:
                time.sleep(0.0005)
                ids = inv.try_acquire(count)
            with guard:
                if in_use & set(ids):
                    errors.append(ids)
                in_use.update(ids)
            with guard:
                in_use.difference_update(ids)
            inv.release(ids)

    threads = [threading.Thread(target=worker, args=(n,)) for n in (1, 2, 1, 3, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert inv.available == ('0', '1', '2', '3')
