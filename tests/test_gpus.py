"""GpuInventory: detection, --gpus parsing, disjoint hand-out under concurrency."""
import threading
import time

import pytest

from localrunner.backends import gpus
from localrunner.backends.base import LaunchError
from localrunner.backends.gpus import GpuInventory, GpuRequestError, parse_gpus


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
])
def test_parse_gpus(text, detected, expected):
    assert parse_gpus(text, detected) == expected


@pytest.mark.parametrize('text, detected, message', [
    ('3', ('0', '1'), 'only 2 GPUs exist (ids 0,1)'),
    ('0,7', ('0', '1'), 'no GPU with id 7'),
    ('0,0', (), 'listed twice'),
])
def test_parse_gpus_rejects(text, detected, message):
    with pytest.raises(GpuRequestError, match=message.replace('(', r'\(').replace(')', r'\)')):
        parse_gpus(text, detected)


def test_detect_without_nvidia_smi(monkeypatch):
    monkeypatch.setattr(gpus.shutil, 'which', lambda name: None)
    assert gpus.detect_gpus() == ()
    assert GpuInventory.from_declaration().ids == ()


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
    inv.release(a)
    assert inv.available == ('0', '1')
    assert inv.try_acquire(0) == ()
    with pytest.raises(ValueError, match='released twice'):
        inv.release(['0'])


def test_asking_more_than_exist_is_a_clear_non_retryable_error():
    inv = GpuInventory(['0', '1'])
    with pytest.raises(GpuRequestError) as err:
        inv.try_acquire(3)
    assert str(err.value) == 'task asks for 3 GPUs; only 2 exist (ids 0,1)'
    assert isinstance(err.value, LaunchError) and err.value.retryable is False
    with pytest.raises(GpuRequestError, match='only 0 exist'):
        GpuInventory().acquire(1)


def test_acquire_blocks_until_release_and_times_out():
    inv = GpuInventory(['0'])
    held = inv.acquire(1)
    with pytest.raises(TimeoutError):
        inv.acquire(1, timeout=0.05)
    got = []
    waiter = threading.Thread(target=lambda: got.append(inv.acquire(1, timeout=5)))
    waiter.start()
    time.sleep(0.05)
    assert not got
    inv.release(held)
    waiter.join(5)
    assert got == [('0',)]


def test_concurrent_holders_never_share_an_id():
    inv = GpuInventory([str(i) for i in range(4)])
    in_use, errors = set(), []
    guard = threading.Lock()

    def worker(count):
        for _ in range(200):
            ids = inv.acquire(count, timeout=10)
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
        t.join(30)
    assert not errors
    assert inv.available == ('0', '1', '2', '3')
