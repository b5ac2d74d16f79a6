"""What generated clients rely on: stable operationIds, declared bodies, and the enqueue
status codes (201 created, 200 an existing idempotency key)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

import persistq
from persistq.api import create_app
from persistq.config import Settings

TOKEN = "contract-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

#: Every route's operationId: a generated client names its functions after these, so a
#: rename breaks every client. Change this list only on purpose.
OPERATION_IDS = {
    "cancel_job",
    "cancel_matching",
    "check",
    "claim_job",
    "claim_jobs",
    "clock",
    "complete_job",
    "complete_jobs",
    "count_jobs",
    "crashed_job",
    "counters",
    "create_queue",
    "delete_queue",
    "enqueue_job",
    "enqueue_jobs",
    "fail_job",
    "failures",
    "finished",
    "get_job",
    "healthz",
    "heartbeat_job",
    "heartbeat_jobs",
    "job_events",
    "list_jobs",
    "list_queues",
    "list_workers",
    "metrics",
    "pause_queue",
    "prune_workers",
    "recover",
    "release_job",
    "resubmit_job",
    "resubmit_matching",
    "resume_queue",
    "search_jobs",
    "set_queue_limits",
    "stats",
    "storage",
    "throughput",
    "worker_gone",
    "worker_seen",
}


@pytest.fixture
def client(sqlite_url: str) -> Iterator[TestClient]:
    persistq.connect(sqlite_url).close()
    app = create_app(Settings(url=sqlite_url), tokens=[TOKEN], health_check_seconds=0)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def operations(client: TestClient) -> list[tuple[str, str, dict]]:  # type: ignore[type-arg]
    schema = client.get("/openapi.json").json()
    return [
        (method, path, op) for path, item in schema["paths"].items() for method, op in item.items()
    ]


def test_every_route_has_its_pinned_operation_id(client: TestClient) -> None:
    found = [op.get("operationId") for _, _, op in operations(client)]
    assert len(found) == len(set(found)), "duplicate operationIds"
    assert set(found) == OPERATION_IDS


def test_text_and_health_bodies_are_declared(client: TestClient) -> None:
    ops = {op["operationId"]: op for _, _, op in operations(client)}
    content = ops["metrics"]["responses"]["200"]["content"]
    assert list(content) == ["text/plain; version=0.0.4; charset=utf-8"]
    assert content["text/plain; version=0.0.4; charset=utf-8"]["schema"]["type"] == "string"
    served = client.get("/metrics", headers=AUTH).headers["content-type"]
    assert served == "text/plain; version=0.0.4; charset=utf-8"
    for status in ("200", "503"):
        body = ops["healthz"]["responses"][status]["content"]["application/json"]
        assert body["schema"] == {"$ref": "#/components/schemas/HealthOut"}


def test_enqueue_is_201_when_created_and_200_for_an_existing_key(client: TestClient) -> None:
    first = client.post("/queues/k/jobs", json={"payload": 1, "key": "once"}, headers=AUTH)
    assert first.status_code == 201
    again = client.post("/queues/k/jobs", json={"payload": 2, "key": "once"}, headers=AUTH)
    assert again.status_code == 200
    assert again.json() == first.json()  # the existing job, unchanged
    header = client.post(
        "/queues/k/jobs", json={"payload": 3}, headers={**AUTH, "Idempotency-Key": "once"}
    )
    assert (header.status_code, header.json()["id"]) == (200, first.json()["id"])
    plain = client.post("/queues/k/jobs", json={"payload": 4}, headers=AUTH)
    assert plain.status_code == 201 and plain.json()["id"] != first.json()["id"]
    other_queue = client.post("/queues/k2/jobs", json={"payload": 5, "key": "once"}, headers=AUTH)
    assert other_queue.status_code == 201
    batch = client.post(
        "/queues/k/jobs/batch", json={"jobs": [{"payload": 6, "key": "once"}]}, headers=AUTH
    )
    assert batch.status_code == 201  # a batch is 201 as a whole (documented)
    assert batch.json()[0]["id"] == first.json()["id"]
    jobs = client.get("/jobs?queue=k", headers=AUTH).json()
    assert len(jobs) == 2


def test_enqueue_keyed_says_whether_it_created(sqlite_url: str) -> None:
    with persistq.connect(sqlite_url) as q:
        job, created = q.enqueue_keyed(1, key="a")
        again, created_again = q.enqueue_keyed(2, key="a")
        assert (created, created_again, again.id) == (True, False, job.id)
        assert q.enqueue_keyed(3)[1] is True
