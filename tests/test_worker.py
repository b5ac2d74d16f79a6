"""The worker runtime in-process: settling jobs, lost leases, heartbeats, shutdown, logs, sweeps.

Real database files; the manual clock where the lease or backoff matters, the real clock
only where the heartbeat thread has to race a real lease.
"""

from __future__ import annotations

import itertools
import logging
import shlex
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import handlers
from persistq import (
    InvalidJob,
    Job,
    LeaseLost,
    ManualClock,
    Queue,
    State,
    SystemClock,
    Unrecoverable,
    connect,
)
from persistq.sweeper import Sweeper
from persistq.worker import Heartbeat, Worker
from procs import wait_until

TIMEOUT = 10.0


def kinds(q: Queue, job_id: int) -> list[str]:
    return [str(e.kind) for e in q.events(job_id)]


def log_fields(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, str]]:
    """The worker's logfmt lines of one event, as dicts (``note='a b'`` is one field)."""
    found = []
    for record in caplog.records:
        if record.name != "persistq.worker":
            continue
        fields = dict(word.split("=", 1) for word in shlex.split(record.getMessage()))
        if fields.get("event") == event:
            found.append(fields)
    return found


@pytest.fixture
def threads_joined() -> Iterator[None]:
    """Join the threads a test leaves behind (a handler still running after a shutdown)."""
    before = set(threading.enumerate())
    yield
    for thread in set(threading.enumerate()) - before:
        if thread.name.startswith("persistq-"):
            continue  # a backend's pool or listener: closed with its queue, after this fixture
        thread.join(TIMEOUT)
        assert not thread.is_alive(), f"{thread.name} still running"


def make_worker(q: Queue, handler: Callable[[Job], Any] | str, **options: Any) -> Worker:
    options.setdefault("worker_id", "w-1")
    options.setdefault("wait_seconds", 0.05)
    return Worker(queue=q, handler=handler, **options)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"queues": ["bad name"]}, "invalid queue name 'bad name'"),
        ({"queues": []}, "one or more queues"),
        ({"queues": "files"}, "one or more queues"),
        ({"worker_id": "w\udcff"}, "worker id cannot be stored"),
        ({"worker_id": ""}, "worker id must be a string"),
        ({"concurrency": 0}, "concurrency must be between 1 and 256"),
        ({"lease_seconds": float("nan")}, "lease must be between"),
        ({"grace_seconds": -1}, "grace must be between"),
        ({"sweep_seconds": 0}, "sweep interval must be between"),
    ],
)
def test_a_worker_with_options_it_cannot_run_with_is_refused_at_construction(
    queue: Queue, options: dict[str, Any], says: str
) -> None:
    with pytest.raises(InvalidJob, match=says):
        make_worker(queue, handlers.act, **options)


# -- run_once: settling one job -------------------------------------------------------------------


def test_run_once_completes_the_job_with_the_handlers_return_value(queue: Queue) -> None:
    job = queue.enqueue({"n": 7})
    worker = make_worker(queue, lambda j: {"doubled": j.payload["n"] * 2})

    settled = worker.run_once()

    assert settled is not None and settled.id == job.id
    assert settled.status == State.COMPLETED
    stored = queue.get(job.id)
    assert stored.status == State.COMPLETED
    assert stored.result == {"doubled": 14}
    assert stored.attempts == 1
    assert stored.worker == "w-1"
    assert kinds(queue, job.id) == ["enqueued", "claimed", "completed"]


def test_run_once_returns_none_when_nothing_is_claimable(queue: Queue) -> None:
    assert make_worker(queue, handlers.act).run_once() is None


def test_a_handler_that_raises_is_retried_with_backoff_then_failed_with_the_traceback(
    queue: Queue, clock: ManualClock
) -> None:
    def broken(job: Job) -> None:
        raise RuntimeError(f"boom on attempt {job.attempts}")

    job = queue.enqueue({"x": 1})
    worker = make_worker(queue, broken)

    first = worker.run_once()
    assert first is not None and first.status == State.PENDING
    assert first.last_error is not None and "boom on attempt 1" in first.last_error
    # The default backoff (2 s base) keeps it from being claimed again at once.
    assert worker.run_once() is None
    clock.advance(3600)
    second = worker.run_once()
    assert second is not None and second.status == State.PENDING
    clock.advance(3600)
    last = worker.run_once()

    assert last is not None and last.status == State.FAILED
    stored = queue.get(job.id)
    assert stored.status == State.FAILED
    assert stored.attempts == 3
    assert stored.result is None
    assert stored.last_error is not None
    assert stored.last_error.startswith("Traceback (most recent call last)")
    assert "in broken" in stored.last_error
    assert stored.last_error.endswith("RuntimeError: boom on attempt 3")
    assert kinds(queue, job.id) == [
        "enqueued",
        "claimed",
        "retried",
        "claimed",
        "retried",
        "claimed",
        "failed",
    ]


def test_unrecoverable_fails_the_job_at_once_without_retries(queue: Queue) -> None:
    def refuse(job: Job) -> None:
        raise Unrecoverable("this payload can never work")

    job = queue.enqueue({"x": 1}, max_attempts=5)

    settled = make_worker(queue, refuse).run_once()

    assert settled is not None and settled.status == State.FAILED
    stored = queue.get(job.id)
    assert stored.attempts == 1
    assert stored.last_error is not None
    assert "Unrecoverable: this payload can never work" in stored.last_error
    assert kinds(queue, job.id) == ["enqueued", "claimed", "failed"]


def test_a_handler_calling_sys_exit_fails_the_job_not_the_worker(queue: Queue) -> None:
    def exits(job: Job) -> None:
        raise SystemExit(3)

    job = queue.enqueue({"x": 1}, max_attempts=1)

    settled = make_worker(queue, exits).run_once()

    assert settled is not None and settled.status == State.FAILED
    assert "SystemExit: 3" in (queue.get(job.id).last_error or "")


@pytest.mark.parametrize("result", [object(), {1, 2}, float("nan")], ids=["object", "set", "nan"])
def test_a_handler_returning_a_non_json_value_fails_the_job_not_the_worker(
    queue: Queue, result: object
) -> None:
    """The result cannot be stored: that is the handler's fault, so the job fails and says why.

    It must not escape run_once, nor leave the job PROCESSING until its lease expires (and
    then count as a crashed consumer, three times over, ending UNPROCESSABLE).
    """
    job = queue.enqueue({"x": 1}, max_attempts=1)

    settled = make_worker(queue, lambda j: result).run_once()

    stored = queue.get(job.id)
    assert settled is not None and settled.id == job.id
    assert stored.status == State.FAILED, stored
    assert stored.last_error is not None and "JSON" in stored.last_error
    assert stored.result is None


def test_the_worker_loop_fails_a_non_json_result_promptly_and_keeps_working(
    queue: Queue, threads_joined: None
) -> None:
    bad = queue.enqueue({"bad": True}, max_attempts=1)
    good = queue.enqueue({"bad": False})
    worker = make_worker(queue, lambda j: object() if j.payload["bad"] else "fine")
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        wait_until(lambda: queue.get(good.id).status == State.COMPLETED, "the good job")
        # The lease is 30 s of a clock that never moves: only the worker can settle it.
        wait_until(lambda: queue.get(bad.id).status != State.PROCESSING, "the bad job to settle", 2)
    finally:
        worker.stop()
        thread.join(TIMEOUT)
    assert queue.get(bad.id).status == State.FAILED


# -- handlers named by string ---------------------------------------------------------------------


def test_a_handler_string_resolves_to_the_function(queue: Queue) -> None:
    job = queue.enqueue({})
    settled = make_worker(queue, "handlers:act").run_once()
    assert settled is not None and settled.status == State.COMPLETED
    assert queue.get(job.id).result["job"] == job.id


@pytest.mark.parametrize(
    "spec",
    ["no_such_module_for_persistq_tests:handle", "handlers:no_such_function", "handlers"],
)
def test_a_handler_that_cannot_be_loaded_fails_the_job_naming_it_and_the_worker_goes_on(
    queue: Queue, spec: str
) -> None:
    first = queue.enqueue({"n": 1}, max_attempts=1)
    second = queue.enqueue({"n": 2}, max_attempts=1)
    worker = make_worker(queue, spec)

    settled = worker.run_once()

    assert settled is not None and settled.id == first.id
    stored = queue.get(first.id)
    assert stored.status == State.FAILED
    assert stored.last_error is not None and spec in stored.last_error
    again = worker.run_once()
    assert again is not None and again.id == second.id
    assert queue.get(second.id).status == State.FAILED


def test_a_handler_that_becomes_loadable_is_used_for_the_next_job(
    queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = queue.enqueue({"n": 1}, max_attempts=1)
    second = queue.enqueue({"n": 2}, max_attempts=1)
    worker = make_worker(queue, "handlers:late_arrival")

    assert worker.run_once() is not None
    assert queue.get(first.id).status == State.FAILED
    monkeypatch.setattr(handlers, "late_arrival", lambda j: "here now", raising=False)
    assert worker.run_once() is not None

    assert queue.get(second.id).status == State.COMPLETED
    assert queue.get(second.id).result == "here now"


@pytest.mark.parametrize(
    "payload",
    [{"nope": 1}, {"path": 12}, "just a string", None, {"path": "/no/such/dir/file.txt"}],
    ids=["no-path", "path-not-text", "not-an-object", "null", "missing-file"],
)
def test_stamp_file_with_a_bad_payload_fails_the_job_at_once(
    queue: Queue, monkeypatch: pytest.MonkeyPatch, payload: Any
) -> None:
    monkeypatch.setenv("PERSISTQ_TASK_DELAY", "0")
    job = queue.enqueue(payload, max_attempts=3)

    settled = make_worker(queue, "persistq.tasks.files:stamp_file").run_once()

    assert settled is not None and settled.status == State.FAILED
    stored = queue.get(job.id)
    assert stored.attempts == 1
    assert stored.last_error is not None and "Unrecoverable" in stored.last_error


def test_stamp_file_on_a_directory_fails_the_job_at_once(
    queue: Queue, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PERSISTQ_TASK_DELAY", "0")
    monkeypatch.setenv("PERSISTQ_FILES_DIR", str(tmp_path))
    (tmp_path / "sub").mkdir()
    job = queue.enqueue({"path": str(tmp_path / "sub")})
    make_worker(queue, "persistq.tasks.files:stamp_file").run_once()
    stored = queue.get(job.id)
    assert (stored.status, stored.attempts) == (State.FAILED, 1)
    assert "not a regular file" in (stored.last_error or "")


def test_a_job_cancelled_while_running_ends_cancelled_keeping_its_result(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="persistq.worker")
    job = queue.enqueue({})

    def cancelled_midway(j: Job) -> str:
        assert queue.cancel(j.id).status == State.PROCESSING
        return "partial"

    settled = make_worker(queue, cancelled_midway).run_once()

    assert settled is not None and settled.status == State.CANCELLED
    assert queue.get(job.id).result == "partial"
    assert [f["job"] for f in log_fields(caplog, "cancelled")] == [str(job.id)]


def test_queues_are_claimed_from_in_the_order_given(queue: Queue) -> None:
    low = queue.enqueue({}, queue="low")
    high = queue.enqueue({}, queue="high")
    worker = make_worker(queue, handlers.act, queues=["high", "low"])
    first, second = worker.run_once(), worker.run_once()
    assert first is not None and second is not None
    assert (first.id, second.id) == (high.id, low.id)
    assert worker.run_once() is None


# -- lost leases ----------------------------------------------------------------------------------


def test_a_lease_expired_and_swept_during_the_handler_is_not_completed_by_it(
    queue: Queue, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="persistq.worker")
    job = queue.enqueue({"x": 1})

    def stalls(j: Job) -> str:
        clock.advance(31)  # past the 30 s lease, with no heartbeat in between
        assert queue.recover_stalled() == 1
        return "too late"

    assert make_worker(queue, stalls).run_once() is None

    stored = queue.get(job.id)
    assert stored.status == State.PENDING
    assert stored.result is None
    assert stored.last_error == "lease expired"
    assert kinds(queue, job.id) == ["enqueued", "claimed", "lease_expired"]
    lost = log_fields(caplog, "lease_lost")
    assert len(lost) == 1 and lost[0]["job"] == str(job.id)
    assert log_fields(caplog, "completed") == []


def test_a_lease_taken_over_by_another_worker_keeps_the_new_holders_result(
    make_queue: Callable[..., Queue], clock: ManualClock
) -> None:
    mine, theirs = make_queue(), make_queue()
    job = mine.enqueue({"x": 1})
    taken: list[Job] = []

    def stalls(j: Job) -> str:
        clock.advance(31)
        theirs.recover_stalled()
        other = theirs.claim(worker="w-2")
        assert other is not None
        taken.append(other)
        return "mine"

    assert make_worker(mine, stalls).run_once() is None
    stored = mine.get(job.id)
    assert (stored.status, stored.worker, stored.attempts) == (State.PROCESSING, "w-2", 2)

    theirs.complete(taken[0], "theirs")
    assert mine.get(job.id).result == "theirs"
    assert kinds(mine, job.id).count("completed") == 1


def test_a_failure_after_the_lease_expired_is_not_recorded_either(
    queue: Queue, clock: ManualClock
) -> None:
    job = queue.enqueue({"x": 1})

    def stalls_then_raises(j: Job) -> None:
        clock.advance(31)
        raise RuntimeError("late failure")

    assert make_worker(queue, stalls_then_raises).run_once() is None
    stored = queue.get(job.id)
    assert stored.status == State.PROCESSING  # expired; the sweeper's to recover
    assert stored.last_error is None
    assert queue.recover_stalled() == 1
    assert queue.get(job.id).last_error == "lease expired"


def test_a_heartbeat_extends_the_lease_from_now_and_stops_once_the_lease_is_lost(
    queue: Queue, clock: ManualClock
) -> None:
    queue.enqueue({})
    job = queue.claim(worker="w", lease=30)
    assert job is not None and job.lease_expires_at is not None
    clock.advance(20)
    claimed_until = job.lease_expires_at.timestamp()

    def expires_at() -> float:
        stored = queue.get(job.id).lease_expires_at
        assert stored is not None
        return stored.timestamp()

    with Heartbeat(queue, 0.02).hold(job) as beat:
        wait_until(lambda: expires_at() > claimed_until, "a beat")
        assert expires_at() == pytest.approx(clock.now() + 30, abs=0.01)
        assert not beat.lost
        clock.advance(31)  # past the lease between two beats: the next one is refused
        wait_until(lambda: beat.lost, "a refused beat")
    assert queue.get(job.id).status == State.PROCESSING  # the beat changed nothing


def test_a_lost_lease_stops_only_its_own_beats_and_a_cancel_reaches_the_holder(
    queue: Queue, clock: ManualClock
) -> None:
    queue.enqueue_many([{}, {}, {}])
    first, second, third = queue.claim_many(worker="w", limit=3)
    queue.release(second)
    assert queue.claim(worker="other") is not None  # another worker holds it now
    queue.cancel(third.id)
    heartbeat = Heartbeat(queue, 3600)
    with heartbeat.hold(first) as a, heartbeat.hold(second) as b, heartbeat.hold(third) as c:
        clock.advance(20)
        heartbeat.beat([a, b, c])
        assert [lease.lost for lease in (a, b, c)] == [False, True, False]
        assert (a.cancel_requested, c.cancel_requested) == (False, True)
        clock.advance(20)  # 40 s after the claim: held thanks to the beat
        heartbeat.beat([a, c])
        assert not a.lost and not c.lost
    assert queue.complete(first).status == State.COMPLETED
    assert queue.complete(third).status == State.CANCELLED


def test_the_worker_heartbeats_every_third_of_its_lease(
    queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    intervals: list[float] = []

    class Spy(Heartbeat):
        def __init__(self, queue: Queue, every_seconds: float, name: str = "") -> None:
            intervals.append(every_seconds)
            super().__init__(queue, every_seconds, name)

    monkeypatch.setattr("persistq.worker.Heartbeat", Spy)
    queue.enqueue_many([{}, {}])
    make_worker(queue, handlers.act).run_once()  # the queue's lease, 30 s
    make_worker(queue, handlers.act, lease_seconds=12).run_once()
    assert intervals == [10, 4]


def test_heartbeats_keep_a_short_real_lease_alive_through_a_long_handler(
    make_queue: Callable[..., Queue], threads_joined: None
) -> None:
    """Lease 0.9 s, handler 1.8 s, a sweeper every 50 ms: only the heartbeats save the job."""
    q = make_queue(clock=SystemClock())
    sweeper_q = make_queue(clock=SystemClock())
    job = q.enqueue({"sleep": 1.8})
    stop = threading.Event()
    sweeping = threading.Thread(target=Sweeper(sweeper_q, 0.05).run, args=(stop,))
    sweeping.start()
    try:
        settled = make_worker(q, handlers.act, lease_seconds=0.9).run_once()
    finally:
        stop.set()
        sweeping.join(TIMEOUT)

    assert settled is not None and settled.status == State.COMPLETED
    stored = q.get(job.id)
    assert (stored.status, stored.attempts) == (State.COMPLETED, 1)
    assert kinds(q, job.id) == ["enqueued", "claimed", "completed"]


def test_one_heartbeat_thread_extends_every_running_lease_in_one_call(
    make_queue: Callable[..., Queue], monkeypatch: pytest.MonkeyPatch, threads_joined: None
) -> None:
    """Three slots, lease 0.9 s, handlers of 1.5 s: one thread keeps all three alive, all
    three leases in each beat."""
    q = make_queue(clock=SystemClock())
    jobs = q.enqueue_many([{"sleep": 1.5}] * 3)
    beats: list[list[int]] = []
    heartbeat_many = q.heartbeat_many

    def spy(held: list[Job]) -> list[Job | LeaseLost]:
        beats.append(sorted(job.id for job in held))
        return heartbeat_many(held)

    monkeypatch.setattr(q, "heartbeat_many", spy)
    worker = make_worker(q, handlers.act, lease_seconds=0.9, concurrency=3)
    running = threading.Thread(target=worker.run)
    running.start()
    try:
        wait_until(lambda: len(q.jobs(status="PROCESSING")) == 3, "three jobs running")
        names = [t.name for t in threading.enumerate() if t.name.startswith("heartbeat")]
        assert names == ["heartbeat-w-1"]
        wait_until(lambda: len(q.jobs(status="COMPLETED")) == 3, "three jobs done")
    finally:
        worker.stop()
        running.join(TIMEOUT)
    assert sorted(job.id for job in jobs) in beats
    for job in jobs:
        assert (q.get(job.id).attempts, kinds(q, job.id)) == (
            1,
            ["enqueued", "claimed", "completed"],
        )


def test_without_heartbeats_the_same_handler_loses_its_lease(
    make_queue: Callable[..., Queue], monkeypatch: pytest.MonkeyPatch, threads_joined: None
) -> None:
    """The control for the test above: the sweeper and the lease are real."""

    class NoBeat(Heartbeat):
        def __init__(self, queue: Queue, every_seconds: float, name: str = "") -> None:
            super().__init__(queue, 3600, name)

    monkeypatch.setattr("persistq.worker.Heartbeat", NoBeat)
    q = make_queue(clock=SystemClock())
    sweeper_q = make_queue(clock=SystemClock())
    job = q.enqueue({"sleep": 1.2})
    stop = threading.Event()
    sweeping = threading.Thread(target=Sweeper(sweeper_q, 0.05).run, args=(stop,))
    sweeping.start()
    try:
        settled = make_worker(q, handlers.act, lease_seconds=0.9).run_once()
    finally:
        stop.set()
        sweeping.join(TIMEOUT)

    assert settled is None
    assert "lease_expired" in kinds(q, job.id)
    assert q.get(job.id).status == State.PENDING


# -- the loop: concurrency and shutdown -----------------------------------------------------------


def run_in_thread(worker: Worker) -> tuple[threading.Thread, list[int]]:
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(worker.run()), name="test-run")
    thread.start()
    return thread, codes


def test_run_processes_jobs_three_at_a_time_and_returns_0_on_stop(
    queue: Queue, threads_joined: None
) -> None:
    meet = threading.Barrier(3, timeout=5)

    def handler(job: Job) -> str:
        if job.payload["meet"]:
            meet.wait()  # breaks (the job fails) unless three handlers run at once
        return threading.current_thread().name

    jobs = queue.enqueue_many([{"meet": i < 3} for i in range(6)])
    worker = make_worker(queue, handler, concurrency=3)
    thread, codes = run_in_thread(worker)
    try:
        wait_until(
            lambda: all(queue.get(j.id).status == State.COMPLETED for j in jobs), "all six jobs"
        )
    finally:
        worker.stop()
        thread.join(TIMEOUT)

    assert not thread.is_alive()
    assert codes == [0]
    names = {queue.get(j.id).result for j in jobs[:3]}
    assert len(names) == 3
    assert all(queue.get(j.id).attempts == 1 for j in jobs)


def test_stop_while_idle_returns_promptly(queue: Queue, threads_joined: None) -> None:
    worker = make_worker(queue, handlers.act, concurrency=2)
    thread, codes = run_in_thread(worker)
    time.sleep(0.2)
    started = time.monotonic()
    worker.stop()
    thread.join(TIMEOUT)
    assert codes == [0]
    assert time.monotonic() - started < 2


def test_stop_lets_a_running_job_finish_within_the_grace_period(
    queue: Queue, threads_joined: None
) -> None:
    running = threading.Event()

    def handler(job: Job) -> str:
        running.set()
        time.sleep(0.4)
        return "finished"

    job = queue.enqueue({})
    worker = make_worker(queue, handler, grace_seconds=10)
    thread, codes = run_in_thread(worker)
    assert running.wait(TIMEOUT)
    worker.stop()
    thread.join(TIMEOUT)

    assert codes == [0]
    stored = queue.get(job.id)
    assert (stored.status, stored.result) == (State.COMPLETED, "finished")


def test_a_job_still_running_after_the_grace_period_is_released_with_its_attempt_refunded(
    queue: Queue, caplog: pytest.LogCaptureFixture, threads_joined: None
) -> None:
    caplog.set_level(logging.INFO, logger="persistq.worker")
    running, let_go = threading.Event(), threading.Event()

    def handler(job: Job) -> str:
        running.set()
        let_go.wait(3)  # "sleeps 3 s", unless the test is done sooner
        return "too late"

    job = queue.enqueue({})
    other = queue.enqueue({})  # must not be claimed once the worker stops
    worker = make_worker(queue, handler, grace_seconds=0.3)
    thread, codes = run_in_thread(worker)
    assert running.wait(TIMEOUT)
    stopped_at = time.monotonic()
    worker.stop()
    thread.join(TIMEOUT)
    took = time.monotonic() - stopped_at

    assert codes == [0]
    assert 0.25 <= took < 2.5, took
    stored = queue.get(job.id)
    assert (stored.status, stored.attempts) == (State.PENDING, 0)
    assert stored.lease_expires_at is None
    assert kinds(queue, job.id)[-1] == "released"
    assert [f["job"] for f in log_fields(caplog, "released")] == [str(job.id)]
    assert queue.get(other.id).status == State.PENDING

    let_go.set()  # the handler returns now: its result must not land on the released job
    for t in threading.enumerate():
        if t.name.startswith(("worker-", "heartbeat-")):
            t.join(TIMEOUT)
    stored = queue.get(job.id)
    assert (stored.status, stored.result) == (State.PENDING, None)
    assert queue.claim(worker="next") is not None  # claimable again at once


# -- logs -----------------------------------------------------------------------------------------


def test_one_structured_log_line_per_state_change(
    queue: Queue, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A line per state change; at INFO one per attempt (its end), the claim at DEBUG."""
    caplog.set_level(logging.DEBUG, logger="persistq.worker")
    ok = queue.enqueue({"ok": True}, queue="files")
    bad = queue.enqueue({"ok": False}, queue="files", max_attempts=2)

    def handler(job: Job) -> str:
        if not job.payload["ok"]:
            raise ValueError("nope")
        time.sleep(0.05)  # a duration the log must show
        return "yes"

    worker = make_worker(queue, handler, queues=["files"], worker_id="host:123")
    worker.run_once()
    worker.run_once()
    clock.advance(3600)
    worker.run_once()

    claimed = log_fields(caplog, "claimed")
    assert [(f["job"], f["attempt"]) for f in claimed] == [
        (str(ok.id), "1/3"),
        (str(bad.id), "1/2"),
        (str(bad.id), "2/2"),
    ]
    (completed,) = log_fields(caplog, "completed")
    assert completed["job"] == str(ok.id)
    assert completed["queue"] == "files"
    assert completed["attempt"] == "1/3"
    assert completed["worker"] == "host:123"
    assert 0.05 <= float(completed["duration"]) < 5  # seconds the handler ran, not a clock
    (retried,) = log_fields(caplog, "retried")
    assert retried["job"] == str(bad.id) and "ValueError: nope" in retried["error"]
    (failed,) = log_fields(caplog, "failed")
    assert (failed["job"], failed["attempt"]) == (str(bad.id), "2/2")
    assert "duration" in failed
    for fields in [*claimed, completed, retried, failed]:
        assert fields["queue"] == "files" and fields["worker"] == "host:123"
    levels = {
        r.getMessage().split()[0]: r.levelno for r in caplog.records if r.name == "persistq.worker"
    }
    assert levels["event=claimed"] == logging.DEBUG
    assert levels["event=completed"] == levels["event=retried"] == logging.INFO
    assert all(
        "Traceback" not in r.getMessage() for r in caplog.records if r.name == "persistq.worker"
    )


# -- the sweeper ----------------------------------------------------------------------------------


def test_sweeper_run_once_recovers_expired_leases_only(queue: Queue, clock: ManualClock) -> None:
    expiring = queue.enqueue({"n": 1})
    last_try = queue.enqueue({"n": 2}, max_attempts=1)
    fresh = queue.enqueue({"n": 3})
    for _ in range(2):
        assert queue.claim(worker="w", lease=10) is not None
    clock.advance(11)
    assert queue.claim(worker="w", lease=10) is not None  # fresh: claimed after the others
    sweeper = Sweeper(queue, 1)

    assert sweeper.run_once() == 2
    assert sweeper.run_once() == 0

    assert queue.get(expiring.id).status == State.PENDING
    assert queue.get(last_try.id).status == State.UNPROCESSABLE
    assert queue.get(fresh.id).status == State.PROCESSING


def ever_seen(q: Queue) -> set[str]:
    return {w.id for w in q.workers(seen_within=30 * 86400)}


def test_sweeper_forgets_workers_not_seen_for_a_day(queue: Queue, clock: ManualClock) -> None:
    """The workers table would otherwise keep a row for every worker process that ever ran."""
    queue.worker_seen("gone:1", ["default"])
    clock.advance(86400 - 3600)
    queue.worker_seen("quiet:2", ["default"])
    clock.advance(3600 + 1)  # gone:1 unseen for a day and a second; quiet:2 for an hour
    assert ever_seen(queue) == {"gone:1", "quiet:2"}

    Sweeper(queue, 1).run_once()

    assert ever_seen(queue) == {"quiet:2"}


def test_how_long_unseen_workers_are_kept_is_a_setting(
    make_queue: Callable[..., Queue], clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERSISTQ_WORKER_RETENTION_SECONDS", "600")
    q = make_queue()
    q.worker_seen("old:1", ["default"])
    clock.advance(599)
    q.worker_seen("new:2", ["default"])
    clock.advance(2)
    Sweeper(q, 1).run_once()
    assert ever_seen(q) == {"new:2"}


def test_two_sweepers_at_once_recover_each_job_exactly_once(
    make_queue: Callable[..., Queue], clock: ManualClock
) -> None:
    one, two = make_queue(), make_queue()
    jobs = one.enqueue_many([{"n": i} for i in range(60)], max_attempts=10)
    for round_ in range(1, 4):
        assert len(one.claim_many(worker="w", limit=100, lease=5)) == 60
        clock.advance(6)
        start = threading.Barrier(2)
        counts: list[int] = []

        def sweep(q: Queue, start: threading.Barrier = start, counts: list[int] = counts) -> None:
            start.wait()
            counts.append(Sweeper(q, 1).run_once())

        racers = [threading.Thread(target=sweep, args=(q,)) for q in (one, two)]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(TIMEOUT)

        assert sum(counts) == 60, counts
        for job in jobs:
            stored = one.get(job.id)
            assert (stored.status, stored.attempts) == (State.PENDING, round_)
            assert kinds(one, job.id).count("lease_expired") == round_


def test_sweeper_run_sweeps_until_stopped(queue: Queue, clock: ManualClock) -> None:
    job = queue.enqueue({})
    assert queue.claim(worker="w", lease=5) is not None
    clock.advance(6)
    stop = threading.Event()
    thread = threading.Thread(target=Sweeper(queue, 0.02).run, args=(stop,))
    thread.start()
    try:
        wait_until(lambda: queue.get(job.id).status == State.PENDING, "the sweep")
    finally:
        stop.set()
        thread.join(TIMEOUT)
    assert not thread.is_alive()


def test_worker_run_sweeps_stalled_jobs_of_crashed_workers(
    make_queue: Callable[..., Queue], clock: ManualClock, threads_joined: None
) -> None:
    q = make_queue()
    job = q.enqueue({})
    assert q.claim(worker="crashed", lease=5) is not None
    clock.advance(6)
    worker = make_worker(q, lambda j: "recovered", sweep_seconds=0.05)
    thread, codes = run_in_thread(worker)
    try:
        wait_until(lambda: q.get(job.id).status == State.COMPLETED, "recovery and completion")
    finally:
        worker.stop()
        thread.join(TIMEOUT)
    assert codes == [0]
    stored = q.get(job.id)
    assert (stored.attempts, stored.worker, stored.result) == (2, "w-1", "recovered")


def test_one_slot_completes_each_job_in_the_transaction_that_claims_the_next(
    sqlite_url: str, threads_joined: None
) -> None:
    """With one slot the claimer carries a finished job into its next claim
    (``complete_and_claim``): on SQLite one write transaction per job, not two. Seen from
    outside: a job's finished_at is its successor's started_at (one transaction, one
    clock reading), and the worker's commits barely exceed the number of jobs."""
    q = connect(sqlite_url)
    try:
        jobs = q.enqueue_many([{"n": n} for n in range(40)])
        groups = q.backend.group_sizes  # type: ignore[attr-defined]
        commits_before = sum(groups.values())
        worker = make_worker(q, handlers.act, lease_seconds=300)
        thread, codes = run_in_thread(worker)
        try:
            wait_until(lambda: q.get(jobs[-1].id).status == State.COMPLETED, "the last job")
        finally:
            worker.stop()
            thread.join(TIMEOUT)
        assert codes == [0]
        done = [q.get(j.id) for j in jobs]
        assert all(j.status == State.COMPLETED and j.attempts == 1 for j in done)
        for job, successor in itertools.pairwise(done):
            assert job.finished_at == successor.started_at
        # 40 transactions that each complete one job and claim the next, the first claim,
        # and a few the worker makes besides (announce, sweep, the idle claims at the end).
        assert sum(groups.values()) - commits_before <= len(jobs) + 6
    finally:
        q.close()
