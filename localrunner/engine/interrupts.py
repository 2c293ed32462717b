"""SIGINT, SIGTERM and SIGHUP while a run executes: the first cancels it, any later one kills.

A Python signal handler runs in the main thread between two bytecodes -- possibly while that
thread holds a lock (starting a pool thread, writing an event). So the handler only writes
the signal number into a pipe; a watcher thread reads it and does the work (terminating
processes, talking to Docker). Handlers are installed only in the main thread (Python allows
no other) and the previous ones are put back on exit.
"""
from __future__ import annotations

import os
import signal
import threading
from typing import Callable, Optional

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def exit_code(signum: int) -> int:
    """The shell's convention for a process ended by SIGNUM: 128 + its number."""
    return 128 + int(signum)


class Interrupts:
    """with Interrupts(first, again): first(signum) on the first signal, again(signum) on each
    later one; both called from a watcher thread."""

    def __init__(self, first: Callable[[int], None], again: Callable[[int], None]):
        self._first = first
        self._again = again
        self.received: Optional[int] = None
        self._previous: dict[int, object] = {}
        self._pipe: Optional[tuple[int, int]] = None
        self._watcher: Optional[threading.Thread] = None

    def __enter__(self) -> 'Interrupts':
        if threading.current_thread() is not threading.main_thread():
            return self           # only the main thread may set handlers; the caller's problem
        read, write = os.pipe()
        os.set_blocking(write, False)
        self._pipe = (read, write)
        self._watcher = threading.Thread(target=self._watch, name='localrunner-signals', daemon=True)
        self._watcher.start()
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def _handler(self, signum: int, frame) -> None:
        try:
            os.write(self._pipe[1], bytes([signum]))
        except (OSError, TypeError):
            pass

    def _watch(self) -> None:
        read = self._pipe[0]
        while True:
            try:
                data = os.read(read, 64)
            except OSError:
                return
            if not data:
                return                            # __exit__ closed the write end
            for signum in data:
                try:
                    if self.received is None:
                        self.received = signum
                        self._first(signum)
                    else:
                        self._again(signum)
                except Exception:                 # a failing callback must not end the watch
                    pass

    def __exit__(self, *exc) -> None:
        if self._pipe is None:
            return
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        os.close(self._pipe[1])
        self._watcher.join()
        os.close(self._pipe[0])
        self._pipe = None
