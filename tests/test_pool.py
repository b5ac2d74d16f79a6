"""Workers that contain their jobs (issue 12): the process pool sees a child's death at
once, timeouts stop attempts in both pools, SIGTERM drains, and a SIGKILLed worker leaves
no child behind. Real ``persistq worker`` processes on real databases."""

from __future__ import annotations

import functools
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import persistq
from persistq import Queue, State, pool
from persistq.worker import resolve_handler
from procs import Children, WorkerProcess

DEADLINE = 30.0
#: Backoff of the retries these tests wait for: short, so they stay fast.
FAST_RETRY = {"PERSISTQ_BACKOFF_BASE_SECONDS": "0.1", "PERSISTQ_BACKOFF_MAX_SECONDS": "0.2"}


def wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def kinds(q: Queue, job_id: int) -> list[str]:
    return [str(e.kind) for e in q.events(job_id)]


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0): it is gone once it no longer runs.
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split(")")[-1].split()[0] == "Z"


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` in the process table (children, grandchildren...)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.fixture
def q(backend_url: str) -> Queue:
    queue = persistq.connect(backend_url)
    queue.stats()  # the schema exists before a worker opens the database
    return queue


@pytest.mark.parametrize(
    "payload",
    [{"exit": 1}, {"poison": True}, {"segfault": True}],
    ids=["os._exit", "sigkill", "segfault"],
)
def test_a_child_that_dies_is_crashed_pending_again_at_once_and_unprocessable_at_the_end(
    q: Queue, backend_url: str, tmp_path: Path, payload: dict[str, object]
) -> None:
    with Children(tmp_path) as children:
        bad = q.enqueue(payload, max_attempts=3)
        good = [q.enqueue({"n": n}) for n in range(6)]
        worker = children.worker("pool", backend_url, "--pool", "process", "-c", "2")
        wait_until(lambda: q.get(bad.id).status == State.UNPROCESSABLE, "the dead letter")
        wait_until(
            lambda: all(q.get(j.id).status == State.COMPLETED for j in good), "the other jobs"
        )
        events = q.events(bad.id)
        assert [str(e.kind) for e in events] == [
            "enqueued",
            *["claimed", "crashed"] * 3,
        ], events
        claims = [e for e in events if e.kind == "claimed"]
        crashes = [e for e in events if e.kind == "crashed"]
        # Back without waiting for the lease (300 s): each crash is seen at once.
        for claimed, crashed in zip(claims, crashes, strict=True):
            assert (crashed.at - claimed.at).total_seconds() < 2.0
        expected = {"exit": "exit code 1", "poison": "SIGKILL", "segfault": "SIGSEGV"}
        (word,) = [w for k, w in expected.items() if k in payload]
        # The details, not the events: a failure's message must show all of them.
        assert all(word in (e.detail or "") for e in crashes), [e.detail for e in crashes]
        assert word in (q.get(bad.id).last_error or "")
        # The worker itself never died: one pid throughout, the good jobs ran in children.
        assert worker.alive()
        assert [w.id for w in q.workers()] == ["pool"]
        pids = {q.get(j.id).result["pid"] for j in good}
        assert worker.pid not in pids
        worker.stop()
        gaps = [(c.at - a.at).total_seconds() for a, c in zip(claims, crashes, strict=True)]
        print(f"\n{payload}: claimed -> crashed (PENDING again) {gaps} s")


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_a_handler_past_its_timeout_is_timed_out_retried_then_failed(
    q: Queue, backend_url: str, tmp_path: Path, pool: str
) -> None:
    pid_file = tmp_path / "child.pid"
    with Children(tmp_path) as children:
        job = q.enqueue({"sleep": 3600, "pid_file": str(pid_file)}, timeout=1, max_attempts=2)
        assert q.get(job.id).timeout == 1.0
        # -c 2: in the thread pool a timed-out handler keeps its slot until it returns.
        worker = children.worker("timeouts", backend_url, "--pool", pool, "-c", "2", env=FAST_RETRY)
        wait_until(lambda: "timed_out" in kinds(q, job.id), "the first timeout", 10)
        if pool == "process":
            first_child = int(pid_file.read_text())
            wait_until(lambda: pid_gone(first_child), "the killed child", 5)
        wait_until(lambda: q.get(job.id).status == State.FAILED, "the last attempt", 10)
        assert kinds(q, job.id) == [
            "enqueued",
            "claimed",
            "timed_out",
            "retried",
            "claimed",
            "timed_out",
            "failed",
        ]
        done = q.get(job.id)
        assert "timed out after 1 s" in (done.last_error or "")
        assert done.lease_expires_at is None  # no heartbeat kept the lease alive
        if pool == "process":
            assert pid_gone(int(pid_file.read_text()))
        assert worker.alive()
        worker.kill()


def test_sigterm_lets_a_child_finish_within_the_grace_then_releases_what_is_left(
    q: Queue, backend_url: str, tmp_path: Path
) -> None:
    with Children(tmp_path) as children:
        short = q.enqueue({"sleep": 1, "log": str(tmp_path / "short.log")})
        # setsid: a process group of its own, signalled whole as Supervisor's stopasgroup
        # does; the children must still finish their job.
        worker = children.worker(
            "drain", backend_url, "--pool", "process", "-c", "1", prefix=["setsid"]
        )
        wait_until(lambda: (tmp_path / "short.log").exists(), "the first job to start")
        os.killpg(worker.pid, signal.SIGTERM)
        took = worker.stop(timeout=20)
        assert q.get(short.id).status == State.COMPLETED
        assert took < 5

        pid_file = tmp_path / "long.pid"
        long = q.enqueue({"sleep": 60, "pid_file": str(pid_file)})
        worker = children.worker(
            "drain2", backend_url, "--pool", "process", "-c", "1", "--grace", "1"
        )
        wait_until(pid_file.exists, "the long job to start")
        child = int(pid_file.read_text())
        took = worker.stop(timeout=20)
        assert took < 5
        assert pid_gone(child)
        left = q.get(long.id)
        assert left.status == State.PENDING and left.attempts == 0, left
        assert kinds(q, long.id)[-1] == "released"


def test_a_sigkilled_worker_leaves_no_child_behind(sqlite_url: str, tmp_path: Path) -> None:
    with persistq.connect(sqlite_url, create=True) as q:
        q.stats()
        job = q.enqueue({"sleep": 60, "pid_file": str(tmp_path / "busy.pid")})
        with Children(tmp_path) as children:
            worker: WorkerProcess = children.worker(
                "doomed", sqlite_url, "--pool", "process", "-c", "3", "--lease", "2"
            )
            wait_until((tmp_path / "busy.pid").exists, "the job to start")
            below = descendants(worker.pid)
            busy = int((tmp_path / "busy.pid").read_text())
            assert busy in below and len(below) >= 4, below  # 3 children + the fork server
            worker.proc.send_signal(signal.SIGKILL)
            worker.proc.wait(10)
            wait_until(lambda: all(pid_gone(p) for p in below), "every child to exit", 5)
        # The lease recovers as for any dead worker.
        wait_until(
            lambda: q.recover_stalled() > 0 or q.get(job.id).status == State.PENDING,
            "the lease to expire",
            10,
        )
        assert q.get(job.id).status == State.PENDING


def test_an_app_runs_in_the_process_pool_and_an_unknown_task_is_released_not_failed(
    backend_url: str, tmp_path: Path
) -> None:
    """The child imports the app by its spec; ReleaseJob (the unknown task's answer)
    crosses the pipe whole, so the job is released, its attempt refunded."""
    import deploy_apps
    from persistq.dispatch import task_payload

    deploy_apps.new.reconnect(backend_url)
    try:
        app = deploy_apps.new
        q = app.queue
        q.stats()
        unknown = q.enqueue(task_payload("deploy.missing"), queue="default")
        job = deploy_apps.greet.delay("ada")
        with Children(tmp_path) as children:
            worker = children.worker(
                "app-pool",
                backend_url,
                "--app",
                "deploy_apps:new",
                "--queue",
                "default",
                "--pool",
                "process",
            )
            result = app.wait(job, timeout=30)
            assert result["greeting"] == "hello ada!"
            assert result["pid"] != worker.pid  # ran in a child
            wait_until(lambda: "released" in kinds(q, unknown.id), "the release", 15)
            left = q.get(unknown.id)
            assert left.status == State.PENDING and left.attempts == 0
            assert worker.alive()
            worker.stop()
    finally:
        deploy_apps.new.reconnect(None)


def test_a_child_that_does_not_exit_once_its_pipe_is_gone_is_killed_and_said_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The crash detail is the child's exit code, which a loaded machine reports late: the
    worker waits EXIT_WAIT_SECONDS for it. A child still alive then is killed, and the
    detail says that instead of a bare "exited" (here: an idle child, asked directly)."""
    monkeypatch.setattr(pool, "EXIT_WAIT_SECONDS", 0.3)
    child = pool.Child(functools.partial(resolve_handler, "handlers:act"), "exit-wait")
    try:
        started = time.monotonic()
        outcome = child._crashed()
        took = time.monotonic() - started
        assert (
            outcome.crashed
            == f"child {child.pid} lost its pipe and had not exited after 0.3 s: killed"
        )
        assert 0.3 <= took < 5.0, took
        assert pid_gone(child.pid)
    finally:
        child.kill()
