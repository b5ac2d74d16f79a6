"""Manual transitions (cancel, resubmit), events, queues, stats, purge and check."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from persistq import (
    InvalidJob,
    InvalidTransition,
    Job,
    JobNotFound,
    LeaseLost,
    ManualClock,
    Queue,
    QueueNotEmpty,
    QueueNotFound,
    State,
)
from persistq.model import INT64_MAX


def _job_in(queue: Queue, clock: ManualClock, state: State, name: str = "default") -> Job:
    """A job of queue ``name`` brought to ``state`` through the public API."""
    job = queue.enqueue({"for": str(state)}, max_attempts=1, queue=name)
    if state == State.PENDING:
        return job
    claimed = queue.claim(worker="w", queue=name)
    assert claimed is not None and claimed.id == job.id
    if state == State.PROCESSING:
        return claimed
    if state == State.COMPLETED:
        return queue.complete(claimed)
    if state == State.FAILED:
        return queue.fail(claimed, "boom")
    if state == State.UNPROCESSABLE:
        clock.advance(31)
        queue.recover_stalled()
        return queue.get(job.id)
    queue.release(claimed)
    return queue.cancel(job.id)


ALL_STATES = list(State)


@pytest.mark.parametrize("state", [State.PENDING, State.FAILED, State.UNPROCESSABLE])
def test_cancel_moves_a_waiting_or_dead_job_to_cancelled(
    queue: Queue, clock: ManualClock, state: State
) -> None:
    job = _job_in(queue, clock, state)
    cancelled = queue.cancel(job.id)
    assert cancelled.status == State.CANCELLED
    assert cancelled.finished_at is not None
    assert queue.events(job.id)[-1].kind == "cancelled"


@pytest.mark.parametrize("state", [State.COMPLETED, State.CANCELLED])
def test_cancel_from_a_finished_state_is_an_invalid_transition(
    queue: Queue, clock: ManualClock, state: State
) -> None:
    job = _job_in(queue, clock, state)
    before = queue.get(job.id)
    with pytest.raises(InvalidTransition) as info:
        queue.cancel(job.id)
    assert (info.value.current, info.value.requested) == (state, "cancel")
    assert queue.get(job.id) == before


@pytest.mark.parametrize("finish", ["complete", "fail", "release"])
def test_cancelling_a_processing_job_ends_it_cancelled_when_the_holder_lets_go(
    queue: Queue, clock: ManualClock, finish: str
) -> None:
    job = _job_in(queue, clock, State.PROCESSING)
    requested = queue.cancel(job.id)
    assert requested.status == State.PROCESSING and requested.cancel_requested
    assert queue.cancel(job.id).cancel_requested  # asking twice records nothing more
    beat = queue.heartbeat(job)  # the holder learns of it on its next heartbeat
    assert beat.cancel_requested
    {
        "complete": lambda: queue.complete(job),
        "fail": lambda: queue.fail(job, "x"),
        "release": lambda: queue.release(job),
    }[finish]()
    assert queue.get(job.id).status == State.CANCELLED
    kinds = [e.kind for e in queue.events(job.id)]
    assert kinds[-2:] == ["cancel_requested", "cancelled"]
    assert kinds.count("cancel_requested") == 1


def test_a_cancel_requested_job_whose_lease_expires_ends_cancelled(
    queue: Queue, clock: ManualClock
) -> None:
    job = _job_in(queue, clock, State.PROCESSING)
    queue.cancel(job.id)
    clock.advance(31)
    queue.recover_stalled()
    assert queue.get(job.id).status == State.CANCELLED


@pytest.mark.parametrize(
    "state", [State.FAILED, State.UNPROCESSABLE, State.CANCELLED, State.COMPLETED]
)
def test_resubmit_puts_a_finished_job_back_with_attempts_reset(
    queue: Queue, clock: ManualClock, state: State
) -> None:
    job = _job_in(queue, clock, state)
    again = queue.resubmit(job.id)
    assert again.status == State.PENDING
    assert again.attempts == 0
    assert again.finished_at is None and again.result is None and again.worker is None
    assert queue.events(job.id)[-1].kind == "resubmitted"
    claimed = queue.claim(worker="w9")
    assert claimed is not None and claimed.id == job.id


@pytest.mark.parametrize("state", [State.PENDING, State.PROCESSING])
def test_resubmit_of_an_unfinished_job_is_an_invalid_transition(
    queue: Queue, clock: ManualClock, state: State
) -> None:
    job = _job_in(queue, clock, state)
    before = queue.get(job.id)
    with pytest.raises(InvalidTransition):
        queue.resubmit(job.id)
    assert queue.get(job.id) == before


@pytest.mark.parametrize("state", [State.PENDING, State.PROCESSING])
def test_an_operator_can_fail_a_waiting_or_running_job_by_id(
    queue: Queue, clock: ManualClock, state: State
) -> None:
    job = _job_in(queue, clock, state)
    failed = queue.fail(job.id, "stuck on a bad host")
    assert failed.status == State.FAILED
    assert failed.last_error == "stuck on a bad host"
    assert queue.events(job.id)[-1].kind == "failed"
    if state == State.PROCESSING:
        with pytest.raises(LeaseLost):
            queue.complete(job)


@pytest.mark.parametrize("state", [State.COMPLETED, State.FAILED, State.CANCELLED])
def test_failing_a_finished_job_by_id_is_an_invalid_transition(
    queue: Queue, clock: ManualClock, state: State
) -> None:
    job = _job_in(queue, clock, state)
    before = queue.get(job.id)
    with pytest.raises(InvalidTransition):
        queue.fail(job.id, "x")
    assert queue.get(job.id) == before


def test_unknown_ids_raise_job_not_found(queue: Queue) -> None:
    for call in (queue.get, queue.events, queue.cancel, queue.resubmit):
        with pytest.raises(JobNotFound):
            call(12345)
    with pytest.raises(InvalidJob):
        queue.get(0)
    with pytest.raises(InvalidJob):
        queue.get("7")  # type: ignore[arg-type]


def test_every_state_change_is_recorded_as_an_event(queue: Queue, clock: ManualClock) -> None:
    job = queue.enqueue("x", max_attempts=2)
    first = queue.claim(worker="w1")
    assert first is not None
    queue.fail(first, "boom")
    clock.advance(10)
    second = queue.claim(worker="w2")
    assert second is not None
    queue.complete(second, {"ok": True})
    queue.resubmit(job.id)
    third = queue.claim(worker="w3")
    assert third is not None
    clock.advance(31)
    queue.recover_stalled()
    events = queue.events(job.id)
    assert [e.kind for e in events] == [
        "enqueued",
        "claimed",
        "retried",
        "claimed",
        "completed",
        "resubmitted",
        "claimed",
        "lease_expired",
    ]
    assert [e.worker for e in events][1:5] == ["w1", "w1", "w2", "w2"]
    assert events[2].detail == "boom"
    assert all(e.job_id == job.id for e in events)
    stored = [e.id for e in events if e.id is not None]  # derived events have id None (SPEC)
    assert stored == sorted(stored)
    assert {e.kind for e in events if e.id is None} == {"enqueued", "claimed", "completed"}


def test_jobs_filters_by_status_and_queue_newest_first(queue: Queue, clock: ManualClock) -> None:
    a = queue.enqueue(1, queue="a")
    b = queue.enqueue(2, queue="b")
    c = queue.enqueue(3, queue="a")
    claimed = queue.claim(queue="b", worker="w")
    assert claimed is not None
    assert [j.id for j in queue.jobs()] == [c.id, b.id, a.id]
    assert [j.id for j in queue.jobs(queue="a")] == [c.id, a.id]
    assert [j.id for j in queue.jobs(status="PROCESSING")] == [b.id]
    assert [j.id for j in queue.jobs(status="pending", queue="a")] == [c.id, a.id]
    assert [j.id for j in queue.jobs(limit=1, offset=1)] == [b.id]
    assert all(j.lease_token is None for j in queue.jobs())


def test_a_page_past_the_end_is_empty_whatever_its_offset(queue: Queue) -> None:
    """The largest offset the API admits, with every filter: no row, not a storage error
    (a page's end, offset + limit, must not overflow the database's integers)."""
    queue.enqueue(1, queue="a")
    for status in (None, "PENDING", "COMPLETED"):
        for name in (None, "a"):
            assert queue.jobs(status=status, queue=name, limit=500, offset=INT64_MAX) == []
            assert queue.jobs(status=status, queue=name, limit=1, offset=INT64_MAX - 1) == []


def test_jobs_with_an_unknown_state_is_refused(queue: Queue) -> None:
    with pytest.raises(InvalidJob, match="unknown state 'DONE'"):
        queue.jobs(status="DONE")


def test_stats_counts_every_state_per_queue(queue: Queue, clock: ManualClock) -> None:
    # UNPROCESSABLE first: making it moves the clock past every lease taken before it.
    order = [State.UNPROCESSABLE, *(s for s in ALL_STATES if s != State.UNPROCESSABLE)]
    for state in order:
        _job_in(queue, clock, state, name=f"s-{state.lower()}")
    queue.enqueue("delayed", queue="later", delay=100)
    clock.advance(5)
    stats = queue.stats()["queues"]
    assert set(stats) == {f"s-{s.lower()}" for s in ALL_STATES} | {"later"}
    for state in ALL_STATES:
        row = stats[f"s-{state.lower()}"]
        assert {s: row[s] for s in ALL_STATES} == {s: int(s == state) for s in ALL_STATES}
        assert row["paused"] is False
    assert stats["s-pending"]["oldest_pending_age"] == pytest.approx(5)
    assert stats["s-completed"]["oldest_pending_age"] is None
    assert stats["later"]["PENDING"] == 1
    assert stats["later"]["oldest_pending_age"] is None  # nothing due yet


def test_queues_can_be_created_paused_resumed_and_deleted(queue: Queue) -> None:
    assert queue.create_queue("emails").name == "emails"
    assert queue.create_queue("emails").paused is False  # creating twice is harmless
    assert queue.pause("emails").paused is True
    assert queue.stats()["queues"]["emails"]["paused"] is True
    assert queue.resume("emails").paused is False
    assert [q.name for q in queue.queues()] == ["emails"]
    assert queue.delete_queue("emails") == 0
    assert queue.queues() == []


def test_enqueue_creates_its_queue(queue: Queue) -> None:
    queue.enqueue("x", queue="auto")
    assert [q.name for q in queue.queues()] == ["auto"]


def test_deleting_a_queue_with_unfinished_jobs_needs_force(queue: Queue) -> None:
    job = queue.enqueue("x", queue="busy")
    with pytest.raises(QueueNotEmpty, match="1 unfinished"):
        queue.delete_queue("busy")
    assert queue.get(job.id).status == State.PENDING
    assert queue.delete_queue("busy", force=True) == 1
    with pytest.raises(JobNotFound):
        queue.get(job.id)


def test_queue_operations_on_an_unknown_queue_raise_queue_not_found(queue: Queue) -> None:
    for call in (queue.pause, queue.resume, queue.delete_queue):
        with pytest.raises(QueueNotFound):
            call("nope")
    with pytest.raises(InvalidJob):
        queue.pause("bad name!")


def test_a_worker_whose_job_was_deleted_gets_job_not_found(queue: Queue) -> None:
    queue.enqueue("x", queue="gone")
    job = queue.claim(queue="gone", worker="w")
    assert job is not None
    queue.delete_queue("gone", force=True)
    with pytest.raises((JobNotFound, LeaseLost)):
        queue.complete(job)


@pytest.mark.local_only  # purge is an operator's call on the database
def test_purge_deletes_old_finished_jobs_and_their_events(queue: Queue, clock: ManualClock) -> None:
    old = _job_in(queue, clock, State.COMPLETED)
    clock.advance(7 * 86400)
    recent = _job_in(queue, clock, State.COMPLETED)
    pending = queue.enqueue("keep")
    seen: list[int] = []
    assert queue.purge(status="COMPLETED", older_than=86400, on_progress=seen.append) == 1
    assert seen == [1]
    with pytest.raises(JobNotFound):
        queue.get(old.id)
    with pytest.raises(JobNotFound):
        queue.events(old.id)
    assert queue.get(recent.id).status == State.COMPLETED
    assert queue.get(pending.id).status == State.PENDING


@pytest.mark.local_only  # purge is an operator's call on the database
def test_purge_refuses_unfinished_states(queue: Queue) -> None:
    queue.enqueue("x")
    for state in ("PENDING", "PROCESSING"):
        with pytest.raises(InvalidJob, match="finished jobs only"):
            queue.purge(status=state, older_than=0)
    assert len(queue.jobs()) == 1


def test_purge_works_through_more_than_one_batch(
    make_queue: Callable[..., Queue], clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("persistq.queue.PURGE_BATCH", 7)
    q = make_queue()
    q.enqueue_many(range(20))
    for job in q.claim_many(worker="w", limit=20):
        q.complete(job)
    clock.advance(10)
    progress: list[int] = []
    assert q.purge(status=State.COMPLETED, older_than=1, on_progress=progress.append) == 20
    assert progress == [7, 14, 20]


def test_check_reports_a_healthy_database(queue: Queue) -> None:
    queue.enqueue("x")
    report = queue.check(full=True)
    assert report["ok"] is True
    assert report["integrity"] == "ok"
    assert report["schema_version"] == report["latest_schema_version"] >= 1
