"""What both SQL backends share: every transition as a named statement, run the same way.

A dialect supplies its named SQL (``sql/<dialect>/queries.sql``), how to run a read or a
write transaction, how its rows hold times and lists, and the few operations that differ
in kind (batch insert, waiting for a change, migrations, health). The contract of each
method is documented once, on :class:`persistq.backends.base.Backend`.

The happy path (enqueue, claim, complete) writes no event rows: ``enqueued``, ``claimed``
and ``completed`` are facts of the job row, and :func:`persistq.backends.rows.history`
derives them when a history is read. Every other transition stores its event with the
row's ``fence`` (the claim it belongs to) and the facts of that claim (``attempt``,
``started_at``, ``holder``) as the transition found the row, so the claim's ``claimed``
can still be derived once the row has moved on (sqlite migration 0008 has the shape).
Lifetime counters are row counts plus a tally of what rows no longer show (``counters``).
"""

from __future__ import annotations

import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from persistq.backends.base import NewJob
from persistq.backends.rows import STATE_NAMED, Row, history, row_to_event, row_to_job
from persistq.errors import (
    InvalidTransition,
    JobNotFound,
    LeaseLost,
    QueueNotEmpty,
    QueueNotFound,
    StorageError,
)
from persistq.model import (
    INT64_MAX,
    TERMINAL,
    Completion,
    Event,
    EventKind,
    Job,
    JobFilter,
    QueueInfo,
    State,
    Timing,
    WorkerInfo,
    format_rate,
)

T = TypeVar("T")
Conn = Any  # sqlite3.Connection or psycopg.Connection: both offer execute() -> cursor


#: How long a failed write keeps ``write_problem`` reporting it when no write follows: long
#: enough for every probe to see it, short enough that a process nobody writes through (a
#: load balancer took it out of service) comes back once the cheap checks pass again.
FAILED_WRITE_SECONDS = 60.0


class LastWrite:
    """The outcome of this process's last write: a storage error, until a later write
    succeeds (or ``FAILED_WRITE_SECONDS`` pass). Other errors (a lost lease, an unknown
    job) say nothing about the storage and change nothing here."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failed: tuple[float, str] | None = None

    @contextmanager
    def watch(self) -> Iterator[None]:
        try:
            yield
        except StorageError as exc:
            self.failed(exc)
            raise
        self.succeeded()

    def failed(self, exc: StorageError) -> None:
        with self._lock:
            self._failed = (time.monotonic(), str(exc))

    def succeeded(self) -> None:
        if self._failed is not None:  # the lock only when there is something to clear
            with self._lock:
                self._failed = None

    def problem(self) -> str | None:
        with self._lock:
            failed = self._failed
        if failed is None or time.monotonic() - failed[0] > FAILED_WRITE_SECONDS:
            return None
        return f"the last write, {time.monotonic() - failed[0]:.0f} s ago, failed: {failed[1]}"


class SQLBackend(ABC):
    url: str
    SQL: ClassVar[Mapping[str, str]]
    #: Each dialect makes its own in ``__init__`` and runs every write under ``watch()``.
    _writes: LastWrite

    # -- what a dialect supplies ----------------------------------------------------------

    @abstractmethod
    def _write(self, work: Callable[[Conn], T], *, wakes: bool = False) -> T:
        """Run ``work`` in one write transaction. ``wakes``: it may make jobs claimable,
        so waiting claims should look again."""

    @abstractmethod
    def _read(self, work: Callable[[Conn], T]) -> T: ...

    @abstractmethod
    def _datetime(self, value: Any) -> datetime:
        """A stored time as an aware UTC datetime."""

    @abstractmethod
    def _list(self, values: Sequence[Any]) -> Any:
        """A list as one query parameter."""

    @abstractmethod
    def _unwritable(self) -> str | None:
        """The cheap checks of ``write_problem``: why a write would fail, without writing."""

    def write_problem(self) -> str | None:
        return self._writes.problem() or self._unwritable()

    def _now(self, now: float | None) -> float | None:
        """``now`` as the statements get it; None lets the database use its own clock."""
        return now

    def _many(self, conn: Conn, name: str, rows: Sequence[dict[str, Any]]) -> None:
        for params in rows:
            conn.execute(self.SQL[name], params)

    def _claimed(self, conn: Conn, queue: str, rows: Sequence[Row], now: float | None) -> None:  # noqa: B027
        """``rows`` of ``queue`` were just claimed in this transaction: SQLite spends rate
        tokens here; PostgreSQL's pick did already."""

    def _finished(self, conn: Conn, job_ids: Sequence[int]) -> None:  # noqa: B027 - optional
        """Jobs this transaction finished, for those waiting on them (PostgreSQL: a NOTIFY
        sent at commit); SQLite's waiters see every commit, so it needs nothing."""

    # -- helpers -------------------------------------------------------------------------

    def _job(self, row: Row, *, with_token: bool = False) -> Job:
        return row_to_job(row, self._datetime, with_token=with_token)

    def _fetch_one(self, name: str, params: dict[str, Any]) -> Any:
        return self._read(lambda conn: conn.execute(self.SQL[name], params).fetchone())

    def _fetch_all(self, name: str, params: dict[str, Any]) -> list[Any]:
        return list(self._read(lambda conn: conn.execute(self.SQL[name], params).fetchall()))

    def _queue_info(self, row: Row) -> QueueInfo:
        rate = row["rate_limit"]
        return QueueInfo(
            name=row["name"],
            paused=bool(row["paused"]),
            created_at=self._datetime(row["created_at"]),
            concurrency=row["concurrency_limit"],
            rate=None if rate is None else format_rate(rate, float(row["rate_window"])),
        )

    # -- producing ---------------------------------------------------------------------

    def insert_jobs(self, jobs: Sequence[NewJob], now: float | None) -> list[Job]:
        """One by one, as each may find its key's job. Each dialect inserts a batch without
        keys its own faster way, and calls this only when some job has a key."""
        if not jobs:
            return []
        now = self._now(now)

        def work(conn: Conn) -> list[Job]:
            self._ensure_queues(conn, (job.queue for job in jobs), now)
            return [self._insert_one(conn, job, now) for job in jobs]

        return self._write(work, wakes=True)

    def _ensure_queues(self, conn: Conn, queues: Iterable[str], now: float | None) -> None:
        """A row in queues for each of ``queues``, in name order (one lock order for all)."""
        for queue in sorted(set(queues)):
            conn.execute(self.SQL["ensure_queue"], {"queue": queue, "now": now})

    def insert_job(self, job: NewJob, now: float | None) -> tuple[Job, bool]:
        now = self._now(now)

        def work(conn: Conn) -> tuple[Job, bool]:
            conn.execute(self.SQL["ensure_queue"], {"queue": job.queue, "now": now})
            return self._insert_keyed(conn, job, now)

        return self._write(work, wakes=True)

    def _insert_one(self, conn: Conn, job: NewJob, now: float | None) -> Job:
        return self._insert_keyed(conn, job, now)[0]

    def _insert_keyed(self, conn: Conn, job: NewJob, now: float | None) -> tuple[Job, bool]:
        row = conn.execute(self.SQL["insert_job"], job_params(job, now=now)).fetchone()
        if row is None:  # the key exists: hand back that job, create nothing
            params = {"queue": job.queue, "key": job.key}
            return self._job(conn.execute(self.SQL["get_job_by_key"], params).fetchone()), False
        return self._job(row), True

    # -- claiming ------------------------------------------------------------------------

    def claim_jobs(
        self,
        queues: Sequence[str],
        worker: str,
        limit: int,
        lease_seconds: float,
        now: float | None,
    ) -> list[Job]:
        now = self._now(now)
        work = self._claiming(queues, worker, limit, lease_seconds, now)
        # Rows become Jobs after the commit: SQLite's write lock is held no longer than needed.
        return self._claimed_jobs(self._write(work), worker, lease_seconds, now)

    def _claimed_jobs(
        self, rows: Sequence[Any], worker: str, lease_seconds: float, now: float | None
    ) -> list[Job]:
        """The lease holder's Jobs of the rows a claim returned (its worker, lease, time)."""
        return [self._job(row, with_token=True) for row in rows]

    def _claiming(
        self,
        queues: Sequence[str],
        worker: str,
        limit: int,
        lease_seconds: float,
        now: float | None,
    ) -> Callable[[Conn], list[Any]]:
        """The work of ``claim_jobs``: the claimed rows, in claim order."""

        def work(conn: Conn) -> list[Any]:
            claimed: list[Any] = []
            for queue in queues:
                if len(claimed) >= limit:
                    break
                params = claim_params(queue, worker, limit - len(claimed), lease_seconds, now)
                claimed.extend(self._claim_queue(conn, params))
            return claimed

        return work

    def _claim_queue(self, conn: Conn, params: dict[str, Any]) -> list[Any]:
        """``claim_jobs`` on one queue, in claim order (its ``claimed`` events are derived)."""
        rows = conn.execute(self._claim_statement(params["limit"]), params).fetchall()
        if rows:
            self._claimed(conn, params["queue"], rows, params["now"])
        if len(rows) > 1:
            rows.sort(key=lambda r: (-r["priority"], r["id"]))
        return list(rows)

    def _claim_statement(self, limit: int) -> str:
        """The statement that claims up to ``limit`` jobs of one queue."""
        return self.SQL["claim_jobs"]

    def has_claimable(self, queues: Sequence[str], now: float | None) -> bool:
        now = self._now(now)
        return any(self._fetch_one("has_claimable", {"queue": q, "now": now}) for q in queues)

    def next_run_at(self, queues: Sequence[str], now: float | None) -> float | None:
        now = self._now(now)
        rows = [self._fetch_one("next_run_at", {"queue": q, "now": now}) for q in queues]
        found = [float(r["run_at"]) for r in rows if r is not None and r["run_at"] is not None]
        return min(found) if found else None

    # -- the lease holder's writes -------------------------------------------------------

    def _owner_write(
        self,
        name: str,
        job_id: int,
        lease_token: str,
        now: float | None,
        *,
        timed_out: str | None = None,
        **params: Any,
    ) -> Job:
        """An owner-only transition in a transaction of its own (:meth:`_owner_step`)."""
        now = self._now(now)
        written = self._write(
            lambda conn: self._owner_step(conn, name, job_id, lease_token, now, timed_out, params),
            wakes=name in HANDS_BACK,
        )
        return self._job(written, with_token=True)

    def _owner_step(
        self,
        conn: Conn,
        name: str,
        job_id: int,
        lease_token: str,
        now: float | None,
        timed_out: str | None,
        params: Mapping[str, Any],
    ) -> Any:
        """An owner-only transition: guarded on state, token and expiry; a miss is explained
        (and has written nothing, so it needs no savepoint of its own in a batch).
        ``timed_out``: the detail of a ``timed_out`` event written before the transition's."""
        # A hand-back clears the row's worker: its events take the holder from before.
        before = None
        if name in HANDS_BACK:
            before = conn.execute(self.SQL["lock_job"], {"id": job_id}).fetchone()
            if before is None:
                raise JobNotFound(job_id)
        args = {"id": job_id, "lease_token": lease_token, "now": now, **params}
        row = conn.execute(self.SQL[name], args).fetchone()
        if row is None:
            if before is not None:
                raise LeaseLost(job_id)
            raise lease_miss(job_id, conn.execute(self.SQL["get_job"], {"id": job_id}))
        status = STATE_NAMED[row["status"]]
        if status in TERMINAL:
            self._finished(conn, [job_id])
        facts = row if before is None else before
        if timed_out is not None:
            args = event(facts, EventKind.TIMED_OUT, now, facts["worker"], timed_out)
            conn.execute(self.SQL["insert_event"], args)
        kind = FINISH_EVENT.get((name, status))
        if kind is not None:
            detail = params.get("error") if kind in DETAILED_EVENTS else None
            args = event(facts, kind, now, facts["worker"], detail)
            conn.execute(self.SQL["insert_event"], args)
        return row

    def extend_lease(self, job_id: int, lease_token: str, now: float | None) -> Job:
        return self._owner_write("extend_lease", job_id, lease_token, now)

    def extend_leases(
        self, leases: Sequence[tuple[int, str]], now: float | None
    ) -> list[Job | LeaseLost]:
        now = self._now(now)

        def work(conn: Conn) -> list[Any]:
            sql = self.SQL["extend_lease"]
            return [
                conn.execute(sql, {"id": job_id, "lease_token": token, "now": now}).fetchone()
                for job_id, token in leases
            ]

        rows = self._write(work)
        return [
            LeaseLost(job_id) if row is None else self._job(row, with_token=True)
            for (job_id, _), row in zip(leases, rows, strict=True)
        ]

    def complete_job(
        self, job: Job, lease_token: str, result: str | None, now: float | None
    ) -> Job:
        now = self._now(now)
        completion = Completion(job, lease_token, result)
        done = self._write(lambda conn: self._complete_step(conn, completion, now))
        return self._holders_job(done)

    def complete_jobs(
        self, items: Sequence[Completion], now: float | None
    ) -> list[Job | JobNotFound | LeaseLost]:
        now = self._now(now)
        return self._completed_jobs(self._write(self._completing(items, now)))

    def _completing(
        self, items: Sequence[Completion], now: float | None
    ) -> Callable[[Conn], list[Any]]:
        """The work of ``complete_jobs``: per item, what :meth:`_complete_step` gave, or the
        miss that refused it."""

        def work(conn: Conn) -> list[Any]:
            done: list[Any] = []
            for completion in items:
                try:
                    done.append(self._complete_step(conn, completion, now))
                except (JobNotFound, LeaseLost) as exc:  # this one alone: nothing written
                    done.append(exc)
            return done

        return work

    def _complete_step(self, conn: Conn, completion: Completion, now: float | None) -> Any:
        """One completion in ``conn``'s transaction: the row it wrote, or (a dialect that
        answers without reading the row back) the finished Job; a miss raises."""
        job, token, result = completion
        params = {"result": result}
        return self._owner_step(conn, "complete_job", job.id, token, now, None, params)

    def _holders_job(self, done: Any) -> Job:
        """The lease holder's Job of what a completion step gave (a row, or a Job)."""
        return done if isinstance(done, Job) else self._job(done, with_token=True)

    def _completed_jobs(self, done: Sequence[Any]) -> list[Job | JobNotFound | LeaseLost]:
        return [
            step if isinstance(step, JobNotFound | LeaseLost) else self._holders_job(step)
            for step in done
        ]

    def complete_and_claim_jobs(
        self,
        items: Sequence[Completion],
        queues: Sequence[str],
        worker: str,
        limit: int,
        lease_seconds: float,
        now: float | None,
    ) -> tuple[list[Job | JobNotFound | LeaseLost], list[Job]]:
        now = self._now(now)
        complete = self._completing(items, now)
        claim = self._claiming(queues, worker, limit, lease_seconds, now)
        done, claimed = self._write(lambda conn: (complete(conn), claim(conn)))
        return self._completed_jobs(done), self._claimed_jobs(claimed, worker, lease_seconds, now)

    def retry_job(
        self,
        job_id: int,
        lease_token: str,
        error: str,
        delay_seconds: float,
        now: float | None,
        timed_out: str | None = None,
    ) -> Job:
        return self._owner_write(
            "retry_job",
            job_id,
            lease_token,
            now,
            timed_out=timed_out,
            error=error,
            delay_seconds=delay_seconds,
        )

    def fail_job(
        self,
        job_id: int,
        lease_token: str,
        error: str,
        now: float | None,
        timed_out: str | None = None,
    ) -> Job:
        return self._owner_write(
            "fail_job", job_id, lease_token, now, timed_out=timed_out, error=error
        )

    def release_job(
        self,
        job_id: int,
        lease_token: str,
        now: float | None,
        delay_seconds: float = 0.0,
        detail: str | None = None,
    ) -> Job:
        return self._owner_write(
            "release_job", job_id, lease_token, now, delay_seconds=delay_seconds, error=detail
        )

    def crash_job(self, job_id: int, lease_token: str, detail: str, now: float | None) -> Job:
        return self._owner_write("crash_job", job_id, lease_token, now, error=detail)

    # -- recovery and manual transitions ------------------------------------------------

    def recover_expired(self, now: float | None, limit: int) -> int:
        now = self._now(now)

        def work(conn: Conn) -> int:
            # Picked first: once PENDING again a row no longer names its holder.
            found = conn.execute(
                self.SQL["recover_expired"], {"now": now, "limit": limit}
            ).fetchall()
            if not found:
                return 0
            ids = [r["id"] for r in found]
            params = {"ids": self._list(ids), "now": now}
            done = {r["id"]: r for r in conn.execute(self.SQL["expire_leases"], params)}
            self._many(
                conn,
                "insert_event",
                [
                    event(
                        before,
                        EventKind.LEASE_EXPIRED,
                        now,
                        before["worker"],
                        f"attempt {r['attempts']} of {r['max_attempts']}: now {r['status']}",
                    )
                    for before in found
                    if (r := done.get(before["id"])) is not None
                ],
            )
            self._finished(conn, [i for i, r in done.items() if r["status"] in TERMINAL])
            return len(done)

        return self._write(work, wakes=True)

    def _manual_write(
        self,
        job_id: int,
        now: float | None,
        requested: str,
        names: Sequence[str],
        already_done: Callable[[Row], bool] = lambda row: False,
        detail: str | None = None,
    ) -> Job:
        """Try each guarded statement in turn; a miss on all of them is explained."""
        now = self._now(now)

        def work(conn: Conn) -> Job:
            before, row = self._manual_step(conn, job_id, now, names, detail)
            if before is None:
                raise JobNotFound(job_id)
            if row is not None:
                return self._job(row)
            if already_done(before):
                return self._job(before)
            raise InvalidTransition(job_id, before["status"], requested)

        return self._write(work, wakes=True)

    def _manual_step(
        self,
        conn: Conn,
        job_id: int,
        now: float | None,
        names: Sequence[str],
        detail: str | None = None,
    ) -> tuple[Row | None, Row | None]:
        """One job's by-hand transition inside the caller's transaction, with its event and
        tally: the row before (None: no such job), and the row after the first guarded
        statement of ``names`` that matched (None: none did, nothing changed)."""
        before = conn.execute(self.SQL["lock_job"], {"id": job_id}).fetchone()
        if before is None:
            return None, None
        was = State(before["status"])
        for name in names:
            params = {"id": job_id, "now": now, "error": detail}
            row = conn.execute(self.SQL[name], params).fetchone()
            if row is None:
                continue
            # A resubmit erases a completion the row held: the event keeps it.
            completed = before["finished_at"] if was == State.COMPLETED else None
            args = event(before, MANUAL_EVENT[name], now, None, detail, completed_at=completed)
            conn.execute(self.SQL["insert_event"], args)
            if was in TERMINAL and row["status"] != was:  # still counted (counters)
                conn.execute(self.SQL["tally"], {"queue": before["queue"], "name": was.lower()})
            if row["status"] in TERMINAL:
                self._finished(conn, [job_id])
            return before, row
        return before, None

    def cancel_job(self, job_id: int, now: float | None) -> Job:
        return self._manual_write(
            job_id,
            now,
            "cancel",
            ("cancel_job", "request_cancel"),
            # asked already: the holder will let go, nothing more to record
            already_done=lambda row: (
                row["status"] == State.PROCESSING and bool(row["cancel_requested"])
            ),
        )

    def fail_job_by_hand(self, job_id: int, error: str, now: float | None) -> Job:
        return self._manual_write(job_id, now, "fail", ("fail_job_by_hand",), detail=error)

    def resubmit_job(self, job_id: int, now: float | None) -> Job:
        return self._manual_write(job_id, now, "resubmit", ("resubmit_job",))

    # -- reading -------------------------------------------------------------------------

    def get_job(self, job_id: int) -> Job:
        row = self._fetch_one("get_job", {"id": job_id})
        if row is None:
            raise JobNotFound(job_id)
        return self._job(row)

    def last_job_with_key_prefix(self, queue: str, prefix: str) -> Job | None:
        row = self._fetch_one("last_job_with_key_prefix", {"queue": queue, "prefix": prefix})
        return None if row is None else self._job(row)

    def list_jobs(
        self, status: State | None, queue: str | None, limit: int, offset: int
    ) -> list[Job]:
        name = LIST_QUERY[(status is not None, queue is not None)]
        params = {
            "status": status and str(status),
            "queue": queue,
            "limit": limit,
            # The queries read no further than offset + limit, which must stay an int64 (on
            # SQLite a sum past it is a float, and LIMIT refuses it): an offset past every
            # row the table could hold answers the same empty page.
            "offset": min(offset, INT64_MAX - limit),
        }
        return [self._job(row) for row in self._fetch_all(name, params)]

    def list_events(self, job_id: int) -> list[Event]:
        def work(conn: Conn) -> tuple[Any, list[Any]]:
            job = conn.execute(self.SQL["get_job"], {"id": job_id}).fetchone()
            if job is None:
                raise JobNotFound(job_id)
            return job, list(conn.execute(self.SQL["list_events"], {"job_id": job_id}))

        job, stored = self._read(work)
        return history(job, stored, self._datetime)

    def count_by_status(self) -> dict[str, dict[State, int]]:
        counts: dict[str, dict[State, int]] = {}
        for row in self._fetch_all("count_by_status", {}):
            counts.setdefault(row["queue"], {})[State(row["status"])] = int(row["n"])
        return counts

    def counters(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for row in self._fetch_all("counters", {}):
            counts.setdefault(row["queue"], {})[row["name"]] = int(row["value"])
        return counts

    def oldest_pending(self, now: float | None) -> dict[str, float]:
        rows = self._fetch_all("oldest_pending", {"now": self._now(now)})
        return {row["queue"]: float(row["run_at"]) for row in rows}

    # -- searching and bulk actions (the Manager's table) -------------------------------

    def search_jobs(
        self, flt: JobFilter, after: int | None, limit: int, oldest_first: bool
    ) -> list[Job]:
        def work(conn: Conn) -> list[Any]:
            ids = self._matching_ids(conn, flt, after, limit, oldest_first)
            if not ids:
                return []
            rows = {
                r["id"]: r for r in conn.execute(self.SQL["get_jobs"], {"ids": self._list(ids)})
            }
            return [rows[i] for i in ids if i in rows]

        return [self._job(row) for row in self._read(work)]

    def count_jobs(self, flt: JobFilter) -> int:
        def work(conn: Conn) -> int:
            bounds = self._id_bounds(conn, flt, None, oldest_first=False)
            if bounds is None:
                return 0
            pairs = self._pairs(conn, flt, bounds)
            if self._scan_pays(conn, flt, bounds, pairs):
                return int(
                    conn.execute(self.SQL["scan_count"], self._scan(flt, bounds)).fetchone()["n"]
                )
            # Without text, task or time the count reads the (queue, status, id) index only.
            name = "count_matching" if _scans(flt) else "count_in_state"
            return sum(
                int(conn.execute(self.SQL[name], {**params, "limit": INT64_MAX}).fetchone()["n"])
                for params in pairs
            )

        return self._read(work)

    def resubmit_matching(
        self, flt: JobFilter, after: int | None, limit: int, now: float | None
    ) -> tuple[int, int | None]:
        return self._bulk(flt, after, limit, now, ("resubmit_job",))

    def cancel_matching(
        self, flt: JobFilter, after: int | None, limit: int, now: float | None
    ) -> tuple[int, int | None]:
        return self._bulk(flt, after, limit, now, ("cancel_job", "request_cancel"))

    def _bulk(
        self,
        flt: JobFilter,
        after: int | None,
        limit: int,
        now: float | None,
        names: Sequence[str],
    ) -> tuple[int, int | None]:
        """One batch, one transaction: the next ``limit`` matching ids below ``after``, each
        taken through the same by-hand transition as one job (its event, its tally); those no
        longer in a state the action allows are left as they are."""
        now = self._now(now)

        def work(conn: Conn) -> tuple[int, int | None]:
            found = self._matching_ids(conn, flt, after, limit + 1, oldest_first=False)
            ids, more = found[:limit], len(found) > limit
            done = sum(self._manual_step(conn, job_id, now, names)[1] is not None for job_id in ids)
            return done, ids[-1] if more else None

        return self._write(work, wakes=True)

    def _matching_ids(
        self, conn: Conn, flt: JobFilter, after: int | None, limit: int, oldest_first: bool
    ) -> list[int]:
        """Up to ``limit`` ids of matching jobs past the cursor ``after``, in page order: one
        index range per (queue, state), each read no further than ``limit``, merged here."""
        bounds = self._id_bounds(conn, flt, after, oldest_first)
        if bounds is None:
            return []
        pairs = self._pairs(conn, flt, bounds)
        if self._scan_pays(conn, flt, bounds, pairs):
            return self._scan_ids(conn, flt, bounds, limit, oldest_first)
        name = "search_ids_oldest" if oldest_first else "search_ids"
        found: list[int] = []
        for params in pairs:
            rows = conn.execute(self.SQL[name], {**params, "limit": limit}).fetchall()
            found.extend(int(r["id"]) for r in rows)
        found.sort(reverse=not oldest_first)
        return found[:limit]

    def _scan_ids(
        self, conn: Conn, flt: JobFilter, bounds: tuple[int, int], limit: int, oldest_first: bool
    ) -> list[int]:
        """``scan_ids`` in windows of ids from the cursor on, doubling, until the page is
        full: a page of a frequent text stops early even where the planner, misjudging how
        many rows match, would read and sort the whole range (PostgreSQL)."""
        name = "scan_ids_oldest" if oldest_first else "scan_ids"
        above, below = bounds
        window = SCAN_WINDOW
        found: list[int] = []
        while above < below and len(found) < limit:
            if oldest_first:
                part, above = (above, min(below, above + window)), min(below, above + window)
            else:
                part, below = (max(above, below - window), below), max(above, below - window)
            params = {**self._scan(flt, part), "limit": limit - len(found)}
            found.extend(int(r["id"]) for r in conn.execute(self.SQL[name], params))
            window *= 2
        return found

    def _scan_pays(
        self,
        conn: Conn,
        flt: JobFilter,
        bounds: tuple[int, int],
        pairs: Sequence[dict[str, Any]],
    ) -> bool:
        """Whether to read the table in id order rather than each (queue, state) range of
        the index: only when every row must be tested (text, task or time) and the
        candidates are a quarter or more of the rows between the bounds. Then the index's
        row-by-row lookups cost more than the table read straight through (a text over
        COMPLETED, a third of 1M jobs: 0.35 s against 0.22 s). Counting the candidates stops
        at that quarter, and reads the index only."""
        if not _scans(flt):
            return False
        need = max(1, (bounds[1] - bounds[0]) // SCAN_SHARE)
        seen = 0
        for params in pairs:
            found = conn.execute(self.SQL["count_in_state"], {**params, "limit": need - seen})
            seen += int(found.fetchone()["n"])
            if seen >= need:
                return True
        return False

    def _scan(self, flt: JobFilter, bounds: tuple[int, int]) -> dict[str, Any]:
        """The parameters of a scan in id order (``scan_ids``, ``scan_count``)."""
        states = [str(s) for s in flt.states or State]
        return {**self._conditions(flt, bounds), "queue": flt.queue, "states": self._list(states)}

    def _conditions(self, flt: JobFilter, bounds: tuple[int, int]) -> dict[str, Any]:
        return {
            "above": bounds[0],
            "below": bounds[1],
            "pattern": like_pattern(flt.text),
            "task": flt.task,
            "created_from": _epoch(flt.created_from),
            "created_to": _epoch(flt.created_to),
        }

    def _pairs(self, conn: Conn, flt: JobFilter, bounds: tuple[int, int]) -> list[dict[str, Any]]:
        """The parameters of each (queue, state) the filter covers (one read of the queues,
        shared by the choice of plan and the plan)."""
        if flt.queue is not None:
            queues = [flt.queue]
        else:
            queues = [r["name"] for r in conn.execute(self.SQL["list_queues"], {})]
        common = self._conditions(flt, bounds)
        return [
            {**common, "queue": queue, "status": str(state)}
            for queue in queues
            for state in flt.states or State
        ]

    def _id_bounds(
        self, conn: Conn, flt: JobFilter, after: int | None, oldest_first: bool
    ) -> tuple[int, int] | None:
        """``above <= id < below`` for the filter and cursor, within the ids that exist;
        None when that is empty. A time range becomes an id range too: ids grow with
        enqueue time, so a binary search over ids finds where it starts and ends (allowing
        CLOCK_SLACK_SECONDS, as producers commit a little out of clock order); the times
        themselves are tested row by row."""
        span = conn.execute(self.SQL["id_range"], {}).fetchone()
        if span is None or span["low"] is None:
            return None  # no jobs at all
        low, high = int(span["low"]), int(span["high"]) + 1
        above, below = low, high
        if after is not None:
            if oldest_first:
                above = max(above, after + 1)
            else:
                below = min(below, after)
        if flt.max_id is not None:
            below = min(below, flt.max_id + 1)
        if flt.created_from is not None or flt.created_to is not None:
            if flt.created_from is not None:
                start = flt.created_from.timestamp() - CLOCK_SLACK_SECONDS
                above = max(above, self._first_id_at(conn, low, high, start))
            if flt.created_to is not None:
                end = flt.created_to.timestamp() + CLOCK_SLACK_SECONDS
                below = min(below, self._first_id_at(conn, low, high, end))
        return (above, below) if above < below else None

    def _first_id_at(self, conn: Conn, low: int, high: int, moment: float) -> int:
        """The least id from which on jobs were created at ``moment`` or later."""
        while low < high:
            middle = (low + high) // 2
            row = conn.execute(self.SQL["first_job_from"], {"id": middle}).fetchone()
            if row is None or float(row["created_at"]) >= moment:
                high = middle
            else:
                low = middle + 1
        return low

    # -- queues --------------------------------------------------------------------------

    def list_queues(self) -> list[QueueInfo]:
        return [self._queue_info(row) for row in self._fetch_all("list_queues", {})]

    def create_queue(self, name: str, now: float | None) -> QueueInfo:
        now = self._now(now)

        def work(conn: Conn) -> Any:
            conn.execute(self.SQL["create_queue"], {"queue": name, "now": now}).fetchall()
            return conn.execute(self.SQL["get_queue"], {"queue": name}).fetchone()

        return self._queue_info(self._write(work))

    def delete_queue(self, name: str, force: bool) -> int:
        def work(conn: Conn) -> int:
            if conn.execute(self.SQL["get_queue"], {"queue": name}).fetchone() is None:
                raise QueueNotFound(name)
            unfinished = int(
                conn.execute(self.SQL["count_unfinished"], {"queue": name}).fetchone()["n"]
            )
            if unfinished and not force:
                raise QueueNotEmpty(name, unfinished)
            conn.execute(self.SQL["tally_queue_jobs"], {"queue": name})
            conn.execute(self.SQL["delete_queue_events"], {"queue": name})
            deleted = conn.execute(self.SQL["delete_queue_jobs"], {"queue": name}).rowcount
            conn.execute(self.SQL["delete_queue"], {"queue": name})
            return int(deleted)

        return self._write(work)

    def set_queue_paused(self, name: str, paused: bool) -> QueueInfo:
        def work(conn: Conn) -> Any:
            params = {"queue": name, "paused": int(paused)}
            row = conn.execute(self.SQL["set_queue_paused"], params).fetchone()
            if row is None:
                raise QueueNotFound(name)
            return row

        return self._queue_info(self._write(work, wakes=not paused))

    def set_queue_limits(
        self,
        name: str,
        concurrency: int | None,
        rate: tuple[int, float] | None,
        now: float | None,
    ) -> QueueInfo:
        now = self._now(now)

        def work(conn: Conn) -> Any:
            conn.execute(self.SQL["ensure_queue"], {"queue": name, "now": now})
            params = {
                "queue": name,
                "concurrency": concurrency,
                "rate_limit": None if rate is None else rate[0],
                "rate_window": None if rate is None else rate[1],
                "now": now,
            }
            return conn.execute(self.SQL["set_queue_limits"], params).fetchone()

        return self._queue_info(self._write(work, wakes=True))

    # -- maintenance ---------------------------------------------------------------------

    def purge_jobs(self, status: State, before: float, limit: int) -> int:
        def work(conn: Conn) -> int:
            params = {"status": str(status), "before": before, "limit": limit}
            ids = [row["id"] for row in conn.execute(self.SQL["select_purgeable"], params)]
            if ids:
                conn.execute(self.SQL["tally_jobs"], {"ids": self._list(ids)})
                conn.execute(self.SQL["delete_events_of_jobs"], {"ids": self._list(ids)})
                conn.execute(self.SQL["delete_jobs"], {"ids": self._list(ids)})
            return len(ids)

        return self._write(work)

    # -- read models and worker presence -------------------------------------------------

    def count_finished(self, since: float, bucket_seconds: int) -> list[tuple[float, State, int]]:
        params = {"since": since, "bucket_seconds": bucket_seconds}
        return [
            (float(r["bucket"]), State(r["status"]), int(r["n"]))
            for r in self._fetch_all("count_finished", params)
        ]

    def finished_since(self, since: float, limit: int) -> list[Timing]:
        rows = self._fetch_all("finished_since", {"since": since, "limit": limit})
        return [
            Timing(
                r["queue"],
                State(r["status"]),
                float(r["run_at"]),
                float(r["started_at"]),
                float(r["finished_at"]),
            )
            for r in rows
        ]

    def recent_failures(self, limit: int) -> list[tuple[Event, str]]:
        return [
            (row_to_event(r, self._datetime), r["queue"])
            for r in self._fetch_all("recent_failures", {"limit": limit})
        ]

    def worker_seen(self, worker: str, queues: Sequence[str], now: float | None) -> None:
        params = {"worker": worker, "queues": ",".join(queues), "now": self._now(now)}
        self._write(lambda conn: conn.execute(self.SQL["worker_seen"], params))

    def worker_gone(self, worker: str) -> None:
        self._write(lambda conn: conn.execute(self.SQL["worker_gone"], {"worker": worker}))

    def list_workers(self, since: float) -> list[WorkerInfo]:
        return [
            WorkerInfo(
                id=r["id"],
                queues=tuple(q for q in r["queues"].split(",") if q),
                started_at=self._datetime(r["started_at"]),
                last_seen_at=self._datetime(r["last_seen_at"]),
                job_ids=tuple(sorted(json.loads(r["job_ids"]))),
            )
            for r in self._fetch_all("list_workers", {"since": since})
        ]

    def prune_workers(self, before: float) -> int:
        return int(
            self._write(
                lambda conn: conn.execute(self.SQL["prune_workers"], {"before": before}).rowcount
            )
        )


#: How far out of clock order producers may commit (a producer reads the clock, then waits
#: for the write lock): a time range's id bounds are widened by this much.
CLOCK_SLACK_SECONDS = 120.0


#: A scan in id order pays when the candidates are at least 1/SCAN_SHARE of the rows.
SCAN_SHARE = 4
#: Ids a scan for a page reads first; each next window is twice as wide.
SCAN_WINDOW = 20_000


def like_pattern(text: str | None) -> str | None:
    """``text`` as a LIKE pattern matching it anywhere, its own ``%``, ``_`` and ``\\``
    taken literally (the statements say ESCAPE '\\')."""
    if text is None:
        return None
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _scans(flt: JobFilter) -> bool:
    """Whether matching needs more than the job's queue, state and id."""
    return bool(flt.text or flt.task or flt.created_from or flt.created_to)


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


#: Owner writes that may hand the job back to PENDING: they clear ``worker``, so their
#: events take the lease's holder from the row as it was before (``lock_job``).
HANDS_BACK = frozenset({"retry_job", "release_job", "crash_job"})
#: The event each owner write stores, by the state it leaves the job in; a completion
#: stores none (its ``completed`` is derived from the row).
FINISH_EVENT: dict[tuple[str, State], EventKind] = {
    ("retry_job", State.PENDING): EventKind.RETRIED,
    ("retry_job", State.FAILED): EventKind.FAILED,
    ("fail_job", State.FAILED): EventKind.FAILED,
    ("release_job", State.PENDING): EventKind.RELEASED,
    **{("crash_job", s): EventKind.CRASHED for s in (State.PENDING, State.UNPROCESSABLE)},
    **{
        (name, State.CANCELLED): EventKind.CANCELLED
        for name in ("complete_job", "retry_job", "fail_job", "release_job", "crash_job")
    },
}
#: Events that carry the write's ``error`` parameter as their detail.
DETAILED_EVENTS = frozenset(
    {EventKind.RETRIED, EventKind.FAILED, EventKind.RELEASED, EventKind.CRASHED}
)
MANUAL_EVENT = {
    "fail_job_by_hand": EventKind.FAILED,
    "cancel_job": EventKind.CANCELLED,
    "request_cancel": EventKind.CANCEL_REQUESTED,
    "resubmit_job": EventKind.RESUBMITTED,
}
LIST_QUERY = {
    (False, False): "list_jobs",
    (True, False): "list_jobs_by_status",
    (False, True): "list_jobs_by_queue",
    (True, True): "list_jobs_by_queue_status",
}


#: Which event ``complete_job`` writes for each state it leaves a job in, as PostgreSQL's
#: statement is given it (it writes the event itself; see postgres/queries.sql).
COMPLETE_EVENTS = json.dumps(
    {
        str(state): str(kind)
        for (name, state), kind in FINISH_EVENT.items()
        if name == "complete_job"
    }
)


def lease_miss(job_id: int, found: Any) -> JobNotFound | LeaseLost:
    """Why an owner-only write changed nothing, given the cursor of ``get_job``: no such job,
    or the caller does not hold its lease (another does, it expired, it is not PROCESSING)."""
    return JobNotFound(job_id) if found.fetchone() is None else LeaseLost(job_id)


def claim_params(
    queue: str, worker: str, limit: int, lease_seconds: float, now: float | None
) -> dict[str, Any]:
    return {
        "queue": queue,
        "worker": worker,
        "limit": limit,
        "lease_seconds": lease_seconds,
        "now": now,
    }


def job_params(job: NewJob, **extra: Any) -> dict[str, Any]:
    """The parameters of an insert of ``job``, with ``extra`` ones (``now``, an ``id``)."""
    return {
        "queue": job.queue,
        "payload": job.payload,
        "priority": job.priority,
        "delay_seconds": job.delay_seconds,
        "max_attempts": job.max_attempts,
        "key": job.key,
        "timeout": job.timeout,
        **extra,
    }


def event(
    job: Row,
    kind: EventKind,
    now: float | None,
    worker: str | None = None,
    detail: str | None = None,
    *,
    completed_at: Any = None,
) -> dict[str, Any]:
    """A stored event of ``job`` as its transition found the row: the claim it belongs to
    (``fence``) and that claim's facts, when the row holds a started attempt."""
    started = job["started_at"]
    return {
        "job_id": job["id"],
        "kind": str(kind),
        "now": now,
        "worker": worker,
        "detail": detail,
        "fence": job["fence"],
        "attempt": None if started is None else job["attempts"],
        "started_at": started,
        "holder": None if started is None else job["worker"],
        "completed_at": completed_at,
    }
