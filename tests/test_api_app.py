"""The API app in-process (FastAPI's TestClient): the input edge cases that must be a 4xx,
health reporting, and metrics that count work done by other processes."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import persistq
from persistq.api import create_app, metrics
from persistq.config import Settings

TOKEN = "in-process-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {**AUTH, "Content-Type": "application/json"}


@pytest.fixture
def client(sqlite_url: str) -> Iterator[TestClient]:
    persistq.connect(sqlite_url).close()  # `persistq init`: the API opens only what exists
    app = create_app(
        Settings(url=sqlite_url), tokens=[TOKEN, "old-token-0123456789"], health_check_seconds=0
    )
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def post(client: TestClient, path: str, raw: bytes) -> tuple[int, dict[str, str]]:
    response = client.post(path, content=raw, headers=JSON)
    return response.status_code, response.json()


@pytest.mark.parametrize(
    ("raw", "word"),
    [
        (b'{"payload": NaN}', "not JSON"),
        (b'{"payload": [Infinity]}', "not JSON"),
        (b'{"payload": 1, "delay": NaN}', "delay"),
        (b'{"payload": 1, "priority": 1e400}', "priority"),
        (b'{"payload": 1' + b"0" * 5000 + b"}", "not valid JSON"),
        (b'{"payload":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "not valid JSON"),
        (b'{"payload": "\\ud800"}', "Unicode"),
        (b'{"payload": 1, "key": "\\udfff"}', "key"),
        (b'{"payload": 1, "priority": true}', "priority"),
        (b'{"payload": 1, "max_attempts": 2.5}', "max_attempts"),
        (b'{"payload": 1, "key": ""}', "key"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[1, 2]", "body"),
        (b"", "required"),
    ],
)
def test_bad_bodies_are_422_with_a_reason(client: TestClient, raw: bytes, word: str) -> None:
    status, body = post(client, "/queues/default/jobs", raw)
    assert status == 422, body
    assert word in body["detail"]
    assert body["code"] == "invalid"
    assert client.get("/jobs", headers=AUTH).json() == []


def test_huge_integer_payload_within_json_limits_is_stored(client: TestClient) -> None:
    status, body = post(client, "/queues/default/jobs", b'{"payload": ' + b"9" * 4000 + b"}")
    assert status == 201
    assert body["payload"] == int("9" * 4000)


def test_deep_but_decodable_payload_round_trips(client: TestClient) -> None:
    raw = b'{"payload":' + b"[" * 600 + b"]" * 600 + b"}"
    status, body = post(client, "/queues/default/jobs", raw)
    assert status == 201
    assert client.get(f"/jobs/{body['id']}", headers=AUTH).status_code == 200


def test_wrong_content_type_is_422(client: TestClient) -> None:
    response = client.post(
        "/queues/default/jobs",
        content=b"payload=1",
        headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 422


def test_integral_floats_are_integers_as_json_schema_says(client: TestClient) -> None:
    status, body = post(client, "/queues/default/jobs", b'{"payload": 1, "priority": 3.0}')
    assert (status, body["priority"]) == (201, 3)


def test_idempotency_header_and_key_must_agree(client: TestClient) -> None:
    response = client.post(
        "/queues/default/jobs",
        json={"payload": 1, "key": "a"},
        headers={**AUTH, "Idempotency-Key": "b"},
    )
    assert response.status_code == 409
    assert response.json()["code"] == "key_conflict"


def test_every_configured_token_is_accepted(client: TestClient) -> None:
    for token in (TOKEN, "old-token-0123456789"):
        assert client.get("/stats", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.get("/stats", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
    assert client.get("/stats", headers={"Authorization": f"Bearer {TOKEN}x"}).status_code == 401


def test_healthz_says_why_the_database_is_unhealthy(client: TestClient, tmp_path: Path) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    with sqlite3.connect(tmp_path / "queue.db") as other:  # as a newer persistq would leave it
        other.execute("PRAGMA user_version = 99")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "unhealthy"
    assert "schema version 99" in response.json()["detail"]


def test_metrics_count_what_other_processes_did(client: TestClient, sqlite_url: str) -> None:
    client.get("/metrics", headers=AUTH)  # the first scrape sets the marks
    with persistq.connect(sqlite_url, lease=0.05) as other:  # another process's queue
        other.enqueue_many([1, 2, 3], queue="m")
        for _ in range(2):
            job = other.claim(queue="m", worker="elsewhere")
            assert job is not None
            other.complete(job)
        held = other.claim(queue="m", worker="elsewhere")
        assert held is not None
        time.sleep(0.1)
        assert other.recover_stalled() == 1
    settle, metrics.SETTLE_SECONDS = metrics.SETTLE_SECONDS, 0.0
    try:
        text = client.get("/metrics", headers=AUTH).text
    finally:
        metrics.SETTLE_SECONDS = settle
    assert "persistq_jobs_enqueued_total 3.0" in text
    assert 'persistq_jobs_completed_total{queue="m"} 2.0' in text
    assert 'persistq_jobs_recovered_total{queue="m"} 1.0' in text
    assert 'persistq_job_run_seconds_count{queue="m"} 2.0' in text
    assert 'persistq_jobs{queue="m",state="PENDING"} 1.0' in text


def test_core_routes_on_every_backend(backend_url: str) -> None:
    """SQLite calls the library inline, PostgreSQL from the thread pool: both answer alike."""
    persistq.connect(backend_url).close()  # `persistq init`
    app = create_app(Settings(url=backend_url), tokens=[TOKEN])
    with TestClient(app, raise_server_exceptions=False) as http:
        inline = app.state.library.inline
        assert inline == backend_url.startswith("sqlite")
        job = http.post("/queues/b/jobs", json={"payload": {"n": 1}}, headers=AUTH).json()
        leased = http.post("/queues/b/claim", json={"worker": "w"}, headers=AUTH).json()
        assert leased["id"] == job["id"]
        stale = http.post(f"/jobs/{job['id']}/complete", json={"lease_token": "x"}, headers=AUTH)
        assert stale.status_code == 409
        done = http.post(
            f"/jobs/{job['id']}/complete", json={"lease_token": leased["lease_token"]}, headers=AUTH
        )
        assert done.json()["status"] == "COMPLETED"
        assert http.post("/queues/b/claim", json={"worker": "w"}, headers=AUTH).status_code == 204
        assert http.get("/stats", headers=AUTH).json()["queues"]["b"]["COMPLETED"] == 1
        assert http.get("/jobs/999", headers=AUTH).status_code == 404
        assert "persistq_jobs" in http.get("/metrics", headers=AUTH).text
        assert http.get("/healthz").status_code == 200
