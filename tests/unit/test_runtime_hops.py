"""runtime.Run.in_batch: calls made in one turn of the event loop share worker-thread hops,
each caller still gets its own answer or its own exception."""
import asyncio
import contextlib
import threading

import pytest

from localrunner.engine import runtime
from localrunner.engine.runtime import Run


class _Bare:
    """The parts of a Run that in_batch uses, without a pipeline."""
    in_batch = Run.in_batch
    _send_batch = Run._send_batch
    _run_batch = Run._run_batch
    _answer_batch = Run._answer_batch

    def __init__(self):
        import concurrent.futures
        self._batch = []
        self._threads = concurrent.futures.ThreadPoolExecutor(max_workers=8)
        self.drained = 0
        self.cache = self
        self.read_ahead = []              # the keys of each hop's reading_ahead()

    @contextlib.contextmanager
    def reading_ahead(self, keys):
        self.read_ahead.append(list(keys))
        yield

    def _drain_cache_warnings(self):
        self.drained += 1


def test_calls_of_one_turn_share_hops_and_each_gets_its_own_answer():
    bare = _Bare()
    threads = []

    def work(i):
        threads.append(threading.get_ident())
        if i % 7 == 3:
            raise ValueError(f'bad {i}')
        return i * i

    async def main():
        n = 100
        answers = await asyncio.gather(*(bare.in_batch(work, i) for i in range(n)), return_exceptions=True)
        for i, answer in enumerate(answers):
            if i % 7 == 3:
                assert isinstance(answer, ValueError) and str(answer) == f'bad {i}'
            else:
                assert answer == i * i
        return n

    n = asyncio.run(main())
    assert threading.get_ident() not in threads                  # never on the event loop's thread
    size = max(runtime._BATCH, -(-n // runtime._HOPS))           # a hop a core, at least _BATCH calls each
    hops = -(-n // size)
    assert bare.drained == hops <= runtime._HOPS and hops < n
    bare._threads.shutdown()


def test_a_hop_reads_ahead_the_keys_its_calls_look_up():
    bare = _Bare()

    async def main():
        n = runtime._BATCH + 5
        return await asyncio.gather(*(bare.in_batch(str, i, looks_up=f'k{i}' if i % 2 else None)
                                      for i in range(n)))

    answers = asyncio.run(main())
    assert answers == [str(i) for i in range(len(answers))]
    assert sorted(bare.read_ahead, key=len) == [[f'k{i}' for i in range(runtime._BATCH, len(answers)) if i % 2],
                                                [f'k{i}' for i in range(runtime._BATCH) if i % 2]]
    bare._threads.shutdown()


def test_calls_in_later_turns_make_their_own_hop():
    bare = _Bare()

    async def main():
        first = await bare.in_batch(lambda: 'a')
        second = await bare.in_batch(lambda: 'b')
        return first, second

    assert asyncio.run(main()) == ('a', 'b')
    assert bare.drained == 2
    bare._threads.shutdown()


def test_a_canceled_caller_does_not_break_the_others():
    bare = _Bare()
    gate = threading.Event()

    async def main():
        slow = bare.in_batch(gate.wait, 5)
        other = bare.in_batch(lambda: 'done')
        await asyncio.sleep(0)
        slow.cancel()
        gate.set()
        return await other

    assert asyncio.run(main()) == 'done'
    bare._threads.shutdown()




# ---------------------------------------------------------------- Run.unless_canceled
class _Waits:
    """The parts of a Run that unless_canceled uses."""
    unless_canceled = Run.unless_canceled
    _wake_waiters = Run._wake_waiters

    def __init__(self):
        self.cancelled = False
        self._waiting = set()
        self._stopped = set()

    def cancel(self):
        self.cancelled = True
        self._wake_waiters()


async def _waiting_for_a_held_lock(run):
    """A lock held, and a task waiting for it through run.unless_canceled."""
    lock = asyncio.Lock()
    await lock.acquire()
    waiter = asyncio.ensure_future(run.unless_canceled(lock.acquire()))
    await asyncio.sleep(0)
    return lock, waiter


def test_a_wait_ends_with_run_canceled_when_the_run_is_canceled():
    from localrunner.engine.container_task import RunCanceled
    run = _Waits()

    async def main():
        lock, waiter = await _waiting_for_a_held_lock(run)
        run.cancel()
        with pytest.raises(RunCanceled):
            await waiter
        lock.release()
        assert not lock.locked()                   # the abandoned wait did not take it
        with pytest.raises(RunCanceled):           # a run already canceled: no wait at all
            await run.unless_canceled(asyncio.sleep(10))
        assert not run._waiting and not run._stopped
    asyncio.run(main())


def test_a_lock_granted_as_the_run_is_canceled_is_not_lost():
    from localrunner.engine.container_task import RunCanceled
    run = _Waits()

    async def main():
        lock, waiter = await _waiting_for_a_held_lock(run)
        lock.release()                             # granted to the waiter ...
        run.cancel()                               # ... and canceled before it ran
        try:
            await waiter
            lock.release()                         # it won: it holds the lock
        except RunCanceled:
            pass                                   # it lost: it gave the lock back
        assert not lock.locked()
        await asyncio.wait_for(lock.acquire(), 1)
    asyncio.run(main())


def test_a_result_ready_first_wins_and_a_task_canceled_itself_is_canceled():
    run = _Waits()

    async def main():
        assert await run.unless_canceled(asyncio.sleep(0, 'done')) == 'done'
        outer = asyncio.ensure_future(run.unless_canceled(asyncio.sleep(10)))
        await asyncio.sleep(0)
        outer.cancel()                             # the task itself (a kill): CancelledError, not RunCanceled
        with pytest.raises(asyncio.CancelledError):
            await outer
        assert not run._waiting
    asyncio.run(main())
