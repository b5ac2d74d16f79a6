"""Queue calls the task model builds on: ``run_at`` scheduling, a per-call backoff, a
release with a delay, and ``wait`` for a job to finish (both backends, manual clock)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from persistq import InvalidJob, ManualClock, Queue, State


def at(clock: ManualClock, seconds: float) -> datetime:
    return datetime.fromtimestamp(clock.now() + seconds, UTC)


def test_run_at_makes_a_job_claimable_no_earlier_than_that_time(
    queue: Queue, clock: ManualClock
) -> None:
    when = at(clock, 3600)
    job = queue.enqueue("x", run_at=when)
    assert job.run_at == when
    assert queue.get(job.id).run_at == when
    clock.advance(3599)
    assert queue.claim(worker="w") is None
    clock.advance(1)
    claimed = queue.claim(worker="w")
    assert claimed is not None and claimed.id == job.id


def test_run_at_in_another_time_zone_is_the_same_instant(queue: Queue, clock: ManualClock) -> None:
    when = at(clock, 60).astimezone(timezone(timedelta(hours=-5)))
    assert queue.enqueue("x", run_at=when).run_at == when


def test_run_at_in_the_past_is_due_at_once(queue: Queue, clock: ManualClock) -> None:
    job = queue.enqueue("x", run_at=at(clock, -86400))
    assert job.run_at.timestamp() == pytest.approx(clock.now())
    assert queue.claim(worker="w") is not None


def test_enqueue_many_takes_run_at_for_the_whole_batch(queue: Queue, clock: ManualClock) -> None:
    when = at(clock, 90)
    jobs = queue.enqueue_many(["a", "b"], run_at=when)
    assert [j.run_at for j in jobs] == [when, when]
    assert queue.claim(worker="w") is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"run_at": datetime(2030, 1, 1)}, "aware datetime"),  # naive: the case under test
        ({"run_at": "2030-01-01T00:00:00Z"}, "aware datetime"),
        ({"run_at": datetime(2030, 1, 1, tzinfo=UTC), "delay": 5}, "not both"),
        ({"run_at": datetime(9000, 1, 1, tzinfo=UTC)}, "ten years"),
    ],
)
def test_a_bad_run_at_is_refused_and_stores_nothing(
    queue: Queue, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidJob, match=message):
        queue.enqueue("x", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidJob, match=message):
        queue.enqueue_many(["x"], **kwargs)  # type: ignore[arg-type]
    assert queue.jobs() == []


def test_fail_takes_a_backoff_of_its_own_for_this_retry(queue: Queue, clock: ManualClock) -> None:
    queue.enqueue("x", max_attempts=5)
    job = queue.claim(worker="w")
    assert job is not None
    retried = queue.fail(job, "boom", backoff_base=100, backoff_max=1000)
    # first retry: base 100 s, equal jitter -> 50..100 s (the queue's own base is 2 s)
    assert clock.now() + 50 <= retried.run_at.timestamp() <= clock.now() + 100
    clock.advance(100)
    job = queue.claim(worker="w")
    assert job is not None
    capped = queue.fail(job, "boom", backoff_base=100, backoff_max=10)
    assert clock.now() + 5 <= capped.run_at.timestamp() <= clock.now() + 10
    clock.advance(10)
    job = queue.claim(worker="w")
    assert job is not None
    at_once = queue.fail(job, "boom", backoff_base=0)
    assert at_once.run_at.timestamp() == pytest.approx(clock.now())


def test_a_bad_backoff_override_is_refused_and_changes_nothing(queue: Queue) -> None:
    queue.enqueue("x")
    job = queue.claim(worker="w")
    assert job is not None
    with pytest.raises(InvalidJob, match="backoff_base"):
        queue.fail(job, "boom", backoff_base=-1)
    assert queue.get(job.id).status == State.PROCESSING


def test_release_with_a_delay_refunds_the_attempt_and_records_why(
    queue: Queue, clock: ManualClock
) -> None:
    queue.enqueue("x")
    job = queue.claim(worker="w")
    assert job is not None
    released = queue.release(job, delay=30, reason="unknown task t")
    assert (released.status, released.attempts) == (State.PENDING, 0)
    assert released.run_at.timestamp() == pytest.approx(clock.now() + 30)
    assert queue.claim(worker="w") is None
    last = queue.events(job.id)[-1]
    assert (last.kind, last.detail) == ("released", "unknown task t")
    clock.advance(30)
    assert queue.claim(worker="w") is not None


def test_release_without_a_delay_keeps_run_at(queue: Queue, clock: ManualClock) -> None:
    job = queue.enqueue("x")
    clock.advance(5)
    claimed = queue.claim(worker="w")
    assert claimed is not None
    assert queue.release(claimed).run_at == job.run_at


def test_wait_returns_a_finished_job_at_once_and_an_unfinished_one_after_the_timeout(
    queue: Queue,
) -> None:
    job = queue.enqueue("x")
    started = time.monotonic()
    assert queue.wait(job.id, timeout=0.2).status == State.PENDING
    assert 0.2 <= time.monotonic() - started < 2
    claimed = queue.claim(worker="w")
    assert claimed is not None
    queue.complete(claimed, 7)
    assert queue.wait(job.id, timeout=10).result == 7
    with pytest.raises(InvalidJob, match="timeout"):
        queue.wait(job.id, timeout=-1)


def test_wait_wakes_when_another_thread_of_the_process_finishes_the_job(queue: Queue) -> None:
    """The waiter and the finisher share the process's connection, whose own commits
    SQLite's data version does not count: the backend wakes local waiters itself."""
    job = queue.enqueue("x")
    claimed = queue.claim(worker="w")
    assert claimed is not None
    finished_at: list[float] = []

    def finish() -> None:
        time.sleep(0.3)
        queue.complete(claimed, "done")
        finished_at.append(time.monotonic())

    thread = threading.Thread(target=finish)
    thread.start()
    assert queue.wait(job.id, timeout=10).status == State.COMPLETED
    woke = time.monotonic()
    thread.join()
    # Woken by the commit, not by the 5 s safety nap; the 50 ms target is measured as a
    # median in test_tasks_processes.py (one sample on a loaded machine may take longer).
    assert woke - finished_at[0] < 1.0
