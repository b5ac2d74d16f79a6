"""Read models for every frontend: the Ops UI, the API's /metrics, the CLI's stats.

Each function queries what it shows and no more, so it stays cheap on a large queue: counts
come from indexes, timings from the jobs finished in the window asked for. They read through
the public queue API only (:class:`~persistq.ports.ReadQueue`), so each works on a local
``Queue`` and on a ``RemoteQueue`` alike.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from persistq.model import DEAD_LETTER, State, Timing, WorkerInfo
from persistq.ports import ReadQueue

#: Workers announce themselves at least every 10 s; silence for longer than this is stalled.
STALLED_WORKER_SECONDS = 60.0
LOW_DISK_BYTES = 1024**3


def stats(q: ReadQueue) -> dict[str, Any]:
    """Counts per queue and state, paused flag and oldest pending age (see Queue.stats)."""
    return q.stats()


def totals(q: ReadQueue) -> dict[str, int]:
    """Jobs per state over all queues."""
    out = {str(s): 0 for s in State}
    for row in q.stats()["queues"].values():
        for state in State:
            out[str(state)] += row[str(state)]
    return out


def throughput(
    q: ReadQueue, *, window_seconds: int = 3600, bucket_seconds: int = 60
) -> list[dict[str, Any]]:
    """Jobs finished per bucket (``{"at": epoch, "COMPLETED": n, "FAILED": n, ...}``),
    every bucket of the window present, oldest first."""
    now = q.now()
    start = int((now - window_seconds) // bucket_seconds) * bucket_seconds
    buckets: dict[float, dict[str, Any]] = {
        float(at): {"at": float(at), **{str(s): 0 for s in TERMINAL_ORDER}}
        for at in range(start, int(now) + 1, bucket_seconds)
    }
    for row in q.throughput(since=start, bucket=bucket_seconds):
        buckets.setdefault(row.at, {"at": row.at, **{str(s): 0 for s in TERMINAL_ORDER}})
        buckets[row.at][str(row.status)] = row.count
    return [buckets[at] for at in sorted(buckets)]


TERMINAL_ORDER = (State.COMPLETED, State.FAILED, State.UNPROCESSABLE, State.CANCELLED)


@dataclass(frozen=True, slots=True)
class Percentiles:
    count: int
    p50: float | None
    p95: float | None
    p99: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "p50": self.p50, "p95": self.p95, "p99": self.p99}


def percentiles(samples: list[float]) -> Percentiles:
    if not samples:
        return Percentiles(0, None, None, None)
    if len(samples) == 1:
        return Percentiles(1, samples[0], samples[0], samples[0])
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return Percentiles(len(samples), cuts[49], cuts[94], cuts[98])


def latency(
    q: ReadQueue, *, window_seconds: int = 3600, bucket_seconds: int = 300, limit: int = 20_000
) -> dict[str, Any]:
    """Wait (due -> started) and run (started -> finished) time percentiles, in seconds,
    over the window and per bucket, from the newest ``limit`` jobs finished in it."""
    timings: list[Timing] = q.finished(since=max(0.0, q.now() - window_seconds), limit=limit)
    waits = [max(0.0, t.started_at - t.run_at) for t in timings]
    runs = [max(0.0, t.finished_at - t.started_at) for t in timings]
    per_bucket: dict[float, tuple[list[float], list[float]]] = {}
    for t, wait, run in zip(timings, waits, runs, strict=True):
        at = float(int(t.finished_at // bucket_seconds) * bucket_seconds)
        per_bucket.setdefault(at, ([], []))
        per_bucket[at][0].append(wait)
        per_bucket[at][1].append(run)
    return {
        "wait": percentiles(waits).to_dict(),
        "run": percentiles(runs).to_dict(),
        "buckets": [
            {"at": at, "wait": percentiles(w).to_dict(), "run": percentiles(r).to_dict()}
            for at, (w, r) in sorted(per_bucket.items())
        ],
        "sampled": len(timings),
    }


def workers(q: ReadQueue, *, seen_within: float = 3600.0) -> list[dict[str, Any]]:
    """Workers seen recently, with their last heartbeat age and the jobs they hold."""
    now = q.now()
    out = []
    for info in q.workers(seen_within=seen_within):
        row = info.to_dict()
        row["seconds_since_seen"] = max(0.0, now - info.last_seen_at.timestamp())
        row["stalled"] = row["seconds_since_seen"] > STALLED_WORKER_SECONDS
        out.append(row)
    return out


def recent_failures(q: ReadQueue, *, limit: int = 20) -> list[dict[str, Any]]:
    """The newest failures (handler errors, retries, expired leases), newest first, each
    with its queue and the last line of its error."""
    rows = []
    for failure in q.recent_failures(limit=limit):
        row = failure.event.to_dict()
        row["queue"] = failure.queue
        lines = (failure.event.detail or "").strip().splitlines()
        row["error"] = lines[-1] if lines else ""
        rows.append(row)
    return rows


def dead_letters(q: ReadQueue) -> dict[str, int]:
    counts = totals(q)
    return {str(s): counts[str(s)] for s in DEAD_LETTER}


def database(q: ReadQueue) -> dict[str, Any]:
    """The database check (integrity, schema version, sizes) with the free space on its
    disk, where it has local files."""
    report = dict(q.check())
    files = q.storage()
    report["free_disk_bytes"] = files.free_disk_bytes
    report["total_disk_bytes"] = files.total_disk_bytes
    return report


def storage(q: ReadQueue) -> dict[str, Any]:
    """Database and WAL size and free disk, without the integrity check of :func:`database`.

    ``database`` runs ``quick_check``, which reads every page (about 4 s at 1,000,000 jobs):
    right for an occasional health check, too slow for a page that refreshes every few
    seconds. Sizes are ``None`` where the database has no local file (PostgreSQL).
    """
    return q.storage().to_dict()


def alerts(
    q: ReadQueue,
    *,
    backlog_age_seconds: float = 300.0,
    worker_rows: list[dict[str, Any]] | None = None,
    database_report: dict[str, Any] | None = None,
) -> list[str]:
    """Things a person should look at now, as sentences; empty when all is well."""
    found = []
    for name, row in q.stats()["queues"].items():
        if row["paused"]:
            found.append(f"queue {name!r} is paused ({row['PENDING']} pending)")
        age = row["oldest_pending_age"]
        if age is not None and age > backlog_age_seconds:
            found.append(f"queue {name!r}: oldest pending job has waited {age:.0f} s")
    for worker in worker_rows if worker_rows is not None else workers(q):
        if worker["stalled"]:
            found.append(f"worker {worker['id']} silent for {worker['seconds_since_seen']:.0f} s")
    report = database_report if database_report is not None else database(q)
    if not report.get("ok", False):
        found.append(f"database check failed: {report.get('integrity')}")
    free = report.get("free_disk_bytes")
    if free is not None and free < LOW_DISK_BYTES:
        found.append(f"low disk: {free / 1024**2:.0f} MiB free")
    return found


__all__ = [
    "Percentiles",
    "WorkerInfo",
    "alerts",
    "database",
    "dead_letters",
    "latency",
    "percentiles",
    "recent_failures",
    "stats",
    "storage",
    "throughput",
    "totals",
    "workers",
]
