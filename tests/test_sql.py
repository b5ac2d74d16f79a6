"""The SQL itself: named statements, migrations as the only schema source, query plans."""

from __future__ import annotations

import dataclasses
import re
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import persistq
from group_support import one_group
from migration_support import postgres_at_version
from persistq import (
    JobFilter,
    LeaseLost,
    ManualClock,
    Queue,
    State,
    StorageBusy,
    StorageUnavailable,
)
from persistq.backends import Backend
from persistq.backends import sqlite as sqlite_backend
from persistq.backends.sql import migrations, queries, recording
from persistq.model import FAILURE_KINDS


class CallsSeen:
    """A backend that notes which of its methods are called."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.called: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.backend, name)
        if callable(value):
            self.called.add(name)
        return value


BACKEND_METHODS = {n for n, v in vars(Backend).items() if callable(v) and not n.startswith("_")}


def drive_every_backend_method(q: Queue, clock: ManualClock) -> None:
    """Each Backend method, through the Queue where it has one, down every branch that runs
    statements of its own (keys or none, one queue or several, a miss explained, ...)."""
    keyed = q.enqueue({"n": 0}, key="k")
    assert q.enqueue({"n": 0}, key="k").id == keyed.id  # the key exists: that job back
    q.enqueue_many([{"n": i} for i in range(1, 8)])  # no keys: the batch insert
    q.enqueue({"later": True}, queue="other", delay=3600)
    first, second = q.claim_many(queue=["other", "default"], worker="w", limit=2)
    held = q.claim(worker="w")
    assert held is not None
    q.heartbeat(held)
    q.heartbeat_many([held, first])
    q.complete(held, {"ok": True})
    assert [type(a) for a in q.complete_many([(held, None)])] == [LeaseLost]  # done: refused
    refused, claimed = q.complete_and_claim([(held, None)], queue="empty", worker="w", limit=1)
    assert [type(a) for a in refused] == [LeaseLost] and claimed == []
    q.fail(first, "boom")  # attempts left: retried
    q.fail(second, "boom", retry=False)  # FAILED
    released = q.claim(worker="w")
    assert released is not None
    q.release(released)
    assert q.claim(worker="w", lease=5) is not None
    clock.advance(6)
    assert q.recover_stalled() == 1
    processing = q.claim(worker="w")
    assert processing is not None
    assert q.cancel(processing.id).cancel_requested  # PROCESSING: cancel requested
    pending = q.jobs(status="PENDING", queue="default", limit=2)
    q.cancel(pending[0].id)  # PENDING: cancelled
    q.fail(pending[1].id, "by hand")  # an operator's fail
    q.resubmit(second.id)
    q.get(keyed.id)
    q.jobs()
    q.jobs(status="FAILED")
    q.jobs(queue="default")
    q.events(keyed.id)
    q.stats()
    # The search: plain and scanning, both orders, a time range (its id bounds), counts.
    page = q.search(JobFilter(queue="default"), limit=2)
    assert page.next is not None and q.search(JobFilter(), after=page.next).jobs
    q.search(JobFilter(queue="default"), oldest_first=True, limit=1)
    # A text over most jobs reads the table in id order; over a few, their index ranges.
    assert q.search(JobFilter(text="N"), limit=1).jobs
    q.search(JobFilter(text="BOOM", task="t"), oldest_first=True)
    assert q.count(JobFilter.of(states="FAILED", text="BY HAND")) == 1
    since = datetime.fromtimestamp(clock.now() - 60, UTC)
    assert q.count(JobFilter(created_from=since, created_to=since + timedelta(hours=1))) > 0
    failed = q.count(JobFilter.of(states="FAILED"))
    assert failed >= 1 and q.resubmit_matching(JobFilter.of(states="FAILED")).done == failed
    bulk_held = q.claim(worker="w")
    assert bulk_held is not None
    assert q.cancel_matching(JobFilter(queue="default")).done >= 2  # cancels and asks
    q.create_queue("spare")
    q.pause("spare")
    q.resume("spare")
    q.delete_queue("other", force=True)
    clock.advance(10)
    assert q.purge(status="COMPLETED", older_than=5) == 1
    q.enqueue({"soon": True}, queue="waiting", delay=3600)
    assert q.claim(queue="waiting", worker="w", wait=0.05) is None  # waits for a change
    q.worker_seen("w", ["default"])
    q.workers()
    q.prune_workers(unseen_for=60)
    q.worker_gone("w")
    q.backend.now()  # the database's clock (this queue reads the injected one)
    since = q.now() - 3600
    q.throughput(since=since, bucket=60)
    q.finished(since=since, limit=10)
    q.recent_failures(limit=10)
    q.storage()
    assert q.counters()["default"]["enqueued"] >= 1  # the triggers of 0006/0007 ran
    q.set_limits("limited", concurrency=1)
    q.enqueue({"limited": True}, queue="limited", timeout=1)
    crashing = q.claim(queue="limited", worker="w")
    assert crashing is not None
    q.crashed(crashing, "signal 9")  # a process-pool child died
    q.set_limits("limited", rate="100/s")  # starts empty: no burst
    clock.advance(1)
    assert q.claim(queue="limited", worker="w") is not None  # spends a rate token
    q.wait(keyed.id, timeout=0.01)  # finished or not, answered after a watch
    q.enqueue({"tick": 1}, queue="ticks", key="periodic:t:1")
    assert q.last_keyed_job("periodic:t:", queue="ticks") is not None
    q.check()
    q.health()
    q.backend.migrate()


def complete_in_a_group(q: Queue) -> None:
    """Completions made to form one group: on PostgreSQL only a group runs complete_jobs."""
    for n in range(3):
        q.enqueue({"grouped": n}, queue="grouped")
    leading, *held = q.claim_many(queue="grouped", worker="w", limit=3)
    calls = [lambda j=j: q.complete(j) for j in held]
    answers = one_group(q, calls, kind="complete", lead=lambda: q.complete(leading)).answers
    assert all(a.error is None for a in answers), answers
    # Cancels asked for meanwhile: the happy path (PostgreSQL: complete_jobs_held) misses
    # them, and they go the full way together (complete_jobs), read back CANCELLED.
    for n in range(3):
        q.enqueue({"cancelled": n}, queue="grouped")
    leading, *held = q.claim_many(queue="grouped", worker="w", limit=3)
    for job in held:
        q.cancel(job.id)
    calls = [lambda j=j: q.complete(j) for j in held]
    answers = one_group(q, calls, kind="complete", lead=lambda: q.complete(leading)).answers
    assert [a.result.status for a in answers] == [State.CANCELLED] * 2, answers


def test_every_named_statement_runs_and_none_is_dead(backend_url: str, clock: ManualClock) -> None:
    """Records the statements the backends ran while every Backend method is driven: a
    named statement that none of them runs is dead (or a method of the protocol is not
    driven here, which fails too)."""
    dialect = "sqlite" if backend_url.startswith("sqlite") else "postgres"
    with recording() as ran:
        q = persistq.connect(backend_url, clock=clock, lease=30)
        seen = CallsSeen(q.backend)
        q.backend = seen  # type: ignore[assignment]
        try:
            drive_every_backend_method(q, clock)
            q.backend = seen.backend  # forming a group looks at the backend itself
            complete_in_a_group(q)
            q.backend = seen  # type: ignore[assignment]
        finally:
            q.close()
    assert BACKEND_METHODS - seen.called == set(), "Backend methods this test does not drive"
    used = {name for (where, name), count in ran.items() if where == dialect and count}
    assert set(queries(dialect)) - used == set(), f"named statements nothing ran ({dialect})"


def test_both_dialects_define_the_same_statements_with_the_same_parameters() -> None:
    """Parity: a statement one dialect has and the other lacks is a missing feature."""

    def params(dialect: str, pattern: str) -> dict[str, set[str]]:
        return {name: set(re.findall(pattern, sql)) for name, sql in queries(dialect).items()}

    sqlite = params("sqlite", r"(?<![:\w]):(\w+)")
    postgres = params("postgres", r"%\((\w+)\)s")
    # Each dialect's batch insert and SQLite's id read-back differ in kind (see the files);
    # SQLite spends rate tokens in a statement, PostgreSQL's pick does it (migration 0006).
    only_sqlite = {
        "insert_job_batch",
        "last_insert_id",
        "insert_enqueued_events",
        "list_tables",
        "spend_rate_tokens",
    }
    # PostgreSQL locks a limited queue's row in a statement of its own, before the claim that
    # counts (see queries.sql, lock_queue_limits).
    only_postgres = {"insert_jobs_unnest", "lock_queue_limits", "claim_jobs_limited"}
    # PostgreSQL's lone enqueue has a statement of its own (SQLite's batch insert serves both).
    only_postgres.add("insert_one_job")
    # PostgreSQL completes a group of calls in one statement (SQLite: one transaction).
    only_postgres |= {"complete_jobs", "complete_jobs_held"}
    # PostgreSQL's complete_job writes its event too, and is told which (FINISH_EVENT), and
    # notifies those waiting for the job (Queue.wait) on the channel it is given.
    # It notifies only if some process listens (the advisory lock `listeners`).
    notifies = {"done_channel", "listeners", "listen_slots"}
    more_in_postgres = {"complete_job": {"events", *notifies}, "complete_held": notifies}
    assert set(sqlite) - only_sqlite == set(postgres) - only_postgres
    for name in set(sqlite) - only_sqlite:
        assert sqlite[name] | more_in_postgres.get(name, set()) == postgres[name], name


def test_every_postgres_writer_tries_its_listener_slot() -> None:
    # A listener holds LISTEN_SLOTS advisory locks; a writer that tried any other key than
    # its slot's would not see it, and its NOTIFY would be lost.
    from persistq.backends import postgres

    texts = [*queries("postgres").values(), postgres.LISTENER_SLOT]
    call = r"pg_try_advisory_xact_lock\((?:[^()]|\([^()]*\))*\)"  # one level of nesting
    tries = [t for text in texts for t in re.findall(call, text)]
    slot = "pg_try_advisory_xact_lock(%(listeners)s + pg_backend_pid() %% %(listen_slots)s)"
    assert len(tries) >= 4  # enqueue, complete, a group's completion; the backend's own
    assert set(tries) == {slot}


def test_migrate_twice_is_a_no_op(sqlite_url: str) -> None:
    with persistq.connect(sqlite_url) as q:
        q.enqueue("kept")
        version = q.backend.migrate()
        assert version == q.backend.migrate() == migrations("sqlite")[-1].version
        assert len(q.jobs()) == 1


# -- moving a database forward ----------------------------------------------------------------
# Jobs as the schema before fence left them: (status, attempts, lease_token, result, last_error).
OLD_JOBS = [
    ("PENDING", 0, None, None, None),  # never claimed
    ("PROCESSING", 1, "held-before-the-upgrade", None, None),  # leased right now
    ("COMPLETED", 2, None, '{"ok": true}', "boom"),
    ("PENDING", 0, None, None, "boom"),  # resubmitted once: attempts were reset
    ("FAILED", 3, None, None, "boom"),
]


def _migration_version(dialect: str, name: str) -> int:
    (version,) = [m.version for m in migrations(dialect) if m.name == name]
    return version


def _build_before_fence(url: str, now: float) -> None:
    """A database at the last schema version before ``fence``, holding OLD_JOBS and one
    ``enqueued`` event each, written with the SQL of that time (no persistq code)."""
    dialect = "sqlite" if url.startswith("sqlite") else "postgres"
    previous = [m for m in migrations(dialect) if m.version < _migration_version(dialect, "fence")]
    insert_job = (
        "INSERT INTO jobs (queue, payload, status, priority, run_at, attempts, max_attempts,"
        " worker, lease_token, lease_seconds, lease_expires_at, last_error, result, created_at,"
        " updated_at, started_at) VALUES ({p}, {p}, {p}, 0, {t}, {p}, 3, {p}, {p}, {p}, {t},"
        " {p}, {p}, {t}, {t}, {t})"
    )
    insert_event = "INSERT INTO events (job_id, at, kind) VALUES ({p}, {t}, 'enqueued')"

    def rows(n: int) -> tuple[object, ...]:
        status, attempts, token, result, error = OLD_JOBS[n]
        held = token is not None
        return (
            *("default", f'{{"n": {n}}}', status, now, attempts, "old-worker" if held else None),
            *(token, 300.0 if held else None, now + 300 if held else None, error, result),
            *(now, now, now if attempts else None),
        )

    if dialect == "sqlite":
        db = sqlite3.connect(url.removeprefix("sqlite:///"))
        for migration in previous:
            db.executescript(migration.sql)
            db.execute(f"PRAGMA user_version = {migration.version}")
        for n in range(len(OLD_JOBS)):
            db.execute(insert_job.format(p="?", t="?"), rows(n))
            db.execute(insert_event.format(p="?", t="?"), (n + 1, now))
        db.commit()
        db.close()
        return
    with postgres_at_version(url, _migration_version(dialect, "fence") - 1) as db:
        t = "to_timestamp(%s)"
        for n in range(len(OLD_JOBS)):
            db.execute(insert_job.format(p="%s", t=t), rows(n))
            db.execute(insert_event.format(p="%s", t=t), (n + 1, now))


def test_a_database_from_before_fence_moves_forward_with_nothing_lost(
    backend_url: str, clock: ManualClock
) -> None:
    """Existing jobs get fence = attempts (no fence was handed out before, and attempts never
    overcounts the claims); the lease held across the upgrade still completes."""
    _build_before_fence(backend_url, clock.now())

    with persistq.connect(backend_url, clock=clock, lease=30) as q:
        report = q.check()
        assert report["schema_version"] == report["latest_schema_version"], report
        jobs = sorted(q.jobs(limit=100), key=lambda job: job.id)
        assert [(j.payload, j.status, j.attempts, j.last_error) for j in jobs] == [
            ({"n": n}, State(status), attempts, error)
            for n, (status, attempts, _, _, error) in enumerate(OLD_JOBS)
        ]
        assert [j.fence for j in jobs] == [attempts for _, attempts, *_ in OLD_JOBS]
        assert jobs[2].result == {"ok": True}
        assert all([e.kind for e in q.events(j.id)][:1] == ["enqueued"] for j in jobs)

        held = dataclasses.replace(jobs[1], lease_token="held-before-the-upgrade")
        assert q.complete(held, "done").status == State.COMPLETED
        claimed = q.claim(worker="new")
        assert claimed is not None and (claimed.id, claimed.fence) == (jobs[0].id, 1)
        q.resubmit(jobs[2].id)
        q.resubmit(jobs[4].id)
        fences = {j.id: j.fence for j in q.claim_many(worker="new", limit=3)}
        assert fences == {jobs[2].id: 3, jobs[3].id: 1, jobs[4].id: 4}


def test_the_schema_has_the_tables_and_columns_the_model_needs(sqlite_url: str) -> None:
    with persistq.connect(sqlite_url) as q:
        path = q.check()["path"]
    conn = sqlite3.connect(path)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    model_fields = set(persistq.Job.__dataclass_fields__)
    assert model_fields <= columns
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"jobs", "events", "queues"} <= tables
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_database_refuses_a_state_outside_the_six(sqlite_url: str) -> None:
    with persistq.connect(sqlite_url) as q:
        job = q.enqueue("x")
        path = q.check()["path"]
    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE jobs SET status = 'DONE' WHERE id = ?", (job.id,))


def _plan(conn: sqlite3.Connection, name: str, params: dict[str, object]) -> str:
    return _plan_of(conn, queries("sqlite")[name], params)


def _plan_of(conn: sqlite3.Connection, sql: str, params: dict[str, object]) -> str:
    rows = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
    return "\n".join(str(row[3]) for row in rows)


def test_claim_walks_the_claim_index_instead_of_scanning_the_table(sqlite_url: str) -> None:
    """Claim cost must not grow with finished jobs: the plan uses the partial index."""
    with persistq.connect(sqlite_url) as q:
        path = q.check()["path"]
    conn = sqlite3.connect(path)
    params = {"queue": "q", "worker": "w", "limit": 1, "lease_seconds": 30, "now": 0}
    for plan in (
        _plan(conn, "claim_jobs", params),
        _plan_of(conn, sqlite_backend.CLAIM_ONE_JOB, params),
    ):
        assert "USING INDEX jobs_claim" in plan or "USING COVERING INDEX jobs_claim" in plan, plan
        assert "SCAN jobs" not in plan.replace("SCAN jobs USING", ""), plan
        assert "TEMP B-TREE" not in plan, plan
    # The one-job form picks its row with a scalar subquery: no list built per claim.
    assert "LIST SUBQUERY" in _plan(conn, "claim_jobs", params)
    assert "LIST SUBQUERY" not in _plan_of(conn, sqlite_backend.CLAIM_ONE_JOB, params)
    recover = _plan(conn, "recover_expired", {"now": 0, "limit": 10})
    assert "jobs_state" in recover, recover  # the PROCESSING range of each queue
    oldest = _plan(conn, "oldest_pending", {"now": 0})
    assert "TEMP B-TREE" not in oldest, oldest


def test_synchronous_is_full_by_default_and_normal_on_request(tmp_path: Path) -> None:
    with persistq.connect(f"sqlite:///{tmp_path}/a.db") as q:
        assert q.check()["synchronous"] == "FULL"
    with persistq.connect(f"sqlite:///{tmp_path}/b.db?synchronous=normal") as q:
        assert q.check()["synchronous"] == "NORMAL"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///x.db?synchronous=off", "synchronous='off'"),
        ("sqlite:///x.db?journal=memory", "unknown SQLite URL option"),
        ("sqlite:///", "names no file"),
    ],
)
def test_bad_sqlite_urls_are_clear_errors(url: str, message: str) -> None:
    with pytest.raises(StorageUnavailable, match=message):
        persistq.connect(url)


def test_relative_and_absolute_urls_name_the_right_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert sqlite_backend.parse_sqlite_url("sqlite:///data/queue.db")[0] == Path("data/queue.db")
    assert sqlite_backend.parse_sqlite_url("sqlite:////abs/q.db")[0] == Path("/abs/q.db")
    with persistq.connect() as q:  # the default URL, relative to the working directory
        q.enqueue("x")
    assert (tmp_path / "data" / "queue.db").exists()


def _hold_write_lock(path: str, seconds: float, started: threading.Event) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    started.set()
    time.sleep(seconds)
    conn.execute("ROLLBACK")
    conn.close()


def test_a_busy_database_is_waited_on_not_reported(sqlite_url: str) -> None:
    with persistq.connect(sqlite_url) as q:
        path = q.check()["path"]
        started = threading.Event()
        holder = threading.Thread(target=_hold_write_lock, args=(path, 1.5, started))
        holder.start()
        started.wait()
        began = time.monotonic()
        job = q.enqueue("after the lock")  # must wait, not raise "database is locked"
        waited = time.monotonic() - began
        holder.join()
        assert q.get(job.id).payload == "after the lock"
        assert waited >= 1.0


def test_a_database_busy_past_the_bound_raises_storage_busy(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERSISTQ_BUSY_TIMEOUT_SECONDS", "0.3")
    with persistq.connect(sqlite_url) as q:
        path = q.check()["path"]
        started = threading.Event()
        holder = threading.Thread(target=_hold_write_lock, args=(path, 2.0, started))
        holder.start()
        started.wait()
        with pytest.raises(StorageBusy, match="busy"):
            q.enqueue("refused")
        holder.join()
        assert q.jobs() == []


def test_recent_failures_walk_an_index_of_failure_events_only(sqlite_url: str) -> None:
    """Issue 15: failures were looked for among the newest 100,000 events only. The query
    and the partial index name the kinds of FAILURE_KINDS, in both dialects (SQLite as
    an OR of equalities since migration 0010: an IN list costs it a temporary b-tree)."""
    kinds = "IN (" + ", ".join(f"'{k}'" for k in FAILURE_KINDS) + ")"
    assert kinds in queries("postgres")["recent_failures"]
    [index] = [m for m in migrations("postgres") if m.name == "failure_events"]
    assert kinds in index.sql
    ors = " OR ".join(f"kind = '{k}'" for k in FAILURE_KINDS)
    assert ors.replace("kind", "e.kind") in queries("sqlite")["recent_failures"]
    [*_, index] = [m for m in migrations("sqlite") if "CREATE INDEX events_failures" in m.sql]
    assert f"WHERE {ors};" in index.sql
    with persistq.connect(sqlite_url) as q:
        path = q.check()["path"]
    plan = _plan(sqlite3.connect(path), "recent_failures", {"limit": 20})
    assert "USING INDEX events_failures" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


SEARCH_PARAMS: dict[str, object] = {
    "queue": "q",
    "status": "FAILED",
    "states": '["FAILED"]',
    "above": 0,
    "below": 10,
    "created_from": None,
    "created_to": None,
    "task": None,
    "pattern": None,
    "limit": 5,
}


def test_search_walks_one_index_range_per_queue_and_state_or_the_table_in_id_order(
    sqlite_url: str,
) -> None:
    """Issue 15: the search must not sort, nor scan, to find a page: each (queue, state) is
    a range of an index ordered by id (jobs_state once it exists), and a scan in id order
    is a range of the primary key."""
    with persistq.connect(sqlite_url) as q:
        path = q.check()["path"]
    conn = sqlite3.connect(path)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    for name in ("search_ids", "search_ids_oldest", "count_in_state", "count_matching"):
        plan = _plan(conn, name, SEARCH_PARAMS)
        # PENDING rows are in jobs_claim only (sqlite 0009), by priority before id: that arm
        # sorts the merge of each priority's page, no more (at most one sort, no scan).
        state, _, pending = plan.partition("UNION ALL")
        assert "SEARCH jobs USING" in state and "TEMP B-TREE" not in state, (name, plan)
        assert "jobs_state" in state or "jobs_state" not in indexes, (name, plan)
        assert pending.count("TEMP B-TREE") <= 1 and "SCAN jobs" not in pending, (name, plan)
    for name in ("scan_ids", "scan_ids_oldest", "scan_count"):
        plan = _plan(conn, name, SEARCH_PARAMS)
        assert "USING INTEGER PRIMARY KEY" in plan and "TEMP B-TREE" not in plan, (name, plan)
    for name in ("id_range", "first_job_from"):
        plan = _plan(conn, name, {"id": 1})
        assert "SCAN jobs" not in plan.replace("SCAN jobs USING", ""), (name, plan)


@pytest.mark.parametrize("statement", ["claim_jobs", "claim_jobs_limited"])
def test_a_postgres_claimer_that_started_on_an_empty_table_never_reads_every_job(
    pg_url: str, statement: str
) -> None:
    """A claiming session plans its claim once (CLAIM_SETTINGS force the generic plan), when
    it first claims, and keeps that plan as the table grows: made on a near-empty table, it
    must still find the rows by their keys, or every later claim reads every job."""
    from psycopg.rows import tuple_row

    q = persistq.connect(pg_url)
    try:
        q.enqueue(1, queue="plans")
        names: list[str] = []

        def numbered(match: re.Match[str]) -> str:
            if match[1] not in names:
                names.append(match[1])
            return f"${names.index(match[1]) + 1}"

        claim = re.sub(r"%\((\w+)\)s", numbered, queries("postgres")[statement])
        values = {
            "queue": "'plans'",
            "now": "NULL::float8",
            "limit": "1",
            "worker": "'w'",
            "lease_seconds": "30::float8",
        }
        args = ", ".join(values[name] for name in names)
        with q.backend._claim_pool.connection() as conn:  # type: ignore[attr-defined]
            conn.execute(f"PREPARE probe AS {claim.replace('%%', '%')}")
            try:
                explained = conn.cursor(row_factory=tuple_row).execute(
                    f"EXPLAIN EXECUTE probe({args})"
                )
                plan = [row[0] for row in explained]
            finally:
                conn.execute("DEALLOCATE probe")
    finally:
        q.close()
    assert [line for line in plan if "Seq Scan" in line] == [], "\n".join(plan)
