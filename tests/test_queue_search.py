"""Searching jobs by queue, states, text, task and time, with keyset pages, and acting on
every match in batched transactions (``Queue.search``, ``count``, ``resubmit_matching``,
``cancel_matching``): what the Manager's table and its bulk actions stand on."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest

from persistq import InvalidJob, JobFilter, JobPage, ManualClock, Queue, State

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


def ids_of(page: JobPage) -> list[int]:
    return [j.id for j in page.jobs]


def every_page(queue: Queue, flt: JobFilter, limit: int, oldest_first: bool = False) -> list[int]:
    """The ids of every page, following ``next`` to the end."""
    seen: list[int] = []
    after = None
    while True:
        page = queue.search(flt, after=after, limit=limit, oldest_first=oldest_first)
        seen.extend(ids_of(page))
        if page.next is None:
            return seen
        assert page.next == page.jobs[-1].id
        after = page.next


def test_pages_of_a_queue_follow_one_another_by_cursor_either_way(
    queue: Queue, spread: dict[str, list[int]]
) -> None:
    first = queue.search(JobFilter(queue="a"), limit=10)
    assert ids_of(first) == sorted(spread["a"], reverse=True)[:10]
    second = queue.search(JobFilter(queue="a"), after=first.next, limit=10)
    assert ids_of(second) == sorted(spread["a"], reverse=True)[10:20]
    assert every_page(queue, JobFilter(queue="a"), 7) == sorted(spread["a"], reverse=True)
    assert every_page(queue, JobFilter(queue="a"), 7, oldest_first=True) == sorted(spread["a"])
    assert queue.count(JobFilter(queue="a")) == 30
    assert queue.count() == 60
    last = queue.search(JobFilter(queue="a"), limit=30)
    assert len(last.jobs) == 30 and last.next is None  # exactly one page: no empty next one


def test_states_filter_any_of_them_across_queues(
    queue: Queue, spread: dict[str, list[int]]
) -> None:
    failed = queue.search(JobFilter.of(states=["failed"]), limit=50)
    assert ids_of(failed) == sorted(spread["failed"], reverse=True)
    both = JobFilter.of(states=[State.FAILED, State.PENDING])
    assert every_page(queue, both, 11) == sorted(spread["a"] + spread["b"], reverse=True)
    assert queue.count(JobFilter.of(queue="a", states="FAILED")) == 3
    assert queue.count(JobFilter.of(states="PENDING")) == 57
    assert queue.count(JobFilter.of(queue="nosuch")) == 0


def test_text_matches_payload_or_error_in_any_case(
    queue: Queue, spread: dict[str, list[int]]
) -> None:
    page = queue.search(JobFilter(text="ITEM-1"), limit=50)
    assert len(page.jobs) == 10 and page.next is None
    assert queue.count(JobFilter(text="ITEM-1")) == 10
    error = queue.search(JobFilter(text="keyerror"), limit=50)
    assert sorted(ids_of(error)) == spread["failed"]
    both = queue.search(JobFilter(queue="b", text="item-1"), limit=50)
    assert all(j.queue == "b" for j in both.jobs) and len(both.jobs) == 5
    # The payload as stored: compact JSON, so its quotes and colons match too.
    assert queue.count(JobFilter(text='"tag":"item-07"')) == 1
    assert queue.count(JobFilter(text="%")) == queue.count(JobFilter(text="_")) == 0  # literal


def test_a_task_filter_matches_the_payloads_task_name(queue: Queue) -> None:
    wanted = queue.enqueue({"task": "mail.send", "args": [1], "kwargs": {}})
    queue.enqueue({"task": "mail.sender", "args": [], "kwargs": {}})
    queue.enqueue({"path": "mail.send"})
    queue.enqueue("mail.send")
    page = queue.search(JobFilter(task="mail.send"))
    assert ids_of(page) == [wanted.id]
    assert queue.count(JobFilter(task="mail.send", text="MAIL")) == 1


@pytest.mark.parametrize("oldest_first", [False, True])
def test_a_time_range_finds_exactly_the_jobs_enqueued_in_it(
    queue: Queue, clock: ManualClock, spread: dict[str, list[int]], oldest_first: bool
) -> None:
    start, end = at(clock, -40 * 60 - 1), at(clock, -30 * 60 - 1)  # minutes 20..29
    flt = JobFilter(created_from=start, created_to=end)
    page = queue.search(flt, limit=50, oldest_first=oldest_first)
    expected = [j.id for j in queue.jobs(limit=100) if start <= j.created_at < end]
    assert len(expected) == 10
    assert ids_of(page) == (sorted(expected) if oldest_first else sorted(expected, reverse=True))
    assert page.next is None and queue.count(flt) == 10
    by_queue = queue.search(JobFilter(queue="a", created_from=start, created_to=end))
    assert ids_of(by_queue) == [i for i in sorted(expected, reverse=True) if i in spread["a"]]
    assert every_page(queue, flt, 3, oldest_first) == ids_of(page)


def test_a_time_range_far_from_the_newest_jobs_is_found_past_them(
    queue: Queue, clock: ManualClock, spread: dict[str, list[int]]
) -> None:
    clock.advance(HOUR)  # the slack around a range is two minutes: the spread is older
    queue.enqueue_many([{"late": i} for i in range(500)])
    flt = JobFilter(created_to=at(clock, -HOUR))  # the first 60 jobs only
    assert sorted(ids_of(queue.search(flt, limit=100))) == sorted(spread["a"] + spread["b"])
    assert queue.count(flt) == 60
    assert queue.count(JobFilter(created_from=at(clock, -1))) == 500
    assert queue.count(JobFilter(created_from=at(clock, 1))) == 0


def test_max_id_leaves_out_jobs_enqueued_after_it(
    queue: Queue, spread: dict[str, list[int]]
) -> None:
    newest = max(spread["a"] + spread["b"])
    queue.enqueue({"tag": "item-late"})
    bound = JobFilter(text="item", max_id=newest)
    assert queue.count(bound) == 60
    assert queue.count(JobFilter(text="item")) == 61
    assert queue.search(bound, limit=1).jobs[0].id == newest


def test_what_matches_in_python_is_what_the_database_finds(
    queue: Queue, spread: dict[str, list[int]]
) -> None:
    every = queue.jobs(limit=100)
    for flt in [
        JobFilter(text="item-3"),
        JobFilter.of(queue="a", states=["PENDING", "FAILED"], text="MISSING"),
        JobFilter(text="n"),
    ]:
        expected = [j.id for j in every if flt.matches(j)]
        assert ids_of(queue.search(flt, limit=100)) == expected, flt
        assert queue.count(flt) == len(expected)


# -- bulk actions -------------------------------------------------------------------------------


def test_resubmit_matching_changes_only_matching_resubmittable_jobs_in_batches(
    queue: Queue, clock: ManualClock, spread: dict[str, list[int]]
) -> None:
    for job_id in spread["b"][:5]:
        queue.cancel(job_id)
    done = queue.resubmit_matching(JobFilter(text="item"), batch=2)  # PENDING ones: not
    assert (done.done, done.next) == (8, None)
    for job_id in spread["failed"] + spread["b"][:5]:
        job = queue.get(job_id)
        assert (job.status, job.attempts) == (State.PENDING, 0)
        assert queue.events(job_id)[-1].kind == "resubmitted"
    assert queue.count(JobFilter.of(states=["PENDING"])) == 60
    assert queue.resubmit_matching().done == 0


def test_a_bulk_resubmit_keeps_history_and_counters_as_one_resubmit_does(queue: Queue) -> None:
    # Two completed jobs: one resubmitted alone, one in bulk. The bulk path goes through the
    # same transition, so the erased attempt stays in the history (derived claimed/completed
    # from the resubmitted event) and the lifetime counters do not go down.
    jobs = queue.enqueue_many([{"n": 1}, {"n": 2}], queue="twins")
    for _ in jobs:
        claimed = queue.claim(queue="twins", worker="w")
        assert claimed is not None
        queue.complete(claimed)
    before = queue.counters()["twins"]
    queue.resubmit(jobs[0].id)
    assert queue.resubmit_matching(JobFilter(queue="twins")).done == 1
    alone, bulk = (queue.events(j.id) for j in jobs)
    shape = [(e.kind, e.worker, e.detail) for e in alone]
    assert [(e.kind, e.worker, e.detail) for e in bulk] == shape
    assert [e.kind for e in bulk] == ["enqueued", "claimed", "completed", "resubmitted"]
    assert queue.counters()["twins"] == before


def test_a_bulk_action_stops_at_its_limit_and_goes_on_from_next(
    queue: Queue, spread: dict[str, list[int]]
) -> None:
    first = queue.cancel_matching(JobFilter(queue="b"), limit=12, batch=5)
    assert first.done == 12 and first.next is not None
    assert queue.count(JobFilter.of(queue="b", states="CANCELLED")) == 12
    rest = queue.cancel_matching(JobFilter(queue="b"), after=first.next, batch=5)
    assert (rest.done, rest.next) == (18, None)
    assert queue.count(JobFilter.of(queue="b", states="CANCELLED")) == 30


def test_cancel_matching_cancels_waiting_jobs_and_asks_running_ones(
    queue: Queue, spread: dict[str, list[int]]
) -> None:
    running = queue.claim(queue="b", worker="w")
    assert running is not None
    done = queue.cancel_matching(JobFilter(queue="b"))
    assert done.done == 30
    held = queue.get(running.id)
    assert held.status == State.PROCESSING and held.cancel_requested
    assert queue.events(running.id)[-1].kind == "cancel_requested"
    assert queue.count(JobFilter.of(queue="b", states="CANCELLED")) == 29
    assert queue.cancel_matching(JobFilter(queue="b")).done == 0  # asked already: nothing
    assert queue.complete(running).status == State.CANCELLED


def test_a_filter_of_states_the_action_never_applies_to_changes_nothing(
    queue: Queue, spread: dict[str, list[int]]
) -> None:
    assert queue.resubmit_matching(JobFilter.of(states="PENDING")).done == 0
    assert queue.cancel_matching(JobFilter.of(states="COMPLETED")).done == 0
    assert queue.count(JobFilter.of(states="PENDING")) == 57


@pytest.mark.parametrize(
    "call",
    [
        lambda q: q.resubmit_matching(JobFilter(states=("DONE",))),  # type: ignore[arg-type]
        lambda q: q.cancel_matching(JobFilter(queue="no spaces")),
        lambda q: q.cancel_matching(JobFilter(created_from=datetime(2026, 1, 1))),
        lambda q: q.cancel_matching(JobFilter(text="x" * 1001)),
        lambda q: q.cancel_matching(JobFilter(), batch=0),
        lambda q: q.resubmit_matching(JobFilter(), limit=0),
        lambda q: q.resubmit_matching(JobFilter(), after=-1),
        lambda q: q.search(JobFilter(max_id=-1)),
        lambda q: q.count(JobFilter(text="nul\x00")),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    queue: Queue, spread: dict[str, list[int]], call: object
) -> None:
    before = [(j.id, j.status) for j in queue.jobs(limit=100)]
    with pytest.raises(InvalidJob):
        call(queue)  # type: ignore[operator]
    assert [(j.id, j.status) for j in queue.jobs(limit=100)] == before


def refuse_update_of(url: str, queue: Queue, job_id: int) -> None:
    """A trigger that makes the database refuse any change of ``job_id``'s state."""
    if url.startswith("sqlite"):
        db = sqlite3.connect(queue.check()["path"])
        db.execute(
            "CREATE TRIGGER refuse BEFORE UPDATE OF status ON jobs"
            f" WHEN NEW.id = {job_id} BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
        db.commit()
        db.close()
        return
    import psycopg

    from persistq.backends.postgres import parse_postgres_url

    server, schema = parse_postgres_url(url)
    with psycopg.connect(server, autocommit=True) as db:
        db.execute(f'SET search_path TO "{schema}"')
        db.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF NEW.id = {job_id} THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$"
        )
        db.execute(
            "CREATE TRIGGER refuse BEFORE UPDATE OF status ON jobs"
            " FOR EACH ROW EXECUTE FUNCTION refuse()"
        )


@pytest.mark.local_only
def test_a_failure_mid_way_keeps_whole_batches_and_nothing_of_the_failed_one(
    queue: Queue, spread: dict[str, list[int]], backend_url: str
) -> None:
    """A bulk action that dies in its third batch: the first two are committed whole, the
    third not at all, the rest untouched (a real fault: the database refuses one update)."""
    targets = sorted(spread["b"], reverse=True)  # newest first, as the action goes
    victim = targets[24]  # in the third batch of ten
    refuse_update_of(backend_url, queue, victim)
    with pytest.raises(Exception, match="refused"):
        queue.cancel_matching(JobFilter(queue="b"), batch=10)
    states = {job_id: queue.get(job_id).status for job_id in targets}
    assert [states[i] for i in targets[:20]] == [State.CANCELLED] * 20
    assert [states[i] for i in targets[20:]] == [State.PENDING] * 10
    cancelled_events = sum(queue.events(i)[-1].kind == "cancelled" for i in targets)
    assert cancelled_events == 20
