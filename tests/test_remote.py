"""The remote client (``persistq.connect("http://…")``) against a real ``persistq api``.

The queue contract itself runs on the remote client in the contract suite
(tests/test_queue_*.py, the ``queue`` fixture's ``remote`` variant, over the API in process).
What stays here is what only a real server and socket show: one job end to end, fields and
routes that travel over HTTP (timeouts, crashes, limits, fences), long polls, error mapping,
worker presence, bounded retries against an unreachable server, tokens; then a real
``persistq worker --url http://…`` subprocess, and the CLI's token handling (``persistq api``
without one, ``persistq up``'s generated one).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

import persistq
from apiserver import TOKEN, ApiServer, free_port
from persistq import (
    InvalidJob,
    InvalidTransition,
    Job,
    JobNotFound,
    LeaseLost,
    ManualClock,
    QueueError,
    QueueNotEmpty,
    QueueNotFound,
    QueuePaused,
    State,
    StorageBusy,
    StorageCorrupt,
    StorageError,
    StorageFull,
    StorageReplaced,
    StorageUnavailable,
)
from persistq.api import errors as api_errors
from persistq.cli.api import ensure_api_token
from persistq.cli.main import app
from persistq.errors import ERRORS
from persistq.periodic import Schedule, Scheduler
from persistq.remote import RemoteQueue, Unauthorized
from persistq.remote import _error as remote_error

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with ApiServer(tmp_path_factory.mktemp("remote")) as running:
        yield running


@pytest.fixture
def remote(server: ApiServer) -> Iterator[RemoteQueue]:
    with persistq.connect(server.url, token=TOKEN, lease=30) as q:
        yield q


@pytest.fixture
def name() -> str:
    return f"r-{uuid.uuid4().hex[:12]}"


# -- producing and consuming -----------------------------------------------------------------


def test_enqueue_claim_complete(remote: RemoteQueue, name: str) -> None:
    job = remote.enqueue({"n": 1}, queue=name, priority=3, max_attempts=5)
    assert (job.status, job.priority, job.max_attempts, job.payload) == (
        State.PENDING,
        3,
        5,
        {"n": 1},
    )
    leased = remote.claim(queue=name, worker="w1")
    assert leased is not None and leased.id == job.id
    assert leased.status == State.PROCESSING and leased.lease_token
    assert leased.lease_expires_at is not None and leased.started_at is not None
    done = remote.complete(leased, {"ok": True})
    assert (done.status, done.result) == (State.COMPLETED, {"ok": True})
    assert remote.get(job.id).finished_at is not None


def test_completions_and_the_next_claim_are_one_request(remote: RemoteQueue, name: str) -> None:
    """complete_many and complete_and_claim go out as one POST /jobs/complete each (not one
    request per job and one for the claim); a job never claimed is refused before sending."""
    remote.enqueue_many([{"n": n} for n in range(5)], queue=name)
    held = remote.claim_many(queue=name, worker="w1", limit=3)
    never_claimed = remote.get(held[0].id + 4)
    sent: list[str] = []
    remote._client.event_hooks["request"].append(lambda r: sent.append(r.url.path))

    answers, claimed = remote.complete_and_claim(
        [(held[0], 0), (never_claimed, "x"), (held[1], 1)], queue=name, worker="w2", limit=5
    )

    assert sent == ["/jobs/complete"]
    assert [type(a) for a in answers] == [Job, LeaseLost, Job]
    assert [a.result for a in answers if isinstance(a, Job)] == [0, 1]
    assert sorted(j.id for j in claimed) == [held[0].id + 3, held[0].id + 4]
    assert all(j.worker == "w2" and j.lease_token for j in claimed)
    assert remote.get(never_claimed.id).worker == "w2"  # the refusal changed nothing
    sent.clear()
    finished = remote.complete_many([(held[2], 2), *((j, None) for j in claimed)])
    assert sent == ["/jobs/complete"]
    assert [a.status for a in finished if isinstance(a, Job)] == [State.COMPLETED] * 3


def test_timeouts_crashes_and_limits_travel_over_rest(remote: RemoteQueue, name: str) -> None:
    job = remote.enqueue({}, queue=name, timeout=2.5, max_attempts=2)
    assert job.timeout == 2.5
    assert [j.timeout for j in remote.enqueue_many([{}], queue=name, timeout=4)] == [4.0]
    leased = remote.claim(queue=name, worker="w1")
    assert leased is not None and leased.id == job.id
    back = remote.crashed(leased, "child 42 killed by SIGKILL (signal 9)")
    assert back.status == State.PENDING
    leased = remote.claim(queue=name, worker="w1")
    assert leased is not None and leased.id == job.id
    failed = remote.fail(leased, "TimeoutError: timed out after 2.5 s", timed_out="after 2.5 s")
    assert failed.status == State.FAILED
    kinds = [str(e.kind) for e in remote.events(job.id)]
    assert kinds == ["enqueued", "claimed", "crashed", "claimed", "timed_out", "failed"], kinds
    info = remote.set_limits(name, concurrency=1, rate="10/m")
    assert (info.concurrency, info.rate) == (1, "10/m")
    assert [(q.concurrency, q.rate) for q in remote.queues() if q.name == name] == [(1, "10/m")]
    assert remote.claim(queue=name, worker="w1") is None  # the rate bucket starts empty
    assert remote.set_limits(name).rate is None


def test_long_wait_returns_none_after_the_wait(remote: RemoteQueue, name: str) -> None:
    started = time.monotonic()
    assert remote.claim(queue=name, worker="w", wait=0.3) is None
    assert 0.25 < time.monotonic() - started < 3


# -- lease fencing ---------------------------------------------------------------------------


def test_the_fence_travels_in_job_json_and_grows_with_every_claim(
    remote: RemoteQueue, name: str
) -> None:
    job = remote.enqueue(1, queue=name)
    assert job.fence == 0
    leased = remote.claim(queue=name, worker="w")
    assert leased is not None and leased.fence == 1
    assert remote.release(leased).fence == 1
    again = remote.claim(queue=name, worker="w")
    assert again is not None and again.fence == 2
    remote.complete(again)
    assert remote.resubmit(job.id).fence == remote.get(job.id).fence == 2


# -- failures --------------------------------------------------------------------------------


# -- managing --------------------------------------------------------------------------------


def test_unknown_ids_and_bad_input_raise_the_library_errors(remote: RemoteQueue) -> None:
    for action in (
        lambda: remote.get(987654321),
        lambda: remote.events(987654321),
        lambda: remote.cancel(987654321),
        lambda: remote.resubmit(987654321),
    ):
        with pytest.raises(JobNotFound) as caught:
            action()
        assert caught.value.job_id == 987654321
    for bad in (
        lambda: remote.enqueue(float("nan")),
        lambda: remote.enqueue(1, queue="bad name"),
        lambda: remote.enqueue("x" * (1024 * 1024 + 1)),
        lambda: remote.enqueue(1, priority=2**40),
        lambda: remote.jobs(status="NOPE"),
        lambda: remote.get(0),
    ):
        with pytest.raises(InvalidJob):
            bad()


def test_worker_presence(remote: RemoteQueue, name: str) -> None:
    remote.worker_seen(f"w-{name}", [name])
    assert f"w-{name}" in [w.id for w in remote.workers()]
    remote.worker_gone(f"w-{name}")
    assert f"w-{name}" not in [w.id for w in remote.workers()]


def test_a_remote_sweeper_can_forget_workers_long_unseen(remote: RemoteQueue, name: str) -> None:
    remote.worker_seen(f"w-{name}", [name])
    time.sleep(1.1)
    remote.worker_seen(f"fresh-{name}", [name])
    assert remote.prune_workers(unseen_for=1) >= 1
    ids = [w.id for w in remote.workers(seen_within=30 * 86400)]
    assert f"w-{name}" not in ids and f"fresh-{name}" in ids
    with pytest.raises(InvalidJob):
        remote.prune_workers(unseen_for=0)


# -- network and auth ------------------------------------------------------------------------


def test_wrong_token_is_unauthorized(server: ApiServer) -> None:
    with (
        persistq.connect(server.url, token="wrong-token-0123456789") as q,
        pytest.raises(Unauthorized),
    ):
        q.stats()


def test_unreachable_server_raises_storage_unavailable_after_bounded_retries() -> None:
    q = persistq.connect(f"http://127.0.0.1:{free_port()}", token=TOKEN, retries=2)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="unreachable after 3 tries"):
        q.enqueue(1)
    assert time.monotonic() - started < 5
    q.close()


def test_connect_without_any_token_says_how(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERSISTQ_API_TOKEN", raising=False)
    with pytest.raises(Unauthorized, match="PERSISTQ_API_TOKEN"):
        persistq.connect("http://127.0.0.1:1", token=None)


# -- a real remote worker --------------------------------------------------------------------


def test_remote_worker_process_completes_jobs(
    server: ApiServer, remote: RemoteQueue, name: str, tmp_path: Path
) -> None:
    jobs = [remote.enqueue({"n": n}, queue=name) for n in range(5)]
    failing = remote.enqueue({"raise": "nope"}, queue=name, max_attempts=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSISTQ_")}
    env.update(PERSISTQ_API_TOKEN=TOKEN, PYTHONPATH=str(TESTS))
    command = [sys.executable, "-m", "persistq", "worker", "--url", server.url]
    command += ["--queue", name, "--handler", "handlers:act", "--concurrency", "2"]
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = [remote.get(j.id).status for j in [*jobs, failing]]
            if all(s in (State.COMPLETED, State.FAILED) for s in states):
                break
            time.sleep(0.1)
        for job in jobs:
            done = remote.get(job.id)
            assert done.status == State.COMPLETED, log.read_text()
            assert done.result == {"job": job.id, "attempt": 1, "pid": worker.pid}
        failed = remote.get(failing.id)
        assert failed.status == State.FAILED
        assert failed.last_error is not None and "RuntimeError: nope" in failed.last_error
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(30)
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def test_remote_worker_with_a_wrong_token_exits_1_with_one_line(server: ApiServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSISTQ_")}
    env["PERSISTQ_API_TOKEN"] = "wrong-token-0123456789"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "persistq",
            "worker",
            "--url",
            server.url,
            "--handler",
            "persistq.tasks.files:stamp_file",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == ["error: missing or invalid bearer token"]


# -- tokens at the command line --------------------------------------------------------------


def test_api_refuses_to_start_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERSISTQ_API_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["api", "--port", str(free_port())])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "PERSISTQ_API_TOKEN" in lines[0] and "export" in lines[0]
    monkeypatch.setenv("PERSISTQ_API_TOKEN", "short")
    result = CliRunner().invoke(app, ["api", "--port", str(free_port())])
    assert result.exit_code == 1
    assert "at least 16 characters" in result.stderr


def test_up_token_is_generated_once_owner_only_and_printed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PERSISTQ_API_TOKEN", raising=False)
    (tmp_path / "data").mkdir()
    token = ensure_api_token(tmp_path)
    printed = capsys.readouterr().out
    assert token in printed
    path = tmp_path / "data" / "api-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == token
    assert len(token) >= 32
    assert ensure_api_token(tmp_path) == token
    assert token not in capsys.readouterr().out
    monkeypatch.setenv("PERSISTQ_API_TOKEN", "from-the-environment-123")
    assert ensure_api_token(tmp_path) == "from-the-environment-123"


ERROR_EXAMPLES: list[QueueError] = [
    QueueError("x"),
    JobNotFound(7),
    LeaseLost(7),
    InvalidJob("bad payload"),
    InvalidTransition(7, "PENDING", "resubmit"),
    QueuePaused("q"),
    QueueNotFound("q"),
    QueueNotEmpty("q", 3),
    StorageError("x"),
    StorageFull("x"),
    StorageCorrupt("x"),
    StorageUnavailable("x"),
    StorageReplaced("x"),
    StorageBusy("x"),
]


@pytest.mark.parametrize("error", ERROR_EXAMPLES, ids=lambda e: type(e).__name__)
def test_every_library_error_comes_back_from_the_api_as_itself(error: QueueError) -> None:
    """The API answers with the class's status, code and data; the client rebuilds the class."""
    answer = api_errors.queue_error(None, error)  # type: ignore[arg-type]
    assert answer.status_code == type(error).http_status
    response = httpx.Response(answer.status_code, content=bytes(answer.body))
    back = remote_error(response)
    assert type(back) is type(error)
    assert str(back) == str(error)
    for name in type(error).data_fields:
        assert getattr(back, name) == getattr(error, name)


def test_the_examples_and_the_package_name_every_error() -> None:
    assert {type(e) for e in ERROR_EXAMPLES} == set(ERRORS)
    assert {kind.__name__ for kind in ERRORS} <= set(persistq.__all__)


def test_a_scheduler_over_the_api_enqueues_each_due_tick_once(
    remote: RemoteQueue, name: str
) -> None:
    # No read of the last tick over HTTP: a starting scheduler enqueues the latest due tick,
    # and the key keeps it to one job however many schedulers do so.
    clock = ManualClock(datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC).timestamp())
    schedule = Schedule("remote.tick", "* * * * *", queue=name)
    schedulers = [Scheduler(remote, [schedule], clock=clock) for _ in range(3)]
    firsts = [s.run_once() for s in schedulers]
    assert len({jobs[0].id for jobs in firsts}) == 1
    clock.advance(60)
    assert all(len(s.run_once()) == 1 for s in schedulers)
    keys = sorted(j.key or "" for j in remote.jobs(queue=name))
    assert keys == [
        "periodic:remote.tick:2026-01-01T12:00:00Z",
        "periodic:remote.tick:2026-01-01T12:01:00Z",
    ]
