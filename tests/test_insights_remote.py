"""The read models over the REST API (``RemoteQueue``) report what they report on the
database itself: the same rows, percentiles, counts and CLI ``stats``, against a real
``persistq api`` process whose SQLite file the test also opens directly."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client import generate_latest

import persistq
from apiserver import ApiServer
from persistq import InvalidJob, Job, Queue, insights
from persistq.api.metrics import registry_for
from persistq.ports import ReadQueue
from persistq.remote import RemoteQueue


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with ApiServer(tmp_path_factory.mktemp("reads")) as running:
        yield running


def _activity(q: Queue) -> None:
    """Completions, a retry, a final failure, an expired lease, a worker and a backlog."""
    q.enqueue_many([{"n": i} for i in range(5)], queue="reads-a")
    settles: list[Callable[[Job], object]] = [
        q.complete,
        q.complete,
        lambda job: q.fail(job, "Traceback ...\nValueError: retried"),
        lambda job: q.fail(job, "KeyError: final", retry=False),
    ]
    for settle in settles:
        claimed = q.claim(queue="reads-a", worker="w-1")
        assert claimed is not None
        settle(claimed)
    q.enqueue("stalls", queue="reads-b", max_attempts=1)
    job = q.claim(queue="reads-b", worker="w-2", lease=0.05)
    assert job is not None
    time.sleep(0.1)
    assert q.recover_stalled() == 1
    q.worker_seen("w-1", ["reads-a"])
    q.pause("reads-b")


@pytest.fixture(scope="module")
def both(server: ApiServer) -> Iterator[tuple[Queue, RemoteQueue]]:
    with (
        persistq.connect(server.db_url, create=False) as local,
        persistq.connect(server.url, token=server.token) as remote,
    ):
        _activity(local)
        yield local, remote


def test_queue_reads_over_http_equal_the_local_ones(both: tuple[Queue, RemoteQueue]) -> None:
    local, remote = both
    assert remote.finished(since=0) == local.finished(since=0)
    assert len(local.finished(since=0)) == 4  # 2 completed, 1 failed, 1 unprocessable
    assert remote.finished(since=0, limit=2) == local.finished(since=0, limit=2)
    assert remote.throughput(since=0, bucket=60) == local.throughput(since=0, bucket=60)
    assert remote.recent_failures(limit=50) == local.recent_failures(limit=50)
    assert [f.event.kind for f in local.recent_failures()] == ["lease_expired", "failed", "retried"]
    # Free disk moves with every other process's writes between the two reads.
    assert replace(remote.storage(), free_disk_bytes=0) == replace(
        local.storage(), free_disk_bytes=0
    )
    assert abs(remote.now() - local.now()) < 5


def test_insights_over_http_equal_the_local_ones(both: tuple[Queue, RemoteQueue]) -> None:
    local, remote = both
    assert insights.latency(remote) == insights.latency(local)
    assert insights.recent_failures(remote) == insights.recent_failures(local)
    assert insights.alerts(remote) == insights.alerts(local)
    moving = {"free_disk_bytes": 0}  # changes between the two reads (other processes write)
    assert {**insights.storage(remote), **moving} == {**insights.storage(local), **moving}
    assert insights.totals(remote) == insights.totals(local)

    def busy(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in rows if any(v for k, v in r.items() if k != "at")]

    assert busy(insights.throughput(remote)) == busy(insights.throughput(local))

    def presence(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "seconds_since_seen"} for r in rows]

    assert presence(insights.workers(remote)) == presence(insights.workers(local))
    checked = insights.database(remote)
    assert checked == {**insights.database(local), "free_disk_bytes": checked["free_disk_bytes"]}
    assert checked["ok"] is True and checked["free_disk_bytes"] > 0


def test_metrics_over_http_show_the_local_gauges(both: tuple[Queue, RemoteQueue]) -> None:
    def gauges(q: ReadQueue) -> list[str]:
        text = generate_latest(registry_for(q)).decode()
        wanted = ("persistq_jobs{", "persistq_queue_paused", "persistq_jobs_enqueued_total")
        return sorted(line for line in text.splitlines() if line.startswith(wanted))

    local, remote = both
    shown = gauges(remote)
    assert shown == gauges(local)
    assert 'persistq_jobs{queue="reads-a",state="COMPLETED"} 2.0' in shown
    assert 'persistq_queue_paused{queue="reads-b"} 1.0' in shown


def test_cli_stats_over_the_api_prints_the_local_numbers(
    server: ApiServer, both: tuple[Queue, RemoteQueue]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSISTQ_")}
    env["PERSISTQ_API_TOKEN"] = server.token

    def stats(url: str) -> dict[str, Any]:
        command = [sys.executable, "-m", "persistq", "--url", url, "stats", "--json"]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        report: dict[str, Any] = json.loads(done.stdout)["queues"]
        for row in report.values():
            assert row.pop("oldest_pending_age") is None or row["PENDING"]
        return report

    over_http = stats(server.url)
    assert over_http == stats(server.db_url)
    assert over_http["reads-a"]["PENDING"] == 2 and over_http["reads-b"]["paused"] is True


@pytest.mark.parametrize(
    "call",
    [
        lambda q: q.finished(since=-1),
        lambda q: q.finished(since=float("inf")),
        lambda q: q.finished(since=0, limit=0),
        lambda q: q.throughput(since=0, bucket=0),
        lambda q: q.throughput(since=0, bucket=86_401),
        lambda q: q.recent_failures(limit=100_001),
    ],
)
def test_bad_arguments_over_http_raise_invalid_job(
    both: tuple[Queue, RemoteQueue], call: Any
) -> None:
    local, remote = both
    for q in (local, remote):
        with pytest.raises(InvalidJob):
            call(q)


@pytest.mark.parametrize("kind", [Queue, RemoteQueue])
def test_both_queues_offer_every_read_of_the_protocol_with_its_signature(kind: type) -> None:
    for name, member in vars(ReadQueue).items():
        if name.startswith("_") or not callable(member):
            continue
        theirs = inspect.signature(getattr(kind, name))
        ours = inspect.signature(member)
        assert str(theirs) == str(ours), f"{kind.__name__}.{name}{theirs} != {ours}"
    assert isinstance(inspect.getattr_static(kind, "url"), property)
