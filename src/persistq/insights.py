"""Read models for every frontend: the Ops UI, the API's /metrics, the CLI's stats.

Each function queries what it shows and no more, so it stays cheap on a large queue: counts
come from indexes, timings from the jobs finished in the window asked for.
"""

from __future__ import annotations

import shutil
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from persistq.model import DEAD_LETTER, Job, State, Timing, WorkerInfo, encode_json, task_call
from persistq.queue import Queue

#: Workers announce themselves at least every 10 s; silence for longer than this is stalled.
STALLED_WORKER_SECONDS = 60.0
LOW_DISK_BYTES = 1024**3
FAILURE_KINDS = ("failed", "retried", "lease_expired")


def stats(queue: Queue) -> dict[str, Any]:
    """Counts per queue and state, paused flag and oldest pending age (see Queue.stats)."""
    return queue.stats()


def totals(queue: Queue) -> dict[str, int]:
    """Jobs per state over all queues."""
    out = {str(s): 0 for s in State}
    for row in queue.stats()["queues"].values():
        for state in State:
            out[str(state)] += row[str(state)]
    return out


def throughput(
    queue: Queue, *, window_seconds: int = 3600, bucket_seconds: int = 60
) -> list[dict[str, Any]]:
    """Jobs finished per bucket (``{"at": epoch, "COMPLETED": n, "FAILED": n, ...}``),
    every bucket of the window present, oldest first."""
    now = queue.now()
    start = int((now - window_seconds) // bucket_seconds) * bucket_seconds
    buckets: dict[float, dict[str, Any]] = {
        float(at): {"at": float(at), **{str(s): 0 for s in TERMINAL_ORDER}}
        for at in range(start, int(now) + 1, bucket_seconds)
    }
    for at, state, count in queue.backend.count_finished(start, bucket_seconds):
        buckets.setdefault(float(at), {"at": float(at), **{str(s): 0 for s in TERMINAL_ORDER}})
        buckets[float(at)][str(state)] = count
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


def finished_timings(queue: Queue, *, since: float, limit: int) -> list[Timing]:
    """When each job finished since ``since`` became due, started and finished, newest
    first (at most ``limit``): the raw samples behind latency() and /metrics histograms."""
    return queue.backend.finished_since(since, limit)


def latency(
    queue: Queue, *, window_seconds: int = 3600, bucket_seconds: int = 300, limit: int = 20_000
) -> dict[str, Any]:
    """Wait (due -> started) and run (started -> finished) time percentiles, in seconds,
    over the window and per bucket, from the newest ``limit`` jobs finished in it."""
    now = queue.now()
    timings = queue.backend.finished_since(now - window_seconds, limit)
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


def workers(queue: Queue, *, seen_within: float = 3600.0) -> list[dict[str, Any]]:
    """Workers seen recently, with their last heartbeat age and the jobs they hold."""
    now = queue.now()
    out = []
    for info in queue.workers(seen_within=seen_within):
        row = info.to_dict()
        row["seconds_since_seen"] = max(0.0, now - info.last_seen_at.timestamp())
        row["stalled"] = row["seconds_since_seen"] > STALLED_WORKER_SECONDS
        out.append(row)
    return out


def recent_failures(queue: Queue, *, limit: int = 20) -> list[dict[str, Any]]:
    """The newest failures (handler errors, retries, expired leases), newest first."""
    rows = []
    for event, queue_name in queue.backend.recent_events(FAILURE_KINDS, limit):
        row = event.to_dict()
        row["queue"] = queue_name
        row["error"] = (event.detail or "").strip().splitlines()[-1:] or [""]
        row["error"] = row["error"][0]
        rows.append(row)
    return rows


def dead_letters(queue: Queue) -> dict[str, int]:
    counts = totals(queue)
    return {str(s): counts[str(s)] for s in DEAD_LETTER}


def database(queue: Queue) -> dict[str, Any]:
    """Size of the database (and its WAL) and free space on its disk, where it has a file."""
    report = dict(queue.check())
    path = report.get("path")
    report["free_disk_bytes"] = None
    report["total_disk_bytes"] = None
    if path:
        usage = shutil.disk_usage(Path(path).parent)
        report["free_disk_bytes"] = usage.free
        report["total_disk_bytes"] = usage.total
    return report


def alerts(
    queue: Queue,
    *,
    backlog_age_seconds: float = 300.0,
    worker_rows: list[dict[str, Any]] | None = None,
    database_report: dict[str, Any] | None = None,
) -> list[str]:
    """Things a person should look at now, as sentences; empty when all is well."""
    found = []
    for name, row in queue.stats()["queues"].items():
        if row["paused"]:
            found.append(f"queue {name!r} is paused ({row['PENDING']} pending)")
        age = row["oldest_pending_age"]
        if age is not None and age > backlog_age_seconds:
            found.append(f"queue {name!r}: oldest pending job has waited {age:.0f} s")
    for worker in worker_rows if worker_rows is not None else workers(queue):
        if worker["stalled"]:
            found.append(f"worker {worker['id']} silent for {worker['seconds_since_seen']:.0f} s")
    report = database_report if database_report is not None else database(queue)
    if not report.get("ok", False):
        found.append(f"database check failed: {report.get('integrity')}")
    free = report.get("free_disk_bytes")
    if free is not None and free < LOW_DISK_BYTES:
        found.append(f"low disk: {free / 1024**2:.0f} MiB free")
    return found


__all__ = [
    "JobFilter",
    "JobPage",
    "Percentiles",
    "WorkerInfo",
    "alerts",
    "candidate_count",
    "database",
    "dead_letters",
    "find_jobs",
    "latency",
    "matching_ids",
    "percentiles",
    "recent_failures",
    "stats",
    "storage",
    "throughput",
    "totals",
    "workers",
]


# -- storage sizes, cheap enough to poll (the Ops UI) ---------------------------------------


def storage(queue: Queue) -> dict[str, Any]:
    """Database and WAL size and free disk, without the integrity check of :func:`database`.

    ``database`` runs ``quick_check``, which reads every page (about 4 s at 1,000,000 jobs):
    right for an occasional health check, too slow for a page that refreshes every few
    seconds. Sizes are ``None`` where the database has no local file (PostgreSQL).
    """
    path = getattr(queue.backend, "path", None)  # file backends only
    report: dict[str, Any] = {
        "path": None,
        "size_bytes": None,
        "wal_bytes": None,
        "free_disk_bytes": None,
        "total_disk_bytes": None,
    }
    if path is None:
        return report
    path = Path(path).resolve()
    report["path"] = str(path)
    report["size_bytes"] = _size(path)
    report["wal_bytes"] = _size(Path(f"{path}-wal"))
    usage = shutil.disk_usage(path.parent)
    report["free_disk_bytes"] = usage.free
    report["total_disk_bytes"] = usage.total
    return report


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


# -- job search (the Manager UI's jobs table and its bulk actions) --------------------------
#
# Queue.jobs lists by queue and state only, newest first, with limit and offset. Text and
# time-range filters are applied here, to pages of that list, so a page of the Manager reads
# at most ``max_scan`` jobs and never the whole table. Ids grow with enqueue time, which
# bounds a time-range walk: it starts at the offset a binary search finds and stops once
# past the range, allowing CLOCK_SLACK_SECONDS because producers commit slightly out of
# clock order (a producer reads the clock, then waits for the write lock).

#: Jobs read per query while walking for matches.
SEARCH_BATCH = 1000
#: Jobs read per query while collecting every match (bulk actions).
BULK_BATCH = 5000
CLOCK_SLACK_SECONDS = 120.0
_SLACK = timedelta(seconds=CLOCK_SLACK_SECONDS)


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs a view shows: all of the given conditions hold.

    ``text`` is a case-insensitive substring of the payload (as JSON) or of the last
    error; ``created_from`` is inclusive and ``created_to`` exclusive (aware datetimes);
    ``task``: the job runs the task of that name (``{"task": NAME, ...}`` payloads).
    """

    queue: str | None = None
    status: State | None = None
    text: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    task: str | None = None

    @property
    def needs_scan(self) -> bool:
        """Whether jobs must be read to know if they match (the database filters the rest)."""
        return (
            bool(self.text)
            or bool(self.task)
            or self.created_from is not None
            or self.created_to is not None
        )

    def matches(self, job: Job) -> bool:
        if self.queue is not None and job.queue != self.queue:
            return False
        if self.status is not None and job.status != self.status:
            return False
        if self.created_from is not None and job.created_at < self.created_from:
            return False
        if self.created_to is not None and job.created_at >= self.created_to:
            return False
        if self.task:
            call = task_call(job.payload)
            if call is None or call[0] != self.task:
                return False
        if self.text:
            needle = self.text.casefold()
            payload = encode_json(job.payload, what="payload")
            error = job.last_error or ""
            return needle in payload.casefold() or needle in error.casefold()
        return True


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of matching jobs.

    ``total`` is the number of matching jobs when known: always without a scan (from the
    counts), and after a scan that reached the end. ``scanned`` counts the jobs read;
    ``complete`` is False when the scan stopped at its budget, so more may match.
    """

    jobs: list[Job]
    total: int | None
    scanned: int
    complete: bool


def candidate_count(stats_report: dict[str, Any], flt: JobFilter) -> int:
    """Jobs of the filter's queue and state, from the counts of :func:`stats` (no scan)."""
    total = 0
    for name, row in stats_report["queues"].items():
        if flt.queue is not None and name != flt.queue:
            continue
        states = [flt.status] if flt.status is not None else list(State)
        total += sum(int(row.get(str(state), 0)) for state in states)
    return total


def find_jobs(
    queue: Queue,
    flt: JobFilter,
    *,
    limit: int = 50,
    offset: int = 0,
    oldest_first: bool = False,
    max_scan: int = 50_000,
    stats_report: dict[str, Any] | None = None,
) -> JobPage:
    """Matching jobs ``offset`` to ``offset + limit``, newest (or oldest) first.

    Without text or time filters this is one indexed query. With them, at most
    ``max_scan`` jobs are read, in batches, stopping as soon as the page is full.
    """
    stats_report = stats_report if stats_report is not None else queue.stats()
    if not flt.needs_scan:
        candidates = candidate_count(stats_report, flt)
        jobs = _plain_page(queue, flt, limit, offset, oldest_first, candidates)
        return JobPage(jobs, candidates, len(jobs), True)
    found: list[Job] = []
    matched = scanned = 0
    # The first read asks for about a page: a recent time range fills it at once.
    first = min(SEARCH_BATCH, max(100, offset + limit))
    for job in _walk(queue, flt, oldest_first, stats_report, first, SEARCH_BATCH):
        scanned += 1
        if flt.matches(job):
            matched += 1
            if matched > offset:
                found.append(job)
                if len(found) == limit:
                    return JobPage(found, None, scanned, False)
        if scanned >= max_scan:
            return JobPage(found, None, scanned, False)
    return JobPage(found, matched, scanned, True)


def matching_ids(
    queue: Queue,
    flt: JobFilter,
    *,
    on_progress: Callable[[int, int], None] | None = None,
    stats_report: dict[str, Any] | None = None,
) -> list[int]:
    """Ids of every matching job, newest first: the set a bulk action will act on.

    Reads each candidate once, in batches of BULK_BATCH; ``on_progress(read, matched)``
    is called after each batch. Candidates are counted first, from the statistics.
    """
    stats_report = stats_report if stats_report is not None else queue.stats()
    ids: list[int] = []
    scanned = 0
    for job in _walk(queue, flt, False, stats_report, BULK_BATCH, BULK_BATCH):
        scanned += 1
        if flt.matches(job):
            ids.append(job.id)
        if on_progress is not None and scanned % BULK_BATCH == 0:
            on_progress(scanned, len(ids))
    if on_progress is not None:
        on_progress(scanned, len(ids))
    return ids


def _list(queue: Queue, flt: JobFilter, limit: int, offset: int) -> list[Job]:
    return queue.jobs(status=flt.status, queue=flt.queue, limit=limit, offset=offset)


def _plain_page(
    queue: Queue, flt: JobFilter, limit: int, offset: int, oldest_first: bool, candidates: int
) -> list[Job]:
    if not oldest_first:
        return _list(queue, flt, limit, offset)
    # Oldest first is the newest-first list read from its end (its length is known).
    end = candidates - offset
    start = max(0, end - limit)
    if end <= 0:
        return []
    return list(reversed(_list(queue, flt, end - start, start)))


def _scope(flt: JobFilter) -> JobFilter:
    """What a walk asks the database for. A queue without a state is filtered here instead:
    the database has no (queue, id) index, so deep offsets into one queue's newest-first
    list sort the whole queue each time (1 s at 300,000 jobs), while the plain list skips
    rows cheaply (40 ms per million)."""
    if flt.queue is not None and flt.status is None:
        return JobFilter()
    return JobFilter(queue=flt.queue, status=flt.status)


def _walk(
    queue: Queue,
    flt: JobFilter,
    oldest_first: bool,
    stats_report: dict[str, Any],
    batch: int,
    max_batch: int,
) -> Iterator[Job]:
    """Candidate jobs in id order (all jobs of the database's part of the filter), skipping
    what the time range rules out. Reads ``batch`` jobs first, doubling up to ``max_batch``.
    Jobs arriving meanwhile shift offsets; the walk skips ids it has passed, so none is
    yielded twice."""
    scope = _scope(flt)
    candidates = candidate_count(stats_report, scope)
    if not oldest_first:
        offset = 0
        if flt.created_to is not None:
            bound = flt.created_to + _SLACK
            offset = _first_offset(queue, scope, candidates, lambda j: j.created_at < bound)
        last_id = None
        while True:
            jobs = _list(queue, scope, batch, offset)
            for job in jobs:
                if last_id is not None and job.id >= last_id:
                    continue
                last_id = job.id
                if flt.created_from is not None and job.created_at < flt.created_from - _SLACK:
                    return
                yield job
            if len(jobs) < batch:
                return
            offset += len(jobs)
            batch = min(batch * 2, max_batch)
    else:
        end = candidates
        if flt.created_from is not None:
            bound = flt.created_from - _SLACK
            end = _first_offset(queue, scope, candidates, lambda j: j.created_at < bound)
        last_id = None
        while end > 0:
            start = max(0, end - batch)
            for job in reversed(_list(queue, scope, end - start, start)):
                if last_id is not None and job.id <= last_id:
                    continue
                last_id = job.id
                if flt.created_to is not None and job.created_at >= flt.created_to + _SLACK:
                    return
                yield job
            end = start
            batch = min(batch * 2, max_batch)


def _first_offset(
    queue: Queue, flt: JobFilter, candidates: int, past: Callable[[Job], bool]
) -> int:
    """The first offset of the newest-first list whose job is ``past`` the bound (``past``
    is False then True along the list, as enqueue times fall): a binary search."""
    low, high = 0, candidates
    while low < high:
        middle = (low + high) // 2
        jobs = _list(queue, flt, 1, middle)
        if not jobs or past(jobs[0]):
            high = middle
        else:
            low = middle + 1
    return low
