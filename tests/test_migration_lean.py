"""Moving a database from before the lean write path (sqlite 0008, postgres 0009) forward.

The database is built at the previous schema with the SQL of that time (no persistq code):
jobs in every state with the events the previous release stored for each transition
(enqueued, claimed and completed included). Histories, jobs, stats and counters read the
same after the migration, and new transitions append to the old histories.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import persistq
from migration_support import postgres_at_version, sqlite_at_version
from persistq import ManualClock, Queue, State
from persistq.backends import open_backend
from persistq.config import Settings

LEAN = {"sqlite": 8, "postgres": 9}


class OldRelease:
    """Writes jobs and events as the release before the lean write path did: an event row
    for every transition, and the counters its triggers keep."""

    def __init__(self, url: str, now: float) -> None:
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgres"
        self.now = now
        self.p = "?" if self.dialect == "sqlite" else "%s"
        self.t = "?" if self.dialect == "sqlite" else "to_timestamp(%s)"
        if self.dialect == "sqlite":
            path = Path(url.removeprefix("sqlite:///"))
            self.db: Any = sqlite_at_version(path, LEAN["sqlite"] - 1)
            return
        self.db = postgres_at_version(url, LEAN["postgres"] - 1)

    def sql(self, statement: str, *args: Any) -> list[Any]:
        cur = self.db.execute(statement.format(p=self.p, t=self.t), args)
        return list(cur.fetchall()) if cur.description else []

    def tick(self) -> float:
        self.now += 1.0
        return self.now

    def event(
        self, job: int, kind: str, worker: str | None = None, detail: str | None = None
    ) -> None:
        self.sql(
            "INSERT INTO events (job_id, at, kind, worker, detail)"
            " VALUES ({p}, {t}, {p}, {p}, {p})",
            job,
            self.now,
            kind,
            worker,
            detail,
        )

    def enqueue(self, queue: str = "default", max_attempts: int = 3) -> int:
        t = self.tick()
        self.sql(
            "INSERT INTO jobs (queue, payload, status, priority, run_at, attempts, max_attempts,"
            " created_at, updated_at) VALUES ({p}, '{{}}', 'PENDING', 0, {t}, 0, {p}, {t}, {t})",
            queue,
            t,
            max_attempts,
            t,
            t,
        )
        (job,) = self.sql("SELECT max(id) FROM jobs")[0]
        self.sql(
            "INSERT INTO queues (name, paused, created_at) VALUES ({p}, {p}, {t})"
            " ON CONFLICT (name) DO NOTHING",
            queue,
            False,
            t,
        )
        self.event(job, "enqueued")
        return int(job)

    def claim(self, job: int, worker: str) -> None:
        t = self.tick()
        self.sql(
            "UPDATE jobs SET status = 'PROCESSING', worker = {p}, lease_token = {p},"
            " lease_seconds = 30, lease_expires_at = {t}, attempts = attempts + 1,"
            " fence = fence + 1, cancel_requested = {p}, started_at = {t}, finished_at = NULL,"
            " updated_at = {t} WHERE id = {p}",
            worker,
            f"token-{job}-{t}",
            t + 30,
            False,
            t,
            t,
            job,
        )
        (attempts,) = self.sql("SELECT attempts FROM jobs WHERE id = {p}", job)[0]
        self.event(job, "claimed", worker, f"attempt {attempts}")

    def _holder(self, job: int) -> str:
        return str(self.sql("SELECT worker FROM jobs WHERE id = {p}", job)[0][0])

    def finish(self, job: int, status: str, kind: str, detail: str | None = None) -> None:
        """complete, fail (last attempt), cancel of a running job that asked for it."""
        t = self.tick()
        holder = self._holder(job)
        self.sql(
            "UPDATE jobs SET status = {p}, lease_token = NULL, lease_expires_at = NULL,"
            " last_error = {p}, finished_at = {t}, updated_at = {t} WHERE id = {p}",
            status,
            detail,
            t,
            t,
            job,
        )
        self.event(job, kind, holder, detail)

    def hand_back(self, job: int, kind: str, detail: str, refund: bool = False) -> None:
        """retried, released, crashed, lease_expired: back to PENDING, held by no one."""
        t = self.tick()
        holder = self._holder(job)
        self.sql(
            "UPDATE jobs SET status = 'PENDING', worker = NULL, lease_token = NULL,"
            " lease_expires_at = NULL, last_error = {p}, attempts = attempts - {p},"
            " run_at = {t}, updated_at = {t} WHERE id = {p}",
            detail,
            1 if refund else 0,
            t,
            t,
            job,
        )
        self.event(job, kind, holder, detail)

    def manual(self, job: int, status: str, kind: str, detail: str | None = None) -> None:
        """An operator's cancel, fail or resubmit."""
        t = self.tick()
        if status == "PENDING":  # resubmit
            self.sql(
                "UPDATE jobs SET status = 'PENDING', attempts = 0, run_at = {t}, worker = NULL,"
                " lease_token = NULL, lease_seconds = NULL, lease_expires_at = NULL,"
                " cancel_requested = {p}, result = NULL, started_at = NULL, finished_at = NULL,"
                " updated_at = {t} WHERE id = {p}",
                t,
                False,
                t,
                job,
            )
        else:
            self.sql(
                "UPDATE jobs SET status = {p}, last_error = coalesce({p}, last_error),"
                " lease_token = NULL, lease_expires_at = NULL, finished_at = {t},"
                " updated_at = {t} WHERE id = {p}",
                status,
                detail,
                t,
                t,
                job,
            )
        self.event(job, kind, None, detail)

    def request_cancel(self, job: int) -> None:
        self.tick()
        self.sql("UPDATE jobs SET cancel_requested = {p} WHERE id = {p}", True, job)
        self.event(job, "cancel_requested")

    def build(self) -> dict[str, int]:
        """One job per story: every state, every kind of event."""
        jobs = {}
        jobs["pending"] = self.enqueue()
        jobs["processing"] = j = self.enqueue()
        self.claim(j, "w1")
        jobs["completed"] = j = self.enqueue()
        self.claim(j, "w1")
        self.finish(j, "COMPLETED", "completed")
        jobs["retried_then_completed"] = j = self.enqueue()
        self.claim(j, "w1")
        self.hand_back(j, "retried", "boom")
        self.claim(j, "w2")
        self.finish(j, "COMPLETED", "completed")
        jobs["failed"] = j = self.enqueue(max_attempts=1)
        self.claim(j, "w1")
        self.event(j, "timed_out", "w1", "ran past 5 s")
        self.finish(j, "FAILED", "failed", "timeout")
        jobs["unprocessable"] = j = self.enqueue(max_attempts=1)
        self.claim(j, "w1")
        self.finish(j, "UNPROCESSABLE", "lease_expired", "attempt 1 of 1: now UNPROCESSABLE")
        jobs["released_crashed_expired"] = j = self.enqueue()
        self.claim(j, "w1")
        self.hand_back(j, "released", "shutdown", refund=True)
        self.claim(j, "w2")
        self.hand_back(j, "crashed", "signal 9")
        self.claim(j, "w3")
        self.hand_back(j, "lease_expired", "attempt 2 of 3: now PENDING")
        jobs["cancelled_waiting"] = j = self.enqueue()
        self.manual(j, "CANCELLED", "cancelled")
        jobs["cancelled_running"] = j = self.enqueue()
        self.claim(j, "w1")
        self.request_cancel(j)
        self.finish(j, "CANCELLED", "cancelled")
        jobs["resubmitted_completed"] = j = self.enqueue()
        self.claim(j, "w1")
        self.finish(j, "COMPLETED", "completed")
        self.manual(j, "PENDING", "resubmitted")
        self.claim(j, "w2")
        jobs["failed_by_hand_then_resubmitted"] = j = self.enqueue()
        self.claim(j, "w1")
        self.manual(j, "FAILED", "failed", "by hand")
        self.manual(j, "PENDING", "resubmitted")
        jobs["cancelled_dead"] = j = self.enqueue(max_attempts=1)
        self.claim(j, "w1")
        self.finish(j, "FAILED", "failed", "boom")
        self.manual(j, "CANCELLED", "cancelled")
        jobs["other_queue"] = j = self.enqueue(queue="other")
        self.claim(j, "w9")
        self.finish(j, "COMPLETED", "completed")
        # Purged before the upgrade: the counters remember it, its id is never handed out.
        gone = self.enqueue(queue="other")
        self.sql("DELETE FROM events WHERE job_id = {p}", gone)
        self.sql("DELETE FROM jobs WHERE id = {p}", gone)
        jobs["purged"] = gone
        return jobs

    def events(self, job: int) -> list[tuple[Any, ...]]:
        """As the previous release's q.events() read them: every row, in id order."""
        rows = self.sql(
            "SELECT id, at, kind, worker, detail FROM events WHERE job_id = {p} ORDER BY id", job
        )
        return [tuple(row) for row in rows]

    def counters(self) -> dict[str, dict[str, int]]:
        found: dict[str, dict[str, int]] = {}
        for queue, name, value in self.sql("SELECT queue, name, value FROM counters"):
            found.setdefault(queue, {})[name] = int(value)
        return found


def _seconds(at: Any) -> float:
    return float(at) if isinstance(at, (int, float)) else at.timestamp()


def _history(q: Queue, job: int) -> list[tuple[Any, ...]]:
    return [(e.at.timestamp(), str(e.kind), e.worker, e.detail) for e in q.events(job)]


def test_an_old_database_moves_forward_with_nothing_lost(
    backend_url: str, clock: ManualClock
) -> None:
    old = OldRelease(backend_url, clock.now())
    jobs = old.build()
    before_events = {name: old.events(j) for name, j in jobs.items()}
    before_counters = old.counters()
    # The job rows read the same through the jobs queries of every version.
    backend = open_backend(Settings(url=backend_url))  # not migrated: opening does not
    try:
        before_jobs = {name: backend.get_job(j) for name, j in jobs.items() if name != "purged"}
    finally:
        backend.close()
    # Counted from the rows: today's count reads indexes the old schema lacks (sqlite 0009).
    before_stats: dict[str, dict[State, int]] = {}
    for queue, status, n in old.sql("SELECT queue, status, count(*) FROM jobs GROUP BY 1, 2"):
        before_stats.setdefault(queue, {})[State(status)] = int(n)
    old.db.close()
    clock.advance(old.now - clock.now() + 10)

    with persistq.connect(backend_url, clock=clock, lease=30) as q:
        report = q.check()
        assert report["schema_version"] == report["latest_schema_version"] >= LEAN[old.dialect]
        for name, job in before_jobs.items():
            assert q.get(job.id) == job, name
            stored = before_events[name]
            history = q.events(job.id)
            assert [(_seconds(at), kind, w, d) for _, at, kind, w, d in stored] == _history(
                q, job.id
            ), name
            assert [e.id for e in history] == [row[0] for row in stored], name  # all kept
        assert q.backend.count_by_status() == before_stats
        assert q.counters() == before_counters

        # New transitions append to the old histories.
        kept = {name: _history(q, j) for name, j in jobs.items() if name != "purged"}
        held = q.claim(worker="late")  # the oldest pending job
        assert held is not None and held.id == jobs["pending"]
        q.complete(held, "ok")
        assert held.started_at is not None
        assert _history(q, held.id) == [
            *kept["pending"],
            (held.started_at.timestamp(), "claimed", "late", "attempt 1"),
            (clock.now(), "completed", "late", None),
        ]
        q.resubmit(jobs["completed"])
        resubmitted_at = clock.now()
        clock.advance(31)  # the lease held across the upgrade expires
        assert q.recover_stalled() >= 1
        assert _history(q, jobs["processing"]) == [
            *kept["processing"],
            (clock.now(), "lease_expired", "w1", "attempt 1 of 3: now PENDING"),
        ]
        # The old completion is stored, so none is derived again; the new one is.
        assert [k for _, k, _, _ in _history(q, jobs["completed"])] == [
            "enqueued",
            "claimed",
            "completed",
            "resubmitted",
        ]
        (job,) = [j for j in q.claim_many(worker="late", limit=20) if j.id == jobs["completed"]]
        clock.advance(1)
        q.complete(job, "again")
        assert _history(q, job.id) == [
            *kept["completed"],
            (resubmitted_at, "resubmitted", None, None),
            (resubmitted_at + 31, "claimed", "late", "attempt 1"),
            (clock.now(), "completed", "late", None),
        ]
        counters = q.counters()
        assert counters["default"] == {
            **before_counters["default"],
            "completed": before_counters["default"]["completed"] + 2,
            "lease_expired": before_counters["default"]["lease_expired"] + 2,
        }
        assert counters["other"] == before_counters["other"]
        # The job purged before the upgrade keeps its id handed out.
        assert q.enqueue("new", queue="other").id > jobs["purged"]


def test_the_happy_path_stores_no_event_and_jobs_has_four_indexes(
    sqlite_url: str, clock: ManualClock
) -> None:
    """enqueue, claim and complete write the job row only (their events are derived), and
    the index diet holds: a transition touches jobs_claim, jobs_state and jobs_finished."""
    with persistq.connect(sqlite_url, clock=clock) as q:
        job = q.enqueue({"n": 1})
        q.enqueue_many([{"n": 2}, {"n": 3}])
        held = q.claim(worker="w")
        assert held is not None and held.id == job.id
        clock.advance(1)
        q.complete(held, "ok")
        path = q.check()["path"]
        kinds = [(str(e.kind), e.id) for e in q.events(job.id)]
        assert kinds == [("enqueued", None), ("claimed", None), ("completed", None)]
        assert q.counters()["default"] == {"enqueued": 3, "completed": 1}
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM events").fetchone() == (0,)
    indexes = {row[1] for row in db.execute("PRAGMA index_list(jobs)")}
    assert indexes == {"jobs_claim", "jobs_key", "jobs_state", "jobs_finished"}
    assert (
        "AUTOINCREMENT"
        not in db.execute("SELECT sql FROM sqlite_master WHERE name = 'jobs'").fetchone()[0]
    )
