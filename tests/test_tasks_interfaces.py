"""Tasks and scheduling through the interfaces: the REST API (a real ``persistq api``), the
remote client running an App over HTTP, and the CLI's ``enqueue --task/--run-at`` and
``worker --app`` argument checks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

import persistq
from apiserver import TOKEN, ApiServer
from persistq import App, State, TaskFailed
from persistq.cli.main import app as cli_app
from persistq.dispatch import task_payload

runner = CliRunner(env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with ApiServer(tmp_path_factory.mktemp("tasks-api")) as running:
        yield running


@pytest.fixture
def http(server: ApiServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def queue_name() -> str:
    return f"t-{time.monotonic_ns()}"


# -- REST ------------------------------------------------------------------------------------


def test_rest_enqueue_takes_run_at_as_iso_8601(http: httpx.Client) -> None:
    name = queue_name()
    when = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    text = when.isoformat().replace("+00:00", "Z")
    one = http.post(f"/queues/{name}/jobs", json={"payload": 1, "run_at": text})
    assert one.status_code == 201, one.text
    assert abs(datetime.fromisoformat(one.json()["run_at"]) - when) < timedelta(seconds=1)
    batch = http.post(f"/queues/{name}/jobs/batch", json={"jobs": [{"payload": 2}], "run_at": text})
    assert batch.status_code == 201, batch.text
    claim = http.post(f"/queues/{name}/claim", json={"worker": "w"})
    assert claim.status_code == 204  # neither is due yet


@pytest.mark.parametrize(
    ("body", "word"),
    [
        ({"run_at": "2030-01-01T00:00:00"}, "aware"),
        ({"run_at": "2030-01-01T00:00:00Z", "delay": 5}, "not both"),
        ({"run_at": "next tuesday"}, "run_at"),
        ({"run_at": 1893456000}, "run_at"),
    ],
)
def test_rest_refuses_a_bad_run_at_with_a_422_and_stores_nothing(
    http: httpx.Client, body: dict[str, Any], word: str
) -> None:
    name = queue_name()
    response = http.post(f"/queues/{name}/jobs", json={"payload": 1, **body})
    assert response.status_code == 422, response.text
    assert word in response.text
    assert http.get("/jobs", params={"queue": name}).json() == []


def test_rest_get_with_wait_answers_as_soon_as_the_job_finishes(
    http: httpx.Client, server: ApiServer
) -> None:
    name = queue_name()
    job_id = http.post(f"/queues/{name}/jobs", json={"payload": 1}).json()["id"]
    started = time.monotonic()
    pending = http.get(f"/jobs/{job_id}", params={"wait": 0.3})
    assert pending.status_code == 200 and pending.json()["status"] == "PENDING"
    assert 0.3 <= time.monotonic() - started < 3

    def finish() -> None:
        with server.client() as other:
            time.sleep(0.3)
            leased = other.post(f"/queues/{name}/claim", json={"worker": "w"}).json()
            other.post(f"/jobs/{job_id}/complete", json={"lease_token": leased["lease_token"]})

    thread = threading.Thread(target=finish)
    started = time.monotonic()
    thread.start()
    done = http.get(f"/jobs/{job_id}", params={"wait": 20}, timeout=30)
    took = time.monotonic() - started
    thread.join()
    assert done.status_code == 200 and done.json()["status"] == "COMPLETED"
    assert took < 5  # answered once finished, not after the 20 s


@pytest.mark.parametrize("wait", ["31", "-1", "nan", "soon"])
def test_rest_get_refuses_a_wait_outside_0_to_30_seconds(http: httpx.Client, wait: str) -> None:
    name = queue_name()
    job_id = http.post(f"/queues/{name}/jobs", json={"payload": 1}).json()["id"]
    response = http.get(f"/jobs/{job_id}", params={"wait": wait})
    assert response.status_code == 422, response.text


def test_rest_get_with_wait_of_an_unknown_job_is_404(http: httpx.Client) -> None:
    assert http.get("/jobs/987654321", params={"wait": 1}).status_code == 404


# -- an App over the remote client -------------------------------------------------------------


def test_an_app_runs_its_tasks_over_the_rest_api(server: ApiServer) -> None:
    """drain, per-task backoff, unknown-task release, run_at and wait, all over HTTP."""
    name = queue_name()
    with App(server.url, token=TOKEN) as app:

        @app.task(f"{name}.add", queue=name)
        def add(a: int, b: int) -> int:
            return a + b

        @app.task(f"{name}.flaky", queue=name, backoff_base=100, max_attempts=2)
        def flaky() -> None:
            raise RuntimeError("again")

        @app.task(f"{name}.bad", queue=name, retry_on=(KeyError,), max_attempts=3)
        def bad() -> None:
            raise ValueError("no retry")

        summed, retried, failed = add.delay(2, 3), flaky.delay(), bad.delay()
        unknown = app.queue.enqueue(task_payload(f"{name}.nobody"), queue=name)
        later = add.options(run_at=datetime.now(UTC) + timedelta(hours=1)).delay(1, 1)
        assert app.drain() == 4
        assert app.wait(summed, timeout=5) == 5
        again = app.queue.get(retried.id)
        assert again.status == State.PENDING
        assert 50 - 1 <= (again.run_at - again.updated_at).total_seconds() <= 100 + 1
        with pytest.raises(TaskFailed) as info:
            app.wait(failed, timeout=5)
        assert (info.value.status, app.queue.get(failed.id).attempts) == ("FAILED", 1)
        released = app.queue.get(unknown.id)
        assert (released.status, released.attempts) == (State.PENDING, 0)
        assert released.run_at > released.updated_at
        event = app.queue.events(unknown.id)[-1]
        assert event.kind == "released" and f"unknown task {name}.nobody" in (event.detail or "")
        with pytest.raises(TimeoutError):
            app.wait(later, timeout=0.3)


def test_the_remote_client_refuses_a_naive_run_at_as_the_library_does(server: ApiServer) -> None:
    naive = datetime(2030, 1, 1)  # no offset: the case under test
    with (
        persistq.connect(server.url, token=TOKEN) as remote,
        pytest.raises(persistq.InvalidJob, match="aware"),
    ):
        remote.enqueue(1, queue=queue_name(), run_at=naive)


# -- CLI --------------------------------------------------------------------------------------


@pytest.fixture
def cli(sqlite_url: str) -> Callable[..., Result]:
    persistq.connect(sqlite_url).close()  # `persistq init`: other commands need a database

    def invoke(*args: str) -> Result:
        return runner.invoke(cli_app, ["--url", sqlite_url, *args])

    return invoke


def test_cli_enqueue_task_builds_the_task_payload(
    cli: Callable[..., Result], sqlite_url: str
) -> None:
    result = cli(
        "enqueue", "--task", "mail.send", "--args", '["ada"]', "--kwargs", '{"body": "hi"}'
    )
    assert result.exit_code == 0, result.output
    bare = cli("enqueue", "--task", "mail.ping")
    assert bare.exit_code == 0, bare.output
    with persistq.connect(sqlite_url) as q:
        assert q.get(int(result.stdout)).payload == {
            "task": "mail.send",
            "args": ["ada"],
            "kwargs": {"body": "hi"},
        }
        assert q.get(int(bare.stdout)).payload == {"task": "mail.ping", "args": [], "kwargs": {}}


def test_cli_enqueue_run_at_schedules_the_job(cli: Callable[..., Result], sqlite_url: str) -> None:
    result = cli("enqueue", '{"n": 1}', "--run-at", "2030-12-01T12:00:00Z")
    assert result.exit_code == 0, result.output
    with persistq.connect(sqlite_url) as q:
        run_at = q.get(int(result.stdout)).run_at
    assert abs(run_at - datetime(2030, 12, 1, 12, tzinfo=UTC)) < timedelta(seconds=1)


@pytest.mark.parametrize(
    "args",
    [
        ["{}", "--task", "t"],
        ["--args", "[1]"],
        ["{}", "--kwargs", "{}"],
        ["--task", "t", "--args", '{"a": 1}'],
        ["--task", "t", "--kwargs", "[1]"],
        ["{}", "--run-at", "2030-01-01T00:00:00Z", "--delay", "5s"],
        ["--task", "t", "--file", "jobs.jsonl"],
    ],
)
def test_cli_enqueue_refuses_mixed_or_malformed_task_options_as_usage_errors(
    cli: Callable[..., Result], args: list[str]
) -> None:
    result = cli("enqueue", *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["{}", "--run-at", "2030-01-01T00:00:00"], "aware datetime"),
        (["{}", "--run-at", "tomorrow"], "not an ISO 8601 time"),
        (["--task", "t", "--args", "[1,"], "--args is not valid JSON"),
        (["--task", ""], "task name"),
    ],
)
def test_cli_enqueue_bad_values_are_one_error_line(
    cli: Callable[..., Result], args: list[str], says: str
) -> None:
    result = cli("enqueue", *args)
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], result.stderr


def test_cli_worker_needs_exactly_one_of_handler_and_app(cli: Callable[..., Result]) -> None:
    neither = cli("worker")
    both = cli("worker", "--handler", "handlers:act", "--app", "deploy_apps:new")
    assert neither.exit_code == both.exit_code == 2
    missing = cli("worker", "--app", "deploy_apps:nothing_here")
    assert missing.exit_code == 1
    assert missing.stderr.startswith("error: cannot load app 'deploy_apps:nothing_here'")
    wrong = cli("worker", "--app", "deploy_apps:greet")
    assert wrong.exit_code == 1 and "not a persistq.App" in wrong.stderr
