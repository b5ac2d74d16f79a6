"""Handler failures (SPEC guarantee 5): retry with capped exponential backoff, then FAILED."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from persistq import ManualClock, Queue, State, Unrecoverable
from persistq.retry import backoff_seconds


def _fail_once(queue: Queue, error: str | BaseException = "boom", **kwargs: object) -> float:
    job = queue.claim(worker="w")
    assert job is not None
    failed = queue.fail(job, error, **kwargs)  # type: ignore[arg-type]
    return failed.run_at.timestamp()


def test_a_failure_with_attempts_left_goes_back_to_pending_with_backoff(
    queue: Queue, clock: ManualClock
) -> None:
    job = queue.enqueue("x")
    run_at = _fail_once(queue)
    retried = queue.get(job.id)
    assert retried.status == State.PENDING
    assert retried.last_error == "boom"
    # first retry: base 2 s with equal jitter -> between 1 and 2 s
    assert clock.now() + 1 <= run_at <= clock.now() + 2
    assert queue.claim(worker="w") is None
    clock.advance(2)
    assert queue.claim(worker="w") is not None


def test_the_last_allowed_failure_ends_failed(queue: Queue, clock: ManualClock) -> None:
    job = queue.enqueue("x", max_attempts=3)
    for _ in range(3):
        _fail_once(queue)
        clock.advance(1000)
    failed = queue.get(job.id)
    assert failed.status == State.FAILED
    assert failed.attempts == 3
    assert failed.finished_at is not None
    assert [e.kind for e in queue.events(job.id)].count("retried") == 2


def test_unrecoverable_skips_the_retries(queue: Queue) -> None:
    job = queue.enqueue("x", max_attempts=5)
    _fail_once(queue, Unrecoverable("bad input"))
    failed = queue.get(job.id)
    assert failed.status == State.FAILED
    assert failed.attempts == 1
    assert failed.last_error is not None and "Unrecoverable: bad input" in failed.last_error


def test_fail_with_retry_false_skips_the_retries(queue: Queue) -> None:
    job = queue.enqueue("x")
    _fail_once(queue, retry=False)
    assert queue.get(job.id).status == State.FAILED


def test_an_exception_is_stored_with_its_traceback(queue: Queue) -> None:
    job = queue.enqueue("x")
    try:
        raise ValueError("deep problem")
    except ValueError as exc:
        _fail_once(queue, exc)
    error = queue.get(job.id).last_error
    assert error is not None
    assert error.startswith("Traceback (most recent call last)")
    assert "ValueError: deep problem" in error


def test_backoff_zero_retries_at_once(make_queue: Callable[..., Queue], clock: ManualClock) -> None:
    q = make_queue(backoff_base=0)
    job = q.enqueue("x")
    assert _fail_once(q) == pytest.approx(clock.now())
    again = q.claim(worker="w")
    assert again is not None and again.id == job.id


def test_backoff_settings_come_from_the_environment(
    make_queue: Callable[..., Queue], monkeypatch: pytest.MonkeyPatch, clock: ManualClock
) -> None:
    monkeypatch.setenv("PERSISTQ_BACKOFF_BASE_SECONDS", "100")
    monkeypatch.setenv("PERSISTQ_BACKOFF_MAX_SECONDS", "120")
    q = make_queue()
    q.enqueue("x", max_attempts=5)
    delays = []
    for _ in range(3):
        delays.append(_fail_once(q) - clock.now())
        clock.advance(1000)
    assert 50 <= delays[0] <= 100
    assert all(60 <= d <= 120 for d in delays[1:])  # capped at 120


def test_backoff_doubles_and_is_capped() -> None:
    rng = random.Random(7)
    for attempts, full in [(1, 2), (2, 4), (3, 8), (4, 16), (10, 300), (50, 300)]:
        delay = backoff_seconds(attempts, base=2, cap=300, rng=rng)
        assert full / 2 <= delay <= full
    assert backoff_seconds(3, base=0, cap=300) == 0


def test_backoff_is_jittered() -> None:
    rng = random.Random(1)
    assert len({backoff_seconds(5, base=2, cap=300, rng=rng) for _ in range(20)}) > 10


def test_the_database_not_the_callers_copy_decides_whether_an_attempt_is_left(
    queue: Queue,
) -> None:
    from dataclasses import replace

    queue.enqueue("x", max_attempts=1)
    job = queue.claim(worker="w")
    assert job is not None
    failed = queue.fail(replace(job, attempts=0), "boom")  # a copy that lies about attempts
    assert failed.status == State.FAILED
    assert queue.claim(worker="w") is None
