"""Job search for the Manager UI's jobs table and its bulk actions.

``Queue.jobs`` lists by queue and state only, newest first, with limit and offset. Text and
time-range filters are applied here, to pages of that list, so a page of the Manager reads
at most ``max_scan`` jobs and never the whole table. Ids grow with enqueue time, which
bounds a time-range walk: it starts at the offset a binary search finds and stops once past
the range, allowing CLOCK_SLACK_SECONDS because producers commit slightly out of clock order
(a producer reads the clock, then waits for the write lock). Everything is read through the
queue API (:class:`~persistq.ports.ReadQueue`), so a search works over a ``RemoteQueue``
too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from persistq.model import Job, State, encode_json, task_call
from persistq.ports import ReadQueue

__all__ = ["JobFilter", "JobPage", "candidate_count", "find_jobs", "matching_ids"]

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
    """Jobs of the filter's queue and state, from the counts of ``Queue.stats`` (no scan)."""
    total = 0
    for name, row in stats_report["queues"].items():
        if flt.queue is not None and name != flt.queue:
            continue
        states = [flt.status] if flt.status is not None else list(State)
        total += sum(int(row.get(str(state), 0)) for state in states)
    return total


def find_jobs(
    q: ReadQueue,
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
    stats_report = stats_report if stats_report is not None else q.stats()
    if not flt.needs_scan:
        candidates = candidate_count(stats_report, flt)
        jobs = _plain_page(q, flt, limit, offset, oldest_first, candidates)
        return JobPage(jobs, candidates, len(jobs), True)
    found: list[Job] = []
    matched = scanned = 0
    # The first read asks for about a page: a recent time range fills it at once.
    first = min(SEARCH_BATCH, max(100, offset + limit))
    for job in _walk(q, flt, oldest_first, stats_report, first, SEARCH_BATCH):
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
    q: ReadQueue,
    flt: JobFilter,
    *,
    on_progress: Callable[[int, int], None] | None = None,
    stats_report: dict[str, Any] | None = None,
) -> list[int]:
    """Ids of every matching job, newest first: the set a bulk action will act on."""
    found = matching_jobs(q, flt, on_progress=on_progress, stats_report=stats_report)
    return [job_id for job_id, _ in found]


def matching_jobs(
    q: ReadQueue,
    flt: JobFilter,
    *,
    on_progress: Callable[[int, int], None] | None = None,
    stats_report: dict[str, Any] | None = None,
) -> list[tuple[int, State]]:
    """``(id, state)`` of every matching job, newest first, so a bulk action can count only
    the jobs it applies to.

    Reads each candidate once, in batches of BULK_BATCH; ``on_progress(read, matched)``
    is called after each batch. Candidates are counted first, from the statistics.
    """
    stats_report = stats_report if stats_report is not None else q.stats()
    found: list[tuple[int, State]] = []
    scanned = 0
    for job in _walk(q, flt, False, stats_report, BULK_BATCH, BULK_BATCH):
        scanned += 1
        if flt.matches(job):
            found.append((job.id, job.status))
        if on_progress is not None and scanned % BULK_BATCH == 0:
            on_progress(scanned, len(found))
    if on_progress is not None:
        on_progress(scanned, len(found))
    return found


def _list(q: ReadQueue, flt: JobFilter, limit: int, offset: int) -> list[Job]:
    return q.jobs(status=flt.status, queue=flt.queue, limit=limit, offset=offset)


def _plain_page(
    q: ReadQueue, flt: JobFilter, limit: int, offset: int, oldest_first: bool, candidates: int
) -> list[Job]:
    if not oldest_first:
        return _list(q, flt, limit, offset)
    # Oldest first is the newest-first list read from its end (its length is known).
    end = candidates - offset
    start = max(0, end - limit)
    if end <= 0:
        return []
    return list(reversed(_list(q, flt, end - start, start)))


def _scope(flt: JobFilter) -> JobFilter:
    """What a walk asks the database for. A queue without a state is filtered here instead:
    the database has no (queue, id) index, so deep offsets into one queue's newest-first
    list sort the whole queue each time (1 s at 300,000 jobs), while the plain list skips
    rows cheaply (40 ms per million)."""
    if flt.queue is not None and flt.status is None:
        return JobFilter()
    return JobFilter(queue=flt.queue, status=flt.status)


def _walk(
    q: ReadQueue,
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
            offset = _first_offset(q, scope, candidates, lambda j: j.created_at < bound)
        last_id = None
        while True:
            jobs = _list(q, scope, batch, offset)
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
            end = _first_offset(q, scope, candidates, lambda j: j.created_at < bound)
        last_id = None
        while end > 0:
            start = max(0, end - batch)
            for job in reversed(_list(q, scope, end - start, start)):
                if last_id is not None and job.id <= last_id:
                    continue
                last_id = job.id
                if flt.created_to is not None and job.created_at >= flt.created_to + _SLACK:
                    return
                yield job
            end = start
            batch = min(batch * 2, max_batch)


def _first_offset(
    q: ReadQueue, flt: JobFilter, candidates: int, past: Callable[[Job], bool]
) -> int:
    """The first offset of the newest-first list whose job is ``past`` the bound (``past``
    is False then True along the list, as enqueue times fall): a binary search."""
    low, high = 0, candidates
    while low < high:
        middle = (low + high) // 2
        jobs = _list(q, flt, 1, middle)
        if not jobs or past(jobs[0]):
            high = middle
        else:
            low = middle + 1
    return low
