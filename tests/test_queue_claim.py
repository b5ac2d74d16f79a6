"""Claim: atomic, ordered by priority then FIFO, honours run_at and paused queues."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from persistq import InvalidJob, ManualClock, Queue, State
from persistq.backends.sql import recording


def test_claim_on_an_empty_queue_returns_none(queue: Queue) -> None:
    assert queue.claim(worker="w") is None


def test_claim_leases_the_job_to_the_worker(queue: Queue, clock: ManualClock) -> None:
    queue.enqueue("x")
    job = queue.claim(worker="w1")
    assert job is not None
    assert job.status == State.PROCESSING
    assert job.worker == "w1"
    assert job.attempts == 1
    assert job.lease_token
    assert job.lease_expires_at is not None
    assert job.lease_expires_at.timestamp() == pytest.approx(clock.now() + 30)
    assert job.started_at is not None


def test_claim_takes_higher_priority_first_then_oldest(queue: Queue) -> None:
    low = queue.enqueue("low", priority=0)
    high1 = queue.enqueue("high1", priority=10)
    high2 = queue.enqueue("high2", priority=10)
    mid = queue.enqueue("mid", priority=5)
    order = [queue.claim(worker="w") for _ in range(4)]
    assert [j.id for j in order if j] == [high1.id, high2.id, mid.id, low.id]


def test_claim_skips_job_whose_run_at_is_in_the_future(queue: Queue, clock: ManualClock) -> None:
    queue.enqueue("later", delay=60)
    assert queue.claim(worker="w") is None
    clock.advance(61)
    assert queue.claim(worker="w") is not None


def test_claim_only_takes_from_the_named_queue(queue: Queue) -> None:
    queue.enqueue("a", queue="a")
    assert queue.claim(queue="b", worker="w") is None
    assert queue.claim(queue="a", worker="w") is not None


def test_claim_from_several_queues_tries_them_in_the_order_given(queue: Queue) -> None:
    queue.enqueue("low-queue job", queue="bulk", priority=100)
    urgent = queue.enqueue("urgent", queue="urgent")
    job = queue.claim(queue=["urgent", "bulk"], worker="w")
    assert job is not None and job.id == urgent.id
    job = queue.claim(queue=["urgent", "bulk"], worker="w")
    assert job is not None and job.queue == "bulk"


def test_a_claimed_job_is_not_claimed_again(queue: Queue) -> None:
    queue.enqueue("only")
    assert queue.claim(worker="w1") is not None
    assert queue.claim(worker="w2") is None


def test_claim_many_returns_up_to_limit_in_claim_order(queue: Queue) -> None:
    jobs = queue.enqueue_many(range(10))
    queue.enqueue("urgent", priority=9)
    claimed = queue.claim_many(worker="w", limit=4)
    assert [j.payload for j in claimed] == ["urgent", 0, 1, 2]
    assert len({j.lease_token for j in claimed}) == 4
    assert all(j.status == State.PROCESSING for j in claimed)
    assert len(queue.claim_many(worker="w", limit=100)) == len(jobs) - 3


def test_a_paused_queue_accepts_enqueues_but_claims_return_nothing(queue: Queue) -> None:
    queue.create_queue("q")
    queue.pause("q")
    job = queue.enqueue("x", queue="q")
    assert queue.get(job.id).status == State.PENDING
    assert queue.claim(queue="q", worker="w") is None
    queue.resume("q")
    assert queue.claim(queue="q", worker="w") is not None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"worker": ""},
        {"worker": "w", "queue": []},
        {"worker": "w", "queue": "bad name"},
        {"worker": "w", "lease": 0},
        {"worker": "w", "wait": -1},
    ],
)
def test_claim_with_bad_arguments_is_refused(queue: Queue, kwargs: dict[str, object]) -> None:
    queue.enqueue("x")
    with pytest.raises(InvalidJob):
        queue.claim(**kwargs)  # type: ignore[arg-type]
    assert queue.jobs()[0].status == State.PENDING


@pytest.mark.parametrize(
    ("good", "bad"),
    [
        ({"limit": 1}, {"limit": True}),
        ({"limit": 1, "lease": 1}, {"limit": 1, "lease": True}),
        # A worker's list of queues is remembered as its tuple: a longer or odd one is not it.
        ({"limit": 1, "queue": ["default", "b"]}, {"limit": 1, "queue": ["default", "b", "x y"]}),
        ({"limit": 1, "queue": ("default",)}, {"limit": 1, "queue": ["default", 1]}),
    ],
)
def test_claim_arguments_accepted_before_let_no_equal_bad_one_through(
    queue: Queue, good: dict[str, object], bad: dict[str, object]
) -> None:
    assert queue.claim_many(worker="w", **good) == []  # type: ignore[arg-type]
    queue.enqueue("x")
    with pytest.raises(InvalidJob):
        queue.claim_many(worker="w", **bad)  # type: ignore[arg-type]
    assert queue.jobs()[0].status == State.PENDING


def test_claim_with_wait_returns_as_soon_as_a_job_is_enqueued_elsewhere(
    make_queue: Callable[..., Queue],
) -> None:
    """A second connection (as another process would) enqueues while the claim waits."""
    from persistq import SystemClock

    consumer = make_queue(clock=SystemClock())
    producer = make_queue(clock=SystemClock())
    timer = threading.Timer(0.3, lambda: producer.enqueue("wake"))
    timer.start()
    started = time.monotonic()
    job = consumer.claim(worker="w", wait=10)
    elapsed = time.monotonic() - started
    timer.join()
    assert job is not None and job.payload == "wake"
    assert elapsed < 5, f"the waiting claim took {elapsed:.2f}s to notice the job"


def test_claim_with_wait_gives_up_after_the_wait(queue: Queue) -> None:
    started = time.monotonic()
    assert queue.claim(worker="w", wait=0.2) is None
    assert time.monotonic() - started >= 0.2


def test_concurrent_claims_from_threads_never_share_a_job(
    make_queue: Callable[..., Queue],
) -> None:
    producer = make_queue()
    producer.enqueue_many(range(200))
    seen: list[int] = []
    lock = threading.Lock()

    def consume(name: str) -> None:
        q = make_queue()
        while (job := q.claim(worker=name)) is not None:
            q.complete(job)
            with lock:
                seen.append(job.id)

    threads = [threading.Thread(target=consume, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == sorted(set(seen))
    assert len(seen) == 200


def test_a_claim_that_does_not_wait_runs_only_the_claim(make_queue: Callable[..., Queue]) -> None:
    """An empty queue and no wait: the claim's own statements, nothing looked up for a wait
    that will not happen (a polling consumer pays for every empty claim)."""
    q = make_queue()
    q.set_limits("limited", rate="10/s")  # a rate-limited queue: a wait would read its rate
    with recording() as ran:
        assert q.claim(queue="default", worker="w") is None
        assert q.claim(queue=["default", "limited"], worker="w") is None
    claiming = {"claim_jobs", "lock_queue_limits", "claim_jobs_limited"}
    assert {name for _, name in ran} <= claiming, ran
