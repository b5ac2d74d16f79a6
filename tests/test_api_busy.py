"""A held SQLite write lock slows only the API calls that need the database (issue 9, point 2).

A real ``persistq api`` process; another connection (its own, as another process would
have) holds ``BEGIN IMMEDIATE`` for 5 s while an enqueue through the API waits for it. The
calls that need no write meanwhile must answer at once: before the fix the library ran on
the event loop and the busy retry slept there, so every request waited for the lock.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import httpx

from apiserver import ApiServer

HOLD_SECONDS = 5.0


def hold_write_lock(path: Path, seconds: float, locked: threading.Event) -> None:
    """What another process's long write does: ``BEGIN IMMEDIATE`` on its own connection."""
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(seconds)
        holder.execute("ROLLBACK")
    finally:
        holder.close()


def test_a_held_write_lock_does_not_freeze_calls_that_do_not_write(tmp_path: Path) -> None:
    with ApiServer(tmp_path) as server, server.client() as http:
        job_id = http.post("/queues/q/jobs", json={"payload": 1}).json()["id"]
        # Clients made and connected beforehand: what is timed is the server's answer.
        anonymous = [httpx.Client(base_url=server.url, timeout=30) for _ in range(3)]
        reader, writer = server.client(), server.client()
        for client in [*anonymous, reader, writer]:
            client.get("/healthz")
        calls = {
            "401": lambda: anonymous[0].get("/stats"),
            "/openapi.json": lambda: anonymous[1].get("/openapi.json"),
            "/healthz": lambda: anonymous[2].get("/healthz"),
            f"GET /jobs/{job_id}": lambda: reader.get(f"/jobs/{job_id}"),
        }
        took: dict[str, float] = {}
        answers: dict[str, int] = {}

        def timed(name: str) -> None:  # each on its own, at once: none waits for another
            started = time.monotonic()
            answers[name] = calls[name]().status_code
            took[name] = time.monotonic() - started

        locked = threading.Event()
        lock = threading.Thread(
            target=hold_write_lock, args=(tmp_path / "queue.db", HOLD_SECONDS, locked)
        )
        lock.start()
        assert locked.wait(10)
        held_at = time.monotonic()
        enqueued: list[httpx.Response] = []
        waiting = threading.Thread(
            target=lambda: enqueued.append(writer.post("/queues/q/jobs", json={"payload": 2}))
        )
        waiting.start()
        time.sleep(0.3)  # the enqueue is now retrying against the lock
        probes = [threading.Thread(target=timed, args=(name,)) for name in calls]
        for probe in probes:
            probe.start()
        for probe in probes:
            probe.join(30)
        print("while the lock was held:", {k: f"{v:.3f} s" for k, v in took.items()}, answers)
        lock.join(30)
        waiting.join(30)
        for client in [*anonymous, reader, writer]:
            client.close()
        assert time.monotonic() - held_at >= HOLD_SECONDS - 0.1  # the lock was held that long
        assert [r.status_code for r in enqueued] == [201], "the waiting enqueue was lost"
        assert answers == {
            "401": 401,
            "/openapi.json": 200,
            "/healthz": answers["/healthz"],
            f"GET /jobs/{job_id}": 200,
        }
        assert answers["/healthz"] in (200, 503)
        assert max(took.values()) < 1.0, took
