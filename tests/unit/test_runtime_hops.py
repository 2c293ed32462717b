"""runtime.Run.in_batch: calls made in one turn of the event loop share worker-thread hops,
each caller still gets its own answer or its own exception."""
import asyncio
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
    hops = -(-n // runtime._BATCH)                                # ceil: one hop per batch of _BATCH
    assert bare.drained == hops < n
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


