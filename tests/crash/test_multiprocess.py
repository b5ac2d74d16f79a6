"""Many producer and consumer processes on one database (SPEC "What it is", guarantees 2-3).

Real processes, each with its own connection, on the database of ``backend_url``; nothing
is shared in memory. Every child must exit 0 with an empty stderr: a busy SQLite file must
never surface as "database is locked" (SPEC, Python API).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from persistq import Queue, State, SystemClock
from procs import Children

pytestmark = pytest.mark.slow

PRODUCERS = 4
CONSUMERS = 4
JOBS_PER_PRODUCER = 500


def test_four_producers_and_four_consumers_complete_every_job_exactly_once(
    backend_url: str, real_queue: Queue, children: Children, tmp_path: Path
) -> None:
    done = tmp_path / "producers-done"
    consumers = [
        children.spawn(f"consumer-{i}", "consume", backend_url, done) for i in range(CONSUMERS)
    ]
    producers = [
        children.spawn(f"producer-{i}", "produce", backend_url, JOBS_PER_PRODUCER, f"p{i}")
        for i in range(PRODUCERS)
    ]
    for producer in producers:
        producer.assert_clean_exit()
    done.touch()
    for consumer in consumers:
        consumer.assert_clean_exit()

    enqueued = [int(words[0]) for p in producers for words in p.said("enqueued")]
    assert len(enqueued) == PRODUCERS * JOBS_PER_PRODUCER
    assert len(set(enqueued)) == len(enqueued), "two enqueues returned the same id"
    completed = Counter(int(words[0]) for c in consumers for words in c.said("completed"))
    twice = [job_id for job_id, n in completed.items() if n > 1]
    assert not twice, f"completed more than once: {twice[:10]}"
    assert set(completed) == set(enqueued)

    stored = real_queue.jobs(limit=10_000)
    assert {job.id for job in stored} == set(enqueued)
    assert {job.status for job in stored} == {State.COMPLETED}
    assert {job.attempts for job in stored} == {1}
    by_producer = Counter(job.payload["tag"] for job in stored)
    assert by_producer == {f"p{i}": JOBS_PER_PRODUCER for i in range(PRODUCERS)}
    for job in stored:
        kinds = [event.kind for event in real_queue.events(job.id)]
        assert kinds == ["enqueued", "claimed", "completed"], (job.id, kinds)


def test_eight_processes_opening_one_fresh_database_at_once_all_succeed(
    backend_url: str, children: Children, tmp_path: Path, make_queue: Callable[..., Queue]
) -> None:
    """The first open creates and migrates the schema; racing first opens must not fail."""
    go = tmp_path / "go"
    openers = [children.spawn(f"opener-{i}", "open-after", backend_url, go) for i in range(8)]
    for opener in openers:
        opener.wait_for("ready")
    go.touch()
    for opener in openers:
        opener.assert_clean_exit()

    ids = [int(words[0]) for o in openers for words in o.said("enqueued")]
    assert len(set(ids)) == 8
    queue = make_queue(clock=SystemClock())
    assert {job.id for job in queue.jobs()} == set(ids)
    report = queue.check(full=True)
    assert report["ok"], report
