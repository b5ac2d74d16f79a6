"""The model: states, named sets, JSON rendering and settings."""

from __future__ import annotations

import json

import pytest

from persistq import Queue, QueueError, State
from persistq.config import Settings
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
