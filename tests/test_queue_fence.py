"""Job.fence: one more with every claim of a job, never reset (resubmit, release and retries
keep it), so a stale holder's downstream write can be refused (SPEC: Job table)."""

from __future__ import annotations

import pytest

from persistq import LeaseLost, ManualClock, Queue, State


def claim(queue: Queue, worker: str = "w") -> int:
    job = queue.claim(worker=worker)
    assert job is not None
    assert queue.get(job.id).fence == job.fence  # the stored row agrees with the claimed copy
    return job.fence


def test_a_new_job_has_fence_0_and_its_first_claim_gives_1(queue: Queue) -> None:
    job = queue.enqueue("x")
    assert job.fence == queue.get(job.id).fence == 0
    assert claim(queue) == 1


def test_two_claims_with_a_lease_expiry_between_give_increasing_fences(
    queue: Queue, clock: ManualClock
) -> None:
    queue.enqueue("x")
    first = queue.claim(worker="stalled")
    assert first is not None
    clock.advance(31)
    assert queue.recover_stalled() == 1
    assert queue.get(first.id).fence == first.fence  # recovery is no claim

    second = queue.claim(worker="fresh")

    assert second is not None and second.id == first.id
    assert (first.fence, second.fence) == (1, 2)
    with pytest.raises(LeaseLost):  # the stale holder is fenced off here too
        queue.complete(first, "late")
    assert queue.get(first.id).fence == 2


def test_after_resubmit_the_fence_keeps_growing(queue: Queue) -> None:
    job = queue.enqueue("x")
    for _ in range(2):
        leased = queue.claim(worker="w")
        assert leased is not None
        queue.complete(leased)
        again = queue.resubmit(job.id)
        assert (again.status, again.attempts, again.fence) == (State.PENDING, 0, leased.fence)

    third = queue.claim(worker="w")

    assert third is not None and (third.attempts, third.fence) == (1, 3)


def test_release_and_retry_keep_the_fence_though_release_refunds_the_attempt(
    queue: Queue,
) -> None:
    queue.enqueue("x", max_attempts=5)
    leased = queue.claim(worker="w")
    assert leased is not None
    released = queue.release(leased)
    assert (released.attempts, released.fence) == (0, 1)
    leased = queue.claim(worker="w")
    assert leased is not None and (leased.attempts, leased.fence) == (1, 2)
    retried = queue.fail(leased, "boom")  # back to PENDING after a backoff
    assert (retried.status, retried.fence) == (State.PENDING, 2)


def test_claim_many_adds_one_to_each_claimed_job_only(queue: Queue) -> None:
    ids = [queue.enqueue(n).id for n in range(4)]
    first = queue.claim_many(worker="w", limit=3)
    assert [j.fence for j in first] == [1, 1, 1]
    assert queue.get(ids[3]).fence == 0
    assert [queue.get(i).fence for i in ids] == [1, 1, 1, 0]
