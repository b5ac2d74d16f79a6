"""The data and admin commands of the ``persistq`` CLI, against a real SQLite file.

Most tests run the Typer app in-process (CliRunner keeps stdout and stderr apart); the
last few run ``python -m persistq`` as a real subprocess for exit codes and stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import persistq
from persistq import Job, JobNotFound, ManualClock, Queue, State
from persistq.backends.sql import migrations
from persistq.cli.common import format_age, parse_duration
from persistq.cli.main import app
from persistq.errors import QueueError

DAY = 86400.0
runner = CliRunner(env={"COLUMNS": "200"})


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def cli(sqlite_url: str) -> Callable[..., Result]:
    """Run ``persistq --url <test db> ARGS...`` in-process, on a database ``init`` made
    (no other command creates one)."""

    def invoke(*args: str, input: str | None = None) -> Result:  # noqa: A002 - CliRunner's name
        return runner.invoke(app, ["--url", sqlite_url, *args], input=input)

    created = invoke("init")
    assert created.exit_code == 0, created.stderr
    return invoke


@pytest.fixture
def at(sqlite_url: str) -> Iterator[Callable[[float], Queue]]:
    """Open the test database through the Python API with a clock ``seconds_ago`` in the past."""
    opened: list[Queue] = []

    def open_at(seconds_ago: float) -> Queue:
        q = persistq.connect(sqlite_url, clock=ManualClock(time.time() - seconds_ago), lease=30)
        opened.append(q)
        return q

    yield open_at
    for q in opened:
        q.close()


@pytest.fixture
def api(at: Callable[[float], Queue]) -> Queue:
    """The test database at the present time."""
    return at(0)


def assert_one_error(result: Result, *, code: int = 1, says: str = "") -> None:
    """Exit ``code``, exactly one stderr line starting "error:", no traceback anywhere."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert says in lines[0]
    assert "Traceback" not in result.output


def assert_usage_error(result: Result) -> None:
    """Click's usage error as one line too (exit 2), naming where the help is."""
    assert_one_error(result, code=2, says="--help`)")


@pytest.mark.parametrize(
    "args",
    [
        ["nosuch"],
        ["--bogus", "stats"],
        ["queues", "create"],
        ["jobs", "--limit", "x"],
        ["worker", "--concurrency", "0", "--handler", "tests.handlers:ok"],
    ],
)
def test_usage_errors_are_one_line_naming_the_help(
    cli: Callable[..., Result], args: list[str]
) -> None:
    # before: Click's 4-line block ("Usage: …", "Try … for help.", "", "Error: …")
    assert_usage_error(cli(*args))


def test_a_command_group_without_arguments_still_shows_its_help(
    cli: Callable[..., Result],
) -> None:
    result = cli("queues")
    assert "Usage:" in result.output and "create" in result.output


def dead_job(api: Queue, at: Callable[[float], Queue], state: State, **options: Any) -> Job:
    """A job brought to FAILED or UNPROCESSABLE through the public API.

    Its top priority makes the claim take it before any job a test enqueued before it.
    """
    options.setdefault("priority", 1000)
    if state == State.FAILED:
        api.enqueue({"dead": "failed"}, max_attempts=1, **options)
        claimed = api.claim(worker="w", queue=options.get("queue", "default"))
        assert claimed is not None
        return api.fail(claimed, "boom\nsecond line")
    old = at(3600)
    job = old.enqueue({"dead": "unprocessable"}, max_attempts=1, **options)
    assert old.claim(worker="w", queue=options.get("queue", "default"), lease=1) is not None
    api.recover_stalled()  # an hour later the one-second lease has long expired
    return api.get(job.id)


def finished(q: Queue, state: State, payload: Any = None, queue: str = "default") -> Job:
    """A job that reached COMPLETED or CANCELLED at ``q``'s clock time."""
    job = q.enqueue(payload if payload is not None else {"n": 1}, queue=queue)
    if state == State.CANCELLED:
        return q.cancel(job.id)
    claimed = q.claim(worker="w", queue=queue)
    assert claimed is not None and claimed.id == job.id
    return q.complete(claimed, {"ok": True})


# -- init and check --------------------------------------------------------------------------


def test_init_creates_the_database_and_prints_its_path_and_schema_version(
    tmp_path: Path,
) -> None:
    db = tmp_path / "new" / "queue.db"
    result = runner.invoke(app, ["--url", f"sqlite:///{db}", "init"])
    assert result.exit_code == 0, result.stderr
    assert db.exists()
    assert str(db) in result.stdout
    latest = migrations("sqlite")[-1].version
    assert f"schema version {latest}" in result.stdout


def test_init_is_idempotent_and_reports_an_ok_check_as_json(cli: Callable[..., Result]) -> None:
    assert cli("init").exit_code == 0
    result = cli("init", "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["schema_version"] == report["latest_schema_version"]


def test_check_passes_on_a_healthy_database(cli: Callable[..., Result]) -> None:
    result = cli("check")
    assert result.exit_code == 0, result.stderr
    assert "integrity" in result.stdout and "ok" in result.stdout


@pytest.mark.parametrize("full", [False, True])
def test_check_json_reports_integrity_schema_and_sizes(
    cli: Callable[..., Result], full: bool
) -> None:
    result = cli("check", "--json", *(["--full"] if full else []))
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["integrity"] == "ok"
    assert {"schema_version", "size_bytes", "wal_bytes", "ok"} <= set(report)


def test_a_file_that_is_not_a_database_gives_one_error_line(tmp_path: Path) -> None:
    garbage = tmp_path / "queue.db"
    garbage.write_bytes(b"this is not a database" * 100)
    result = runner.invoke(app, ["--url", f"sqlite:///{garbage}", "check"])
    assert_one_error(result)


def test_a_database_directory_that_cannot_be_created_gives_one_error_line() -> None:
    result = runner.invoke(app, ["--url", "sqlite:////proc/no-such-dir/queue.db", "jobs"])
    assert_one_error(result, says="/proc/no-such-dir")


# -- enqueue ---------------------------------------------------------------------------------


def test_enqueue_prints_only_the_new_id_and_stores_the_payload(
    cli: Callable[..., Result], api: Queue
) -> None:
    result = cli("enqueue", '{"path": "data/files/a.txt", "n": [1, 2]}')
    assert result.exit_code == 0, result.stderr
    job_id = int(result.stdout.strip())
    assert result.stdout == f"{job_id}\n"
    job = api.get(job_id)
    assert job.payload == {"path": "data/files/a.txt", "n": [1, 2]}
    assert (job.queue, job.status, job.priority, job.max_attempts) == (
        "default",
        State.PENDING,
        0,
        3,
    )


def test_enqueue_options_reach_the_job_and_json_prints_it(
    cli: Callable[..., Result], api: Queue
) -> None:
    before = time.time()
    result = cli(
        "enqueue",
        '"hello"',
        "--queue",
        "files",
        "--priority",
        "7",
        "--delay",
        "15m",
        "--max-attempts",
        "5",
        "--key",
        "k1",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    job = api.get(shown["id"])
    assert shown == job.to_dict()
    assert (job.payload, job.queue, job.priority, job.max_attempts, job.key) == (
        "hello",
        "files",
        7,
        5,
        "k1",
    )
    assert job.run_at.timestamp() >= before + 15 * 60 - 1


def test_enqueue_takes_the_queue_from_the_environment(
    cli: Callable[..., Result], api: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERSISTQ_QUEUE", "from-env")
    result = cli("enqueue", "{}")
    assert api.get(int(result.stdout)).queue == "from-env"


def test_enqueue_with_a_key_already_used_prints_the_first_jobs_id(
    cli: Callable[..., Result],
) -> None:
    first = cli("enqueue", "1", "--key", "same").stdout
    assert cli("enqueue", "2", "--key", "same").stdout == first


@pytest.mark.parametrize("text", ['{"a": ', "{'single': 1}", "", "nope"])
def test_enqueue_refuses_invalid_json_naming_the_problem_and_stores_nothing(
    cli: Callable[..., Result], api: Queue, text: str
) -> None:
    result = cli("enqueue", text)
    assert_one_error(result, says="PAYLOAD_JSON is not valid JSON")
    assert api.jobs() == []


def test_enqueue_refuses_nan_which_json_cannot_hold(cli: Callable[..., Result], api: Queue) -> None:
    assert_one_error(cli("enqueue", "NaN"), says="not JSON")
    assert api.jobs() == []


def test_enqueue_refuses_an_invalid_queue_name(cli: Callable[..., Result], api: Queue) -> None:
    assert_one_error(cli("enqueue", "{}", "--queue", "bad name!"), says="invalid queue name")
    assert api.jobs() == []


def test_enqueue_refuses_a_bad_delay(cli: Callable[..., Result]) -> None:
    assert_one_error(cli("enqueue", "{}", "--delay", "soon"), says="--delay 'soon'")


@pytest.mark.parametrize(
    "args",
    [
        ["enqueue"],
        ["enqueue", "{}", "--file", "x.jsonl"],
        ["enqueue", "--file", "-", "--key", "k"],
        ["enqueue", "{}", "--priority", "high"],
        ["enqueue", "{}", "--no-such-option"],
    ],
)
def test_enqueue_usage_errors_exit_2(cli: Callable[..., Result], args: list[str]) -> None:
    assert_usage_error(cli(*args, input=""))


def test_enqueue_file_enqueues_every_line_in_batches_of_1000(
    cli: Callable[..., Result], api: Queue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []
    real = Queue.enqueue_many

    def spy(self: Queue, payloads: Any, **options: Any) -> list[Job]:
        batch = list(payloads)
        batches.append(len(batch))
        return real(self, batch, **options)

    monkeypatch.setattr(Queue, "enqueue_many", spy)
    lines = tmp_path / "jobs.jsonl"
    lines.write_text("".join(f'{{"n": {n}}}\n' for n in range(2500)) + "\n\n")
    result = cli("enqueue", "--file", str(lines), "--queue", "bulk", "--priority", "2")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "2500\n"
    assert batches == [1000, 1000, 500]
    assert api.stats()["queues"]["bulk"]["PENDING"] == 2500
    newest = api.jobs(queue="bulk", limit=1)[0]
    assert (newest.payload, newest.priority) == ({"n": 2499}, 2)


def test_enqueue_file_from_stdin_prints_the_ids_with_json(
    cli: Callable[..., Result], api: Queue
) -> None:
    result = cli("enqueue", "--file", "-", "--json", input='{"a": 1}\n\n[2]\n"three"\n')
    assert result.exit_code == 0, result.stderr
    ids = json.loads(result.stdout)
    assert [api.get(i).payload for i in ids] == [{"a": 1}, [2], "three"]


def test_enqueue_file_with_a_bad_line_names_the_line_and_enqueues_nothing(
    cli: Callable[..., Result], api: Queue
) -> None:
    result = cli("enqueue", "--file", "-", input='{"a": 1}\n{"b": \n')
    assert_one_error(result, says="stdin:2: not valid JSON: Expecting value (column 7)")
    assert api.jobs() == []


def test_enqueue_file_refused_in_a_later_batch_enqueues_nothing(
    cli: Callable[..., Result], api: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERSISTQ_MAX_PAYLOAD_BYTES", "100")
    lines = ["1\n"] * 1500 + ['"' + "x" * 200 + '"\n']
    result = cli("enqueue", "--file", "-", input="".join(lines))
    assert_one_error(result, says="stdin:1501: payload is 202 bytes encoded; the limit is 100")
    assert api.jobs() == []


def test_enqueue_file_that_does_not_exist_gives_one_error_line(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    assert_one_error(cli("enqueue", "--file", str(tmp_path / "missing.jsonl")), says="missing")


# -- jobs, show, events ----------------------------------------------------------------------


def test_jobs_lists_newest_first_and_filters_by_status_queue_limit_and_offset(
    cli: Callable[..., Result], api: Queue, at: Callable[[float], Queue]
) -> None:
    a = api.enqueue({"n": 1}, queue="a")
    b = api.enqueue({"n": 2}, queue="b")
    c = api.enqueue({"n": 3}, queue="a")
    failed = dead_job(api, at, State.FAILED, queue="a")

    def ids(*args: str) -> list[int]:
        result = cli("jobs", "--json", *args)
        assert result.exit_code == 0, result.stderr
        return [job["id"] for job in json.loads(result.stdout)]

    assert ids() == [failed.id, c.id, b.id, a.id]
    assert ids("--queue", "a") == [failed.id, c.id, a.id]
    assert ids("--status", "pending", "--queue", "a") == [c.id, a.id]
    assert ids("--status", "FAILED") == [failed.id]
    assert ids("--limit", "2", "--offset", "1") == [c.id, b.id]


def test_jobs_table_shows_attempts_worker_and_the_last_errors_first_line(
    cli: Callable[..., Result], api: Queue, at: Callable[[float], Queue]
) -> None:
    dead_job(api, at, State.FAILED, queue="files")
    result = cli("jobs")
    assert result.exit_code == 0
    assert "files" in result.stdout and "FAILED" in result.stdout
    assert "1/1" in result.stdout and "boom" in result.stdout
    assert "second line" not in result.stdout


def test_jobs_without_any_says_so(cli: Callable[..., Result]) -> None:
    result = cli("jobs")
    assert (result.exit_code, result.stdout) == (0, "No jobs.\n")


def test_jobs_refuses_an_unknown_state(cli: Callable[..., Result]) -> None:
    assert_one_error(cli("jobs", "--status", "DONE"), says="unknown state 'DONE'")


def test_jobs_refuses_an_invalid_queue_name_and_a_bad_limit(cli: Callable[..., Result]) -> None:
    assert_one_error(cli("jobs", "--queue", "-x"), says="invalid queue name")
    assert_one_error(cli("jobs", "--limit", "0"), says="limit")


def test_show_prints_every_field_with_the_payload_pretty(
    cli: Callable[..., Result], api: Queue
) -> None:
    job = api.enqueue({"path": "data/files/a.txt"}, queue="files", key="k-show")
    result = cli("show", str(job.id))
    assert result.exit_code == 0
    assert '"path": "data/files/a.txt"' in result.stdout
    for word in ("files", "PENDING", "k-show", "0 of 3", "created_at"):
        assert word in result.stdout


def test_show_json_is_the_jobs_dict(cli: Callable[..., Result], api: Queue) -> None:
    job = api.enqueue([1, 2])
    result = cli("show", str(job.id), "--json")
    assert json.loads(result.stdout) == api.get(job.id).to_dict()


def test_show_prints_markup_and_emoji_codes_in_data_literally(
    cli: Callable[..., Result], api: Queue
) -> None:
    job = api.enqueue({"text": "[bold]x[/] [/nope] :100:"}, queue="q:100:")
    result = cli("show", str(job.id))
    assert result.exit_code == 0, result.output
    assert "[bold]x[/] [/nope] :100:" in result.stdout
    assert "q:100:" in result.stdout


def test_show_an_unknown_id_gives_one_error_line(cli: Callable[..., Result]) -> None:
    assert_one_error(cli("show", "424242"), says="job 424242 not found")


def test_show_a_non_integer_id_is_a_usage_error(cli: Callable[..., Result]) -> None:
    assert_usage_error(cli("show", "abc"))


def test_events_lists_each_state_change_oldest_first(
    cli: Callable[..., Result], api: Queue, at: Callable[[float], Queue]
) -> None:
    job = dead_job(api, at, State.FAILED)
    result = cli("events", str(job.id), "--json")
    assert result.exit_code == 0
    assert [e["kind"] for e in json.loads(result.stdout)] == ["enqueued", "claimed", "failed"]
    table = cli("events", str(job.id))
    assert "claimed" in table.stdout and "boom" in table.stdout


def test_events_of_an_unknown_job_gives_one_error_line(cli: Callable[..., Result]) -> None:
    assert_one_error(cli("events", "99"), says="job 99 not found")


# -- resubmit, cancel, fail ------------------------------------------------------------------


def test_resubmit_puts_dead_jobs_back_to_pending_with_attempts_reset(
    cli: Callable[..., Result], api: Queue, at: Callable[[float], Queue]
) -> None:
    failed = dead_job(api, at, State.FAILED)
    stalled = dead_job(api, at, State.UNPROCESSABLE)
    assert stalled.status == State.UNPROCESSABLE
    result = cli("resubmit", str(failed.id), str(stalled.id))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"job {failed.id}: PENDING",
        f"job {stalled.id}: PENDING",
    ]
    for job_id in (failed.id, stalled.id):
        job = api.get(job_id)
        assert (job.status, job.attempts) == (State.PENDING, 0)


def test_resubmit_reports_each_failure_on_stderr_and_still_does_the_rest(
    cli: Callable[..., Result], api: Queue, at: Callable[[float], Queue]
) -> None:
    first = dead_job(api, at, State.FAILED)
    pending = api.enqueue({"n": 1})
    last = dead_job(api, at, State.FAILED)
    result = cli("resubmit", str(first.id), "777", str(pending.id), str(last.id))
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [f"job {first.id}: PENDING", f"job {last.id}: PENDING"]
    assert result.stderr.splitlines() == [
        "error: job 777 not found",
        f"error: job {pending.id}: cannot resubmit a job that is PENDING",
    ]
    assert api.get(first.id).status == api.get(last.id).status == State.PENDING
    assert api.get(pending.id) == pending


def test_resubmit_many_ids_prints_one_line_each_and_json_lists_the_jobs(
    cli: Callable[..., Result], api: Queue
) -> None:
    jobs = [api.cancel(api.enqueue({"n": n}).id) for n in range(25)]
    ids = [str(job.id) for job in jobs]
    result = cli("resubmit", *ids, "--json")
    assert result.exit_code == 0, result.stderr
    assert [job["status"] for job in json.loads(result.stdout)] == ["PENDING"] * 25
    assert api.stats()["queues"]["default"]["PENDING"] == 25


def test_resubmit_needs_at_least_one_id(cli: Callable[..., Result]) -> None:
    assert_usage_error(cli("resubmit"))


def test_cancel_cancels_pending_jobs_and_asks_a_processing_one_to_stop(
    cli: Callable[..., Result], api: Queue
) -> None:
    running = api.enqueue({"n": 1})
    assert api.claim(worker="w") is not None
    waiting = api.enqueue({"n": 2})
    result = cli("cancel", str(waiting.id), str(running.id))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"job {waiting.id}: CANCELLED"
    assert lines[1].startswith(f"job {running.id}: PROCESSING, cancel requested")
    assert api.get(waiting.id).status == State.CANCELLED
    assert api.get(running.id).cancel_requested


def test_cancel_of_a_finished_job_fails_and_changes_nothing(
    cli: Callable[..., Result], api: Queue
) -> None:
    done = finished(api, State.COMPLETED)
    assert_one_error(cli("cancel", str(done.id)), says="cannot cancel a job that is COMPLETED")
    assert api.get(done.id) == done


def test_cancel_of_id_zero_is_refused_as_a_bad_id(cli: Callable[..., Result]) -> None:
    assert_one_error(cli("cancel", "0"), says="job id must be between 1")


def test_fail_fails_a_pending_job_with_the_given_error(
    cli: Callable[..., Result], api: Queue
) -> None:
    job = api.enqueue({"n": 1})
    result = cli("fail", str(job.id), "--error", "operator says no")
    assert (result.exit_code, result.stdout) == (0, f"job {job.id}: FAILED\n")
    failed = api.get(job.id)
    assert (failed.status, failed.last_error) == (State.FAILED, "operator says no")


def test_fail_json_prints_the_failed_job(cli: Callable[..., Result], api: Queue) -> None:
    job = api.enqueue({"n": 1})
    result = cli("fail", str(job.id), "-e", "x", "--json")
    assert json.loads(result.stdout)["status"] == "FAILED"


def test_fail_of_a_completed_job_or_unknown_id_is_one_error_line(
    cli: Callable[..., Result], api: Queue
) -> None:
    done = finished(api, State.COMPLETED)
    assert_one_error(cli("fail", str(done.id), "--error", "x"), says="cannot fail")
    assert_one_error(cli("fail", "5555", "--error", "x"), says="job 5555 not found")


def test_fail_without_error_text_is_a_usage_error(cli: Callable[..., Result]) -> None:
    assert_usage_error(cli("fail", "1"))


# -- stats and queues ------------------------------------------------------------------------


def test_stats_counts_every_state_per_queue_with_paused_and_oldest_age(
    cli: Callable[..., Result], api: Queue, at: Callable[[float], Queue]
) -> None:
    at(2 * 3600).enqueue({"old": True}, queue="files")
    dead_job(api, at, State.FAILED, queue="files")
    api.create_queue("idle")
    api.pause("idle")
    data = json.loads(cli("stats", "--json").stdout)["queues"]
    assert data["files"]["PENDING"] == 1 and data["files"]["FAILED"] == 1
    assert data["files"]["oldest_pending_age"] >= 2 * 3600 - 5
    assert data["idle"]["paused"] is True and data["idle"]["oldest_pending_age"] is None
    table = cli("stats")
    assert table.exit_code == 0
    for word in ("files", "idle", "UNPROCESSABLE", "2h", "yes"):
        assert word in table.stdout


def test_stats_of_an_empty_database_says_so(cli: Callable[..., Result]) -> None:
    assert cli("stats").stdout == "No queues.\n"


def test_queues_create_pause_resume_and_list(cli: Callable[..., Result], api: Queue) -> None:
    assert cli("queues", "create", "emails").stdout == "queue 'emails' exists\n"
    assert cli("queues", "pause", "emails").stdout == "queue 'emails' paused\n"
    assert api.queues()[0].paused is True
    listed = json.loads(cli("queues", "list", "--json").stdout)
    assert [(q["name"], q["paused"]) for q in listed] == [("emails", True)]
    assert "paused" in cli("queues", "list").stdout
    resumed = json.loads(cli("queues", "resume", "emails", "--json").stdout)
    assert resumed["paused"] is False
    assert api.queues()[0].paused is False


def test_queues_limit_sets_lists_and_clears_limits(cli: Callable[..., Result], api: Queue) -> None:
    result = cli("queues", "limit", "mail", "--concurrency", "3", "--rate", "20/m")
    assert result.stdout == "queue 'mail': concurrency 3, rate 20/m\n", result.stderr
    assert [(q.concurrency, q.rate) for q in api.queues()] == [(3, "20/m")]
    listed = json.loads(cli("queues", "list", "--json").stdout)
    assert [(q["concurrency"], q["rate"]) for q in listed] == [(3, "20/m")]
    assert_one_error(cli("queues", "limit", "mail", "--rate", "20/d"), says="N/s, N/m or N/h")
    assert [(q.concurrency, q.rate) for q in api.queues()] == [(3, "20/m")]  # unchanged
    assert cli("queues", "limit", "mail").exit_code == 2
    assert cli("queues", "limit", "mail", "--clear", "--rate", "1/s").exit_code == 2
    assert cli("queues", "limit", "mail", "--clear").stdout == "queue 'mail': no limits\n"
    assert [(q.concurrency, q.rate) for q in api.queues()] == [(None, None)]


def test_enqueue_timeout_is_stored_and_a_bad_one_refused(
    cli: Callable[..., Result], api: Queue
) -> None:
    job_id = int(cli("enqueue", "{}", "--timeout", "90s").stdout)
    assert api.get(job_id).timeout == 90.0
    assert "timeout" in cli("show", str(job_id)).stdout
    assert_one_error(cli("enqueue", "{}", "--timeout", "0"), says="timeout must be between")
    assert len(api.jobs()) == 1


def test_queues_delete_refuses_unfinished_jobs_unless_forced(
    cli: Callable[..., Result], api: Queue
) -> None:
    job = api.enqueue({"n": 1}, queue="old")
    assert_one_error(cli("queues", "delete", "old"), says="unfinished")
    assert api.get(job.id).status == State.PENDING
    result = cli("queues", "delete", "old", "--force")
    assert result.stdout == "deleted queue 'old' and 1 job(s)\n"
    with pytest.raises(JobNotFound):
        api.get(job.id)
    assert api.queues() == []


@pytest.mark.parametrize("action", ["create", "delete", "pause", "resume"])
def test_queues_refuse_an_invalid_name(cli: Callable[..., Result], action: str) -> None:
    assert_one_error(cli("queues", action, "no spaces"), says="invalid queue name")


@pytest.mark.parametrize("action", ["delete", "pause", "resume"])
def test_queues_actions_on_an_unknown_queue_fail(cli: Callable[..., Result], action: str) -> None:
    assert_one_error(cli("queues", action, "ghost"), says="queue 'ghost' not found")


def test_queues_without_a_subcommand_shows_help_and_unknown_ones_are_usage_errors(
    cli: Callable[..., Result],
) -> None:
    assert "create" in cli("queues").output
    assert_usage_error(cli("queues", "rename", "a"))


# -- dead-letter queue -----------------------------------------------------------------------


def test_dlq_list_shows_failed_and_unprocessable_jobs_only(
    cli: Callable[..., Result], api: Queue, at: Callable[[float], Queue]
) -> None:
    failed = dead_job(api, at, State.FAILED)
    stalled = dead_job(api, at, State.UNPROCESSABLE, queue="other")
    api.enqueue({"alive": True})

    def ids(*args: str) -> list[int]:
        result = cli("dlq", "list", "--json", *args)
        assert result.exit_code == 0, result.stderr
        return [job["id"] for job in json.loads(result.stdout)]

    assert ids() == [stalled.id, failed.id]
    assert ids("--status", "failed") == [failed.id]
    assert ids("--queue", "other") == [stalled.id]
    assert ids("--limit", "1") == [stalled.id]
    assert "UNPROCESSABLE" in cli("dlq", "list").stdout


def test_dlq_list_refuses_a_state_outside_the_dead_letter_queue(
    cli: Callable[..., Result],
) -> None:
    assert_one_error(cli("dlq", "list", "--status", "PENDING"), says="not a dead-letter state")
    assert_one_error(cli("dlq", "list", "--status", "gone"), says="unknown state")


def test_dlq_redrive_resubmits_every_matching_dead_job(
    cli: Callable[..., Result], api: Queue, at: Callable[[float], Queue]
) -> None:
    dead = [dead_job(api, at, State.FAILED) for _ in range(3)]
    stalled = dead_job(api, at, State.UNPROCESSABLE)
    elsewhere = dead_job(api, at, State.FAILED, queue="other")
    result = cli("dlq", "redrive", "--queue", "default")
    assert (result.exit_code, result.stdout) == (0, "redrove 4 job(s)\n")
    for job in [*dead, stalled]:
        assert (api.get(job.id).status, api.get(job.id).attempts) == (State.PENDING, 0)
    assert api.get(elsewhere.id).status == State.FAILED
    assert cli("dlq", "redrive").stdout == "redrove 1 job(s)\n"
    assert cli("dlq", "redrive").stdout == "redrove 0 job(s)\n"


def test_dlq_redrive_honours_status_and_limit(
    cli: Callable[..., Result], api: Queue, at: Callable[[float], Queue]
) -> None:
    failed = [dead_job(api, at, State.FAILED) for _ in range(3)]
    stalled = dead_job(api, at, State.UNPROCESSABLE)
    result = cli("dlq", "redrive", "--status", "FAILED", "--limit", "2", "--json")
    assert [job["id"] for job in json.loads(result.stdout)] == [failed[2].id, failed[1].id]
    assert api.get(failed[0].id).status == State.FAILED
    assert api.get(stalled.id).status == State.UNPROCESSABLE


def test_dlq_redrive_of_given_ids_refuses_jobs_not_in_the_dead_letter_queue(
    cli: Callable[..., Result], api: Queue, at: Callable[[float], Queue]
) -> None:
    dead = dead_job(api, at, State.FAILED)
    done = finished(api, State.COMPLETED)
    result = cli("dlq", "redrive", str(done.id), str(dead.id), "31337")
    assert result.exit_code == 1
    assert result.stdout == "redrove 1 job(s)\n"
    assert result.stderr.splitlines() == [
        f"error: job {done.id}: cannot redrive a job that is COMPLETED",
        "error: job 31337 not found",
    ]
    assert api.get(dead.id).status == State.PENDING
    assert api.get(done.id) == done


def test_dlq_redrive_refuses_ids_together_with_filters(cli: Callable[..., Result]) -> None:
    assert_usage_error(cli("dlq", "redrive", "1", "--queue", "default"))


# -- recover and purge -----------------------------------------------------------------------


def test_recover_returns_jobs_with_expired_leases_to_pending(
    cli: Callable[..., Result], api: Queue, at: Callable[[float], Queue]
) -> None:
    old = at(600)
    job = old.enqueue({"n": 1})
    assert old.claim(worker="crashed", lease=30) is not None
    fresh = api.enqueue({"n": 2})
    assert api.claim(worker="alive") is not None
    result = cli("recover")
    assert (result.exit_code, result.stdout) == (0, "recovered 1 stalled job(s)\n")
    assert api.get(job.id).status == State.PENDING
    assert api.get(fresh.id).status == State.PROCESSING
    assert json.loads(cli("recover", "--json").stdout) == {"recovered": 0}


def test_purge_deletes_only_jobs_of_that_state_finished_before_the_cutoff(
    cli: Callable[..., Result], api: Queue, at: Callable[[float], Queue]
) -> None:
    old = at(10 * DAY)
    old_done = [finished(old, State.COMPLETED) for _ in range(3)]
    old_cancelled = finished(old, State.CANCELLED)
    new_done = finished(api, State.COMPLETED)
    result = cli("purge", "--status", "completed", "--older-than", "7d")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "purged 3 COMPLETED job(s) finished more than 7d ago\n"
    for job in old_done:
        with pytest.raises(JobNotFound):
            api.get(job.id)
    assert api.get(old_cancelled.id).status == State.CANCELLED
    assert api.get(new_done.id).status == State.COMPLETED


def test_purge_delete_files_removes_only_purged_jobs_files_inside_the_files_dir(
    cli: Callable[..., Result], api: Queue, at: Callable[[float], Queue], tmp_path: Path
) -> None:
    files = tmp_path / "data" / "files"
    files.mkdir(parents=True)
    purged_file, kept_file = files / "old.txt", files / "new.txt"
    outside = tmp_path / "precious.txt"
    sneaky = files / ".." / ".." / "precious.txt"
    for path in (purged_file, kept_file, outside):
        path.write_text("x")
    old = at(10 * DAY)
    finished(old, State.COMPLETED, {"path": str(purged_file)})
    finished(old, State.COMPLETED, {"path": str(sneaky)})
    finished(old, State.COMPLETED, {"no": "path"})
    finished(api, State.COMPLETED, {"path": str(kept_file)})
    result = cli(
        "purge",
        "--status",
        "COMPLETED",
        "--older-than",
        "1w",
        "--delete-files",
        "--files-dir",
        str(files),
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "purged": 3,
        "status": "COMPLETED",
        "files_deleted": 1,
        "files_outside_dir": 1,
        "files_invalid_path": 0,
    }
    assert result.stderr.startswith("warning: kept 1 file(s) outside")
    assert not purged_file.exists()
    assert kept_file.exists() and outside.exists()


def test_purge_delete_files_counts_as_outside_only_real_paths_and_invalid_ones_apart(
    cli: Callable[..., Result], at: Callable[[float], Queue], tmp_path: Path
) -> None:
    """The root, the files directory itself, a NUL byte, an empty or non-text path are no
    file anyone kept: they are counted as invalid, not as files kept outside."""
    files = tmp_path / "data" / "files"
    files.mkdir(parents=True)
    inside, outside = files / "old.txt", tmp_path / "precious.txt"
    for path in (inside, outside):
        path.write_text("x")
    old = at(10 * DAY)
    invalid: list[Any] = ["/", str(files), f"{files}/", "a\x00b", f"{files}/x\x00.txt", "", 12]
    for path in [str(inside), str(outside), str(files / ".." / "precious.txt"), *invalid]:
        finished(old, State.COMPLETED, {"path": path})
    args = ["purge", "--status", "COMPLETED", "--older-than", "1w", "--delete-files"]
    result = cli(*args, "--files-dir", str(files), "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "purged": 10,
        "status": "COMPLETED",
        "files_deleted": 1,
        "files_outside_dir": 2,
        "files_invalid_path": 7,
    }
    assert result.stderr.splitlines() == [
        f"warning: kept 2 file(s) outside {files}",
        "warning: skipped 7 invalid path(s) (empty, NUL byte, not text, or a directory)",
    ]
    assert not inside.exists() and outside.exists() and files.is_dir()


def test_purge_refuses_a_bad_duration_and_deletes_nothing(
    cli: Callable[..., Result], at: Callable[[float], Queue], api: Queue
) -> None:
    job = finished(at(10 * DAY), State.COMPLETED)
    for bad in ("7x", "d7", "-1d", "seven days", ""):
        assert_one_error(
            cli("purge", "--status", "COMPLETED", "--older-than", bad), says="not a duration"
        )
    assert api.get(job.id).status == State.COMPLETED


def test_purge_refuses_unfinished_and_unknown_states(cli: Callable[..., Result]) -> None:
    result = cli("purge", "--status", "PENDING", "--older-than", "1d")
    assert_one_error(result, says="purge removes finished jobs only")
    assert_one_error(cli("purge", "--status", "old", "--older-than", "1d"), says="unknown state")


def test_purge_without_its_required_options_is_a_usage_error(cli: Callable[..., Result]) -> None:
    assert_usage_error(cli("purge", "--status", "COMPLETED"))
    assert_usage_error(cli("purge", "--older-than", "7d"))


# -- helpers and help ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("12h", 43200),
        ("7d", 7 * 86400),
        ("2w", 14 * 86400),
        ("90", 90),
        ("1.5h", 5400),
        ("0s", 0),
        (" 7D ", 7 * 86400),
    ],
)
def test_durations_read_a_number_and_a_unit(text: str, seconds: float) -> None:
    assert parse_duration(text, what="x") == seconds


@pytest.mark.parametrize("text", ["", "7x", "d", "1d2h", "-5m", "1e3s", "99999w"])
def test_bad_durations_are_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(QueueError, match="x '"):
        parse_duration(text, what="x")


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "-"), (0, "0s"), (59.9, "59s"), (60, "1m"), (250, "4m 10s"), (7500, "2h 5m")],
)
def test_ages_are_shown_in_the_two_largest_units(seconds: float | None, shown: str) -> None:
    assert format_age(seconds) == shown
    assert format_age(3 * 86400 + 4 * 3600 + 5) == "3d 4h"


def test_help_shows_the_environment_variables_of_options() -> None:
    assert "PERSISTQ_URL" in runner.invoke(app, ["--help"]).stdout
    enqueue_help = runner.invoke(app, ["enqueue", "--help"]).stdout
    assert "PERSISTQ_QUEUE" in enqueue_help and "PERSISTQ_MAX_ATTEMPTS" in enqueue_help
    assert "PERSISTQ_FILES_DIR" in runner.invoke(app, ["purge", "--help"]).stdout


def test_every_spec_command_is_registered() -> None:
    listing = runner.invoke(app, ["--help"]).stdout
    for name in [
        "init",
        "check",
        "enqueue",
        "jobs",
        "show",
        "events",
        "resubmit",
        "cancel",
        "fail",
        "stats",
        "queues",
        "dlq",
        "recover",
        "purge",
    ]:
        assert f"  {name} " in listing, name


# -- real subprocesses -----------------------------------------------------------------------


def persistq_cmd(
    url: str,
    *args: str,
    stdin: str | bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """``python -m persistq --url URL ARGS`` with no PERSISTQ_* from the developer's shell
    (``env`` adds some). An argument is passed as the bytes ``os.fsencode`` makes of it, so
    ``os.fsdecode(b"\\xff")`` reaches the command as the byte 0xFF."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PERSISTQ_")}
    proc = subprocess.run(
        [sys.executable, "-m", "persistq", "--url", url, *args],
        input=stdin.encode() if isinstance(stdin, str) else stdin,
        capture_output=True,
        env={**clean, **(env or {})},
        timeout=timeout,
        check=False,
    )
    return subprocess.CompletedProcess(
        proc.args,
        proc.returncode,
        proc.stdout.decode(errors="backslashreplace"),
        proc.stderr.decode(errors="backslashreplace"),
    )


def assert_process_error(proc: subprocess.CompletedProcess[str], code: int, says: str) -> None:
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    assert says in proc.stderr


def test_process_enqueue_prints_the_id_on_stdout_and_exits_0(sqlite_url: str, api: Queue) -> None:
    proc = persistq_cmd(sqlite_url, "enqueue", '{"path": "data/files/x.txt"}', "--queue", "files")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.strip().isdigit()
    assert api.get(int(proc.stdout)).payload == {"path": "data/files/x.txt"}


def test_process_errors_are_exactly_one_stderr_line_with_exit_1(
    sqlite_url: str, api: Queue
) -> None:
    for args, says in (
        (["show", "12345"], "error: job 12345 not found"),
        (["enqueue", "{oops"], "error: PAYLOAD_JSON is not valid JSON"),
        (["jobs", "--status", "NOPE"], "error: unknown state 'NOPE'"),
        (["purge", "--status", "COMPLETED", "--older-than", "soon"], "error: --older-than"),
    ):
        proc = persistq_cmd(sqlite_url, *args)
        assert_process_error(proc, 1, says)
        assert len(proc.stderr.splitlines()) == 1, proc.stderr
        assert proc.stdout == ""


def test_process_partial_failure_processes_the_rest_and_exits_1(
    sqlite_url: str, api: Queue
) -> None:
    job = api.enqueue({"n": 1})
    proc = persistq_cmd(sqlite_url, "cancel", "999", str(job.id))
    assert_process_error(proc, 1, "error: job 999 not found")
    assert proc.stdout == f"job {job.id}: CANCELLED\n"
    assert api.get(job.id).status == State.CANCELLED


def test_process_usage_error_exits_2_without_a_traceback(sqlite_url: str) -> None:
    for args in (["show", "not-a-number"], ["no-such-command"]):
        proc = persistq_cmd(sqlite_url, *args)
        assert_process_error(proc, 2, "--help`)")
        assert len(proc.stderr.splitlines()) == 1, proc.stderr


def test_process_bulk_enqueue_from_stdin_and_json_output_parses(
    sqlite_url: str, api: Queue
) -> None:
    lines = "".join(f"[{n}]\n" for n in range(1500))
    proc = persistq_cmd(sqlite_url, "enqueue", "--file", "-", "--json", stdin=lines)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert len(json.loads(proc.stdout)) == 1500
    stats = json.loads(persistq_cmd(sqlite_url, "stats", "--json").stdout)
    assert stats["queues"]["default"]["PENDING"] == 1500


def assert_one_line(proc: subprocess.CompletedProcess[str], code: int, says: str) -> None:
    """Exit ``code`` with exactly one stderr line, ``error: ...`` saying ``says``."""
    assert_process_error(proc, code, says)
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("error: "), proc.stderr


def pending(url: str) -> int:
    with persistq.connect(url) as q:
        return sum(row["PENDING"] for row in q.stats()["queues"].values())


# Unencodable text: lone surrogates come from JSON escapes and from argv bytes that are not
# UTF-8 (Python decodes those to surrogates); each used to end in a UnicodeEncodeError
# traceback from inside the write.


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["enqueue", '"\\ud800"'], "payload is not valid Unicode: lone surrogate '\\ud800'"),
        (["enqueue", '{"k": ["x\\udcff"]}'], "payload is not valid Unicode"),
        (["enqueue", "{}", "--key", os.fsdecode(b"\xff")], "key cannot be stored: '\\udcff'"),
        (["enqueue", "{}", "--queue", os.fsdecode(b"q\xff")], "invalid queue name"),
        (["queues", "create", os.fsdecode(b"\xff")], "invalid queue name"),
    ],
)
def test_process_unencodable_text_is_one_error_line_and_stores_nothing(
    sqlite_url: str, api: Queue, args: list[str], says: str
) -> None:
    assert_one_line(persistq_cmd(sqlite_url, *args), 1, says)
    assert api.jobs() == [] and api.queues() == []


def test_process_fail_with_an_unencodable_error_text_changes_nothing(
    sqlite_url: str, api: Queue
) -> None:
    job = api.enqueue({"n": 1})
    proc = persistq_cmd(sqlite_url, "fail", str(job.id), "--error", os.fsdecode(b"bad \xff"))
    assert_one_line(proc, 1, "error cannot be stored")
    assert api.get(job.id).status == State.PENDING


def damaged(tmp_path: Path) -> str:
    """A persistq database whose header was overwritten: SQLite cannot open it."""
    path = tmp_path / "damaged.db"
    with persistq.connect(f"sqlite:///{path}") as q:
        q.enqueue({"n": 1})
    with path.open("r+b") as handle:
        handle.write(b"garbage garbage!")
    return f"sqlite:///{path}"


@pytest.mark.parametrize(
    "args",
    [
        ["api", "--port", "1"],  # the database is opened first: no port is ever bound
        ["ui", "ops", "--port", "1"],
        ["ui", "manager", "--port", "1"],
        ["worker", "--handler", "persistq.tasks.files:stamp_file"],
        ["stats"],
    ],
)
def test_process_on_a_damaged_database_is_one_error_line_with_exit_1(
    tmp_path: Path, args: list[str]
) -> None:
    env = {"PERSISTQ_API_TOKEN": "a-token-of-enough-characters", "PERSISTQ_ADMIN_PASSWORD": "pw"}
    proc = persistq_cmd(damaged(tmp_path), *args, env=env, timeout=30)
    assert_one_line(proc, 1, "the database file is damaged or not a database")


# enqueue --file checks every line before the first commit: a bad line anywhere stores
# nothing and is named by its line number.


def jsonl(tmp_path: Path, lines: list[bytes]) -> Path:
    path = tmp_path / "jobs.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (b"NaN", "jobs.jsonl:1500: payload is not JSON"),  # parses, but JSON cannot hold it
        (b'{"n": ', "jobs.jsonl:1500: not valid JSON: Expecting value (column 7)"),
        (b'"\\ud800"', "jobs.jsonl:1500: payload is not valid Unicode: lone surrogate"),
        (b'{"n": "\xff"}', "jobs.jsonl:1500: not UTF-8: byte 0xff at column 8"),
    ],
)
def test_process_enqueue_file_with_a_bad_line_stores_nothing_and_names_the_line(
    sqlite_url: str, tmp_path: Path, bad: bytes, says: str
) -> None:
    persistq.connect(sqlite_url).close()  # `persistq init`
    lines = [b'{"n": %d}' % n for n in range(2000)]
    lines[1499] = bad
    proc = persistq_cmd(sqlite_url, "enqueue", "--file", str(jsonl(tmp_path, lines)))
    assert_one_line(proc, 1, says)
    assert proc.stdout == ""
    assert pending(sqlite_url) == 0


def test_process_enqueue_file_from_stdin_names_the_line_of_a_byte_that_is_not_utf8(
    sqlite_url: str,
) -> None:
    persistq.connect(sqlite_url).close()  # `persistq init`
    proc = persistq_cmd(sqlite_url, "enqueue", "--file", "-", stdin=b"1\n\n\xff\n")
    assert_one_line(proc, 1, "stdin:3: not UTF-8: byte 0xff at column 1")
    assert pending(sqlite_url) == 0


def test_process_enqueue_file_stores_every_line_skipping_blank_ones(
    sqlite_url: str, tmp_path: Path, api: Queue
) -> None:
    lines = [b'{"n": %d, "text": "h\xc3\xa9"}' % n for n in range(2500)]
    lines[10:10] = [b"", b"   \t"]
    path = jsonl(tmp_path, [b"\xef\xbb\xbf" + lines[0], *lines[1:]])  # a BOM is allowed
    proc = persistq_cmd(sqlite_url, "enqueue", "--file", str(path), "--queue", "bulk")
    assert (proc.returncode, proc.stderr, proc.stdout) == (0, "", "2500\n")
    stored = api.jobs(queue="bulk", limit=2500)
    assert sorted(job.payload["n"] for job in stored) == list(range(2500))
    assert {job.payload["text"] for job in stored} == {"hé"}


def test_process_enqueue_file_with_bad_options_stores_nothing(
    sqlite_url: str, tmp_path: Path
) -> None:
    persistq.connect(sqlite_url).close()  # `persistq init`
    path = jsonl(tmp_path, [b"1", b"2"])
    proc = persistq_cmd(sqlite_url, "enqueue", "--file", str(path), "--queue", "bad name")
    assert_one_line(proc, 1, "error: invalid queue name 'bad name'")
    assert pending(sqlite_url) == 0


# Bad worker and producer options stop the command at start (exit 2), before it touches the
# database: they used to start and then log a failed claim or enqueue every second, forever.


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--queue", "bad name"], "error: invalid queue name 'bad name'"),
        (["--queue", "files", "--queue", ""], "error: invalid queue name ''"),
        (["--worker-id", os.fsdecode(b"w\xff")], "error: worker id cannot be stored"),
        (["--worker-id", "w" * 256], "error: worker id must be a string of 1-255 characters"),
        (["--lease", "inf"], "error: lease must be between"),
        (["--grace", "inf"], "error: grace must be between"),
        (["--sweep-every", "inf"], "error: sweep interval must be between"),
        (["--handler", "no_such_module_for_persistq_tests:handle"], "cannot load handler"),
        (["--handler", "persistq.tasks.files:no_such_function"], "cannot load handler"),
        (["--handler", "persistq.tasks.files"], "must look like package.module:function"),
        (["--handler", "persistq.worker:MAX_CONCURRENCY"], "is not callable"),
    ],
)
def test_process_worker_with_a_bad_option_exits_2_at_start(
    sqlite_url: str, api: Queue, args: list[str], says: str
) -> None:
    job = api.enqueue({"n": 1})
    if "--handler" not in args:
        args = [*args, "--handler", "persistq.tasks.files:stamp_file"]
    proc = persistq_cmd(sqlite_url, "worker", *args, timeout=10)
    assert_one_line(proc, 2, says)
    assert api.get(job.id).status == State.PENDING
    assert api.workers() == []


def test_process_worker_whose_handler_module_raises_on_import_exits_2(
    sqlite_url: str, api: Queue, tmp_path: Path
) -> None:
    (tmp_path / "broken_handler_module.py").write_text("raise RuntimeError('half deployed')\n")
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    proc = persistq_cmd(
        sqlite_url,
        "worker",
        "--handler",
        "broken_handler_module:handle",
        env={"PYTHONPATH": path},
        timeout=10,
    )
    assert_one_line(proc, 2, "RuntimeError('half deployed')")


@pytest.mark.parametrize("args", [["--concurrency", "0"], ["--lease", "0"], ["--grace", "-1"]])
def test_process_worker_with_an_option_out_of_range_is_a_usage_error(
    sqlite_url: str, args: list[str]
) -> None:
    proc = persistq_cmd(sqlite_url, "worker", "--handler", "persistq.tasks.files:stamp_file", *args)
    assert_process_error(proc, 2, "Invalid value for")


def test_process_produce_with_a_bad_queue_name_exits_2_at_start(
    sqlite_url: str, api: Queue, tmp_path: Path
) -> None:
    files = tmp_path / "files"
    proc = persistq_cmd(
        sqlite_url,
        "produce",
        "--queue",
        "bad name",
        "--every",
        "0",
        "--dir",
        str(files),
        timeout=10,
    )
    assert_one_line(proc, 2, "error: invalid queue name 'bad name'")
    assert api.jobs() == [] and not files.exists()
