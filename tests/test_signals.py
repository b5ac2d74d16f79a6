"""persistq.signals: a stop signal is recorded by the handler and acted on by the main
thread's own wait, never by a handler taking a lock (Event.set from a handler deadlocked a
worker whose main thread was inside the same Event's wait)."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from persistq.signals import StopSignals


@pytest.fixture
def restored() -> Iterator[None]:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in before.items():
        signal.signal(sig, handler)


def test_the_handler_only_records_and_wait_sets_the_stop(restored: None) -> None:
    signals = StopSignals(threading.Event())
    assert signals.install()
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0)  # the handler runs between two bytecodes of the main thread
    assert signals.received is signal.SIGTERM
    assert not signals.stop.is_set()

    assert signals.wait() is signal.SIGTERM
    assert signals.stop.is_set()


def test_wait_returns_at_its_timeout_or_at_once_when_stopped(restored: None) -> None:
    signals = StopSignals(threading.Event())
    signals.install()
    started = time.monotonic()
    assert signals.wait(0.3) is None
    assert 0.3 <= time.monotonic() - started < 5
    signals.stop.set()
    assert signals.wait() is None  # stopped by someone else (Worker.stop): no signal


def test_install_off_the_main_thread_does_nothing() -> None:
    answers: list[bool] = []
    thread = threading.Thread(
        target=lambda: answers.append(StopSignals(threading.Event()).install())
    )
    thread.start()
    thread.join()
    assert answers == [False]


def test_signals_landing_anywhere_in_the_wait_always_stop_it(restored: None) -> None:
    """SIGTERM from another thread at random moments, many of them while the main thread
    wakes inside the Event's wait (where it holds the Event's lock): waking every 2 ms, it
    is there often."""
    signals = StopSignals(threading.Event(), every=0.002)
    signals.install()
    rng = random.Random(7)
    for _ in range(200):
        signals.received = None
        signals.stop.clear()
        delay = rng.choice([0.0, 0.0002, 0.001, rng.uniform(0, 0.02)])
        sender = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGTERM))
        sender.start()
        started = time.monotonic()
        assert signals.wait(10) is signal.SIGTERM
        assert time.monotonic() - started < 10
        sender.join()
