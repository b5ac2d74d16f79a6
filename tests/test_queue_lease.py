"""Fenced leases (SPEC guarantees 2-4): only the current holder moves a PROCESSING job."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from persistq import Job, JobNotFound, LeaseLost, ManualClock, Queue, State


def _claimed(queue: Queue, **kwargs: object) -> Job:
    queue.enqueue("x", **kwargs)  # type: ignore[arg-type]
    job = queue.claim(worker="w1")
    assert job is not None
    return job


def test_heartbeat_extends_the_lease(queue: Queue, clock: ManualClock) -> None:
    job = _claimed(queue)
    clock.advance(20)
    beat = queue.heartbeat(job)
    assert beat.lease_expires_at is not None
    assert beat.lease_expires_at.timestamp() == pytest.approx(clock.now() + 30)
    assert beat.lease_token == job.lease_token
    clock.advance(20)  # 40 s after the claim, but only 20 after the beat
    assert queue.complete(job).status == State.COMPLETED


@pytest.mark.parametrize("operation", ["heartbeat", "complete", "fail", "release"])
def test_a_stale_token_raises_lease_lost_and_changes_nothing(
    queue: Queue, clock: ManualClock, operation: str
) -> None:
    stale = _claimed(queue)
    clock.advance(31)
    assert queue.recover_stalled() == 1
    current = queue.claim(worker="w2")
    assert current is not None and current.id == stale.id
    before = queue.get(stale.id)
    events_before = queue.events(stale.id)
    call = {
        "heartbeat": lambda: queue.heartbeat(stale),
        "complete": lambda: queue.complete(stale, "late result"),
        "fail": lambda: queue.fail(stale, "late error"),
        "release": lambda: queue.release(stale),
    }[operation]
    with pytest.raises(LeaseLost):
        call()
    assert queue.get(stale.id) == before
    assert queue.events(stale.id) == events_before
    assert queue.complete(current).status == State.COMPLETED


@pytest.mark.parametrize("operation", ["heartbeat", "complete", "fail", "release"])
def test_an_expired_lease_is_lost_even_before_the_sweep(
    queue: Queue, clock: ManualClock, operation: str
) -> None:
    job = _claimed(queue)
    clock.advance(30)
    with pytest.raises(LeaseLost):
        getattr(queue, operation)(*([job, "e"] if operation == "fail" else [job]))
    assert queue.get(job.id).status == State.PROCESSING


def test_a_job_reaches_completed_at_most_once(queue: Queue) -> None:
    job = _claimed(queue)
    queue.complete(job, 1)
    with pytest.raises(LeaseLost):
        queue.complete(job, 2)
    assert queue.get(job.id).result == 1
    assert [e.kind for e in queue.events(job.id)].count("completed") == 1


def test_a_forged_token_is_refused(queue: Queue) -> None:
    job = _claimed(queue)
    with pytest.raises(LeaseLost):
        queue.complete(replace(job, lease_token="0" * 32))
    with pytest.raises(LeaseLost):
        queue.complete(queue.get(job.id))  # a read copy carries no token


def test_owner_writes_on_an_unknown_job_raise_job_not_found(queue: Queue) -> None:
    job = _claimed(queue)
    with pytest.raises(JobNotFound):
        queue.complete(replace(job, id=job.id + 1000))


def test_each_claim_issues_a_fresh_token(queue: Queue, clock: ManualClock) -> None:
    first = _claimed(queue)
    queue.release(first)
    second = queue.claim(worker="w1")
    assert second is not None and second.lease_token != first.lease_token


def test_an_expired_lease_goes_back_to_pending_while_attempts_remain(
    queue: Queue, clock: ManualClock
) -> None:
    job = _claimed(queue)
    clock.advance(29)
    assert queue.recover_stalled() == 0
    clock.advance(1)
    assert queue.recover_stalled() == 1
    recovered = queue.get(job.id)
    assert recovered.status == State.PENDING
    assert recovered.last_error == "lease expired"
    assert recovered.attempts == 1
    assert recovered.lease_expires_at is None


def test_an_expired_lease_on_the_last_attempt_is_unprocessable(
    queue: Queue, clock: ManualClock
) -> None:
    queue.enqueue("poison", max_attempts=2)
    for attempt in (1, 2):
        job = queue.claim(worker=f"w{attempt}")
        assert job is not None and job.attempts == attempt
        clock.advance(31)
        assert queue.recover_stalled() == 1
    dead = queue.get(job.id)
    assert dead.status == State.UNPROCESSABLE
    assert dead.attempts == dead.max_attempts == 2
    assert dead.finished_at is not None
    assert queue.claim(worker="w3") is None


def test_recover_stalled_leaves_live_leases_alone(queue: Queue, clock: ManualClock) -> None:
    short = _claimed(queue)
    queue.enqueue("y")
    long = queue.claim(worker="w2", lease=300)
    assert long is not None
    clock.advance(31)
    assert queue.recover_stalled() == 1
    assert queue.get(short.id).status == State.PENDING
    assert queue.get(long.id).status == State.PROCESSING


def test_two_sweepers_do_not_count_an_expiry_twice(
    queue: Queue, make_queue: object, clock: ManualClock
) -> None:
    job = _claimed(queue, max_attempts=3)
    other = make_queue()  # type: ignore[operator]
    clock.advance(31)
    assert queue.recover_stalled() + other.recover_stalled() == 1
    assert queue.get(job.id).attempts == 1
    assert [e.kind for e in queue.events(job.id)].count("lease_expired") == 1


def test_release_gives_the_job_back_and_refunds_the_attempt(queue: Queue) -> None:
    job = _claimed(queue)
    released = queue.release(job)
    assert released.status == State.PENDING
    assert released.attempts == 0
    again = queue.claim(worker="w2")
    assert again is not None and again.attempts == 1


def test_every_way_back_to_pending_leaves_the_job_without_a_worker(
    make_queue: Callable[..., Queue], clock: ManualClock
) -> None:
    """SPEC: ``worker`` is the worker holding the lease; a PENDING job is held by no one.
    The events still say which worker let go of it."""
    queue = make_queue(backoff_base=0)

    def claimed(name: str) -> Job:
        queue.enqueue("x", queue=name)
        job = queue.claim(queue=name, worker="w1")
        assert job is not None
        return job

    released = queue.release(claimed("released"))
    retried = queue.fail(claimed("retried"), "try again")
    expired = claimed("expired")
    clock.advance(31)
    assert queue.recover_stalled() == 1
    finished = queue.complete(claimed("resubmitted"))
    resubmitted = queue.resubmit(finished.id)
    for job in (released, retried, queue.get(expired.id), resubmitted):
        assert job.status == State.PENDING
        assert job.worker is None, f"job {job.id} still names worker {job.worker!r}"
        assert queue.get(job.id).worker is None
    for job, kind in ((released, "released"), (retried, "retried"), (expired, "lease_expired")):
        assert [e.worker for e in queue.events(job.id) if e.kind == kind] == ["w1"]


def test_heartbeat_many_extends_every_lease_and_a_lost_one_alone_is_refused(
    queue: Queue, clock: ManualClock
) -> None:
    """One lost lease among three (another worker holds it now), a cancel requested on one
    still held, a copy without a token and a job that is gone: each gets its own answer."""
    queue.enqueue_many(["a", "b", "c"])
    first, second, third = queue.claim_many(worker="w1", limit=3, lease=30)
    clock.advance(20)
    queue.release(second)
    again = queue.claim(worker="w2")
    assert again is not None and again.id == second.id
    queue.cancel(third.id)
    before = queue.get(second.id)
    events_before = queue.events(second.id)

    beats = queue.heartbeat_many([first, second, third])

    assert [type(b) for b in beats] == [Job, LeaseLost, Job]
    lost = beats[1]
    assert isinstance(lost, LeaseLost) and lost.job_id == second.id
    for beat, job in ((beats[0], first), (beats[2], third)):
        assert isinstance(beat, Job) and beat.id == job.id
        assert beat.lease_token == job.lease_token
        assert beat.lease_expires_at is not None
        assert beat.lease_expires_at.timestamp() == pytest.approx(clock.now() + 30)
    assert isinstance(beats[2], Job) and beats[2].cancel_requested
    assert isinstance(beats[0], Job) and not beats[0].cancel_requested
    assert queue.get(second.id) == before  # the lost lease changed nothing
    assert queue.events(second.id) == events_before
    clock.advance(20)  # 40 s after the claim, 20 after the beat: still held
    assert queue.complete(first).status == State.COMPLETED
    assert queue.complete(again).status == State.COMPLETED

    gone = replace(first, id=first.id + 1000)
    unheld = queue.get(third.id)  # a read copy carries no token
    answers = queue.heartbeat_many([gone, unheld, third])
    assert [type(a) for a in answers] == [LeaseLost, LeaseLost, Job]
    assert queue.heartbeat_many([]) == []


def test_heartbeat_many_refuses_expired_leases_before_the_sweep(
    queue: Queue, clock: ManualClock
) -> None:
    queue.enqueue_many(["a", "b"])
    old = queue.claim(worker="w1", lease=10)
    clock.advance(5)
    young = queue.claim(worker="w1", lease=10)
    assert old is not None and young is not None
    clock.advance(6)  # past the first lease only
    beats = queue.heartbeat_many([old, young])
    assert isinstance(beats[0], LeaseLost) and isinstance(beats[1], Job)
    assert queue.get(old.id).status == State.PROCESSING  # not recovered yet: nothing moved


def test_what_a_claim_or_a_completion_returns_is_the_stored_job(
    queue: Queue, clock: ManualClock
) -> None:
    # SQLite answers a completion with the holder's copy brought up to date, not the row
    # read back: every way a holder may come to its copy must give the stored job.
    def stored(job: Job) -> Job:
        return replace(queue.get(job.id), lease_token=None)

    claimed = _claimed(queue, priority=3, key="k", timeout=9)
    # A claim, too, answers without reading every column back.
    assert claimed == replace(queue.get(claimed.id), lease_token=claimed.lease_token)
    clock.advance(5)
    queue.heartbeat(claimed)  # the copy the holder completes with predates this beat
    clock.advance(5)
    done = queue.complete(claimed, {"n": (1, 2)})  # a tuple, stored as a list
    assert done == stored(claimed) and done.result == {"n": [1, 2]}

    # The stored job with the holder's token (as the REST API makes the copy).
    fresh = _claimed(queue)
    assert queue.complete(replace(queue.get(fresh.id), lease_token=fresh.lease_token)) == stored(
        fresh
    )

    # A copy from an earlier claim carrying this claim's token: the row is read back.
    again = _claimed(queue)
    queue.release(again)
    current = queue.claim(worker="w2")
    assert current is not None and current.id == again.id
    done = queue.complete(replace(again, lease_token=current.lease_token))
    assert done == stored(again) and done.worker == "w2" and done.fence == 2

    # A cancel asked for meanwhile ends the job CANCELLED, its result kept.
    asked = _claimed(queue)
    queue.cancel(asked.id)
    done = queue.complete(asked, 7)
    assert done == stored(asked) and (done.status, done.result) == (State.CANCELLED, 7)

    # Settled together, and with the next claim.
    first, second = _claimed(queue), _claimed(queue)
    answers = queue.complete_many([(first, 1), (second, None)])
    assert answers == [stored(first), stored(second)]
    last = _claimed(queue)
    queue.enqueue("next")
    (answer,), claimed_next = queue.complete_and_claim([(last, "r")], worker="w1", limit=1)
    assert answer == stored(last) and len(claimed_next) == 1
