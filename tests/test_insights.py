"""Read models behind the Ops UI, /metrics and stats: they report what happened."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from persistq import EventKind, InvalidJob, ManualClock, Queue, State, insights


def _finish(queue: Queue, clock: ManualClock, *, wait: float, run: float, ok: bool = True) -> None:
    queue.enqueue("x", max_attempts=1)
    clock.advance(wait)
    job = queue.claim(worker="w")
    assert job is not None
    clock.advance(run)
    if ok:
        queue.complete(job)
    else:
        queue.fail(job, "RuntimeError: broken")


def test_throughput_counts_finished_jobs_per_bucket(queue: Queue, clock: ManualClock) -> None:
    for _ in range(3):
        _finish(queue, clock, wait=1, run=1)
    _finish(queue, clock, wait=1, run=1, ok=False)
    rows = insights.throughput(queue, window_seconds=600, bucket_seconds=60)
    assert sum(r["COMPLETED"] for r in rows) == 3
    assert sum(r["FAILED"] for r in rows) == 1
    assert [r["at"] for r in rows] == sorted(r["at"] for r in rows)
    assert len(rows) >= 10  # empty minutes are present too, so a chart has no gaps


def test_latency_reports_wait_and_run_percentiles(queue: Queue, clock: ManualClock) -> None:
    for i in range(1, 11):
        _finish(queue, clock, wait=i, run=2 * i)
    report = insights.latency(queue, window_seconds=3600)
    assert report["wait"]["count"] == 10
    assert report["wait"]["p50"] == pytest.approx(5.5)
    assert report["run"]["p99"] == pytest.approx(20, abs=0.5)
    assert report["buckets"]


def test_workers_show_presence_held_jobs_and_staleness(queue: Queue, clock: ManualClock) -> None:
    queue.worker_seen("host:1", ["files"])
    queue.worker_seen("host:2", ["files"])
    queue.enqueue("x", queue="files")
    job = queue.claim(queue="files", worker="host:1")
    assert job is not None
    clock.advance(120)
    queue.worker_seen("host:1", ["files"])
    rows = {w["id"]: w for w in insights.workers(queue)}
    assert rows["host:1"]["job_ids"] == [job.id]
    assert rows["host:1"]["stalled"] is False
    assert rows["host:2"]["stalled"] is True
    queue.worker_gone("host:2")
    assert [w["id"] for w in insights.workers(queue)] == ["host:1"]


def test_recent_failures_are_newest_first_with_the_error_line(
    queue: Queue, clock: ManualClock
) -> None:
    _finish(queue, clock, wait=0, run=1, ok=False)
    queue.enqueue("y", queue="other")
    job = queue.claim(queue="other", worker="w2")
    assert job is not None
    clock.advance(31)
    queue.recover_stalled()
    rows = insights.recent_failures(queue)
    assert [r["kind"] for r in rows] == ["lease_expired", "failed"]
    assert rows[1]["error"] == "RuntimeError: broken"
    assert rows[0]["queue"] == "other"


def test_alerts_name_paused_queues_backlogs_and_stalled_workers(
    queue: Queue, clock: ManualClock
) -> None:
    assert insights.alerts(queue) == []
    queue.enqueue("x", queue="slow")
    queue.pause("slow")
    queue.worker_seen("host:9", ["slow"])
    clock.advance(600)
    found = " | ".join(insights.alerts(queue))
    assert "'slow' is paused" in found
    assert "oldest pending job has waited 600 s" in found
    assert "worker host:9 silent" in found


def test_database_reports_size_and_free_disk(queue: Queue) -> None:
    report = insights.database(queue)
    assert report["ok"] is True
    assert report["size_bytes"] > 0
    if report["backend"] == "sqlite":
        assert report["free_disk_bytes"] > 0
    else:  # the server's disk is not visible from a client
        assert report["free_disk_bytes"] is None


def test_the_queue_reads_behind_the_read_models_return_typed_rows(
    queue: Queue, clock: ManualClock
) -> None:
    start = clock.now()
    _finish(queue, clock, wait=2, run=3)
    _finish(queue, clock, wait=0, run=1, ok=False)
    [failed, done] = queue.finished(since=start)
    assert (done.status, failed.status) == (State.COMPLETED, State.FAILED)
    assert done.started_at - done.run_at == pytest.approx(2)
    assert done.finished_at - done.started_at == pytest.approx(3)
    assert queue.finished(since=start, limit=1) == [failed]
    assert queue.finished(since=clock.now() + 1) == []
    counts = {(c.status, c.count) for c in queue.throughput(since=start, bucket=3600)}
    assert counts == {(State.COMPLETED, 1), (State.FAILED, 1)}
    assert all(c.at % 3600 == 0 for c in queue.throughput(since=start, bucket=3600))
    [failure] = queue.recent_failures()
    assert (failure.queue, failure.event.kind, failure.event.detail) == (
        "default",
        EventKind.FAILED,
        "RuntimeError: broken",
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda q: q.finished(since=-1), "since must be epoch seconds"),
        (lambda q: q.finished(since=float("nan")), "since must be epoch seconds"),
        (lambda q: q.finished(since=float("inf")), "since must be epoch seconds"),
        (lambda q: q.finished(since="0"), "since must be epoch seconds"),
        (lambda q: q.finished(since=0, limit=0), "limit must be between 1 and 100000"),
        (lambda q: q.finished(since=0, limit=100_001), "limit must be between 1 and 100000"),
        (lambda q: q.throughput(since=True), "since must be epoch seconds"),
        (lambda q: q.throughput(since=0, bucket=0), "bucket must be between 1 and 86400"),
        (lambda q: q.throughput(since=0, bucket=1.5), "bucket must be an integer"),
        (lambda q: q.recent_failures(limit=-3), "limit must be between 1 and 100000"),
    ],
)
def test_the_queue_reads_refuse_bad_arguments(
    queue: Queue, call: Callable[[Queue], object], message: str
) -> None:
    with pytest.raises(InvalidJob, match=message):
        call(queue)


def test_storage_reports_file_sizes_and_free_disk(queue: Queue) -> None:
    report = insights.storage(queue)
    if not queue.url.startswith("sqlite:"):  # no local file: database() reports the sizes
        assert set(report.values()) == {None}
        return
    assert report["size_bytes"] > 0
    assert report["free_disk_bytes"] > 0
    assert report["path"].endswith("queue.db")
