"""``/healthz`` covers writability (issue 9, point 5): a full disk or an unwritable database
file is 503 with the reason, although reads still work; healthy is 200.

The faults are those of test_faults.py (a small tmpfs filled up, ``chattr +i``), made by
its own fixtures; the API runs in-process over that queue (FastAPI's TestClient).
"""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import persistq
import test_faults
from persistq import Queue
from persistq.api import create_app
from persistq.api.deps import HealthProbe
from persistq.config import Settings
from persistq.model import Health

tiny_fs = test_faults.tiny_fs
full_queue = test_faults.full_queue
make_immutable = test_faults.make_immutable

TOKEN = "health-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def api(queue: Queue) -> TestClient:
    app = create_app(Settings(url=queue.url), tokens=[TOKEN], queue=queue, health_check_seconds=0)
    return TestClient(app, raise_server_exceptions=False)


def health(client: TestClient) -> tuple[int, dict[str, str]]:
    response = client.get("/healthz")
    return response.status_code, response.json()


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[Queue]:
    with persistq.connect(f"sqlite:///{tmp_path / 'queue.db'}") as opened:
        yield opened


def test_a_healthy_database_is_200_ok(queue: Queue) -> None:
    with api(queue) as client:
        status, body = health(client)
    assert (status, body["status"], body["detail"]) == (200, "ok", None)
    assert isinstance(body["schema_version"], int)


def test_a_full_disk_is_503_until_space_is_freed_and_a_write_succeeds(
    full_queue: tuple[Queue, list[int], Path],
) -> None:
    queue, acknowledged, filler = full_queue
    with api(queue) as client:
        assert client.get(f"/jobs/{acknowledged[0]}", headers=AUTH).status_code == 200
        status, body = health(client)
        print("disk full:", status, body)
        assert (status, body["status"]) == (503, "unhealthy")
        assert "writes would fail" in body["detail"] and "full" in body["detail"], body
        refused = client.post("/queues/default/jobs", json={"payload": "x" * 2000}, headers=AUTH)
        assert refused.status_code == 507, refused.text

        filler.unlink()
        status, body = health(client)  # space again, but the last write failed
        assert status == 503 and "the last write" in body["detail"], body
        stored = client.post("/queues/default/jobs", json={"payload": "again"}, headers=AUTH)
        assert stored.status_code == 201, stored.text
        status, body = health(client)
        print("after freeing space and one write:", status, body)
        assert (status, body["status"]) == (200, "ok")


def fill_up(filler: Path) -> None:
    """Write ``filler`` until its file system has no space left (ENOSPC)."""
    stats = os.statvfs(filler.parent)
    with filler.open("wb", buffering=0) as out:
        for _ in range(stats.f_blocks):
            try:
                out.write(b"\0" * stats.f_frsize)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return
    raise AssertionError("the disk never filled up")


def test_a_disk_that_fills_up_is_503_before_any_write_fails(tiny_fs: Path) -> None:
    with persistq.connect(f"sqlite:///{tiny_fs / 'queue.db'}") as queue, api(queue) as client:
        assert health(client)[0] == 200
        filler = tiny_fs / "filler"
        fill_up(filler)
        status, body = health(client)
        print("disk filled by another file:", status, body)
        assert (status, body["status"]) == (503, "unhealthy")
        assert "bytes free" in body["detail"], body
        filler.unlink()
        assert health(client)[0] == 200


def test_an_immutable_database_file_is_503_with_the_path(
    queue: Queue, make_immutable: Callable[..., None]
) -> None:
    path = Path(queue.url.removeprefix("sqlite:///"))
    job = queue.enqueue("before")
    with api(queue) as client:
        assert health(client)[0] == 200
        make_immutable(path)
        status, body = health(client)
        print("immutable file:", status, body)
        assert (status, body["status"]) == (503, "unhealthy")
        assert str(path) in body["detail"] and "writes would fail" in body["detail"], body
        assert client.get(f"/jobs/{job.id}", headers=AUTH).status_code == 200  # reads work


def test_a_read_only_database_file_is_503(queue: Queue, tmp_path: Path) -> None:
    """Permission bits (root ignores them: then the immutable-file test covers this)."""
    if os.geteuid() == 0:
        pytest.skip("root may write a file whatever its mode")
    path = Path(queue.url.removeprefix("sqlite:///"))
    with api(queue) as client:
        path.chmod(0o444)
        try:
            status, body = health(client)
        finally:
            path.chmod(0o644)
    assert (status, body["status"]) == (503, "unhealthy"), body


def test_a_deleted_database_file_is_503(queue: Queue) -> None:
    path = Path(queue.url.removeprefix("sqlite:///"))
    with api(queue) as client:
        assert health(client)[0] == 200
        for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            name.unlink(missing_ok=True)
        status, body = health(client)
    assert (status, body["status"]) == (503, "unhealthy")
    assert "deleted or replaced" in body["detail"], body


def test_a_probe_never_waits_long_for_a_database_that_does_not_answer(queue: Queue) -> None:
    """Another thread holds this process's SQLite connection (as a call stuck on a hung
    disk would): the health call waits for it, but each probe answers within ``wait``: the
    previous answer while the call is young, then None (``busy``)."""
    probe = HealthProbe(queue, check_every=0, wait=0.2, stale_after=1.0)
    connection: threading.RLock = queue.backend._lock  # type: ignore[attr-defined]
    held, release = threading.Event(), threading.Event()

    def stuck_call() -> None:
        with connection:
            held.set()
            release.wait(30)

    async def probes() -> list[tuple[float, Health | None]]:
        found = [(0.0, await probe.get())]
        holder = threading.Thread(target=stuck_call)
        holder.start()
        held.wait(10)
        try:
            for _ in range(8):
                started = time.monotonic()
                answer = await probe.get()
                found.append((time.monotonic() - started, answer))
                await asyncio.sleep(0.1)
        finally:
            release.set()
            holder.join(10)
        return found

    try:
        found = asyncio.run(probes())
    finally:
        probe.close()
    print([(f"{took:.2f} s", answer and answer.ok) for took, answer in found])
    assert found[0][1] is not None and found[0][1].ok
    assert max(took for took, _ in found) < 0.5
    assert found[1][1] is not None and found[1][1].ok  # the previous answer, while young
    assert found[-1][1] is None  # then: the database is not answering
