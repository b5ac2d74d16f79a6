"""Global queue limits (issue 12) under real load: four worker processes of eight slots
each claim from one database; the limits hold across all of them, checked in the claim."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import persistq
from persistq import InvalidJob, Queue, State
from procs import Children

WORKERS = 4
SLOTS = 8


@pytest.fixture
def q(backend_url: str) -> Iterator[Queue]:
    with persistq.connect(backend_url) as queue:
        queue.stats()  # the schema exists before the workers open the database
        yield queue


def running(q: Queue, queue: str) -> int:
    """Jobs of ``queue`` PROCESSING under a lease that has not expired, read now."""
    now = datetime.fromtimestamp(q.now(), UTC)
    return sum(
        1
        for job in q.jobs(status=State.PROCESSING, queue=queue, limit=1000)
        if job.lease_expires_at is not None and job.lease_expires_at > now
    )


class Sampler:
    """Reads the database every 20 ms in a thread of its own; keeps the maximum seen."""

    def __init__(self, q: Queue, queue: str) -> None:
        self.q, self.queue, self.maximum, self.samples = q, queue, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.maximum = max(self.maximum, running(self.q, self.queue))
            self.samples += 1

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def wait_until(condition: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def start_workers(children: Children, url: str, *queues: str) -> None:
    args = [a for name in queues for a in ("--queue", name)]
    for n in range(WORKERS):
        children.worker(f"w{n}", url, "-c", str(SLOTS), *args)


def test_set_limits_validates_and_queues_report_them(q: Queue) -> None:
    info = q.set_limits("limited", concurrency=3, rate="20/m")
    assert (info.concurrency, info.rate) == (3, "20/m")
    assert [(i.concurrency, i.rate) for i in q.queues() if i.name == "limited"] == [(3, "20/m")]
    for bad in ({"rate": "20"}, {"rate": "0/s"}, {"rate": "5/d"}, {"concurrency": -1}):
        with pytest.raises(InvalidJob):
            q.set_limits("limited", **bad)  # type: ignore[arg-type]
    assert q.set_limits("limited").concurrency is None  # None lifts
    assert [(i.concurrency, i.rate) for i in q.queues() if i.name == "limited"] == [(None, None)]


def test_a_concurrency_limit_holds_across_four_workers_and_lifting_it_lets_32_run(
    q: Queue, backend_url: str, tmp_path: Path
) -> None:
    q.set_limits("limited", concurrency=3)
    jobs = q.enqueue_many([{"sleep": 0.2}] * 24, queue="limited")
    with Children(tmp_path) as children, Sampler(q, "limited") as sampler:
        start_workers(children, backend_url, "limited")
        wait_until(
            lambda: all(q.get(j.id).status == State.COMPLETED for j in jobs), "the queue to drain"
        )
        limited_max = sampler.maximum
        q.enqueue_many([{"sleep": 3}] * (WORKERS * SLOTS), queue="limited")
        q.set_limits("limited")  # lifted
        wait_until(lambda: sampler.maximum == WORKERS * SLOTS, "32 at once", 30)
        seen = f"{limited_max} ({sampler.samples} samples)"
        print(f"\nmax running under limit 3: {seen}; lifted: {sampler.maximum}")
    assert limited_max == 3


def test_a_rate_limit_holds_across_four_workers_and_holds_back_no_other_queue(
    q: Queue, backend_url: str, tmp_path: Path
) -> None:
    seconds, rate = 5.0, 20
    q.enqueue_many([{}] * 200, queue="rated")
    q.pause("rated")
    with Children(tmp_path) as children:
        start_workers(children, backend_url, "rated", "other")
        wait_until(lambda: len(q.workers()) == WORKERS, "the workers to start")
        q.set_limits("rated", rate=f"{rate}/s")  # the bucket starts empty: no burst
        started = q.now()
        q.resume("rated")
        others = q.enqueue_many([{}] * 50, queue="other")
        wait_until(
            lambda: all(q.get(j.id).status == State.COMPLETED for j in others),
            "the other queue",
            5,
        )
        time.sleep(max(0.0, started + seconds + 0.5 - q.now()))
        claimed = [
            j.started_at.timestamp()
            for j in q.jobs(queue="rated", limit=1000)
            if j.started_at is not None
        ]
    in_window = sum(1 for t in claimed if started <= t < started + seconds)
    print(f"\nrate {rate}/s over {seconds:g} s from {WORKERS} workers: {in_window} claims")
    assert abs(in_window - rate * seconds) <= 0.05 * rate * seconds, in_window
