"""``complete_many``: a worker's completions settled together, each fenced as ``complete``
is (SPEC guarantee 3), one refusal alone among good ones (issue 14, isolation)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from persistq import InvalidJob, Job, JobNotFound, LeaseLost, ManualClock, Queue, State


def test_a_stale_completion_among_good_ones_alone_gets_lease_lost(
    queue: Queue, clock: ManualClock
) -> None:
    """Four held jobs and one whose lease expired and went to another worker: the four end
    COMPLETED with their results, the stale one is refused and stays the new holder's."""
    queue.enqueue_many([{"n": n} for n in range(5)])
    jobs = queue.claim_many(worker="w1", limit=5, lease=30)
    stale = jobs[2]
    clock.advance(31)
    assert queue.recover_stalled() == 5
    retaken = queue.claim_many(worker="w2", limit=5, lease=30)
    assert {j.id for j in retaken} == {j.id for j in jobs}
    held = {j.id: j for j in retaken}
    before = queue.get(stale.id)
    events_before = queue.events(stale.id)
    items = [(held[j.id], {"r": n}) for n, j in enumerate(jobs) if j is not stale]
    items.insert(2, (stale, {"r": "late"}))

    answers = queue.complete_many(items)

    assert [type(a) for a in answers] == [Job, Job, LeaseLost, Job, Job]
    lost = answers[2]
    assert isinstance(lost, LeaseLost) and lost.job_id == stale.id
    for (job, result), answer in zip(items, answers, strict=True):
        if job is stale:
            continue
        assert isinstance(answer, Job) and answer.id == job.id
        assert answer.status == State.COMPLETED and answer.result == result
        assert queue.get(job.id).result == result
        assert [str(e.kind) for e in queue.events(job.id)][-2:] == ["claimed", "completed"]
    assert queue.get(stale.id) == before  # refused: nothing moved, the new holder holds it
    assert queue.events(stale.id) == events_before
    assert queue.complete(held[stale.id], "mine").status == State.COMPLETED


def test_each_refusal_is_its_own_answer_and_the_rest_complete(queue: Queue) -> None:
    """A job that is gone, a copy without a token, a result JSON cannot hold: each gets the
    error ``complete`` raises for it, and a cancel requested ends its job CANCELLED."""
    queue.enqueue_many(["a", "b", "c", "d"])
    a, b, c, d = queue.claim_many(worker="w", limit=4)
    queue.cancel(d.id)
    gone = replace(a, id=a.id + 1000)
    unheld = queue.get(b.id)  # a read copy carries no token

    answers = queue.complete_many(
        [(gone, None), (unheld, None), (c, {"bad": {1, 2}}), (a, [1]), (d, "kept")]
    )

    assert [type(x) for x in answers[:3]] == [JobNotFound, LeaseLost, InvalidJob]
    done, cancelled = answers[3], answers[4]
    assert isinstance(done, Job) and done.status == State.COMPLETED and done.result == [1]
    assert isinstance(cancelled, Job) and cancelled.status == State.CANCELLED
    assert cancelled.result == "kept"
    assert [str(e.kind) for e in queue.events(d.id)].count("cancelled") == 1
    assert queue.get(b.id).status == State.PROCESSING  # still b's holder's to settle
    assert queue.get(c.id).status == State.PROCESSING
    assert queue.complete(c, "ok").status == State.COMPLETED
    assert queue.complete_many([]) == []


def test_a_job_completes_at_most_once_however_often_it_is_in_the_batch(queue: Queue) -> None:
    queue.enqueue("x")
    job = queue.claim(worker="w")
    assert job is not None
    answers = queue.complete_many([(job, 1), (job, 2)])
    assert [type(a) for a in answers] == [Job, LeaseLost]
    assert queue.get(job.id).result == 1
    with pytest.raises(LeaseLost):
        queue.complete(job, 3)
