"""PostgreSQL backend: the same queue across many machines.

psycopg 3 with a connection pool. Claims and sweeps lock rows with ``FOR UPDATE SKIP
LOCKED``; leases are timed on the server's clock; a waiting claim wakes on ``NOTIFY``
(with the queue's polling as the fallback). Tables live in their own schema (``persistq``
unless the URL says ``?schema=``), so they never mix with an application's.

Losing the server: a call that fails before anything was sent is retried until
``busy_timeout_seconds``; a write whose COMMIT was cut off is reported as
:class:`StorageUnavailable` saying its outcome is unknown, never retried blindly.

Round trips are what a queue on PostgreSQL pays for (the WAL flush of a commit aside), so
the hottest writes, enqueue (without keys), claim and complete, are one autocommit
statement each, their event included (``insert_jobs_unnest``, ``claim_jobs`` and
``complete_job`` in queries.sql): one round trip, as in the bare-SQL baseline of
bench/bench_postgres.py, instead of BEGIN, statements, events, NOTIFY, COMMIT. A pooled
connection is checked without a round trip (see :func:`probe`).

Group commit (backends/group.py): concurrent enqueues (without keys) of one process go out
as one ``insert_jobs_unnest`` of all their jobs, and concurrent completions as one
``complete_jobs``: one round trip and one commit (one WAL flush, one NOTIFY) per group
instead of one per call. A statement error (a payload the server refuses) runs the group's
calls again one by one, so it is the one call's own; a miss of a completion is explained per
call, as today. The server's own group commit already shares flushes between connections:
the rest of the writes run as before. ``?group_commit=off`` in the URL: one statement a call.
"""

from __future__ import annotations

import contextlib
import json
import re
import select
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import psycopg.errors
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import ConnectionPool, PoolTimeout

from persistq.backends.base import NewJob, no_database
from persistq.backends.group import (
    GROUP_COMMIT_MAX,
    GROUP_ERRORS,
    Call,
    Groups,
    fail_all,
    parse_group_commit,
)
from persistq.backends.rows import (
    completed_job,
    decode_payloads,
    job_columns_in,
    new_job,
    row_to_job,
)
from persistq.backends.sql import NamedSQL, migrations
from persistq.backends.sqlbase import (
    COMPLETE_EVENTS,
    LastWrite,
    SQLBackend,
    claim_params,
    job_params,
    lease_miss,
)
from persistq.errors import (
    JobNotFound,
    LeaseLost,
    StorageBusy,
    StorageCorrupt,
    StorageError,
    StorageFull,
    StorageUnavailable,
)
from persistq.model import Completion, Job, StorageInfo

T = TypeVar("T")
SQL = NamedSQL("postgres")
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
#: Serialises migrations of every process on the server (an arbitrary, fixed number).
MIGRATION_LOCK = 7_346_116_220_103
_RETRYABLE = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)
#: Session settings of the connections that claim (and only those). PostgreSQL has no plan
#: hints: right after a burst of enqueues, before ANALYZE, the planner believes few rows
#: match and would fetch every pending job of the queue and sort them (34x slower claims at
#: 200,000 pending, bench S5). With sorts and bitmap scans off, walking jobs_claim in claim
#: order is the one cheap plan, with statistics or without. JIT off: a disabled sort still
#: costs its plan 10^10, enough to JIT-compile every claim (about a second each). Generic
#: plans: the planner's guess for a generic LIMIT $n is worse than its custom plans, so it
#: planned every claim afresh (0.3 ms of a 0.6 ms claim's server CPU); the one plan these
#: settings leave is as good for every queue and limit, so the prepared claim keeps it.
#: Sequential scans off: a claimer that started on a near-empty table got a generic plan
#: that found the claimed ids (``id = ANY(...)``) by reading the whole table, and kept it as
#: the table grew (no ANALYZE, no re-plan): each claim O(jobs) (bench S4, which starts
#: empty: server CPU 0.73 ms a job). The primary key is then the one way to them.
CLAIM_SETTINGS = {
    "enable_sort": "off",
    "enable_bitmapscan": "off",
    "enable_seqscan": "off",
    "jit": "off",
    "plan_cache_mode": "force_generic_plan",
}
#: Session settings of every pooled connection. TimeZone UTC: psycopg then reads a time
#: in UTC (datetime.UTC) itself, where the server's own zone (often Etc/UTC, a ZoneInfo)
#: took an astimezone per time, 8 of them per claim and complete. No statement depends
#: on the session's zone (they store and compare timestamptz).
SESSION_SETTINGS = {"timezone": "UTC"}
#: Advisory locks a listener holds (shared) per schema; a writer tries one, chosen by its
#: server process id (see PostgresBackend._listeners). The SQL says it as LISTENER_SLOT, the
#: count a parameter (``listen_slots``, in every statement's ``_listening``): one home.
LISTEN_SLOTS = 16
LISTENER_SLOT = "pg_try_advisory_xact_lock(%(listeners)s + pg_backend_pid() %% %(listen_slots)s)"


class PostgresURL(NamedTuple):
    conninfo: str
    schema: str
    #: False with ``?group_commit=off``: one statement per write call, for comparison.
    group_commit: bool


def parse_postgres_url(url: str) -> tuple[str, str]:
    """The libpq URL without our options (``schema``, ``group_commit``), and the schema."""
    return _parse_url(url)[:2]


def _parse_url(url: str) -> PostgresURL:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise StorageUnavailable(f"not a PostgreSQL URL: {url!r}")
    options = parse_qsl(parts.query, keep_blank_values=True)
    ours = {"schema": "persistq", "group_commit": None}
    rest = []
    for name, value in options:
        if name in ours:
            ours[name] = value
        else:
            rest.append((name, value))
    schema = ours["schema"] or ""
    if not SCHEMA_NAME.match(schema):
        raise StorageUnavailable(f"schema={schema!r}: use lowercase letters, digits and _")
    grouping = parse_group_commit(ours["group_commit"])
    return PostgresURL(urlunsplit(parts._replace(query=urlencode(rest))), schema, grouping)


def translate(exc: BaseException, where: str) -> StorageError:
    """A driver error as the persistq error that names its cause."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, psycopg.errors.DiskFull):
        return StorageFull(f"{where}: the server's disk is full ({text}); nothing was written")
    if isinstance(exc, psycopg.errors.DataCorrupted | psycopg.errors.IndexCorrupted):
        return StorageCorrupt(f"{where}: the server reports damaged data ({text})")
    if isinstance(exc, psycopg.errors.LockNotAvailable | psycopg.errors.QueryCanceled):
        return StorageBusy(f"{where}: the database stayed busy past the wait limit ({text})")
    if isinstance(exc, PoolTimeout | psycopg.OperationalError):
        return StorageUnavailable(f"{where}: cannot reach PostgreSQL ({text})")
    return StorageError(f"{where}: {text}")


class _Shape(NamedTuple):
    """Where each column of a statement's tuple rows is."""

    at: dict[str, int]
    #: A Job's columns (rows.JOB_COLUMNS) out of a row, if the rows are jobs.
    job: Callable[[Any], tuple[Any, ...]] | None


class _Enqueue(NamedTuple):
    """An enqueue waiting in a group (``insert_jobs`` without keys)."""

    jobs: Sequence[NewJob]
    now: float | None


class _Complete(NamedTuple):
    """A completion waiting in a group: the holder's copy of its job (its claim's fence
    guards the happy path, whose answer is that copy brought up to date)."""

    job: Job
    lease_token: str
    result: str | None
    now: float | None


class PostgresBackend(SQLBackend):
    SQL = SQL
    wakes_only_for_claimable_jobs = True
    completes_with_next_claim = False

    def __init__(
        self,
        url: str,
        *,
        busy_timeout_seconds: float = 60.0,
        pool_size: int = 10,
        group_commit_max: int = GROUP_COMMIT_MAX,
    ) -> None:
        self.url = url
        self._conninfo, self.schema, grouping = _parse_url(url)
        cap = group_commit_max if grouping else 1
        #: Groups run (enqueues and completions), by size: the bench and tests read it.
        self.group_sizes: Counter[int] = Counter()
        #: Apart, so that enqueues and completions of one process go out side by side.
        self._enqueues = Groups(self._insert_group, cap, sizes=self.group_sizes)
        self._completes = Groups(self._complete_group, cap, sizes=self.group_sizes)
        self._where = _describe(self._conninfo, self.schema)
        self._retry_seconds = busy_timeout_seconds
        self._channel = f"persistq_{self.schema}"
        #: Apart from the claim channel, so a finished job never wakes idle claimers: its
        #: NOTIFY carries the job's id, for whoever waits on that job.
        self._done_channel = f"persistq_{self.schema}_done"
        #: A NOTIFY costs every committing transaction that sends one a turn on one lock of
        #: the whole server (commits that notify cannot be flushed together), so it is sent
        #: only if some process listens. A listener holds this advisory lock (shared) for as
        #: long as it listens; a writer that can take it exclusively (until its commit)
        #: knows no one listens, and that one who starts listening meanwhile waits for the
        #: commit, then looks again (see _listen). It is LISTEN_SLOTS locks, a writer
        #: trying the one of its server process (LISTENER_SLOT): with one lock, concurrent
        #: writers found it taken by each other (40% of completions with 4 consumers) and
        #: sent NOTIFYs no one heard, each one a turn on that server-wide lock. A writer
        #: that finds its slot taken by another writer sends its NOTIFY, as before.
        self._listeners = MIGRATION_LOCK + 1 + zlib.crc32(self.schema.encode()) * LISTEN_SLOTS
        #: The parameters of LISTENER_SLOT, for every statement that tries it.
        self._listening = {"listeners": self._listeners, "listen_slots": LISTEN_SLOTS}
        self._pool = self._new_pool("persistq", pool_size, min_size=1)
        #: Claims only, on connections of their own with CLAIM_SETTINGS; none is opened
        #: until this process first claims (a producer never does).
        self._claim_pool = self._new_pool("persistq-claim", pool_size, min_size=0, **CLAIM_SETTINGS)
        try:
            self._pool.open(wait=True, timeout=min(10.0, busy_timeout_seconds))
            self._claim_pool.open(wait=False)
        except (PoolTimeout, psycopg.Error) as exc:
            self._pool.close()
            self._claim_pool.close()
            raise translate(exc, self._where) from None
        self._writes = LastWrite()
        #: Statement name -> where its columns are (see _statement).
        self._shapes: dict[str, _Shape] = {}
        self._changed = threading.Condition()
        self._notifications = 0
        #: Times the listener (re)started listening: a watcher must look again, since a
        #: NOTIFY sent while no one listened is lost.
        self._listens = 0
        #: job id -> [watchers, NOTIFYs seen], for the jobs someone waits on.
        self._watched: dict[int, list[int]] = {}
        self._closed = threading.Event()
        self._listener: threading.Thread | None = None

    def _new_pool(self, name: str, size: int, *, min_size: int, **settings: str) -> ConnectionPool:
        options = " ".join(
            f"-c {k}={v}"
            for k, v in {**SESSION_SETTINGS, "search_path": self.schema, **settings}.items()
        )
        return ConnectionPool(
            self._conninfo,
            min_size=min_size,
            max_size=size,
            kwargs={
                "autocommit": True,  # transactions are explicit: conn.transaction()
                "row_factory": dict_row,
                "options": options,
            },
            check=probe,  # a restarted server's dead sockets, without a round trip each
            open=False,
            name=f"{name}-{self.schema}",
        )

    # -- transactions --------------------------------------------------------------------

    def _retrying(
        self,
        attempt: Callable[[Callable[[], None]], T],
        *,
        retry_unknown: bool = False,
        deadline: float | None = None,
        pause: float = 0.05,
    ) -> T:
        """Run ``attempt`` until it succeeds, retrying while the server cannot be reached.

        ``attempt`` gets a ``sent`` callback to call once a write may have reached the
        server: cut off after that, the write's outcome is unknown, and it is reported as
        :class:`StorageUnavailable` rather than retried, unless ``retry_unknown`` (a claim:
        at worst a job stays leased to no one until its lease expires, as when a worker
        crashes right after claiming). ``deadline`` and ``pause``: where an earlier attempt
        (:meth:`_statement`'s) left them.
        """
        if deadline is None:
            deadline = time.monotonic() + self._retry_seconds
        while True:
            sent = False

            def mark_sent() -> None:
                nonlocal sent
                sent = True

            try:
                return attempt(mark_sent)
            except (psycopg.Error, PoolTimeout) as exc:
                pause = self._failed(
                    exc, sent=sent, retry_unknown=retry_unknown, deadline=deadline, pause=pause
                )

    def _failed(
        self, exc: Exception, *, sent: bool, retry_unknown: bool, deadline: float, pause: float
    ) -> float:
        """After a failed attempt: raise the error it is, or wait ``pause`` and return the
        next pause, for another attempt (as :meth:`_retrying` says)."""
        if isinstance(exc, _RETRYABLE):  # the server rolled the transaction back
            if time.monotonic() >= deadline:
                raise translate(exc, self._where) from None
        elif isinstance(exc, PoolTimeout | psycopg.OperationalError):
            if sent and not retry_unknown:
                raise StorageUnavailable(
                    f"{self._where}: the connection was lost after the write was sent; "
                    f"its outcome is unknown ({exc})"
                ) from None
            if time.monotonic() >= deadline:
                raise translate(exc, self._where) from None
        else:
            raise translate(exc, self._where) from None
        time.sleep(pause)
        return min(pause * 2, 1.0)

    def _attempt(
        self,
        work: Callable[[Any], T],
        *,
        write: bool,
        wakes: bool,
        pool: ConnectionPool | None = None,
    ) -> T:
        """Run ``work`` in a transaction (reads: without one), retried as _retrying says."""

        def attempt(sent: Callable[[], None]) -> T:
            with (pool or self._pool).connection(timeout=self._retry_seconds) as conn:
                # Reads need no BEGIN/COMMIT round trips: under READ COMMITTED each
                # statement reads its own snapshot inside a transaction too.
                with conn.transaction() if write else contextlib.nullcontext():
                    result = work(conn)
                    if wakes:  # delivered at commit, to every listening process
                        conn.execute(
                            f"SELECT pg_notify(%(channel)s, '') WHERE NOT {LISTENER_SLOT}",
                            {"channel": self._channel, **self._listening},
                        )
                    if write:
                        sent()  # the COMMIT goes out as this block ends
                return result

        if not write:
            return self._retrying(attempt)
        with self._writes.watch():
            return self._retrying(attempt)

    def _statement(
        self,
        name: str,
        params: dict[str, Any],
        *,
        unknown_is_retried: bool,
        pool: ConnectionPool | None = None,
    ) -> tuple[list[tuple[Any, ...]], _Shape]:
        """Run one named statement on its own (autocommit: it is its own transaction): its
        rows as tuples, and where each column is in them.

        The hot writes come this way, so the first attempt is made right here, without
        the closures, context managers and tries of :meth:`_retrying` (an attempt cost
        twice the client's work of the statement itself); a failed one goes on there."""
        pool = pool or self._pool
        deadline = time.monotonic() + self._retry_seconds
        sent = False
        try:
            conn = pool.getconn(self._retry_seconds)
            try:
                sent = True
                rows, shape = self._run_named(conn, name, params)
            finally:
                # An autocommit statement leaves no transaction open, even when it fails
                # (pool.connection()'s commit or rollback would have nothing to do).
                pool.putconn(conn)
        except (psycopg.Error, PoolTimeout) as exc:
            with self._writes.watch():  # every single statement run this way writes
                pause = self._failed(
                    exc, sent=sent, retry_unknown=unknown_is_retried, deadline=deadline, pause=0.05
                )

                def attempt(sent: Callable[[], None]) -> tuple[list[tuple[Any, ...]], _Shape]:
                    with pool.connection(timeout=self._retry_seconds) as conn:
                        sent()
                        return self._run_named(conn, name, params)

                return self._retrying(
                    attempt, retry_unknown=unknown_is_retried, deadline=deadline, pause=pause
                )
        self._writes.succeeded()
        return rows, shape

    def _run_named(
        self, conn: psycopg.Connection[Any], name: str, params: dict[str, Any]
    ) -> tuple[list[tuple[Any, ...]], _Shape]:
        """Statement ``name`` on ``conn``: its rows as tuples, and where their columns are."""
        cursor = conn.cursor(row_factory=tuple_row)
        rows = cursor.execute(SQL[name], params).fetchall()
        return rows, self._shape(name, cursor)

    def _shape(self, name: str, cursor: psycopg.Cursor[Any]) -> _Shape:
        """Where each column of statement ``name``'s rows is (read once per statement)."""
        shape = self._shapes.get(name)
        if shape is None or len(shape.at) != cursor.pgresult.nfields:  # type: ignore[union-attr]
            columns = tuple(column.name for column in cursor.description or ())
            at = {column: n for n, column in enumerate(columns)}
            pick = job_columns_in(columns) if "fence" in at else None
            shape = self._shapes[name] = _Shape(at, pick)
        return shape

    def _write(self, work: Callable[[Any], T], *, wakes: bool = False) -> T:
        return self._attempt(work, write=True, wakes=wakes)

    def _read(self, work: Callable[[Any], T]) -> T:
        return self._attempt(work, write=False, wakes=False)

    def close(self) -> None:
        self._closed.set()
        self._pool.close()
        self._claim_pool.close()
        if self._listener is not None:
            self._listener.join(timeout=5)

    # -- the hot paths: one statement each ---------------------------------------------------

    def insert_jobs(self, jobs: Sequence[NewJob], now: float | None) -> list[Job]:
        if not jobs or any(job.key is not None for job in jobs):  # keys: one by one
            return super().insert_jobs(jobs, now)
        made: list[Job] = self._enqueues.run(Call(_Enqueue(jobs, self._now(now))))
        return made

    def _insert_group(self, group: list[Call[_Enqueue]]) -> None:
        """The jobs of every call of ``group`` in one ``insert_jobs_unnest`` per ``now``
        (ids in call order, so each call's are the next of the statement's)."""
        try:
            for calls in _by_now(group):
                self._insert_together(calls)
        except BaseException as exc:
            _unknown_if_interrupted(group, exc)
            raise

    def _insert_together(self, group: list[Call[_Enqueue]]) -> None:
        jobs = [job for call in group for job in call.work.jobs]
        now = group[0].work.now
        if len(jobs) == 1:
            name = "insert_one_job"
            params = job_params(jobs[0], now=now, channel=self._channel, **self._listening)
        else:
            name, params = "insert_jobs_unnest", self._batch_params(jobs, now)
        try:
            rows = self._statement(name, params, unknown_is_retried=False)[0]
        except Exception as exc:
            self._apart(group, exc, self._insert_together)
            return
        start = 0
        for call in group:
            end = start + len(call.work.jobs)
            call.result, call.error = self._new_jobs(call.work.jobs, rows[start:end]), None
            start = end

    def claim_jobs(
        self,
        queues: Sequence[str],
        worker: str,
        limit: int,
        lease_seconds: float,
        now: float | None,
    ) -> list[Job]:
        now = self._now(now)
        if len(queues) == 1:  # the usual claim: one statement
            params = claim_params(queues[0], worker, limit, lease_seconds, now)
            found, shape = self._statement(
                "claim_jobs", params, unknown_is_retried=True, pool=self._claim_pool
            )
            at = shape.at
            if not found[0][at["limited"]]:  # always one row, without a job if none was claimed
                claimed = [r for r in found if r[at["id"]] is not None]
                claimed = self._in_claim_order(claimed, at["id"], at["priority"])
                return [self._tuple_job(row, shape) for row in claimed]

        # Several queues in order, or a queue with limits: one transaction, queue by queue.
        def work(conn: Any) -> list[Any]:
            claimed: list[Any] = []
            for queue in queues:
                if len(claimed) >= limit:
                    break
                params = claim_params(queue, worker, limit - len(claimed), lease_seconds, now)
                conn.execute(SQL["lock_queue_limits"], params)
                rows = conn.execute(SQL["claim_jobs_limited"], params).fetchall()
                claimed.extend(self._in_claim_order(rows))
            return claimed

        rows = self._attempt(work, write=True, wakes=False, pool=self._claim_pool)
        return [self._job(row, with_token=True) for row in rows]

    @staticmethod
    def _in_claim_order(
        rows: list[Any], job_id: int | str = "id", priority: int | str = "priority"
    ) -> list[Any]:
        """One queue's claimed rows in claim order (the statements leave it to us); a
        tuple row's columns are given by position."""
        if len(rows) > 1:
            rows.sort(key=lambda r: (-r[priority], r[job_id]))
        return rows

    def complete_job(
        self, job: Job, lease_token: str, result: str | None, now: float | None
    ) -> Job:
        done: Job = self._completes.run(Call(_Complete(job, lease_token, result, self._now(now))))
        return done

    def complete_jobs(
        self, items: Sequence[Completion], now: float | None
    ) -> list[Job | JobNotFound | LeaseLost]:
        # A worker's settled batch is a group already: one complete_jobs statement (one
        # round trip, one commit), each job fenced on its own lease as in any group.
        now = self._now(now)
        group = [Call(_Complete(job, token, result, now)) for job, token, result in items]
        self._complete_group(group)
        answers: list[Job | JobNotFound | LeaseLost] = []
        for call in group:
            if isinstance(call.error, JobNotFound | LeaseLost):
                answers.append(call.error)
            elif call.error is not None:
                raise call.error
            else:
                answers.append(call.result)
        return answers

    def complete_and_claim_jobs(
        self,
        items: Sequence[Completion],
        queues: Sequence[str],
        worker: str,
        limit: int,
        lease_seconds: float,
        now: float | None,
    ) -> tuple[list[Job | JobNotFound | LeaseLost], list[Job]]:
        # Two statements, as two calls: each is one round trip and one commit already, and
        # the claim must run on the claim pool's sessions (CLAIM_SETTINGS) to keep its plan.
        done = self.complete_jobs(items, now)
        try:
            claimed = self.claim_jobs(queues, worker, limit, lease_seconds, now)
        except StorageError:
            # The completions are committed: their answers stand. A claim cut off leases
            # nothing for long (see claim_jobs), and the caller's next claim meets the error.
            claimed = []
        return done, claimed

    def _complete_group(self, group: list[Call[_Complete]]) -> None:
        try:
            for calls in _by_now(group):
                if len(calls) == 1:
                    self._complete_alone(calls[0])
                else:
                    self._complete_together(calls)
        except BaseException as exc:
            _unknown_if_interrupted(group, exc)
            raise

    def _complete_missed(self, group: list[Call[_Complete]]) -> None:
        """Calls the happy path missed (it changed nothing for them): the full completion,
        which reads each row back (CANCELLED) or explains the miss."""
        if len(group) == 1:
            self._complete_read_back(group[0])
        else:
            self._complete_together_read_back(group)

    def _held_params(self, now: float | None) -> dict[str, Any]:
        """What every completion statement takes besides its jobs: the time, and where to
        notify those waiting for the jobs."""
        return {"now": now, "done_channel": self._done_channel, **self._listening}

    def _complete_params(self, now: float | None) -> dict[str, Any]:
        """The same for the full path, which also writes the events some outcomes store."""
        return self._held_params(now) | {"events": COMPLETE_EVENTS}

    def _complete_alone(self, call: Call[_Complete]) -> None:
        """``complete_held``: the holder's copy brought up to date answers, as on SQLite
        (only the completion's time comes back); a miss goes the full way."""
        job, lease_token, result, now = call.work
        params = {"id": job.id, "lease_token": lease_token, "fence": job.fence, "result": result}
        try:
            rows, _ = self._statement(
                "complete_held", params | self._held_params(now), unknown_is_retried=False
            )
        except Exception as exc:
            call.result, call.error = None, exc
            return
        if not rows:
            self._complete_read_back(call)
            return
        call.result, call.error = completed_job(job, result, self._datetime(rows[0][0])), None

    def _complete_together(self, group: list[Call[_Complete]]) -> None:
        """One ``complete_jobs_held`` for all of ``group``, each job guarded on its own
        lease and claim; the calls it missed go the full way, together."""
        given = [
            [c.work.job.id, c.work.lease_token, c.work.result, c.work.job.fence] for c in group
        ]
        params = {"jobs": json.dumps(given)} | self._held_params(group[0].work.now)
        try:
            rows, _ = self._statement("complete_jobs_held", params, unknown_is_retried=False)
        except Exception as exc:
            self._apart(group, exc, self._complete_group)
            return
        finished = {call_n: at for call_n, at, _ in rows}
        missed = []
        for n, call in enumerate(group, 1):
            at = finished.get(n)
            if at is None:
                missed.append(call)
            else:
                held, result = call.work.job, call.work.result
                call.result, call.error = completed_job(held, result, self._datetime(at)), None
        if missed:
            self._complete_missed(missed)

    def _complete_read_back(self, call: Call[_Complete]) -> None:
        job, lease_token, result, now = call.work
        params = {"id": job.id, "lease_token": lease_token, "result": result}
        try:
            rows, shape = self._statement(
                "complete_job", params | self._complete_params(now), unknown_is_retried=False
            )
            row = rows[0] if rows else None
            call.result, call.error = self._completed(job.id, row, shape), None
        except Exception as exc:
            call.result, call.error = None, exc

    def _complete_together_read_back(self, group: list[Call[_Complete]]) -> None:
        """One ``complete_jobs`` for all of ``group``, each job guarded on its own lease."""
        given = [[c.work.job.id, c.work.lease_token, c.work.result] for c in group]
        params = {"jobs": json.dumps(given)} | self._complete_params(group[0].work.now)
        try:
            rows, shape = self._statement("complete_jobs", params, unknown_is_retried=False)
        except Exception as exc:
            self._apart(group, exc, self._complete_missed)
            return
        call_n = shape.at["call_n"]
        by_call = {row[call_n]: row for row in rows}
        for n, call in enumerate(group, 1):
            try:
                call.result = self._completed(call.work.job.id, by_call.get(n), shape)
                call.error = None
            except Exception as exc:
                call.result, call.error = None, exc

    def _completed(self, job_id: int, row: tuple[Any, ...] | None, shape: _Shape) -> Job:
        """The completed job, or why there was none to complete (raised)."""
        if row is None:
            raise self._read(
                lambda conn: lease_miss(job_id, conn.execute(SQL["get_job"], {"id": job_id}))
            )
        return self._tuple_job(row, shape)

    def _tuple_job(self, row: tuple[Any, ...], shape: _Shape) -> Job:
        """The lease holder's Job of a tuple row of :meth:`_statement`."""
        assert shape.job is not None, "a statement that returns jobs"
        return row_to_job(row, self._datetime, with_token=True, pick=shape.job)

    def _apart(
        self,
        group: list[Call[Any]],
        exc: Exception,
        again: Callable[[list[Call[Any]]], None],
    ) -> None:
        """After ``group``'s statement failed (and wrote nothing): an error that ends the
        group (the server unreachable, the outcome unknown, a full disk) is every call's;
        another is a statement error of some call's own (a payload the server refuses), so
        each call runs again on its own and only that one fails."""
        if isinstance(exc, GROUP_ERRORS):
            fail_all(group, exc)
        elif len(group) == 1:
            group[0].result, group[0].error = None, exc
        else:
            for call in group:
                again([call])

    # -- what the shared SQL backend needs --------------------------------------------------

    def _datetime(self, value: Any) -> datetime:
        moment: datetime = value
        # In UTC already on our connections (SESSION_SETTINGS); a quarter of astimezone's cost.
        return moment if moment.tzinfo is UTC else moment.astimezone(UTC)

    def _list(self, values: Sequence[Any]) -> list[Any]:
        return list(values)

    def _finished(self, conn: Any, job_ids: Sequence[int]) -> None:
        if job_ids:  # delivered at commit, one NOTIFY per job
            conn.execute(
                "SELECT pg_notify(%(channel)s, t.id::text) FROM unnest(%(ids)s::bigint[]) AS t(id)"
                f" WHERE NOT {LISTENER_SLOT}",
                {"channel": self._done_channel, "ids": list(job_ids), **self._listening},
            )

    def _batch_params(self, jobs: Sequence[NewJob], now: float | None) -> dict[str, Any]:
        rows = [
            [j.queue, j.payload, j.priority, j.delay_seconds, j.max_attempts, j.timeout]
            for j in jobs
        ]
        return {
            "jobs": json.dumps(rows),
            "now": now,
            "channel": self._channel,
            **self._listening,
        }

    def _new_jobs(self, jobs: Sequence[NewJob], returned: Sequence[Any]) -> list[Job]:
        made = []
        times: dict[Any, datetime] = {}  # one transaction: one created_at, few run_at values
        payloads = decode_payloads(jobs)
        for j, payload, (job_id, run_at, created_at) in zip(jobs, payloads, returned, strict=True):
            created = times.get(created_at) or times.setdefault(
                created_at, self._datetime(created_at)
            )
            due = times.get(run_at) or times.setdefault(run_at, self._datetime(run_at))
            made.append(new_job(j, payload, job_id, due, created))
        return made

    def now(self) -> float:
        row = self._read(
            lambda conn: conn.execute("SELECT extract(epoch FROM now()) AS t").fetchone()
        )
        return float(row["t"])

    # -- schema ------------------------------------------------------------------------

    def migrate(self, *, create: bool = True) -> int:
        def work(conn: Any) -> int:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            found = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (self.schema,),
            ).fetchall()
            tables = {row["table_name"] for row in found}
            if tables and "schema_version" not in tables:
                raise StorageCorrupt(
                    f"{self._where}: schema {self.schema!r} holds tables persistq did not "
                    f"create ({', '.join(sorted(tables)[:5])}); refusing to change it"
                )
            if not tables and not create:
                raise no_database(self._where)
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
            row = conn.execute("SELECT max(version) AS v FROM schema_version").fetchone()
            version = int(row["v"] or 0)
            latest = migrations("postgres")[-1].version
            if version > latest:
                raise StorageError(
                    f"{self._where}: schema version {version} is newer than this persistq "
                    f"supports ({latest}); upgrade persistq"
                )
            for migration in migrations("postgres"):
                if migration.version > version:
                    conn.execute(migration.sql)
                    conn.execute("INSERT INTO schema_version VALUES (%s)", (migration.version,))
                    version = migration.version
            return version

        return self._write(work)

    # -- waiting for work: LISTEN/NOTIFY ---------------------------------------------------

    def wait_for_change(self, timeout: float) -> bool:
        self._start_listener()
        with self._changed:
            seen = self._notifications
            self._changed.wait_for(lambda: self._notifications != seen, timeout=timeout)
            return self._notifications != seen

    @contextlib.contextmanager
    def watch_job(self, job_id: int) -> Iterator[Callable[[float], bool]]:
        self._start_listener()
        with self._changed:
            entry = self._watched.setdefault(job_id, [0, 0])
            entry[0] += 1
            seen = (entry[1], self._listens)

        def wait(timeout: float) -> bool:
            nonlocal seen
            with self._changed:
                self._changed.wait_for(lambda: (entry[1], self._listens) != seen, timeout=timeout)
                changed = (entry[1], self._listens) != seen
                seen = (entry[1], self._listens)
                return changed

        try:
            yield wait
        finally:
            with self._changed:
                entry[0] -= 1
                if entry[0] == 0:
                    del self._watched[job_id]

    def _start_listener(self) -> None:
        with self._changed:
            if self._listener is None:
                self._listener = threading.Thread(
                    target=self._listen, name=f"persistq-listen-{self.schema}", daemon=True
                )
                self._listener.start()

    def _listen(self) -> None:
        """Own one connection that LISTENs; reconnect after the server comes back."""
        while not self._closed.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(f'LISTEN "{self._channel}"')
                    conn.execute(f'LISTEN "{self._done_channel}"')
                    # From now on writers notify (held until this connection ends).
                    conn.execute(
                        "SELECT pg_advisory_lock_shared(%s + slot)"
                        " FROM generate_series(0, %s - 1) AS slot",
                        (self._listeners, LISTEN_SLOTS),
                    )
                    with self._changed:
                        self._listens += 1
                    self._wake()  # anything sent while not listening: look again
                    while not self._closed.is_set():
                        for note in conn.notifies(timeout=1.0):
                            if note.channel == self._done_channel:
                                self._job_finished(note.payload)
                            else:
                                self._wake()
            except psycopg.Error:
                self._closed.wait(1.0)

    def _job_finished(self, payload: str) -> None:
        with self._changed:
            entry = self._watched.get(int(payload)) if payload.isdigit() else None
            if entry is not None:
                entry[1] += 1
                self._changed.notify_all()

    def _wake(self) -> None:
        with self._changed:
            self._notifications += 1
            self._changed.notify_all()

    # -- health ----------------------------------------------------------------------------

    def _unwritable(self) -> str | None:
        """A standby (in recovery) or a read-only default refuses every write."""
        try:
            row = self._read(
                lambda conn: conn.execute(
                    "SELECT pg_is_in_recovery() AS standby,"
                    " current_setting('transaction_read_only') AS read_only"
                ).fetchone()
            )
        except StorageError as exc:
            return str(exc)
        if row["standby"]:
            return f"{self._where}: the server is a standby (in recovery): read-only"
        if row["read_only"] == "on":
            return f"{self._where}: transactions are read-only (default_transaction_read_only)"
        return None

    def storage(self) -> StorageInfo:
        return StorageInfo(None, None, None, None, None)  # the files are the server's

    def check(self, *, full: bool = False) -> dict[str, Any]:
        report: dict[str, Any] = {"backend": "postgres", "server": self._where}
        latest = migrations("postgres")[-1].version
        try:

            def work(conn: Any) -> dict[str, Any]:
                version = conn.execute("SELECT max(version) AS v FROM schema_version").fetchone()
                sizes = conn.execute(
                    "SELECT coalesce(sum(pg_total_relation_size(relid)), 0) AS size,"
                    " coalesce(sum(n_dead_tup), 0) AS dead, coalesce(sum(n_live_tup), 0) AS live"
                    " FROM pg_stat_user_tables WHERE schemaname = %s",
                    (self.schema,),
                ).fetchone()
                server = conn.execute("SHOW server_version").fetchone()
                return {
                    "integrity": "ok",
                    "schema_version": version["v"],
                    "size_bytes": int(sizes["size"]),
                    "live_rows": int(sizes["live"]),
                    "dead_rows": int(sizes["dead"]),
                    "server_version": server["server_version"],
                }

            report.update(self._read(work))
        except StorageError as exc:
            report.update(integrity=str(exc), schema_version=None)
        report["latest_schema_version"] = latest
        report["ok"] = report["integrity"] == "ok" and report["schema_version"] == latest
        return report


def _unknown_if_interrupted(group: list[Call[Any]], exc: BaseException) -> None:
    """After ``exc`` interrupted a group's run: a KeyboardInterrupt (no Exception) may have
    come while the group's statement was out, and it may have been committed, so no call
    of it may run again; the ones not answered yet learn that their outcome is unknown (as
    a call of its own would, cut off after sending). (A function called from ``except``,
    not a context manager: a group of one is the common case, and this is its cost.)"""
    if isinstance(exc, Exception):
        return
    for call in group:
        if call.result is None and call.error is None:
            call.error = StorageUnavailable(
                "interrupted after the write was sent by "
                "another call of its group; its outcome is unknown"
            )
        call.done = True


def _by_now(group: list[Call[Any]]) -> list[list[Call[Any]]]:
    """``group``'s calls by the ``now`` they were given (one statement has one), in order:
    with the database's clock (None) that is all of them."""
    if len(group) == 1:
        return [group]
    by: dict[float | None, list[Call[Any]]] = {}
    for call in group:
        by.setdefault(call.work.now, []).append(call)
    return list(by.values())


def probe(conn: psycopg.Connection[Any]) -> None:
    """The pool's check of a connection it hands out, without a round trip when it can.

    A server that closed the connection (a restart, an idle timeout, a terminated backend)
    has left its FATAL message or EOF on the socket: only then is the socket readable, and
    only then is a real round trip spent to find out (raising makes the pool discard the
    connection and hand out another). An idle, healthy connection has nothing to read.
    """
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    if readable:
        ConnectionPool.check_connection(conn)


def _describe(conninfo: str, schema: str) -> str:
    """Where the queue is, for messages: host, port, database and schema, no password."""
    parts = urlsplit(conninfo)
    host = parts.hostname or "localhost"
    return f"postgresql://{host}:{parts.port or 5432}{parts.path or '/'}?schema={schema}"
