"""The REST API over real HTTP: a ``persistq api`` uvicorn process, called with httpx.

One server per module (its own SQLite file); each test uses its own queue names, so tests
do not see each other's jobs.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from apiserver import ApiServer
from persistq.api import create_app
from persistq.config import Settings


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with ApiServer(tmp_path_factory.mktemp("api")) as running:
        yield running


@pytest.fixture
def http(server: ApiServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture
def queue_name() -> str:
    return f"q-{uuid.uuid4().hex[:12]}"


def enqueue(http: httpx.Client, queue: str, **body: Any) -> dict[str, Any]:
    body.setdefault("payload", {"n": 1})
    response = http.post(f"/queues/{queue}/jobs", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def claim(http: httpx.Client, queue: str, **body: Any) -> httpx.Response:
    body.setdefault("worker", "w1")
    return http.post(f"/queues/{queue}/claim", json=body)


# -- authentication ------------------------------------------------------------------------


def protected_operations() -> list[tuple[str, str]]:
    """Every (method, path) of the OpenAPI schema but /healthz, with ids filled in."""
    schema = create_app(Settings(), tokens=["x" * 16]).openapi()
    found = []
    for path, operations in schema["paths"].items():
        for method in operations:
            if path != "/healthz":
                found.append((method.upper(), path.replace("{id}", "1").replace("{queue}", "q")))
    return found


OPERATIONS = protected_operations()


def test_every_route_but_healthz_is_in_the_list_checked_for_401() -> None:
    paths = {path for _, path in OPERATIONS}
    assert len(OPERATIONS) >= 20
    assert {"/queues/q/jobs", "/queues/q/claim", "/jobs/1/complete", "/metrics"} <= paths


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-token-0123456789", "Basic dGVzdA==", "Bearer"]
)
def test_protected_route_answers_401_without_a_valid_token(
    server: ApiServer, method: str, path: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = httpx.request(
        method, server.url + path, headers=headers, json={"payload": 1, "worker": "w"}
    )
    assert response.status_code == 401
    assert response.json() == {"detail": "missing or invalid bearer token", "code": "unauthorized"}
    assert response.headers["www-authenticate"] == "Bearer"


def test_unauthenticated_caller_cannot_tell_existing_jobs_or_routes_apart(
    server: ApiServer, http: httpx.Client, queue_name: str
) -> None:
    job = enqueue(http, queue_name)
    answers = {
        httpx.get(f"{server.url}{path}").content
        for path in (f"/jobs/{job['id']}", "/jobs/999999999", "/no/such/route", "/jobs/x")
    }
    assert len(answers) == 1


def test_health_docs_and_schema_need_no_token(server: ApiServer) -> None:
    assert httpx.get(f"{server.url}/healthz").json()["status"] == "ok"
    assert httpx.get(f"{server.url}/docs").status_code == 200
    schema = httpx.get(f"{server.url}/openapi.json").json()
    assert "bearer" in str(schema["components"]["securitySchemes"]).lower()


# -- producing -----------------------------------------------------------------------------


def test_enqueue_returns_201_with_the_job(http: httpx.Client, queue_name: str) -> None:
    job = enqueue(http, queue_name, payload={"a": [1, 2]}, priority=5, max_attempts=2)
    assert job["queue"] == queue_name
    assert job["payload"] == {"a": [1, 2]}
    assert (job["status"], job["priority"], job["max_attempts"]) == ("PENDING", 5, 2)
    assert "lease_token" not in job
    assert http.get(f"/jobs/{job['id']}").json() == job


def test_enqueue_with_the_same_key_returns_the_first_job(
    http: httpx.Client, queue_name: str
) -> None:
    first = enqueue(http, queue_name, key="k1")
    again = http.post(
        f"/queues/{queue_name}/jobs", json={"payload": 2}, headers={"Idempotency-Key": "k1"}
    )
    assert again.status_code == 200  # the existing job (SPEC: 201 only when created)
    assert again.json()["id"] == first["id"]
    assert len(http.get("/jobs", params={"queue": queue_name}).json()) == 1


def test_enqueue_refuses_bad_input_with_422_and_a_reason(
    http: httpx.Client, queue_name: str
) -> None:
    bad = [
        ({"payload": 1, "priority": 2**40}, "priority"),
        ({"payload": 1, "max_attempts": 0}, "max_attempts"),
        ({"payload": 1, "delay": -1}, "delay"),
        ({"payload": 1, "priority": "5"}, "priority"),
        ({"payload": 1, "unknown": True}, "unknown"),
        ({}, "payload"),
    ]
    for body, word in bad:
        response = http.post(f"/queues/{queue_name}/jobs", json=body)
        assert response.status_code == 422, body
        assert word in response.json()["detail"]
        assert response.json()["code"] == "invalid"
    assert http.post("/queues/bad name!/jobs", json={"payload": 1}).status_code == 422


def test_body_over_the_limit_is_413(http: httpx.Client, queue_name: str) -> None:
    big = {"payload": "x" * (5 * 1024 * 1024)}
    response = http.post(f"/queues/{queue_name}/jobs", json=big)
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams in
        yield b'{"payload": "'
        for _ in range(80):
            yield b"x" * 65536
        yield b'"}'

    response = http.post(
        f"/queues/{queue_name}/jobs", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert http.get("/jobs", params={"queue": queue_name}).json() == []


def test_payload_over_the_payload_limit_is_422(http: httpx.Client, queue_name: str) -> None:
    response = http.post(f"/queues/{queue_name}/jobs", json={"payload": "x" * (1024 * 1024 + 1)})
    assert response.status_code == 422
    assert "limit" in response.json()["detail"]


def test_batch_is_one_transaction(http: httpx.Client, queue_name: str) -> None:
    body = {"jobs": [{"payload": i, "key": f"k{i}"} for i in range(3)], "priority": 2}
    created = http.post(f"/queues/{queue_name}/jobs/batch", json=body)
    assert created.status_code == 201
    assert [j["payload"] for j in created.json()] == [0, 1, 2]
    bad = {"jobs": [{"payload": 1}, {"payload": float("inf")}]}
    refused = http.post(
        f"/queues/{queue_name}/jobs/batch",
        content=b'{"jobs": [{"payload": 1}, {"payload": Infinity}]}',
        headers={"content-type": "application/json"},
    )
    assert refused.status_code == 422, bad
    assert len(http.get("/jobs", params={"queue": queue_name}).json()) == 3


# -- consuming -----------------------------------------------------------------------------


def test_claim_returns_the_job_with_its_lease_token(http: httpx.Client, queue_name: str) -> None:
    job = enqueue(http, queue_name)
    response = claim(http, queue_name, lease=60)
    assert response.status_code == 200
    leased = response.json()
    assert leased["id"] == job["id"]
    assert leased["status"] == "PROCESSING"
    assert leased["worker"] == "w1"
    assert len(leased["lease_token"]) >= 16
    assert "lease_token" not in http.get(f"/jobs/{job['id']}").json()


def test_empty_claim_is_204(http: httpx.Client, queue_name: str) -> None:
    response = claim(http, queue_name)
    assert response.status_code == 204
    assert response.content == b""


def test_long_poll_returns_as_soon_as_a_job_arrives(
    server: ApiServer, http: httpx.Client, queue_name: str
) -> None:
    def enqueue_later() -> None:
        time.sleep(0.5)
        with server.client() as other:
            enqueue(other, queue_name, payload="late")

    producer = threading.Thread(target=enqueue_later)
    started = time.monotonic()
    producer.start()
    response = claim(http, queue_name, wait=20)
    elapsed = time.monotonic() - started
    producer.join()
    assert response.status_code == 200
    assert response.json()["payload"] == "late"
    assert 0.4 < elapsed < 5


def test_long_poll_gives_up_after_wait_with_204(http: httpx.Client, queue_name: str) -> None:
    started = time.monotonic()
    assert claim(http, queue_name, wait=0.5).status_code == 204
    assert 0.45 < time.monotonic() - started < 3
    assert claim(http, queue_name, wait=31).status_code == 422


def test_long_polls_past_the_thread_bound_still_get_their_job(
    tmp_path: Path, queue_name: str
) -> None:
    with ApiServer(tmp_path, args=("--max-waiting-claims", "2")) as small:
        results: list[int] = []

        def poll() -> None:
            with small.client() as client:
                results.append(claim(client, queue_name, wait=10).status_code)

        pollers = [threading.Thread(target=poll) for _ in range(4)]
        for thread in pollers:
            thread.start()
        time.sleep(0.3)
        with small.client() as client:  # other routes still answer at once
            started = time.monotonic()
            assert client.get("/stats").status_code == 200
            assert time.monotonic() - started < 1
            for n in range(4):
                enqueue(client, queue_name, payload=n)
        for thread in pollers:
            thread.join(30)
        assert sorted(results) == [200, 200, 200, 200]


def test_claim_from_several_queues_in_order(http: httpx.Client, queue_name: str) -> None:
    other = queue_name + "-b"
    enqueue(http, other, payload="b")
    leased = claim(http, queue_name, more_queues=[other]).json()
    assert leased["payload"] == "b"


def test_claim_batch(http: httpx.Client, queue_name: str) -> None:
    for n in range(3):
        enqueue(http, queue_name, payload=n)
    response = http.post(f"/queues/{queue_name}/claim/batch", json={"worker": "w", "limit": 2})
    assert response.status_code == 200
    assert len(response.json()) == 2
    assert all(job["lease_token"] for job in response.json())


def test_heartbeat_complete_with_the_token(http: httpx.Client, queue_name: str) -> None:
    enqueue(http, queue_name)
    leased = claim(http, queue_name, lease=30).json()
    token = {"lease_token": leased["lease_token"]}
    beat = http.post(f"/jobs/{leased['id']}/heartbeat", json=token)
    assert beat.status_code == 200
    assert beat.json()["lease_expires_at"] >= leased["lease_expires_at"]
    done = http.post(f"/jobs/{leased['id']}/complete", json={**token, "result": {"ok": 1}})
    assert done.status_code == 200
    assert (done.json()["status"], done.json()["result"]) == ("COMPLETED", {"ok": 1})


def test_complete_batch_answers_each_completion_on_its_own(
    http: httpx.Client, queue_name: str
) -> None:
    """POST /jobs/complete: per completion, in order, its job or its own error; a stale
    token and a missing job leave the good ones completed."""
    for n in range(3):
        enqueue(http, queue_name, payload=n)
    held = http.post(f"/queues/{queue_name}/claim/batch", json={"worker": "w", "limit": 3}).json()
    missing = held[-1]["id"] + 10_000
    completions = [
        {"id": held[0]["id"], "lease_token": held[0]["lease_token"], "result": {"r": 0}},
        {"id": held[1]["id"], "lease_token": "not-the-token", "result": 1},
        {"id": missing, "lease_token": "t"},
        {"id": held[2]["id"], "lease_token": held[2]["lease_token"]},
    ]
    response = http.post("/jobs/complete", json={"completions": completions})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["claimed"] == []
    first, stale, gone, last = body["completed"]
    assert (first["status"], first["result"]) == ("COMPLETED", {"r": 0})
    assert (stale["code"], stale["job_id"]) == ("lease_lost", held[1]["id"])
    assert (gone["code"], gone["job_id"]) == ("job_not_found", missing)
    assert (last["status"], last["result"]) == ("COMPLETED", None)
    assert http.get(f"/jobs/{held[1]['id']}").json()["status"] == "PROCESSING"


def test_complete_batch_with_a_claim_leases_the_next_job_in_the_same_commit(
    http: httpx.Client, queue_name: str
) -> None:
    """With `claim`, the finished job and the next one share one transaction (SQLite): the
    first one's finished_at is the second one's started_at."""
    for n in range(2):
        enqueue(http, queue_name, payload=n)
    first = claim(http, queue_name).json()
    body = {
        "completions": [{"id": first["id"], "lease_token": first["lease_token"], "result": 7}],
        "claim": {"queue": queue_name, "worker": "w2", "limit": 5, "lease": 30},
    }
    response = http.post("/jobs/complete", json=body)
    assert response.status_code == 200, response.text
    [done], [nxt] = response.json()["completed"], response.json()["claimed"]
    assert (done["status"], done["result"]) == ("COMPLETED", 7)
    assert (nxt["status"], nxt["worker"], nxt["payload"]) == ("PROCESSING", "w2", 1)
    assert nxt["lease_token"] and nxt["started_at"] == done["finished_at"]


def test_complete_batch_refuses_bad_input_whole_and_completes_nothing(
    http: httpx.Client, queue_name: str
) -> None:
    enqueue(http, queue_name)
    held = claim(http, queue_name).json()
    good = {"id": held["id"], "lease_token": held["lease_token"]}
    for body in (
        {"completions": [good], "claim": {"queue": "no spaces", "worker": "w"}},
        {"completions": [good], "claim": {"queue": queue_name, "worker": "w", "limit": 1001}},
        {"completions": [good], "claim": {"queue": queue_name, "worker": "w", "wait": 5}},
        {"completions": []},
        {"completions": [good] * 1001},
        {"completions": [{**good, "lease_token": None}]},
    ):
        response = http.post("/jobs/complete", json=body)
        assert response.status_code == 422, body
        assert response.json()["code"] == "invalid"
    assert http.get(f"/jobs/{held['id']}").json()["status"] == "PROCESSING"


def test_stale_lease_token_is_409_and_changes_nothing(http: httpx.Client, queue_name: str) -> None:
    enqueue(http, queue_name)
    leased = claim(http, queue_name).json()
    job_id = leased["id"]
    stale = {"lease_token": "not-the-token"}
    for action, extra in (("heartbeat", {}), ("complete", {"result": 1}), ("release", {})):
        response = http.post(f"/jobs/{job_id}/{action}", json={**stale, **extra})
        assert response.status_code == 409
        assert response.json() == {
            "detail": f"job {job_id}: lease lost (expired or held by another worker)",
            "code": "lease_lost",
            "job_id": job_id,
        }
    response = http.post(f"/jobs/{job_id}/fail", json={**stale, "error": "boom"})
    assert response.status_code == 409
    assert http.get(f"/jobs/{job_id}").json()["status"] == "PROCESSING"
    completed = http.post(f"/jobs/{job_id}/complete", json={"lease_token": leased["lease_token"]})
    assert completed.status_code == 200
    again = http.post(f"/jobs/{job_id}/complete", json={"lease_token": leased["lease_token"]})
    assert again.status_code == 409


def test_fail_retries_then_fails_for_good(http: httpx.Client, queue_name: str) -> None:
    job = enqueue(http, queue_name, max_attempts=1)
    leased = claim(http, queue_name).json()
    body = {"lease_token": leased["lease_token"], "error": "boom"}
    failed = http.post(f"/jobs/{job['id']}/fail", json=body)
    assert failed.status_code == 200
    assert (failed.json()["status"], failed.json()["last_error"]) == ("FAILED", "boom")


def test_fail_without_token_is_an_operator_fail(http: httpx.Client, queue_name: str) -> None:
    job = enqueue(http, queue_name)
    failed = http.post(f"/jobs/{job['id']}/fail", json={"error": "stop it"})
    assert failed.status_code == 200
    assert failed.json()["status"] == "FAILED"
    assert http.post(f"/jobs/{job['id']}/fail", json={"error": "x"}).status_code == 409


def test_release_gives_the_job_back(http: httpx.Client, queue_name: str) -> None:
    enqueue(http, queue_name)
    leased = claim(http, queue_name).json()
    released = http.post(
        f"/jobs/{leased['id']}/release", json={"lease_token": leased["lease_token"]}
    )
    assert released.status_code == 200
    assert (released.json()["status"], released.json()["attempts"]) == ("PENDING", 0)


# -- managing ------------------------------------------------------------------------------


def test_cancel_and_resubmit_and_their_409s(http: httpx.Client, queue_name: str) -> None:
    job = enqueue(http, queue_name)
    assert http.post(f"/jobs/{job['id']}/resubmit").status_code == 409
    cancelled = http.post(f"/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "CANCELLED"
    conflict = http.post(f"/jobs/{job['id']}/cancel")
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "invalid_transition"
    assert conflict.json()["current"] == "CANCELLED"
    resubmitted = http.post(f"/jobs/{job['id']}/resubmit")
    assert resubmitted.json()["status"] == "PENDING"


def test_unknown_job_is_404_everywhere(http: httpx.Client) -> None:
    missing = 987654321
    for method, path, body in (
        ("GET", f"/jobs/{missing}", None),
        ("GET", f"/jobs/{missing}/events", None),
        ("POST", f"/jobs/{missing}/cancel", None),
        ("POST", f"/jobs/{missing}/resubmit", None),
        ("POST", f"/jobs/{missing}/heartbeat", {"lease_token": "t"}),
        ("POST", f"/jobs/{missing}/complete", {"lease_token": "t"}),
        ("POST", f"/jobs/{missing}/fail", {"lease_token": "t", "error": "e"}),
    ):
        response = http.request(method, path, json=body)
        assert response.status_code == 404, path
        assert response.json()["code"] == "job_not_found"
    assert http.get("/jobs/0").status_code == 422
    assert http.get("/jobs/abc").status_code == 422
    assert http.get(f"/jobs/{2**70}").status_code == 422


def test_list_jobs_filters_and_validates(http: httpx.Client, queue_name: str) -> None:
    ids = [enqueue(http, queue_name, payload=n)["id"] for n in range(3)]
    listed = http.get("/jobs", params={"queue": queue_name, "status": "PENDING", "limit": 2})
    assert [j["id"] for j in listed.json()] == ids[::-1][:2]
    assert http.get("/jobs", params={"status": "NOPE"}).status_code == 422
    assert http.get("/jobs", params={"limit": 0}).status_code == 422


def test_search_count_and_bulk_routes_page_act_and_refuse_bad_input(
    http: httpx.Client, queue_name: str
) -> None:
    ids = [enqueue(http, queue_name, payload={"n": n, "tag": "Find-Me"})["id"] for n in range(5)]
    flt = {"queue": queue_name, "states": ["PENDING"], "text": "find-me"}
    first = http.post("/jobs/search", json={"filter": flt, "limit": 3}).json()
    assert [j["id"] for j in first["jobs"]] == ids[::-1][:3] and first["next"] == ids[2]
    rest = http.post("/jobs/search", json={"filter": flt, "after": first["next"]}).json()
    assert ([j["id"] for j in rest["jobs"]], rest["next"]) == (ids[::-1][3:], None)
    assert http.post("/jobs/count", json={"filter": flt}).json() == {"count": 5}
    since = {"queue": queue_name, "created_from": "2000-01-01T00:00:00Z"}
    assert http.post("/jobs/count", json={"filter": since}).json() == {"count": 5}
    for bad in (
        {"filter": {**flt, "states": ["DONE"]}},
        {"filter": {**flt, "created_from": "2026-01-01T00:00:00"}},  # no offset
        {"filter": {**flt, "text": "x" * 1001}},
        {"filter": flt, "batch": 0},
        {"filter": flt, "surprise": 1},
    ):
        response = http.post("/jobs/cancel", json=bad)
        assert response.status_code == 422, (bad, response.text)
    assert http.post("/jobs/count", json={"filter": flt}).json() == {"count": 5}  # untouched
    done = http.post("/jobs/cancel", json={"filter": flt, "limit": 2, "batch": 1}).json()
    assert done == {"done": 2, "next": ids[3]}
    done = http.post("/jobs/cancel", json={"filter": flt, "after": ids[3]}).json()
    assert done == {"done": 3, "next": None}
    cancelled = {"queue": queue_name, "states": ["CANCELLED"]}
    assert http.post("/jobs/resubmit", json={"filter": cancelled}).json() == {
        "done": 5,
        "next": None,
    }


def test_events_of_a_job(http: httpx.Client, queue_name: str) -> None:
    job = enqueue(http, queue_name)
    leased = claim(http, queue_name).json()
    http.post(f"/jobs/{job['id']}/complete", json={"lease_token": leased["lease_token"]})
    kinds = [e["kind"] for e in http.get(f"/jobs/{job['id']}/events").json()]
    assert kinds == ["enqueued", "claimed", "completed"]


def test_queues_create_pause_resume_delete(http: httpx.Client, queue_name: str) -> None:
    created = http.post("/queues", json={"name": queue_name})
    assert created.status_code == 201
    assert created.json()["paused"] is False
    assert queue_name in [q["name"] for q in http.get("/queues").json()]
    assert http.post(f"/queues/{queue_name}/pause").json()["paused"] is True
    enqueue(http, queue_name)  # a paused queue accepts enqueues ...
    assert claim(http, queue_name).status_code == 204  # ... and gives nothing to claims
    assert http.post(f"/queues/{queue_name}/resume").json()["paused"] is False
    refused = http.delete(f"/queues/{queue_name}")
    assert refused.status_code == 409
    assert (refused.json()["code"], refused.json()["unfinished"]) == ("queue_not_empty", 1)
    deleted = http.delete(f"/queues/{queue_name}", params={"force": "true"})
    assert deleted.json() == {"name": queue_name, "deleted_jobs": 1}
    for response in (
        http.delete(f"/queues/{queue_name}"),
        http.post(f"/queues/{queue_name}/pause"),
    ):
        assert response.status_code == 404
        assert response.json()["code"] == "queue_not_found"


def test_stats_counts_per_queue_and_state(http: httpx.Client, queue_name: str) -> None:
    enqueue(http, queue_name)
    enqueue(http, queue_name)
    claim(http, queue_name)
    row = http.get("/stats").json()["queues"][queue_name]
    assert (row["PENDING"], row["PROCESSING"], row["paused"]) == (1, 1, False)


def test_metrics_in_prometheus_format(http: httpx.Client, queue_name: str) -> None:
    enqueue(http, queue_name)
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert f'persistq_jobs{{queue="{queue_name}",state="PENDING"}} 1.0' in text
    for name in (
        "persistq_jobs_enqueued_total",
        "persistq_jobs_completed_total",
        "persistq_jobs_recovered_total",
        "persistq_job_wait_seconds",
        "persistq_job_run_seconds",
        "persistq_database_size_bytes",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name


def test_workers_presence(http: httpx.Client, queue_name: str) -> None:
    worker = f"host:{queue_name}"
    seen = http.post("/workers/seen", json={"worker": worker, "queues": [queue_name]})
    assert seen.status_code == 204
    assert worker in [w["id"] for w in http.get("/workers").json()]
    assert http.post("/workers/gone", json={"worker": worker}).status_code == 204
    assert worker not in [w["id"] for w in http.get("/workers").json()]


def test_recover_route_recovers_an_expired_lease_once_and_counts_it(
    http: httpx.Client, queue_name: str
) -> None:
    job = enqueue(http, queue_name)
    held = claim(http, queue_name, lease=0.05)
    assert held.status_code == 200 and held.json()["id"] == job["id"]
    time.sleep(0.1)
    response = http.post("/recover")
    assert response.status_code == 200
    assert response.json()["recovered"] >= 1  # ours; expired leases of other tests may join
    assert http.get(f"/jobs/{job['id']}").json()["status"] == "PENDING"
    http.post("/recover")  # an expiry is recovered once
    kinds = [e["kind"] for e in http.get(f"/jobs/{job['id']}/events").json()]
    assert kinds == ["enqueued", "claimed", "lease_expired"]


def test_server_log_has_no_traceback(server: ApiServer) -> None:
    assert "Traceback" not in server.output()


def test_a_long_poll_waiting_for_a_thread_still_ends_at_its_deadline(
    tmp_path: Path, queue_name: str
) -> None:
    with ApiServer(tmp_path, args=("--max-waiting-claims", "1")) as small:
        elapsed: list[float] = []

        def poll() -> None:
            with small.client() as client:
                started = time.monotonic()
                assert claim(client, queue_name, wait=1).status_code == 204
                elapsed.append(time.monotonic() - started)

        pollers = [threading.Thread(target=poll) for _ in range(3)]
        for thread in pollers:
            thread.start()
        for thread in pollers:
            thread.join(30)
        assert len(elapsed) == 3
        assert max(elapsed) < 1.8  # not 3 s: the two without a thread gave up at 1 s


def test_no_token_reaches_the_access_log(tmp_path: Path) -> None:
    """A token in the query string (or the path) is refused, and not written down either;
    parameters the API declares keep their values."""
    other = "some-other-secret-0123456789"
    with ApiServer(tmp_path, access_log=True) as logged:
        token, base, auth = logged.token, logged.url, logged.headers()
        sent = [
            httpx.get(f"{base}/stats?token={token}"),
            httpx.get(f"{base}/stats", params={"access_token": token, "api_key": other}),
            httpx.get(f"{base}/jobs?{token}"),
            httpx.get(f"{base}/jobs/{token}"),
            httpx.get(f"{base}/jobs", params={"queue": token, "limit": 3}, headers=auth),
            httpx.get(f"{base}/jobs?status=FAILED&limit=3", headers=auth),
        ]
        assert [r.status_code for r in sent] == [401, 401, 401, 401, 200, 200]
    log = logged.output()
    lines = [line for line in log.splitlines() if '"GET /' in line]
    print("\n".join(lines))
    assert len(lines) >= len(sent), log
    assert token not in log
    assert other not in log
    assert "/jobs?status=FAILED&limit=3" in log  # what the API reads stays readable
