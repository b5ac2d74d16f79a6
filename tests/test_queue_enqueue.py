"""Enqueue: durability of the returned job, validation, batches, idempotency keys."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import persistq
from persistq import InvalidJob, ManualClock, Queue, State


def test_enqueue_returns_a_pending_job_with_every_field_set(
    queue: Queue, clock: ManualClock
) -> None:
    job = queue.enqueue({"path": "a.txt"}, queue="files", priority=5, max_attempts=4, key="k1")
    assert job.id >= 1
    assert (job.queue, job.payload, job.status) == ("files", {"path": "a.txt"}, State.PENDING)
    assert (job.priority, job.attempts, job.max_attempts, job.key) == (5, 0, 4, "k1")
    assert job.created_at.timestamp() == pytest.approx(clock.now())
    assert job.run_at == job.created_at
    assert job.worker is None and job.lease_expires_at is None and job.lease_token is None
    assert queue.get(job.id) == job


def test_enqueue_without_a_key_returns_the_job_as_stored(queue: Queue) -> None:
    """SQLite builds this Job from the values it wrote instead of reading the row back."""
    job = queue.enqueue({"n": [1, "2"]}, queue="files", priority=-3, delay=7.25, timeout=9.5)
    again = queue.enqueue("second", queue="files")
    assert again.id > job.id
    assert queue.get(job.id) == job and queue.get(again.id) == again
    assert (job.key, job.timeout, job.fence, job.cancel_requested) == (None, 9.5, 0, False)


def test_an_enqueued_job_is_visible_to_a_new_connection(
    queue: Queue, make_queue: Callable[..., Queue]
) -> None:
    job = queue.enqueue([1, 2, 3])
    queue.close()
    assert make_queue().get(job.id).payload == [1, 2, 3]


def test_delay_sets_run_at_in_the_future(queue: Queue, clock: ManualClock) -> None:
    job = queue.enqueue("later", delay=60)
    assert job.run_at.timestamp() == pytest.approx(clock.now() + 60)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"queue": ""}, "invalid queue name"),
        ({"queue": "-starts-with-dash"}, "invalid queue name"),
        ({"queue": "x" * 65}, "invalid queue name"),
        ({"queue": "has space"}, "invalid queue name"),
        ({"priority": "high"}, "priority must be an integer"),
        ({"priority": True}, "priority must be an integer"),
        ({"priority": 2**40}, "priority must be between"),
        ({"delay": -1}, "delay must be between"),
        ({"delay": float("nan")}, "delay must be between"),
        ({"max_attempts": 0}, "max_attempts must be between"),
        ({"key": ""}, "key must be a string"),
        ({"key": 12}, "key must be a string"),
    ],
)
def test_bad_options_are_refused_and_change_nothing(
    queue: Queue, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidJob, match=message):
        queue.enqueue("x", **kwargs)  # type: ignore[arg-type]
    assert queue.jobs() == []


@pytest.mark.parametrize(
    ("good", "bad"),
    [
        ({"priority": 1}, {"priority": True}),
        ({"delay": 0}, {"delay": False}),
        ({"max_attempts": 1}, {"max_attempts": True}),
        ({"queue": "q"}, {"queue": ["q"]}),
    ],
)
def test_options_accepted_before_let_no_equal_bad_one_through(
    queue: Queue, good: dict[str, object], bad: dict[str, object]
) -> None:
    """Options checked once are not checked again (model.Checked): True equals 1, and an
    unhashable value cannot be looked up, yet both are still refused."""
    queue.enqueue("x", **good)  # type: ignore[arg-type]
    with pytest.raises(InvalidJob):
        queue.enqueue("x", **bad)  # type: ignore[arg-type]
    assert len(queue.jobs()) == 1


@pytest.mark.parametrize("payload", [{1, 2}, object(), float("nan"), {"a": float("inf")}, b"bytes"])
def test_a_payload_that_is_not_json_is_refused(queue: Queue, payload: object) -> None:
    with pytest.raises(InvalidJob, match="payload is not JSON"):
        queue.enqueue(payload)
    assert queue.jobs() == []


def test_a_payload_over_the_size_limit_is_refused(make_queue: Callable[..., Queue]) -> None:
    q = make_queue(max_payload_bytes=100)
    q.enqueue("x" * 90)
    with pytest.raises(InvalidJob, match="limit is 100"):
        q.enqueue("x" * 100)
    assert len(q.jobs()) == 1


def test_the_default_payload_limit_is_one_mebibyte(queue: Queue) -> None:
    queue.enqueue("x" * (1024 * 1024 - 2))  # the quotes make it exactly 1 MiB
    with pytest.raises(InvalidJob):
        queue.enqueue("x" * (1024 * 1024))


def test_enqueue_many_stores_all_jobs_in_order(queue: Queue) -> None:
    jobs = queue.enqueue_many([{"n": i} for i in range(50)], queue="batch", priority=2)
    assert [j.payload["n"] for j in jobs] == list(range(50))
    assert [j.id for j in jobs] == list(range(jobs[0].id, jobs[0].id + 50))
    assert [queue.get(j.id) for j in jobs] == jobs
    assert all(len(queue.events(j.id)) == 1 for j in jobs)


def test_enqueue_many_with_one_bad_payload_stores_nothing(queue: Queue) -> None:
    with pytest.raises(InvalidJob, match=r"^payload 2 is not JSON"):  # its place named
        queue.enqueue_many([1, 2, {3}, 4])
    assert queue.jobs() == []


def test_enqueue_many_of_nothing_returns_nothing(queue: Queue) -> None:
    assert queue.enqueue_many([]) == []


def test_enqueue_with_an_existing_key_returns_that_job_and_creates_nothing(queue: Queue) -> None:
    first = queue.enqueue({"v": 1}, key="order-42")
    again = queue.enqueue({"v": 2}, key="order-42")
    assert again == first
    assert again.payload == {"v": 1}
    assert len(queue.jobs()) == 1
    assert [e.kind for e in queue.events(first.id)] == ["enqueued"]


def test_keys_are_unique_per_queue_not_globally(queue: Queue) -> None:
    a = queue.enqueue(1, queue="a", key="same")
    b = queue.enqueue(2, queue="b", key="same")
    assert a.id != b.id


@pytest.mark.local_only  # purge is an operator's call on the database
def test_a_key_is_free_again_once_its_job_is_purged(queue: Queue, clock: ManualClock) -> None:
    job = queue.enqueue(1, key="once")
    queue.complete(queue.claim(worker="w") or pytest.fail("no job"))
    clock.advance(10)
    assert queue.purge(status="COMPLETED", older_than=5) == 1
    assert queue.enqueue(2, key="once").id != job.id


def test_enqueue_many_with_keys_mixes_new_and_existing_jobs(queue: Queue) -> None:
    existing = queue.enqueue("old", key="k2")
    jobs = queue.enqueue_many(["a", "b", "c"], keys=["k1", "k2", None])
    assert jobs[1] == existing
    assert [j.payload for j in jobs] == ["a", "old", "c"]
    assert len(queue.jobs()) == 3


@pytest.mark.local_only  # purge is an operator's call on the database
def test_ids_are_never_reused_after_a_purge(queue: Queue, clock: ManualClock) -> None:
    """Handlers are idempotent by job id, so a purged id must never come back."""
    last = queue.enqueue("x")
    queue.complete(queue.claim(worker="w") or pytest.fail("no job"))
    clock.advance(10)
    queue.purge(status="COMPLETED", older_than=1)
    assert queue.enqueue("y").id > last.id


def test_connect_reads_the_url_from_the_environment(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERSISTQ_URL", sqlite_url)
    with persistq.get_queue() as q:
        assert q.url == sqlite_url


def test_an_unknown_url_scheme_is_a_clear_error() -> None:
    with pytest.raises(persistq.StorageUnavailable, match="unsupported database URL scheme"):
        persistq.connect("mysql://localhost/db")
