"""SQLite backend: one file in WAL mode, every write under ``BEGIN IMMEDIATE``.

SQLite has a single writer, so a guarded ``UPDATE ... RETURNING`` inside an immediate
transaction is atomic across processes without row locks. A busy file is retried within
``busy_timeout_seconds`` and surfaces as :class:`StorageBusy`, never "database is locked".
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from persistq.backends.base import NewJob
from persistq.backends.rows import epoch_to_datetime, row_to_event, row_to_job
from persistq.backends.sql import migrations, queries
from persistq.errors import (
    InvalidTransition,
    JobNotFound,
    LeaseLost,
    QueueNotEmpty,
    QueueNotFound,
    StorageBusy,
    StorageCorrupt,
    StorageError,
    StorageFull,
    StorageUnavailable,
)
from persistq.model import (
    Event,
    EventKind,
    Job,
    QueueInfo,
    State,
    Timing,
    WorkerInfo,
)

T = TypeVar("T")
SQL = queries("sqlite")
_SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL", "extra": "EXTRA"}
#: How often a waiting claim looks for commits of other processes (PRAGMA data_version
#: reads shared memory, so this costs no disk I/O).
POLL_SECONDS = 0.005
_BUSY = {"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_BUSY_RECOVERY", "SQLITE_BUSY_SNAPSHOT"}


def parse_sqlite_url(url: str) -> tuple[Path, str]:
    """``sqlite:///rel/path.db`` or ``sqlite:////abs/path.db``, optional ``?synchronous=``."""
    if not url.startswith("sqlite:///"):
        raise StorageUnavailable(f"not a SQLite URL: {url!r} (expected sqlite:///path/to/file.db)")
    rest, _, query = url[len("sqlite:///") :].partition("?")
    if not rest:
        raise StorageUnavailable(f"SQLite URL {url!r} names no file")
    options = dict(part.partition("=")[::2] for part in query.split("&") if part)
    unknown = set(options) - {"synchronous"}
    if unknown:
        raise StorageUnavailable(f"unknown SQLite URL option(s): {', '.join(sorted(unknown))}")
    sync = options.get("synchronous", "full").lower()
    if sync not in _SYNCHRONOUS:
        raise StorageUnavailable(f"synchronous={sync!r}: use full (default) or normal")
    return Path(rest), _SYNCHRONOUS[sync]


def translate(exc: sqlite3.Error, path: Path) -> StorageError:
    """A driver error as the persistq error that names its cause."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return StorageFull(f"{path}: the disk is full ({text}); nothing was written")
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in text:
        return StorageCorrupt(f"{path}: the database file is damaged or not a database ({text})")
    if name in _BUSY or "locked" in text:
        return StorageBusy(f"{path}: the database stayed busy past the wait limit ({text})")
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_IOERR")):
        cause = _access_problem(path)
        reason = f"{cause}: {text}" if cause else text
        return StorageUnavailable(f"{path}: cannot read or write the database ({reason})")
    return StorageError(f"{path}: {text}")


def _access_problem(path: Path) -> str | None:
    """Name why a file cannot be written, where SQLite only says 'unable to open'."""
    folder = path.parent if str(path.parent) else Path(".")
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except OSError as exc:
        return f"{folder}: {exc.strerror}"
    for target in (path, Path(f"{path}-wal"), folder):
        if target.exists() and not os.access(target, os.W_OK):
            return f"permission denied on {target}"
    return None


def _is_busy(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name in _BUSY or "database is locked" in str(exc)


class SQLiteBackend:
    def __init__(self, url: str, *, busy_timeout_seconds: float = 60.0) -> None:
        self.url = url
        self.path, self._synchronous = parse_sqlite_url(url)
        self._busy_timeout = busy_timeout_seconds
        self._lock = threading.RLock()
        self._changed = threading.Condition()
        self._local_writes = 0
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._connection()  # fail now, with the cause, if the file cannot be used

    # -- connection and transactions ------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        # A connection must not cross fork(): the child opens its own.
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(
                f"{self.path.parent}: cannot create directory ({exc})"
            ) from None
        try:
            conn = sqlite3.connect(
                self.path, timeout=1.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None
        conn.row_factory = sqlite3.Row
        try:
            self._retrying(lambda: self._configure(conn))
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _configure(self, conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageUnavailable(f"{self.path}: cannot use WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")

    def _retrying(self, attempt: Callable[[], T]) -> T:
        """Run ``attempt``; while the file is busy, retry it until the wait limit."""
        deadline = time.monotonic() + self._busy_timeout
        pause = 0.001
        while True:
            try:
                return attempt()
            except sqlite3.Error as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise translate(exc, self.path) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in one immediate transaction, retried whole while the file is busy."""

        def attempt() -> T:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        with self._lock:
            result = self._retrying(attempt)
        with self._changed:
            self._local_writes += 1
            self._changed.notify_all()
        return result

    def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            return self._retrying(lambda: work(self._connection()))

    def _one(self, sql: str, params: dict[str, Any]) -> sqlite3.Row | None:
        def work(conn: sqlite3.Connection) -> sqlite3.Row | None:
            row: sqlite3.Row | None = conn.execute(SQL[sql], params).fetchone()
            return row

        return self._read(work)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    # -- schema ------------------------------------------------------------------------

    def migrate(self) -> int:
        def work(conn: sqlite3.Connection) -> int:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            latest = migrations("sqlite")[-1].version
            if version > latest:
                raise StorageError(
                    f"{self.path}: schema version {version} is newer than this persistq "
                    f"supports ({latest}); upgrade persistq"
                )
            if version == 0:
                foreign = [row[0] for row in conn.execute(SQL["list_tables"])]
                if foreign:  # never write our tables into another application's database
                    raise StorageCorrupt(
                        f"{self.path}: not a persistq database (it has tables: "
                        f"{', '.join(foreign[:5])}); refusing to change it"
                    )
            for migration in migrations("sqlite"):
                if migration.version <= version:
                    continue
                for statement in _statements(migration.sql):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {migration.version:d}")
                version = migration.version
            return version

        return self._write(work)

    # -- producing -----------------------------------------------------------------------

    def insert_jobs(self, jobs: Sequence[NewJob], now: float) -> list[Job]:
        def work(conn: sqlite3.Connection) -> list[Job]:
            for queue in {job.queue for job in jobs}:
                conn.execute(SQL["ensure_queue"], {"queue": queue, "now": now})
            if any(job.key is not None for job in jobs):
                return [_insert_one(conn, job, now) for job in jobs]
            conn.executemany(
                SQL["insert_job_batch"], [{**_job_params(job), "now": now} for job in jobs]
            )
            last_id = conn.execute(SQL["last_insert_id"]).fetchone()["id"]
            first_id = last_id - len(jobs) + 1
            conn.execute(
                SQL["insert_enqueued_events"],
                {"first_id": first_id, "last_id": last_id, "now": now},
            )
            return _new_jobs(jobs, first_id, now)

        return self._write(work) if jobs else []

    # -- claiming --------------------------------------------------------------------------

    def claim_jobs(
        self, queues: Sequence[str], worker: str, limit: int, lease_seconds: float, now: float
    ) -> list[Job]:
        def work(conn: sqlite3.Connection) -> list[Job]:
            claimed: list[Job] = []
            for queue in queues:
                if len(claimed) >= limit:
                    break
                params = {
                    "queue": queue,
                    "worker": worker,
                    "limit": limit - len(claimed),
                    "lease_seconds": lease_seconds,
                    "now": now,
                }
                rows = conn.execute(SQL["claim_jobs"], params).fetchall()
                jobs = sorted(
                    (row_to_job(r, with_token=True) for r in rows),
                    key=lambda j: (-j.priority, j.id),
                )
                conn.executemany(
                    SQL["insert_event"],
                    [
                        _event(j.id, EventKind.CLAIMED, now, worker, f"attempt {j.attempts}")
                        for j in jobs
                    ],
                )
                claimed.extend(jobs)
            return claimed

        return self._write(work)

    def has_claimable(self, queues: Sequence[str], now: float) -> bool:
        return any(self._one("has_claimable", {"queue": q, "now": now}) for q in queues)

    def next_run_at(self, queues: Sequence[str], now: float) -> float | None:
        times = [self._one("next_run_at", {"queue": q, "now": now}) for q in queues]
        found = [row["run_at"] for row in times if row is not None and row["run_at"] is not None]
        return min(found) if found else None

    def wait_for_change(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            seen_local = self._local_writes
        seen_version = self._data_version()
        while (remaining := deadline - time.monotonic()) > 0:
            with self._changed:
                if self._local_writes == seen_local:
                    self._changed.wait(min(remaining, POLL_SECONDS))
                if self._local_writes != seen_local:
                    return True
            if self._data_version() != seen_version:
                return True
        return False

    def _data_version(self) -> int:
        row = self._read(lambda conn: conn.execute("PRAGMA data_version").fetchone())
        return int(row[0])

    # -- the lease holder's writes -----------------------------------------------------------

    def _owner_write(
        self, name: str, job_id: int, lease_token: str, now: float, **params: Any
    ) -> Job:
        """An owner-only transition: guarded on state, token and expiry; a miss is explained."""

        def work(conn: sqlite3.Connection) -> Job:
            args = {"id": job_id, "lease_token": lease_token, "now": now, **params}
            row = conn.execute(SQL[name], args).fetchone()
            if row is None:
                if conn.execute(SQL["get_job"], {"id": job_id}).fetchone() is None:
                    raise JobNotFound(job_id)
                raise LeaseLost(job_id)
            job = row_to_job(row, with_token=True)
            kind = _FINISH_EVENT.get((name, job.status))
            if kind is not None:
                detail = (
                    params.get("error") if kind in (EventKind.RETRIED, EventKind.FAILED) else None
                )
                conn.execute(SQL["insert_event"], _event(job_id, kind, now, job.worker, detail))
            return job

        return self._write(work)

    def extend_lease(self, job_id: int, lease_token: str, now: float) -> Job:
        return self._owner_write("extend_lease", job_id, lease_token, now)

    def complete_job(self, job_id: int, lease_token: str, result: str | None, now: float) -> Job:
        return self._owner_write("complete_job", job_id, lease_token, now, result=result)

    def retry_job(
        self, job_id: int, lease_token: str, error: str, delay_seconds: float, now: float
    ) -> Job:
        return self._owner_write(
            "retry_job", job_id, lease_token, now, error=error, delay_seconds=delay_seconds
        )

    def fail_job(self, job_id: int, lease_token: str, error: str, now: float) -> Job:
        return self._owner_write("fail_job", job_id, lease_token, now, error=error)

    def release_job(self, job_id: int, lease_token: str, now: float) -> Job:
        return self._owner_write("release_job", job_id, lease_token, now)

    # -- recovery and manual transitions --------------------------------------------------------

    def recover_expired(self, now: float, limit: int) -> int:
        def work(conn: sqlite3.Connection) -> int:
            rows = conn.execute(SQL["recover_expired"], {"now": now, "limit": limit}).fetchall()
            conn.executemany(
                SQL["insert_event"],
                [
                    _event(
                        r["id"],
                        EventKind.LEASE_EXPIRED,
                        now,
                        r["worker"],
                        f"attempt {r['attempts']} of {r['max_attempts']}: now {r['status']}",
                    )
                    for r in rows
                ],
            )
            return len(rows)

        return self._write(work)

    def _manual_write(
        self,
        job_id: int,
        now: float,
        requested: str,
        names: Sequence[str],
        already_done: Callable[[sqlite3.Row], bool] = lambda row: False,
        detail: str | None = None,
    ) -> Job:
        """Try each guarded statement in turn; a miss on all of them is explained."""

        def work(conn: sqlite3.Connection) -> Job:
            for name in names:
                row = conn.execute(
                    SQL[name], {"id": job_id, "now": now, "error": detail}
                ).fetchone()
                if row is not None:
                    job = row_to_job(row)
                    conn.execute(
                        SQL["insert_event"], _event(job_id, _MANUAL_EVENT[name], now, None, detail)
                    )
                    return job
            row = conn.execute(SQL["get_job"], {"id": job_id}).fetchone()
            if row is None:
                raise JobNotFound(job_id)
            if already_done(row):
                return row_to_job(row)
            raise InvalidTransition(job_id, row["status"], requested)

        return self._write(work)

    def cancel_job(self, job_id: int, now: float) -> Job:
        return self._manual_write(
            job_id,
            now,
            "cancel",
            ("cancel_job", "request_cancel"),
            # asked already: the holder will let go, nothing more to record
            already_done=lambda row: row["status"] == State.PROCESSING and row["cancel_requested"],
        )

    def fail_job_by_hand(self, job_id: int, error: str, now: float) -> Job:
        return self._manual_write(job_id, now, "fail", ("fail_job_by_hand",), detail=error)

    def resubmit_job(self, job_id: int, now: float) -> Job:
        return self._manual_write(job_id, now, "resubmit", ("resubmit_job",))

    # -- reading -----------------------------------------------------------------------------

    def get_job(self, job_id: int) -> Job:
        row = self._one("get_job", {"id": job_id})
        if row is None:
            raise JobNotFound(job_id)
        return row_to_job(row)

    def list_jobs(
        self, status: State | None, queue: str | None, limit: int, offset: int
    ) -> list[Job]:
        name = _LIST_QUERY[(status is not None, queue is not None)]
        params = {
            "status": status and str(status),
            "queue": queue,
            "limit": limit,
            "offset": offset,
        }
        rows = self._read(lambda conn: conn.execute(SQL[name], params).fetchall())
        return [row_to_job(row) for row in rows]

    def list_events(self, job_id: int) -> list[Event]:
        def work(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            if conn.execute(SQL["get_job"], {"id": job_id}).fetchone() is None:
                raise JobNotFound(job_id)
            return conn.execute(SQL["list_events"], {"job_id": job_id}).fetchall()

        return [row_to_event(row) for row in self._read(work)]

    def count_by_status(self) -> dict[str, dict[State, int]]:
        rows = self._read(lambda conn: conn.execute(SQL["count_by_status"]).fetchall())
        counts: dict[str, dict[State, int]] = {}
        for row in rows:
            counts.setdefault(row["queue"], {})[State(row["status"])] = row["n"]
        return counts

    def oldest_pending(self, now: float) -> dict[str, float]:
        rows = self._read(lambda conn: conn.execute(SQL["oldest_pending"], {"now": now}).fetchall())
        return {row["queue"]: row["run_at"] for row in rows}

    # -- queues --------------------------------------------------------------------------------

    def list_queues(self) -> list[QueueInfo]:
        rows = self._read(lambda conn: conn.execute(SQL["list_queues"]).fetchall())
        return [_queue_info(row) for row in rows]

    def create_queue(self, name: str, now: float) -> QueueInfo:
        def work(conn: sqlite3.Connection) -> sqlite3.Row:
            conn.execute(SQL["create_queue"], {"queue": name, "now": now}).fetchall()
            row: sqlite3.Row = conn.execute(SQL["get_queue"], {"queue": name}).fetchone()
            return row

        return _queue_info(self._write(work))

    def delete_queue(self, name: str, force: bool) -> int:
        def work(conn: sqlite3.Connection) -> int:
            if conn.execute(SQL["get_queue"], {"queue": name}).fetchone() is None:
                raise QueueNotFound(name)
            unfinished = conn.execute(SQL["count_unfinished"], {"queue": name}).fetchone()["n"]
            if unfinished and not force:
                raise QueueNotEmpty(name, unfinished)
            conn.execute(SQL["delete_queue_events"], {"queue": name})
            deleted = conn.execute(SQL["delete_queue_jobs"], {"queue": name}).rowcount
            conn.execute(SQL["delete_queue"], {"queue": name})
            return int(deleted)

        return self._write(work)

    def set_queue_paused(self, name: str, paused: bool) -> QueueInfo:
        def work(conn: sqlite3.Connection) -> sqlite3.Row:
            row: sqlite3.Row | None = conn.execute(
                SQL["set_queue_paused"], {"queue": name, "paused": int(paused)}
            ).fetchone()
            if row is None:
                raise QueueNotFound(name)
            return row

        return _queue_info(self._write(work))

    # -- maintenance ---------------------------------------------------------------------------

    def purge_jobs(self, status: State, before: float, limit: int) -> int:
        def work(conn: sqlite3.Connection) -> int:
            params = {"status": str(status), "before": before, "limit": limit}
            ids = [row["id"] for row in conn.execute(SQL["select_purgeable"], params)]
            if ids:
                conn.execute(SQL["delete_events_of_jobs"], {"ids": json.dumps(ids)})
                conn.execute(SQL["delete_jobs"], {"ids": json.dumps(ids)})
            return len(ids)

        return self._write(work)

    def check(self, *, full: bool = False) -> dict[str, Any]:
        report: dict[str, Any] = {"backend": "sqlite", "path": str(self.path.resolve())}
        report["size_bytes"] = _file_size(self.path)
        report["wal_bytes"] = _file_size(Path(f"{self.path}-wal"))
        try:
            pragma = "integrity_check" if full else "quick_check"

            def work(conn: sqlite3.Connection) -> dict[str, Any]:
                problems = [row[0] for row in conn.execute(f"PRAGMA {pragma}")]
                return {
                    "integrity": "ok" if problems == ["ok"] else "; ".join(problems)[:500],
                    "schema_version": conn.execute("PRAGMA user_version").fetchone()[0],
                    "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
                    "synchronous": self._synchronous,
                    "page_count": conn.execute("PRAGMA page_count").fetchone()[0],
                    "freelist_count": conn.execute("PRAGMA freelist_count").fetchone()[0],
                }

            report.update(self._read(work))
        except StorageError as exc:
            report.update(integrity=str(exc), schema_version=None)
        latest = migrations("sqlite")[-1].version
        report["latest_schema_version"] = latest
        report["ok"] = report["integrity"] == "ok" and report["schema_version"] == latest
        return report

    # -- read models and worker presence -------------------------------------------------

    def now(self) -> float:
        return time.time()

    def _all(self, name: str, params: dict[str, Any]) -> list[sqlite3.Row]:
        return self._read(lambda conn: conn.execute(SQL[name], params).fetchall())

    def count_finished(self, since: float, bucket_seconds: int) -> list[tuple[float, State, int]]:
        params = {"since": since, "bucket_seconds": bucket_seconds}
        return [
            (r["bucket"], State(r["status"]), r["n"]) for r in self._all("count_finished", params)
        ]

    def finished_since(self, since: float, limit: int) -> list[Timing]:
        rows = self._all("finished_since", {"since": since, "limit": limit})
        return [
            Timing(r["queue"], State(r["status"]), r["run_at"], r["started_at"], r["finished_at"])
            for r in rows
        ]

    def recent_events(
        self, kinds: Sequence[str], limit: int, scan: int = 100_000
    ) -> list[tuple[Event, str]]:
        params = {"kinds": json.dumps(list(kinds)), "limit": limit, "scan": scan}
        rows = self._all("recent_events", params)
        return [(row_to_event(r), r["queue"]) for r in rows]

    def touch_worker(self, worker: str, queues: Sequence[str], now: float) -> None:
        params = {"worker": worker, "queues": ",".join(queues), "now": now}
        self._write(lambda conn: conn.execute(SQL["touch_worker"], params))

    def delete_worker(self, worker: str) -> None:
        self._write(lambda conn: conn.execute(SQL["delete_worker"], {"worker": worker}))

    def list_workers(self, since: float) -> list[WorkerInfo]:
        return [
            WorkerInfo(
                id=r["id"],
                queues=tuple(q for q in r["queues"].split(",") if q),
                started_at=epoch_to_datetime(r["started_at"]),
                last_seen_at=epoch_to_datetime(r["last_seen_at"]),
                job_ids=tuple(sorted(json.loads(r["job_ids"]))),
            )
            for r in self._all("list_workers", {"since": since})
        ]

    def prune_workers(self, before: float) -> int:
        cursor = self._write(lambda conn: conn.execute(SQL["prune_workers"], {"before": before}))
        return int(cursor.rowcount)


_FINISH_EVENT: dict[tuple[str, State], EventKind] = {
    ("complete_job", State.COMPLETED): EventKind.COMPLETED,
    ("retry_job", State.PENDING): EventKind.RETRIED,
    ("fail_job", State.FAILED): EventKind.FAILED,
    ("release_job", State.PENDING): EventKind.RELEASED,
    **{
        (name, State.CANCELLED): EventKind.CANCELLED
        for name in ("complete_job", "retry_job", "fail_job", "release_job")
    },
}
_LIST_QUERY = {
    (False, False): "list_jobs",
    (True, False): "list_jobs_by_status",
    (False, True): "list_jobs_by_queue",
    (True, True): "list_jobs_by_queue_status",
}
_MANUAL_EVENT = {
    "fail_job_by_hand": EventKind.FAILED,
    "cancel_job": EventKind.CANCELLED,
    "request_cancel": EventKind.CANCEL_REQUESTED,
    "resubmit_job": EventKind.RESUBMITTED,
}


def _job_params(job: NewJob) -> dict[str, Any]:
    return {
        "queue": job.queue,
        "payload": job.payload,
        "priority": job.priority,
        "delay_seconds": job.delay_seconds,
        "max_attempts": job.max_attempts,
        "key": job.key,
    }


def _insert_one(conn: sqlite3.Connection, job: NewJob, now: float) -> Job:
    row = conn.execute(SQL["insert_job"], {**_job_params(job), "now": now}).fetchone()
    if row is None:  # the key exists: hand back that job, create nothing
        row = conn.execute(SQL["get_job_by_key"], {"queue": job.queue, "key": job.key}).fetchone()
        return row_to_job(row)
    conn.execute(SQL["insert_event"], _event(row["id"], EventKind.ENQUEUED, now, None, None))
    return row_to_job(row)


def _new_jobs(jobs: Sequence[NewJob], first_id: int, now: float) -> list[Job]:
    """The rows just inserted, built from what was written rather than read back."""
    at = epoch_to_datetime(now)
    return [
        Job(
            id=first_id + i,
            queue=job.queue,
            payload=json.loads(job.payload),
            status=State.PENDING,
            priority=job.priority,
            run_at=epoch_to_datetime(now + job.delay_seconds) if job.delay_seconds else at,
            attempts=0,
            max_attempts=job.max_attempts,
            key=None,
            worker=None,
            lease_expires_at=None,
            last_error=None,
            result=None,
            created_at=at,
            updated_at=at,
            started_at=None,
            finished_at=None,
        )
        for i, job in enumerate(jobs)
    ]


def _event(
    job_id: int, kind: EventKind, now: float, worker: str | None, detail: str | None
) -> dict[str, Any]:
    return {"job_id": job_id, "kind": str(kind), "now": now, "worker": worker, "detail": detail}


def _queue_info(row: sqlite3.Row) -> QueueInfo:
    return QueueInfo(
        name=row["name"],
        paused=bool(row["paused"]),
        created_at=epoch_to_datetime(row["created_at"]),
    )


def _statements(script: str) -> Iterator[str]:
    """Split a migration into statements (executescript would commit our transaction)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer
            buffer = ""
    if buffer.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in buffer.splitlines()
    ):
        raise RuntimeError(f"unterminated statement in migration: {buffer[:80]!r}")


def _file_size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None
