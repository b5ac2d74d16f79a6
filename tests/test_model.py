"""The model: states, named sets, JSON rendering and settings."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from persistq import Job, Queue, QueueError, State
from persistq.cli.system import resolve_url
from persistq.config import Settings, api_tokens, split_sqlite_url
from persistq.model import CANCELLABLE, DEAD_LETTER, RESUBMITTABLE, TERMINAL


def test_states_are_the_six_of_the_spec() -> None:
    assert [s.value for s in State] == [
        "PENDING",
        "PROCESSING",
        "COMPLETED",
        "FAILED",
        "UNPROCESSABLE",
        "CANCELLED",
    ]
    assert {State.FAILED, State.UNPROCESSABLE} == DEAD_LETTER
    assert RESUBMITTABLE == TERMINAL
    assert {State.PENDING, State.PROCESSING, State.FAILED, State.UNPROCESSABLE} == CANCELLABLE


def test_job_to_dict_is_json_with_iso_times_and_no_token(queue: Queue) -> None:
    queue.enqueue({"a": 1})
    job = queue.claim(worker="w")
    assert job is not None and job.lease_token
    data = job.to_dict()
    json.dumps(data)
    assert "lease_token" not in data
    assert data["status"] == "PROCESSING"
    assert data["created_at"].endswith("+00:00")
    assert set(data) >= {
        "id",
        "queue",
        "payload",
        "status",
        "priority",
        "run_at",
        "attempts",
        "max_attempts",
        "key",
        "worker",
        "lease_expires_at",
        "last_error",
        "result",
        "created_at",
        "updated_at",
        "started_at",
        "finished_at",
    }


def test_job_from_dict_reads_back_what_to_dict_wrote(queue: Queue) -> None:
    queue.enqueue({"a": [1, 2]}, key="k", priority=5)
    job = queue.claim(worker="w")
    assert job is not None
    assert Job.from_dict(job.to_dict()) == dataclasses.replace(job, lease_token=None)
    done = queue.complete(job, {"ok": True})
    assert Job.from_dict({**done.to_dict(), "lease_token": "t"}).lease_token == "t"
    older_server = {k: v for k, v in done.to_dict().items() if k != "fence"}
    assert Job.from_dict(older_server).fence == 0


def test_settings_read_the_environment_and_arguments_win() -> None:
    env = {"PERSISTQ_LEASE_SECONDS": "12", "PERSISTQ_URL": "sqlite:///x.db"}
    settings = Settings.from_env(env, lease_seconds=None, backoff_base_seconds=0)
    assert settings.lease_seconds == 12
    assert settings.url == "sqlite:///x.db"
    assert settings.backoff_base_seconds == 0
    assert Settings.from_env({}, lease_seconds=5).lease_seconds == 5


def test_a_malformed_setting_is_a_clear_error() -> None:
    with pytest.raises(QueueError, match="PERSISTQ_LEASE_SECONDS='soon'"):
        Settings.from_env({"PERSISTQ_LEASE_SECONDS": "soon"})


def test_one_parser_reads_sqlite_urls_for_the_backend_the_ui_password_and_up(
    tmp_path: Path,
) -> None:
    assert split_sqlite_url("sqlite:///data/q.db?synchronous=normal") == (
        "data/q.db",
        "synchronous=normal",
    )
    assert split_sqlite_url("sqlite:////abs/q.db") == ("/abs/q.db", "")
    assert split_sqlite_url("postgresql://u@h/db") is None
    # `persistq up` anchors a relative file under its home and keeps the options.
    assert resolve_url(tmp_path, "sqlite:///data/q.db?synchronous=normal") == (
        f"sqlite:///{tmp_path}/data/q.db?synchronous=normal"
    )
    assert resolve_url(tmp_path, "sqlite:////abs/q.db") == "sqlite:////abs/q.db"


def test_api_tokens_are_split_once_for_the_server_and_the_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert api_tokens(" new-token , old-token,, ") == ["new-token", "old-token"]
    monkeypatch.setenv("PERSISTQ_API_TOKEN", "from-the-environment,older")
    assert api_tokens() == ["from-the-environment", "older"]
    assert api_tokens("") == []
