"""The job search behind the Manager's table and its bulk actions (persistq.search)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from persistq import ManualClock, Queue, State, search
from persistq.search import JobFilter

HOUR = 3600.0


def at(clock: ManualClock, offset: float = 0.0) -> datetime:
    return datetime.fromtimestamp(clock.now() + offset, UTC)


@pytest.fixture
def spread(queue: Queue, clock: ManualClock) -> dict[str, list[int]]:
    """60 jobs, one a minute over the last hour, alternating queues; a few failed."""
    ids: dict[str, list[int]] = {"a": [], "b": [], "failed": []}
    for i in range(60):
        name = "a" if i % 2 else "b"
        ids[name].append(queue.enqueue({"n": i, "tag": f"item-{i:02d}"}, queue=name).id)
        clock.advance(60)
    for job_id in ids["a"][:3]:
        job = queue.claim(queue="a", worker="w")
        assert job is not None and job.id == job_id
        queue.fail(job, f"KeyError: missing {job_id}", retry=False)
        ids["failed"].append(job_id)
    return ids


def ids_of(page: search.JobPage) -> list[int]:
    return [j.id for j in page.jobs]


def test_without_text_or_time_a_page_is_one_query_with_the_exact_total(
    queue: Queue, spread: dict[str, list[int]]
) -> None:
    page = search.find_jobs(queue, JobFilter(queue="a"), limit=10, offset=10)
    assert ids_of(page) == sorted(spread["a"], reverse=True)[10:20]
    assert (page.total, page.complete) == (30, True)
    oldest = search.find_jobs(queue, JobFilter(queue="a"), limit=10, oldest_first=True)
    assert ids_of(oldest) == sorted(spread["a"])[:10]
    failed = search.find_jobs(queue, JobFilter(status=State.FAILED), limit=50)
    assert ids_of(failed) == sorted(spread["failed"], reverse=True)
    assert failed.total == 3


def test_text_matches_payload_or_error_in_any_case(
    queue: Queue, spread: dict[str, list[int]]
) -> None:
    page = search.find_jobs(queue, JobFilter(text="ITEM-1"), limit=50)
    assert len(page.jobs) == 10 and page.complete and page.total == 10
    error = search.find_jobs(queue, JobFilter(text="keyerror"), limit=50)
    assert sorted(ids_of(error)) == spread["failed"]
    both = search.find_jobs(queue, JobFilter(queue="b", text="item-1"), limit=50)
    assert all(j.queue == "b" for j in both.jobs) and len(both.jobs) == 5


@pytest.mark.parametrize("oldest_first", [False, True])
def test_a_time_range_finds_exactly_the_jobs_enqueued_in_it(
    queue: Queue, clock: ManualClock, spread: dict[str, list[int]], oldest_first: bool
) -> None:
    start, end = at(clock, -40 * 60 - 1), at(clock, -30 * 60 - 1)  # minutes 20..29
    flt = JobFilter(created_from=start, created_to=end)
    page = search.find_jobs(queue, flt, limit=50, oldest_first=oldest_first)
    expected = [j.id for j in queue.jobs(limit=100) if start <= j.created_at < end]
    assert len(expected) == 10
    assert ids_of(page) == (sorted(expected) if oldest_first else sorted(expected, reverse=True))
    assert page.complete
    by_queue = search.find_jobs(queue, JobFilter(queue="a", created_from=start, created_to=end))
    assert ids_of(by_queue) == [i for i in sorted(expected, reverse=True) if i in spread["a"]]


def test_a_time_range_reads_only_around_the_range(
    queue: Queue, clock: ManualClock, spread: dict[str, list[int]]
) -> None:
    clock.advance(HOUR)  # the slack around the range is two minutes: the spread is older
    queue.enqueue_many([{"late": i} for i in range(500)])
    flt = JobFilter(created_to=at(clock, -HOUR))  # the first 60 jobs only
    page = search.find_jobs(queue, flt, limit=100)
    assert len(page.jobs) == 60
    assert page.scanned <= 70  # the 500 newer ones were skipped by the binary search


def test_a_search_stops_at_its_budget_and_says_more_may_match(
    queue: Queue, spread: dict[str, list[int]]
) -> None:
    page = search.find_jobs(queue, JobFilter(text="item-0"), limit=50, max_scan=20)
    assert page.scanned == 20 and not page.complete and page.total is None
    assert ids_of(page) == []  # item-00..09 are the oldest, beyond the 20 newest


def test_pages_of_a_search_do_not_overlap(queue: Queue, spread: dict[str, list[int]]) -> None:
    flt = JobFilter(text="item")
    pages = [search.find_jobs(queue, flt, limit=7, offset=o) for o in range(0, 63, 7)]
    seen = [i for p in pages for i in ids_of(p)]
    assert seen == sorted(spread["a"] + spread["b"], reverse=True)


def test_matching_ids_are_every_match_and_only_those(
    queue: Queue, spread: dict[str, list[int]]
) -> None:
    progress: list[tuple[int, int]] = []
    ids = search.matching_ids(
        queue, JobFilter(queue="a", text="item-1"), on_progress=lambda r, m: progress.append((r, m))
    )
    expected = [j.id for j in queue.jobs(queue="a", limit=100) if "item-1" in j.payload["tag"]]
    assert ids == expected and len(ids) == 5
    assert progress[-1][1] == 5
    assert search.matching_ids(queue, JobFilter(status=State.FAILED)) == sorted(
        spread["failed"], reverse=True
    )


def test_candidate_count_comes_from_the_statistics(
    queue: Queue, spread: dict[str, list[int]]
) -> None:
    report = queue.stats()
    assert search.candidate_count(report, JobFilter()) == 60
    assert search.candidate_count(report, JobFilter(queue="a", status=State.FAILED)) == 3
    assert search.candidate_count(report, JobFilter(status=State.PENDING)) == 57
