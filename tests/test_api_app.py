"""The API app in-process (FastAPI's TestClient): the input edge cases that must be a 4xx,
health reporting, and metrics that count work done by other processes."""

from __future__ import annotations

import importlib.metadata
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


@pytest.mark.parametrize(
    ("path", "raw", "word"),
    [
        (
            "/queues/default/jobs",
            b'{"payload": {"k": ["\\udcff"]}}',
            "payload is not valid Unicode",
        ),
        ("/queues/default/jobs", b'{"payload": {"\\ud800": 1}}', "payload is not valid Unicode"),
        ("/queues/default/jobs", b'{"payload": 1, "key": "a\\u0000b"}', "key"),
        (
            "/queues/default/jobs/batch",
            b'{"jobs": [{"payload": 1}, {"payload": "\\ud800"}]}',
            "Unicode",
        ),
        ("/queues/default/claim", b'{"worker": "w\\udcff"}', "worker"),
        ("/queues/default/claim", b'{"worker": "w\\u0000"}', "worker"),
    ],
)
def test_unstorable_text_in_any_field_is_422_and_stores_nothing(
    client: TestClient, path: str, raw: bytes, word: str
) -> None:
    """A JSON escape can carry a lone surrogate or NUL that no backend can store."""
    assert post(client, "/queues/default/jobs", b'{"payload": "waiting"}')[0] == 201
    status, body = post(client, path, raw)
    assert status == 422, body
    assert word in body["detail"]
    assert body["code"] == "invalid"
    jobs = client.get("/jobs", headers=AUTH).json()
    assert [(j["payload"], j["status"]) for j in jobs] == [("waiting", "PENDING")]


def test_an_unstorable_result_or_error_is_422_and_the_job_stays_held(client: TestClient) -> None:
    post(client, "/queues/default/jobs", b'{"payload": 1}')
    status, claimed = post(client, "/queues/default/claim", b'{"worker": "w"}')
    assert status == 200
    token = claimed["lease_token"].encode()
    for action, field in ((b"complete", b'"result": "\\ud800"'), (b"fail", b'"error": "\\udfff"')):
        raw = b'{"lease_token": "' + token + b'", ' + field + b"}"
        status, body = post(client, f"/jobs/{claimed['id']}/{action.decode()}", raw)
        assert (status, body["code"]) == (422, "invalid"), body
    job = client.get(f"/jobs/{claimed['id']}", headers=AUTH).json()
    assert (job["status"], job["result"], job["last_error"]) == ("PROCESSING", None, None)


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


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/queues/default/jobs", b'{"payload": 1, "priority": 5.0}'),
        ("/queues/default/jobs", b'{"payload": 1, "priority": "5"}'),
        ("/queues/default/jobs", b'{"payload": 1, "max_attempts": 3.0}'),
        ("/queues/default/jobs", b'{"payload": 1, "max_attempts": "3"}'),
        ("/queues/default/jobs/batch", b'{"jobs": [{"payload": 1}], "priority": 1.0}'),
        ("/queues/default/claim/batch", b'{"worker": "w", "limit": 2.0}'),
    ],
)
def test_integer_fields_refuse_floats_and_strings(
    client: TestClient, path: str, raw: bytes
) -> None:
    """Strict: 5.0 is not 5 (although JSON Schema would count it an integer), nor is "5"."""
    status, body = post(client, path, raw)
    assert status == 422, body
    assert "integer" in body["detail"], body
    assert client.get("/jobs", headers=AUTH).json() == []


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_a_body_that_is_not_utf8_is_422(client: TestClient, encoding: str) -> None:
    """RFC 8259: JSON between systems is UTF-8 (json.loads would guess UTF-16 and UTF-32)."""
    status, body = post(client, "/queues/default/jobs", '{"payload": "é"}'.encode(encoding))
    assert status == 422, body
    assert "UTF-8" in body["detail"], body
    assert client.get("/jobs", headers=AUTH).json() == []


def test_a_utf8_body_is_accepted_with_or_without_a_byte_order_mark(client: TestClient) -> None:
    for raw in ('{"payload": "é"}'.encode(), '{"payload": "é"}'.encode("utf-8-sig")):
        status, body = post(client, "/queues/default/jobs", raw)
        assert (status, body["payload"]) == (201, "é")


@pytest.mark.parametrize("given", ["+1", "01", "1_0", "%201", "1%20", "1.0", "0", "-1", "x"])
def test_a_job_id_is_canonical_decimal_else_422(client: TestClient, given: str) -> None:
    job = client.post("/queues/default/jobs", json={"payload": 1}, headers=AUTH).json()
    assert client.get(f"/jobs/{job['id']}", headers=AUTH).status_code == 200
    for method, path in (("GET", f"/jobs/{given}"), ("POST", f"/jobs/{given}/cancel")):
        response = client.request(method, path, headers=AUTH)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["code"] == "invalid"
    assert client.get(f"/jobs/{job['id']}", headers=AUTH).json()["status"] == "PENDING"


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
    assert 'persistq_jobs_enqueued_total{queue="m"} 3.0' in text
    assert 'persistq_jobs_completed_total{queue="m"} 2.0' in text
    assert 'persistq_jobs_recovered_total{queue="m"} 1.0' in text
    assert 'persistq_job_run_seconds_count{queue="m"} 2.0' in text
    assert 'persistq_jobs{queue="m",state="PENDING"} 1.0' in text


def test_core_routes_on_every_backend(backend_url: str) -> None:
    persistq.connect(backend_url).close()  # `persistq init`
    app = create_app(Settings(url=backend_url), tokens=[TOKEN])
    with TestClient(app, raise_server_exceptions=False) as http:
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


def test_the_api_reports_the_installed_version() -> None:
    assert persistq.__version__ == importlib.metadata.version("persistq")
    schema = create_app(Settings(), tokens=["x" * 16]).openapi()
    assert schema["info"]["version"] == persistq.__version__
