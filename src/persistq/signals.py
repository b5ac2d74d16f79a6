"""SIGTERM/SIGINT for a long-running command (the worker, the file producer): a stop request
the main thread acts on.

The handler only records the signal. Python runs it in the main thread between two
bytecodes, possibly while that thread holds a lock: ``Event.set()`` from the handler
deadlocks when the signal lands inside the same Event's ``wait()`` (it holds the Event's
lock on waking), which CI saw as a worker that logged SIGTERM and never stopped. And the
kernel may deliver the signal to another thread, so the main thread waits in short sleeps
rather than one long one, or it would not run the handler until something woke it.
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType

#: How often the main thread wakes to act on a signal it received.
CHECK_SECONDS = 0.2
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Installs handlers for SIGTERM and SIGINT that record the signal; :meth:`wait` turns
    it into ``stop.set()`` from the main thread's own code."""

    def __init__(self, stop: threading.Event, *, every: float = CHECK_SECONDS) -> None:
        self.stop = stop
        self.every = every
        #: The last signal received, not yet acted on.
        self.received: signal.Signals | None = None

    def install(self) -> bool:
        """Take over SIGTERM and SIGINT; False (nothing done) off the main thread, where
        Python cannot install handlers."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._record)
        return True

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.received = signal.Signals(signum)  # no lock, no I/O: see the module docstring

    def wait(self, timeout: float | None = None) -> signal.Signals | None:
        """Sleep until ``stop`` is set, a stop signal arrives (then set ``stop``) or
        ``timeout`` passes; the signal received, if one was."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.received is not None:
                self.stop.set()
            if self.stop.is_set():
                break
            left = self.every
            if deadline is not None:
                left = min(left, deadline - time.monotonic())
                if left <= 0:
                    break
            self.stop.wait(left)
        return self.received
