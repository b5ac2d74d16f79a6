"""``complete_many``: a worker's completions settled together, each fenced as ``complete``
is (SPEC guarantee 3), one refusal alone among good ones (issue 14, isolation)."""

from __future__ import annotations

from dataclasses import replace

import pytest

import persistq
from persistq import (
    InvalidJob,
    Job,
    JobNotFound,
    LeaseLost,
    ManualClock,
    Queue,
    State,
    StorageUnavailable,
)


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


# -- complete_and_claim: a lone worker's completion and its next claim in one call -------------


def test_complete_and_claim_answers_each_item_then_claims(queue: Queue) -> None:
    """The completions answer as ``complete_many`` would (a stale one refused alone), and
    the claim leases the next jobs as ``claim_many`` would, in claim order."""
    queue.enqueue_many([{"n": n} for n in range(5)])
    first, second = queue.claim_many(worker="w", limit=2)
    unheld = queue.get(second.id)  # a read copy carries no token

    answers, claimed = queue.complete_and_claim(
        [(first, {"r": 1}), (unheld, None)], worker="w", limit=2
    )

    assert [type(a) for a in answers] == [Job, LeaseLost]
    done = answers[0]
    assert isinstance(done, Job) and done.status == State.COMPLETED and done.result == {"r": 1}
    assert [j.payload for j in claimed] == [{"n": 2}, {"n": 3}]
    assert all(j.status == State.PROCESSING and j.lease_token and j.attempts == 1 for j in claimed)
    assert queue.get(second.id).status == State.PROCESSING  # still its holder's to settle
    assert [str(e.kind) for e in queue.events(claimed[0].id)] == ["enqueued", "claimed"]


def test_complete_and_claim_never_waits_and_may_claim_nothing(queue: Queue) -> None:
    queue.enqueue("only")
    job = queue.claim(worker="w")
    assert job is not None

    answers, claimed = queue.complete_and_claim([(job, "done")], worker="w", limit=1)

    assert claimed == []
    assert [type(a) for a in answers] == [Job]
    assert queue.get(job.id).status == State.COMPLETED


def test_the_completion_frees_the_concurrency_slot_the_claim_takes(queue: Queue) -> None:
    """Completion first: with a queue limited to one job at a time, the held job's end
    lets the same call lease the next one."""
    queue.enqueue_many(["a", "b"], queue="one")
    queue.set_limits("one", concurrency=1)
    held = queue.claim(queue="one", worker="w")
    assert held is not None and queue.claim(queue="one", worker="w") is None

    answers, claimed = queue.complete_and_claim([(held, None)], queue="one", worker="w", limit=1)

    assert isinstance(answers[0], Job) and answers[0].status == State.COMPLETED
    assert [j.payload for j in claimed] == ["b"]


@pytest.mark.parametrize(
    ("options", "says"),
    [({"limit": 0}, "limit"), ({"worker": ""}, "worker"), ({"queue": "bad name"}, "queue")],
)
def test_a_bad_claim_refuses_the_whole_call_and_completes_nothing(
    queue: Queue, options: dict[str, object], says: str
) -> None:
    queue.enqueue_many(["a", "b"])
    job = queue.claim(worker="w")
    assert job is not None
    arguments: dict[str, object] = {"worker": "w", "limit": 1, **options}

    with pytest.raises(InvalidJob, match=says):
        queue.complete_and_claim([(job, "r")], **arguments)  # type: ignore[arg-type]

    assert queue.get(job.id).status == State.PROCESSING
    assert queue.complete(job, "r").status == State.COMPLETED


def test_on_postgres_a_claim_cut_off_after_the_completions_claims_nothing(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The two calls are two transactions there: once the completions committed, a storage
    error of the claim (the server gone, injected here) leaves their answers standing and
    leases nothing; the caller's next claim meets the error itself."""
    with persistq.connect(pg_url) as q:
        q.enqueue_many(["a", "b"])
        job = q.claim(worker="w")
        assert job is not None

        def cut_off(*args: object) -> list[Job]:
            raise StorageUnavailable("the server went away (injected)")

        monkeypatch.setattr(q.backend, "claim_jobs", cut_off)
        answers, claimed = q.complete_and_claim([(job, "r")], worker="w", limit=1)

        assert claimed == []
        assert isinstance(answers[0], Job) and answers[0].status == State.COMPLETED
        assert q.get(job.id).status == State.COMPLETED
        with pytest.raises(StorageUnavailable):
            q.claim(worker="w")
