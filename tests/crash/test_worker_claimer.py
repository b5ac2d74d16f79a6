"""A real ``persistq worker --concurrency 8``: its claimer leases jobs for free slots only,
in one claim, and its settler completes them together (issue 14), with no job run twice
or left behind; SIGTERM as before (SPEC "Worker"): running jobs finish, the rest stay
PENDING with no attempt spent."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from handlers import log_lines
from persistq import Queue, State
from procs import WorkerProcess, wait_until

pytestmark = pytest.mark.slow

TIMEOUT = 60.0
SLOTS = 8


@pytest.fixture
def spawn(tmp_path: Path, backend_url: str) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(name: str, *args: str) -> WorkerProcess:
        worker = WorkerProcess(tmp_path, name, backend_url, *args, timeout=TIMEOUT)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


def leased_not_started(q: Queue, log: Path) -> int:
    """Jobs PROCESSING under the worker whose handler had not started when the log was
    read just after (a job whose handler has finished may still be PROCESSING while its
    completion is on its way: it holds no slot)."""
    leased = {job.id for job in q.jobs(status="PROCESSING", limit=1000)}
    started = {line[0] for line in log_lines(log, "started")}
    return len(leased - started)


def test_with_seven_slots_blocked_the_worker_leases_one_job_at_a_time(
    real_queue: Queue, spawn: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    """Seven jobs block their slots; forty short ones pass through the one left. Were the
    claim not bounded by the free slots, jobs would wait leased behind the blocked ones;
    every job runs once, on its first claim, and none is lost."""
    log, go = tmp_path / "handler.log", tmp_path / "go"
    blockers = real_queue.enqueue_many(
        [{"wait_for": str(go), "log": str(log)}] * (SLOTS - 1), priority=1
    )
    quick = real_queue.enqueue_many([{"sleep": 0.02, "log": str(log)}] * 40)
    worker = spawn("w", "--concurrency", str(SLOTS))
    waiting: list[int] = []

    def quick_ones_done() -> bool:
        waiting.append(leased_not_started(real_queue, log))
        return real_queue.stats()["queues"]["default"].get("COMPLETED", 0) == len(quick)

    wait_until(lambda: len(log_lines(log, "started")) >= SLOTS - 1, "the blockers to start")
    wait_until(quick_ones_done, "the quick jobs to pass the free slot", TIMEOUT)
    assert max(waiting) <= 1, waiting  # one free slot: at most its own next job
    assert len(waiting) > 10  # the bound was looked at while the quick jobs ran
    for job in quick:
        assert real_queue.get(job.id).status == State.COMPLETED
    for job in blockers:  # still blocked, each in a slot of its own, leased once
        row = real_queue.get(job.id)
        assert row.status == State.PROCESSING and row.attempts == 1
    go.touch()
    wait_until(
        lambda: all(real_queue.get(j.id).status == State.COMPLETED for j in blockers),
        "the blockers to complete",
    )
    worker.stop()
    everything = [*blockers, *quick]
    started = Counter(line[0] for line in log_lines(log, "started"))
    assert started == {j.id: 1 for j in everything}  # 0 duplicates, 0 lost
    for job in everything:
        row = real_queue.get(job.id)
        assert (row.attempts, row.fence) == (1, 1)
        assert isinstance(row.result, dict) and row.result["job"] == job.id


def test_many_jobs_through_two_workers_run_once_each(
    real_queue: Queue, spawn: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    log = tmp_path / "handler.log"
    workers = [spawn(f"w{i}", "--concurrency", str(SLOTS)) for i in range(2)]
    for worker in workers:  # both up (and able to take a signal) before there is work
        wait_until(lambda w=worker: "event=started" in w.log(), f"{worker.name} to start")
    jobs = real_queue.enqueue_many([{"log": str(log)}] * 400)
    wait_until(
        lambda: real_queue.stats()["queues"]["default"].get("COMPLETED", 0) == len(jobs),
        "every job to complete",
    )
    for worker in workers:
        worker.stop()
    started = Counter(line[0] for line in log_lines(log, "started"))
    assert started == {j.id: 1 for j in jobs}
    assert {real_queue.get(j.id).attempts for j in jobs} == {1}
    assert {real_queue.get(j.id).worker for j in jobs} <= {"w0", "w1"}


def test_sigterm_lets_running_jobs_finish_and_leaves_the_rest_pending_unspent(
    real_queue: Queue, spawn: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    log, go = tmp_path / "handler.log", tmp_path / "go"
    running = real_queue.enqueue_many([{"wait_for": str(go), "log": str(log)}] * 3, priority=1)
    waiting = real_queue.enqueue_many([{"wait_for": str(go)}] * 20)
    worker = spawn("w", "--concurrency", "3", "--grace", "30")
    wait_until(lambda: len(log_lines(log, "started")) == 3, "three jobs to start")
    worker.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "event=stopping" in worker.log(), "the worker to begin stopping")
    go.touch()
    worker.stop()
    for job in running:
        assert real_queue.get(job.id).status == State.COMPLETED
    for job in waiting:
        row = real_queue.get(job.id)
        assert (row.status, row.attempts, row.worker) == (State.PENDING, 0, None)
    assert real_queue.workers(seen_within=3600) == []  # worker_gone
