"""Real ``python -m persistq worker`` processes: SIGKILL, SIGTERM/SIGINT, poison and failing jobs.

SPEC "Worker, producer, file task" and guarantees 4 and 5: a killed worker's job is recovered
by another worker's sweep; a signalled worker finishes or releases its job and exits 0; a
job that kills its worker ends UNPROCESSABLE, one that raises ends FAILED, and neither
stops the other jobs. Handlers come from tests/handlers.py (tests/ is put on the child's
PYTHONPATH); leases are real seconds, as the clock is shared across processes.
"""

from __future__ import annotations

import ctypes
import platform
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from handlers import log_lines
from persistq import Job, Queue, State
from procs import WorkerProcess, wait_until

pytestmark = pytest.mark.slow

TIMEOUT = 30.0


@pytest.fixture
def spawn(tmp_path: Path, backend_url: str) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(name: str, *args: str, **env: str) -> WorkerProcess:
        worker = WorkerProcess(tmp_path, name, backend_url, *args, env=env, timeout=TIMEOUT)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


def status_of(q: Queue, job: Job) -> State:
    return q.get(job.id).status


def kinds(q: Queue, job: Job) -> list[str]:
    return [str(e.kind) for e in q.events(job.id)]


def test_a_sigkilled_workers_job_is_recovered_and_completed_by_another_worker(
    real_queue: Queue, spawn: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    log = tmp_path / "handler.log"
    job = real_queue.enqueue({"sleep_on_first": 60, "log": str(log)})
    first = spawn("first", "--lease", "2", "--sweep-every", "0.5")
    wait_until(lambda: log_lines(log, "started"), "the first attempt to start")
    assert status_of(real_queue, job) == State.PROCESSING
    assert real_queue.get(job.id).worker == "first"

    first.kill()
    assert first.proc.returncode == -signal.SIGKILL
    killed_at = time.monotonic()
    second = spawn("second", "--lease", "2", "--sweep-every", "0.5")
    wait_until(lambda: status_of(real_queue, job) == State.COMPLETED, "recovery and completion")
    # Not before the lease (2 s, heartbeats every 2/3 s) could have run out.
    assert time.monotonic() - killed_at > 1.2

    stored = real_queue.get(job.id)
    assert stored.attempts == 2
    assert stored.worker == "second"
    assert stored.result == {"job": job.id, "attempt": 2, "pid": second.pid}
    assert kinds(real_queue, job) == [
        "enqueued",
        "claimed",
        "lease_expired",
        "claimed",
        "completed",
    ]
    assert log_lines(log, "started") == [[job.id, 1, first.pid], [job.id, 2, second.pid]]
    assert log_lines(log, "finished") == [[job.id, 2, second.pid]]
    second.stop()
    assert "Traceback" not in first.log()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_lets_the_running_job_finish_and_the_worker_exits_0(
    real_queue: Queue, spawn: Callable[..., WorkerProcess], tmp_path: Path, sig: signal.Signals
) -> None:
    log = tmp_path / "handler.log"
    job = real_queue.enqueue({"sleep": 1.5, "log": str(log)})
    waiting = real_queue.enqueue({"log": str(log)})  # not to be started once signalled
    worker = spawn("w", "--grace", "20")
    wait_until(lambda: log_lines(log, "started"), "the job to start")

    took = worker.stop(sig)

    assert took < 10
    stored = real_queue.get(job.id)
    assert (stored.status, stored.attempts) == (State.COMPLETED, 1)
    assert stored.result == {"job": job.id, "attempt": 1, "pid": worker.pid}
    assert log_lines(log, "finished") == [[job.id, 1, worker.pid]]
    assert status_of(real_queue, waiting) == State.PENDING
    assert real_queue.get(waiting.id).attempts == 0


def tgkill(pid: int, tid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to one thread of another process (os.kill lets the kernel choose)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(TGKILL_SYSCALL, pid, tid, int(sig)) != 0:
        raise OSError(ctypes.get_errno(), "tgkill")


#: tgkill's syscall number on x86-64 (the kernel can hand a process's SIGTERM to any thread).
TGKILL_SYSCALL = 234


@pytest.mark.skipif(platform.machine() != "x86_64", reason="tgkill's number is x86-64's")
def test_a_sigterm_the_kernel_hands_to_another_thread_still_stops_the_worker(
    real_queue: Queue, spawn: Callable[..., WorkerProcess]
) -> None:
    """Python runs handlers in the main thread only: CI once saw a worker ignore SIGTERM
    for a minute, its main thread asleep in a bare Event.wait()."""
    worker = spawn("w", "--concurrency", "2")
    wait_until(lambda: "event=started" in worker.log(), "the worker to start")
    tasks = Path(f"/proc/{worker.pid}/task")
    wait_until(lambda: len(list(tasks.iterdir())) > 2, "the worker's threads")
    other = next(int(t.name) for t in tasks.iterdir() if int(t.name) != worker.pid)

    tgkill(worker.pid, other, signal.SIGTERM)

    assert worker.wait(10) == 0, worker.log()
    assert "event=signal signal=SIGTERM" in worker.log()
    assert "event=stopped" in worker.log()


def test_a_job_outliving_the_grace_period_is_released_and_the_worker_exits_0_quickly(
    real_queue: Queue, spawn: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    log = tmp_path / "handler.log"
    job = real_queue.enqueue({"sleep": 60, "log": str(log)})
    worker = spawn("w", "--grace", "0.5")
    wait_until(lambda: log_lines(log, "started"), "the job to start")

    took = worker.stop()

    assert took < 5, took
    stored = real_queue.get(job.id)
    assert (stored.status, stored.attempts) == (State.PENDING, 0)
    assert stored.lease_expires_at is None
    assert kinds(real_queue, job)[-1] == "released"
    assert "event=released" in worker.log()
    assert log_lines(log, "finished") == []
    again = real_queue.claim(worker="next")  # claimable at once, not after a lease or backoff
    assert again is not None and again.id == job.id and again.attempts == 1


def test_a_job_that_kills_its_worker_ends_unprocessable_while_the_others_complete(
    real_queue: Queue, spawn: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    """Supervisor's part is played by this test: each time the worker dies it is restarted."""
    poison = real_queue.enqueue({"poison": True})
    others = real_queue.enqueue_many([{"n": n} for n in range(4)])
    args = ("--lease", "1", "--sweep-every", "0.2")
    deaths = 0
    worker = spawn("w-0", *args)

    def settled() -> bool:
        if status_of(real_queue, poison) != State.UNPROCESSABLE:
            return False
        return all(status_of(real_queue, job) == State.COMPLETED for job in others)

    deadline = time.monotonic() + TIMEOUT
    while not settled():
        assert time.monotonic() < deadline, f"not settled; last worker said:\n{worker.log()}"
        if not worker.alive():
            assert worker.proc.returncode == -signal.SIGKILL, worker.log()
            deaths += 1
            assert deaths <= 3, "the poison job was run more than max_attempts times"
            worker = spawn(f"w-{deaths}", *args)
        time.sleep(0.02)

    worker.stop()
    assert deaths == 3
    stored = real_queue.get(poison.id)
    assert (stored.status, stored.attempts) == (State.UNPROCESSABLE, 3)
    assert stored.last_error == "lease expired"
    assert kinds(real_queue, poison).count("claimed") == 3
    assert kinds(real_queue, poison).count("lease_expired") == 3
    for job in others:
        assert real_queue.get(job.id).attempts == 1


def test_a_job_that_raises_ends_failed_after_three_attempts_and_the_worker_keeps_going(
    real_queue: Queue, spawn: Callable[..., WorkerProcess]
) -> None:
    failing = real_queue.enqueue({"raise": "boom"})
    worker = spawn("w", PERSISTQ_BACKOFF_BASE_SECONDS="0")
    wait_until(lambda: status_of(real_queue, failing) == State.FAILED, "the job to fail")

    stored = real_queue.get(failing.id)
    assert stored.attempts == 3
    assert stored.last_error is not None
    assert stored.last_error.startswith("Traceback")
    assert stored.last_error.endswith("RuntimeError: boom")
    assert kinds(real_queue, failing).count("retried") == 2

    later = real_queue.enqueue({"n": 1})
    wait_until(lambda: status_of(real_queue, later) == State.COMPLETED, "a later job")
    assert worker.alive()
    worker.stop()
    assert worker.log().count("event=retried") == 2
    assert "event=failed" in worker.log()
    assert "RuntimeError: boom" in worker.log()


def test_a_worker_whose_handler_cannot_be_imported_exits_2_and_leaves_the_jobs_alone(
    real_queue: Queue, spawn: Callable[..., WorkerProcess]
) -> None:
    """The handler is the worker's configuration: a typo must not dead-letter the queue."""
    job = real_queue.enqueue({"n": 1}, max_attempts=1)
    worker = spawn("w", "--handler", "no_such_module_for_persistq_tests:handle")
    assert worker.wait() == 2
    assert worker.log().splitlines() == [
        "error: cannot load handler 'no_such_module_for_persistq_tests:handle': "
        "No module named 'no_such_module_for_persistq_tests'"
    ]
    assert status_of(real_queue, job) == State.PENDING
    assert kinds(real_queue, job) == ["enqueued"]
