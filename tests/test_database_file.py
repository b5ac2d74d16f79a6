"""The SQLite database file itself (issue 9, points 4 and 10).

- A process notices when the file it has open is no longer the one at its path (deleted,
  or replaced by another file): every call raises ``StorageUnavailable`` instead of writing
  into an unlinked file that no one will ever read again. The library, the REST API, a
  worker process and the CLI are each tried for real.
- Only ``persistq init`` (and the library's ``connect(create=True)``, its default) create a
  database; every other command on a missing file says so in one line, exits 1 and creates
  nothing, not even a directory.
- New files and directories are owner and group only, whatever the umask grants beyond
  that (the README promises umask 027).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

import persistq
from apiserver import TOKEN, ApiServer
from handlers import log_lines
from persistq import StorageUnavailable
from persistq.cli.main import app
from procs import WorkerProcess

runner = CliRunner()
GONE = "deleted or replaced"


def remove_database(db: Path) -> None:
    """What the operator did: ``rm queue.db*``."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def no_database_line(db: Path) -> str:
    return f"error: no database at {db}; run `persistq init`"


@pytest.fixture
def group_umask() -> Iterator[None]:
    """The common default umask (022), which alone would leave new files world-readable."""
    old = os.umask(0o022)
    yield
    os.umask(old)


# -- the library -------------------------------------------------------------------------------


def test_a_deleted_database_makes_every_call_raise_storage_unavailable_and_creates_nothing(
    tmp_path: Path,
) -> None:
    db = tmp_path / "queue.db"
    with persistq.connect(f"sqlite:///{db}") as q:
        job = q.enqueue({"n": 1})
        remove_database(db)
        for call in (
            lambda: q.enqueue({"n": 2}),
            lambda: q.enqueue_many([{"n": 3}]),
            lambda: q.claim(worker="w"),
            lambda: q.get(job.id),
            lambda: q.stats(),
        ):
            with pytest.raises(StorageUnavailable, match=GONE) as caught:
                call()
            assert str(db) in str(caught.value)
        assert q.check()["ok"] is False
    assert not db.exists()


def test_a_replaced_database_file_is_refused_and_the_new_file_gets_nothing(
    tmp_path: Path,
) -> None:
    db = tmp_path / "queue.db"
    url = f"sqlite:///{db}"
    with persistq.connect(url) as old:
        claimed = old.enqueue({"n": 1})
        job = old.claim(worker="w")
        assert job is not None and job.id == claimed.id
        remove_database(db)
        with persistq.connect(url) as new:  # someone ran `persistq init` meanwhile
            with pytest.raises(StorageUnavailable, match=GONE):
                old.complete(job)
            with pytest.raises(StorageUnavailable, match=GONE):
                old.enqueue({"n": 2})
            assert new.jobs() == []


def test_connect_without_create_refuses_a_missing_file_and_creates_no_directory(
    tmp_path: Path,
) -> None:
    db = tmp_path / "missing" / "deeper" / "queue.db"
    with pytest.raises(StorageUnavailable, match="no database at") as caught:
        persistq.connect(f"sqlite:///{db}", create=False)
    assert str(db) in str(caught.value)
    assert not (tmp_path / "missing").exists()


def test_connect_without_create_refuses_a_database_persistq_never_set_up(
    backend_url: str,
) -> None:
    """An empty file (or an empty PostgreSQL schema) is not a queue either: nothing is
    written into it until it is created on purpose."""
    if backend_url.startswith("sqlite:///"):
        Path(backend_url.removeprefix("sqlite:///")).touch()
    for _ in range(2):  # the refusal left it as it was
        with pytest.raises(StorageUnavailable, match="no database at"):
            persistq.connect(backend_url, create=False)
    persistq.connect(backend_url).close()  # created on purpose
    with persistq.connect(backend_url, create=False) as q:
        assert q.enqueue({"n": 1}).id == 1


def test_new_database_files_and_directories_are_owner_and_group_only(
    tmp_path: Path, group_umask: None
) -> None:
    db = tmp_path / "new" / "deeper" / "queue.db"
    with persistq.connect(f"sqlite:///{db}") as q:
        q.enqueue({"n": 1})  # the WAL and shared-memory files exist while it is open
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm"), db.parent, db.parent.parent):
            assert path.exists(), path
            mode = path.stat().st_mode & 0o777
            assert mode & 0o027 == 0, f"{path} is mode {mode:o}"


# -- the CLI -----------------------------------------------------------------------------------


def persistq_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("PERSISTQ_")}
    return subprocess.run(
        [sys.executable, "-m", "persistq", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**child_env, **(env or {})},
        check=False,
    )


def assert_one_line(result: Result | subprocess.CompletedProcess[str], line: str) -> None:
    code = result.exit_code if isinstance(result, Result) else result.returncode
    assert code == 1, (result.stdout, result.stderr)
    assert result.stderr.splitlines() == [line], result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_stats_on_a_url_under_missing_directories_fails_in_one_line_and_creates_nothing(
    tmp_path: Path,
) -> None:
    db = tmp_path / "nonexistent" / "x" / "y.db"
    result = persistq_cli("--url", f"sqlite:///{db}", "stats")
    assert_one_line(result, no_database_line(db))
    assert not (tmp_path / "nonexistent").exists()


COMMANDS = {
    "stats": ["stats"],
    "jobs": ["jobs"],
    "show": ["show", "1"],
    "enqueue": ["enqueue", '{"n": 1}'],
    "check": ["check"],
    "recover": ["recover"],
    "queues": ["queues", "list"],
    "dlq": ["dlq", "list"],
    "worker": ["worker", "--handler", "handlers:act"],
    "produce": ["produce", "--count", "1", "--every", "0"],
    "api": ["api", "--port", "1"],
    "ui": ["ui", "ops", "--port", "1"],
}


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_a_command_on_a_missing_database_fails_in_one_line_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # produce writes under ./data/files by default
    monkeypatch.setenv("PERSISTQ_API_TOKEN", TOKEN)
    db = tmp_path / "data" / "queue.db"
    result = runner.invoke(app, ["--url", f"sqlite:///{db}", *command])
    assert_one_line(result, no_database_line(db))
    assert list(tmp_path.iterdir()) == []


def test_after_the_database_is_deleted_cli_commands_refuse_and_do_not_reuse_ids(
    tmp_path: Path,
) -> None:
    db = tmp_path / "queue.db"
    url = f"sqlite:///{db}"
    assert persistq_cli("--url", url, "init").returncode == 0
    assert persistq_cli("--url", url, "enqueue", '{"n": 1}').stdout == "1\n"
    remove_database(db)
    for command in (["enqueue", '{"n": 2}'], ["stats"], ["jobs"]):
        assert_one_line(persistq_cli("--url", url, *command), no_database_line(db))
        assert not db.exists()
    assert persistq_cli("--url", url, "init").returncode == 0  # asked for: a new database


def test_init_creates_the_database_and_its_directories_owner_and_group_only(
    tmp_path: Path, group_umask: None
) -> None:
    db = tmp_path / "new" / "deeper" / "queue.db"
    result = persistq_cli("--url", f"sqlite:///{db}", "init")
    assert result.returncode == 0, result.stderr
    for path in (db, db.parent, db.parent.parent):
        mode = path.stat().st_mode & 0o777
        assert mode & 0o027 == 0, f"{path} is mode {mode:o}"


# -- the REST API and a worker, as real processes ------------------------------------------------


def test_after_the_database_is_deleted_the_api_answers_503_and_healthz_turns_503(
    tmp_path: Path,
) -> None:
    server = ApiServer(tmp_path)  # it creates its database first, as `persistq init` does
    db = tmp_path / "queue.db"
    with server, server.client() as http:
        assert http.post("/queues/q/jobs", json={"payload": {"n": 0}}).status_code == 201
        remove_database(db)
        for n in range(1, 4):
            answer = http.post("/queues/q/jobs", json={"payload": {"n": n}})
            assert answer.status_code == 503, answer.text
            assert GONE in answer.json()["detail"]
        answer = http.get("/jobs/1")
        assert answer.status_code == 503 and GONE in answer.json()["detail"]

        deadline = time.monotonic() + 10  # /healthz caches its check for a few seconds
        while (health := httpx.get(f"{server.url}/healthz")).status_code == 200:
            assert time.monotonic() < deadline, "/healthz still says ok"
            time.sleep(0.2)
        assert health.status_code == 503
        assert GONE in health.json()["detail"]
    assert not db.exists()
    assert "Traceback" not in server.output()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.slow
def test_a_worker_whose_database_is_deleted_completes_nothing_and_exits_1(
    tmp_path: Path,
) -> None:
    db = tmp_path / "queue.db"
    url = f"sqlite:///{db}"
    log = tmp_path / "handler.log"
    with persistq.connect(url) as q:
        job = q.enqueue({"sleep": 1, "log": str(log)})
        q.enqueue({"log": str(log)})  # would be claimed next, were the worker to go on
    worker = WorkerProcess(tmp_path, "w", url, timeout=20)
    try:
        wait_until(lambda: bool(log_lines(log, "started")), "the job to start")
        remove_database(db)
        assert worker.wait() == 1, worker.log()
    finally:
        worker.kill()
    output = worker.log()
    assert GONE in output
    assert "event=completed" not in output
    assert log_lines(log, "started") == [[job.id, 1, worker.pid]]  # the second never ran
    assert "Traceback" not in output
    assert not db.exists()
