"""The enqueue fast path (api/fastpath.py) answers as the FastAPI route does.

A plain enqueue (``Content-Type: application/json`` exactly, no Idempotency-Key header) is
served by ``FastEnqueue``; the same request with ``; charset=utf-8`` goes to the FastAPI
route. Each pair below must get the same status and body (ids and times aside)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient

import persistq
from persistq.api import create_app
from persistq.api.deps import get_queue
from persistq.config import Settings

TOKEN = "fast-path-token-0123456789"
FAST = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
ROUTE = {**FAST, "Content-Type": "application/json; charset=utf-8"}
VOLATILE = ("id", "created_at", "updated_at", "run_at")


@pytest.fixture
def client(sqlite_url: str) -> Iterator[TestClient]:
    persistq.connect(sqlite_url).close()
    settings = Settings(url=sqlite_url, max_payload_bytes=1000)
    app = create_app(settings, tokens=[TOKEN], max_body_bytes=4096, health_check_seconds=0)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def answer(client: TestClient, headers: dict[str, str], queue: str, raw: bytes) -> Any:
    response = client.post(f"/queues/{queue}/jobs", content=raw, headers=headers)
    body = response.json()
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in VOLATILE}
    return response.status_code, body


@pytest.mark.parametrize(
    "raw",
    [
        b'{"payload": {"a": [1, 2.5, null, "x"]}}',
        b'{"payload": 1, "priority": 7, "delay": 60, "max_attempts": 5, "timeout": 9.5}',
        b'{"payload": 1, "run_at": "2030-01-01T00:00:00Z"}',
        b'{"payload": 1, "run_at": "2030-01-01T00:00:00"}',  # no offset: the queue refuses
        b'{"payload": 1, "delay": 1, "run_at": "2030-01-01T00:00:00Z"}',
        b'{"payload": "' + b"x" * 2000 + b'"}',  # over max_payload_bytes: the library's 413
        b'{"payload": "' + b"x" * 5000 + b'"}',  # over max_body_bytes: BodyLimit's 413
        b'{"payload": "\\ud800"}',  # valid for the model, not for the queue
        b'{"payload":' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"payload": 1, "max_attempt": 3}',
        b'{"payload": 1, "priority": "5"}',
        b'{"payload": 1,}',
        b"\xff{}",
        b"[]",
        b"",
    ],
)
def test_a_request_gets_the_routes_answer(client: TestClient, raw: bytes) -> None:
    assert answer(client, FAST, "q", raw) == answer(client, ROUTE, "q", raw)


def test_a_key_gets_the_routes_answer(client: TestClient) -> None:
    for queue, headers in (("fast", FAST), ("route", ROUTE)):
        raw = b'{"payload": 1, "key": "k1"}'
        first, again = answer(client, headers, queue, raw), answer(client, headers, queue, raw)
        assert first[0] == 201
        assert again[0] == 200
        assert again[1] == {**first[1], "queue": queue}
    fast = client.get("/jobs", params={"queue": "fast"}, headers=FAST).json()
    assert [job["key"] for job in fast] == ["k1"]


def test_bad_queue_names_and_no_token_get_the_routes_answer(client: TestClient) -> None:
    for queue in ("-bad", "a" * 65, "a%0A"):
        assert answer(client, FAST, queue, b'{"payload": 1}')[0] == 422
    response = client.post(
        "/queues/q/jobs",
        content=b'{"payload": 1}',
        headers={**FAST, "Authorization": "Bearer nope-nope-nope-nope"},
    )
    assert response.status_code == 401


def test_the_fast_path_serves_a_plain_enqueue(client: TestClient) -> None:
    """What makes the pairs above compare two paths: with the route's queue dependency
    broken, only the fast path can still store a job."""

    def broken() -> None:
        raise HTTPException(418, "the FastAPI route ran")

    client.app.dependency_overrides[get_queue] = broken  # type: ignore[attr-defined]
    raw = b'{"payload": 1}'
    assert answer(client, FAST, "fast", raw)[0] == 201
    assert answer(client, ROUTE, "route", raw)[0] == 418
    with_header = {**FAST, "Idempotency-Key": "k"}
    assert answer(client, with_header, "fast", raw)[0] == 418
