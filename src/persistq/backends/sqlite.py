"""SQLite backend: one file in WAL mode, every write under ``BEGIN IMMEDIATE``.

SQLite has a single writer, so a guarded ``UPDATE ... RETURNING`` inside an immediate
transaction is atomic across processes without row locks. A busy file is retried within
``busy_timeout_seconds`` and surfaces as :class:`StorageBusy`, never "database is locked".

The file is created only with ``create=True`` (owner and group only, as are its
directories), and SQLite is never left to create it. Before each use the backend checks
that the file at the path is still the one it opened (device and inode, one ``stat``): an
open connection to a deleted or replaced file would go on committing into a file no one
can open again, so it raises :class:`StorageReplaced` instead.

Group commit (backends/group.py): concurrent writes of one process share one transaction.
The calls of a group run one after another, each under its own savepoint, and commit once;
each caller is answered after that commit; a call whose work fails is rolled back to its
savepoint and fails alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import quote

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
    claimed_job,
    completed_job,
    decode_payloads,
    epoch_to_datetime,
    job_columns_in,
    new_job,
    row_to_job,
)
from persistq.backends.sql import NamedSQL, migrations, queries
from persistq.backends.sqlbase import LastWrite, SQLBackend
from persistq.config import split_sqlite_url
from persistq.errors import (
    StorageBusy,
    StorageCorrupt,
    StorageError,
    StorageFull,
    StorageReplaced,
    StorageUnavailable,
)
from persistq.model import (
    Completion,
    Job,
    StorageInfo,
)

T = TypeVar("T")
SQL = NamedSQL("sqlite")


def _one_job_form(claim: str) -> str:
    """``claim_jobs`` for a single job: ``id = (subquery)`` where it has ``id IN (subquery)``.
    SQLite runs an IN subquery that has ORDER BY and LIMIT into a temporary table on every
    run; a scalar subquery needs none (callgrind, claim+complete in SQL: 378k -> 331k
    instructions). Its LIMIT is then at most 1, so the first row is the one IN would take."""
    one = claim.replace("WHERE id IN (", "WHERE id = (", 1)
    if one == claim:
        raise RuntimeError("claim_jobs no longer reads 'WHERE id IN (': update _one_job_form")
    return one


CLAIM_ONE_JOB = _one_job_form(queries("sqlite")["claim_jobs"])
_SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL", "extra": "EXTRA"}
#: How often a waiting claim looks for commits of other processes (PRAGMA data_version
#: reads shared memory, so this costs no disk I/O).
POLL_SECONDS = 0.005
#: How long one attempt waits inside SQLite for a lock held by another process. Short: the
#: attempt holds this process's connection meanwhile, and the wait continues between attempts
#: in :meth:`SQLiteBackend._retrying`, where other threads' calls can use the connection.
ATTEMPT_BUSY_SECONDS = 0.05
#: Less free space than this on the database's file system makes ``write_problem`` report
#: it: room for a commit of 16 pages (each changed page is appended to the WAL). A floor that
#: says "writes are about to fail", not a capacity alert (metrics and the Ops UI show free
#: disk for that).
MIN_FREE_BYTES = 64 * 1024
_BUSY = {"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_BUSY_RECOVERY", "SQLITE_BUSY_SNAPSHOT"}
#: New database files and directories: owner and group only, whatever the umask allows
#: beyond that. SQLite gives the -wal and -shm files the database file's mode.
FILE_MODE = 0o640
DIRECTORY_MODE = 0o750


class _Work(NamedTuple):
    """What a grouped call runs: its work, and whether it may make jobs claimable."""

    run: Callable[[sqlite3.Connection], Any]
    wakes: bool
    #: The jobs (none with a key) and the time of an insert_jobs call, whose work is only
    #: to insert them: a group inserts those of all such calls with one executemany.
    inserts: tuple[Sequence[NewJob], float] | None = None


class SQLiteURL(NamedTuple):
    path: Path
    synchronous: str
    #: False with ``?group_commit=off``: one transaction per write call, for comparison.
    group_commit: bool


def parse_sqlite_url(url: str) -> SQLiteURL:
    """``sqlite:///rel/path.db`` or ``sqlite:////abs/path.db``, optional ``?synchronous=``
    and ``?group_commit=``."""
    parts = split_sqlite_url(url)
    if parts is None:
        raise StorageUnavailable(f"not a SQLite URL: {url!r} (expected sqlite:///path/to/file.db)")
    rest, query = parts
    if not rest:
        raise StorageUnavailable(f"SQLite URL {url!r} names no file")
    options = dict(part.partition("=")[::2] for part in query.split("&") if part)
    unknown = set(options) - {"synchronous", "group_commit"}
    if unknown:
        raise StorageUnavailable(f"unknown SQLite URL option(s): {', '.join(sorted(unknown))}")
    sync = options.get("synchronous", "full").lower()
    if sync not in _SYNCHRONOUS:
        raise StorageUnavailable(f"synchronous={sync!r}: use full (default) or normal")
    grouping = parse_group_commit(options.get("group_commit"))
    return SQLiteURL(Path(rest), _SYNCHRONOUS[sync], grouping)


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


#: Backends of this process, to reset their locks in a forked child.
_BACKENDS: weakref.WeakSet[SQLiteBackend] = weakref.WeakSet()


class SQLiteBackend(SQLBackend):
    SQL = SQL
    wakes_only_for_claimable_jobs = False
    completes_with_next_claim = True

    def __init__(
        self,
        url: str,
        *,
        busy_timeout_seconds: float = 60.0,
        create: bool = True,
        group_commit_max: int = GROUP_COMMIT_MAX,
    ) -> None:
        self.url = url
        self.path, self._synchronous, grouping = parse_sqlite_url(url)
        self._groups: Groups[_Work] = Groups(self._commit, group_commit_max if grouping else 1)
        #: Groups run (committed or failed), by size: the bench and tests read it.
        self.group_sizes: Counter[int] = self._groups.sizes
        # Absolute once: a later chdir must not point the checks at another file.
        self._absolute = os.path.abspath(self.path)
        self._create = create
        #: (st_dev, st_ino) of the file the first connection opened.
        self._identity: tuple[int, int] | None = None
        self._busy_timeout = busy_timeout_seconds
        #: Writes of this process that may make jobs claimable (what waiting claims watch).
        self._local_writes = 0
        #: Every write of this process (what waiting for a job watches): PRAGMA data_version
        #: counts only other connections' commits, and the process has one connection.
        self._local_commits = 0
        self._writes = LastWrite()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._reset_locks()
        _BACKENDS.add(self)
        self._connection()  # fail now, with the cause, if the file cannot be used

    def _reset_locks(self) -> None:
        """New, and in a forked child (the parent's leader thread, and the connection it
        held, are not there; its groups are reset by backends/group.py)."""
        self._lock = threading.RLock()
        self._changed = threading.Condition()
        #: Threads waiting on ``_changed`` now (a commit notifies only when there are any).
        self._watching = 0

    # -- connection and transactions ------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        # A connection must not cross fork(): the child opens its own (the fork hook below
        # takes the inherited one away, so no getpid() per call is needed).
        if self._conn is not None:
            if self._file_identity() != self._identity:
                raise self._replaced()
            return self._conn
        if self._identity is None and self._create:
            self._create_file()
        elif self._file_identity() is None:
            raise no_database(self.path) if self._identity is None else self._replaced()
        try:
            # mode=rw: SQLite never creates the file (it would, with the umask's mode).
            conn = sqlite3.connect(
                f"file:{quote(self._absolute)}?mode=rw",
                uri=True,
                timeout=ATTEMPT_BUSY_SECONDS,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from None
        conn.row_factory = sqlite3.Row
        try:
            self._retrying(lambda: self._configure(conn))
            identity = self._file_identity()
            if identity is None or self._identity not in (None, identity):
                raise self._replaced()  # e.g. a forked child finding another file there
        except BaseException:
            conn.close()
            raise
        self._identity = identity
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _file_identity(self) -> tuple[int, int] | None:
        """(device, inode) of the file now at the path; None when there is none."""
        try:
            found = os.stat(self._absolute)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageUnavailable(f"{self.path}: cannot look at the file ({exc})") from None
        return found.st_dev, found.st_ino

    def _replaced(self) -> StorageReplaced:
        return StorageReplaced(
            f"the database file {self.path} was deleted or replaced after this process "
            "opened it; refusing to read or write the old one: restore the file (or run "
            "`persistq init`), then restart this process"
        )

    def _create_file(self) -> None:
        """An empty database file, and its missing directories, owner and group only."""
        missing = []
        folder = Path(self._absolute).parent
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        try:
            for folder in reversed(missing):  # mkdir -p would give parents the umask's mode
                folder.mkdir(mode=DIRECTORY_MODE, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"{folder}: cannot create directory ({exc})") from None
        # There already, or not creatable (read-only, a directory): connecting names the cause.
        with contextlib.suppress(OSError):
            os.close(os.open(self._absolute, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))

    def _configure(self, conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageUnavailable(f"{self.path}: cannot use WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")

    def _retrying(self, attempt: Callable[[], T]) -> T:
        """Run ``attempt``; while the file is busy, retry it until the wait limit."""
        try:
            return attempt()
        except sqlite3.Error as exc:
            if not _is_busy(exc):
                raise translate(exc, self.path) from None
        # Busy: the wait limit counts from here (the first attempt is the common case and
        # pays for no clock read).
        deadline = time.monotonic() + self._busy_timeout
        pause = 0.001
        while True:
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
            try:
                return attempt()
            except sqlite3.Error as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise translate(exc, self.path) from None

    def _write(self, work: Callable[[sqlite3.Connection], T], *, wakes: bool = False) -> T:
        """Run ``work`` in an immediate transaction, retried whole while the file is busy:
        its own (group commit off), or one shared with the calls queued meanwhile.

        The connection is held per attempt, not across the retries: while another process
        holds the write lock, this process's reads (WAL readers are not blocked by a writer)
        still get through between attempts."""
        return self._run_write(_Work(work, wakes))  # type: ignore[no-any-return]

    def _run_write(self, work: _Work) -> Any:
        # As LastWrite.watch() does, without a generator per write.
        try:
            result = self._groups.run(Call(work))
        except StorageError as exc:
            self._writes.failed(exc)
            raise
        self._writes.succeeded()
        return result

    def _commit(self, group: list[Call[_Work]]) -> None:
        """Run every call of ``group`` in one transaction and commit it; set each call's
        answer. A busy file retries the whole group; a storage error, or a failed commit,
        is every call's answer. Raises only what is no Exception (the group rolled back)."""
        try:
            self._retrying(lambda: self._attempt(group))
        except Exception as exc:
            fail_all(group, exc)
            return
        done = [call for call in group if call.error is None]
        # Other processes notice through PRAGMA data_version; this one's waiters here.
        if done:
            wakes = sum(call.work.wakes for call in done)
            with self._changed:
                self._local_commits += len(done)
                self._local_writes += wakes
                if self._watching:  # notify_all costs a tenth of a lone enqueue's Python
                    self._changed.notify_all()

    def _attempt(self, group: list[Call[_Work]]) -> None:
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                if len(group) == 1:  # alone: no savepoint, its error rolls back everything
                    call = group[0]
                    call.result, call.error = call.work.run(conn), None
                else:
                    alone = group
                    inserts = [call for call in group if call.work.inserts is not None]
                    if len(inserts) > 1 and self._insert_together(conn, inserts):
                        alone = [call for call in group if call.work.inserts is None]
                    for call in alone:
                        self._run_alone(conn, call)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _run_alone(self, conn: sqlite3.Connection, call: Call[_Work]) -> None:
        """``call.work`` under its own savepoint: its failure is its own answer and undoes
        only its own statements. Raises what ends the group (a busy file, a failing disk,
        a transaction SQLite rolled back itself)."""
        call.result, call.error = None, None
        conn.execute("SAVEPOINT call")
        try:
            call.result = call.work.run(conn)
        except sqlite3.Error as exc:
            error = translate(exc, self.path)
            if isinstance(error, GROUP_ERRORS) or not conn.in_transaction:
                raise
            call.error = error  # e.g. a constraint: this call's statement only
            conn.execute("ROLLBACK TO call")
        except Exception as exc:
            call.error = exc
            conn.execute("ROLLBACK TO call")
        conn.execute("RELEASE call")

    def _insert_together(self, conn: sqlite3.Connection, calls: list[Call[_Work]]) -> bool:
        """The jobs of several insert_jobs calls with one executemany (a savepoint, one
        statement per queue and one for all the rows, instead of a savepoint and two
        statements per call); each call's answer its own jobs. False, with nothing written,
        when the statement failed for another reason than one that ends the group: the
        calls then run alone, so that an error stays the one call's own. Each call's
        answer is the id of its first job, as its work's own (``insert_jobs``)."""
        batches = [call.work.inserts for call in calls if call.work.inserts is not None]
        conn.execute("SAVEPOINT inserts")
        try:
            queues = (job.queue for jobs, _ in batches for job in jobs)
            self._ensure_queues(conn, queues, min(now for _, now in batches))
            made = self._insert_numbered(conn, batches)
        except sqlite3.Error as exc:
            if isinstance(translate(exc, self.path), GROUP_ERRORS) or not conn.in_transaction:
                raise
            conn.execute("ROLLBACK TO inserts")
            conn.execute("RELEASE inserts")
            return False
        conn.execute("RELEASE inserts")
        for call, first_id in zip(calls, made, strict=True):
            call.result, call.error = first_id, None
        return True

    def insert_jobs(self, jobs: Sequence[NewJob], now: float | None) -> list[Job]:
        if not jobs or any(job.key is not None for job in jobs):
            return super().insert_jobs(jobs, now)
        at = self._now(now)

        def work(conn: sqlite3.Connection) -> int:
            self._ensure_queues(conn, (job.queue for job in jobs), at)
            return self._insert_rows(conn, jobs, at)

        first_id: int = self._run_write(_Work(work, True, (jobs, at)))
        # The Jobs are made after the commit: the write lock, one for every process on the
        # file, is held for the rows only (a 1,000-job batch's Jobs take about 1 ms).
        return _new_jobs(jobs, first_id, at)

    def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def attempt() -> T:
            with self._lock:
                return work(self._connection())

        return self._retrying(attempt)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    # -- what the shared SQL backend needs -------------------------------------------

    def _now(self, now: float | None) -> float:
        return time.time() if now is None else now

    def _datetime(self, value: Any) -> datetime:
        return epoch_to_datetime(value)

    def _list(self, values: Sequence[Any]) -> str:
        return json.dumps(list(values))  # read back with json_each()

    def _many(self, conn: sqlite3.Connection, name: str, rows: Sequence[dict[str, Any]]) -> None:
        conn.executemany(SQL[name], rows)

    def _claim_statement(self, limit: int) -> str:
        statement = SQL["claim_jobs"]  # looked up for the statement recorder
        return CLAIM_ONE_JOB if limit == 1 else statement

    def _claimed(
        self, conn: sqlite3.Connection, queue: str, rows: Sequence[Any], now: float | None
    ) -> None:
        if rows[0]["rate_limited"]:
            params = {"queue": queue, "claimed": len(rows), "now": now}
            conn.execute(SQL["spend_rate_tokens"], params)

    def insert_job(self, job: NewJob, now: float | None) -> tuple[Job, bool]:
        if job.key is not None:  # may find the job that holds the key: read it back
            return super().insert_job(job, now)
        # Without a key the insert always creates the job: the batch path (no RETURNING,
        # the Job built from the values written) saves parsing the whole row.
        return self.insert_jobs([job], now)[0], True

    def _claimed_jobs(
        self, rows: Sequence[Any], worker: str, lease_seconds: float, now: float | None
    ) -> list[Job]:
        assert now is not None, "SQLite stamps every write (_now)"
        started, expires = epoch_to_datetime(now), epoch_to_datetime(now + lease_seconds)
        return [claimed_job(row, worker, started, expires) for row in rows]

    def _complete_step(
        self, conn: sqlite3.Connection, completion: Completion, now: float | None
    ) -> Any:
        # The happy path answers with the holder's copy brought up to date (complete_held
        # says why that is the row): RETURNING * and the row's parse were 75k and 30k of a
        # completion's 250k instructions (callgrind, NORMAL).
        assert now is not None, "SQLite stamps every write (_now)"
        job, token, result = completion
        params = {
            "id": job.id,
            "lease_token": token,
            "fence": job.fence,
            "result": result,
            "now": now,
        }
        if conn.execute(SQL["complete_held"], params).rowcount == 1:
            return completed_job(job, result, epoch_to_datetime(now))
        return super()._complete_step(conn, completion, now)

    def _job(self, row: Any, *, with_token: bool = False) -> Job:
        # sqlite3.Row finds a column by name comparing it, case-insensitively, with each
        # column in turn: by position (the row's columns' own) a Job costs a third less.
        if isinstance(row, sqlite3.Row):
            pick = job_columns_in(tuple(row.keys()))
            return row_to_job(row, epoch_to_datetime, with_token=with_token, pick=pick)
        return row_to_job(row, epoch_to_datetime, with_token=with_token)

    def _insert_rows(self, conn: sqlite3.Connection, jobs: Sequence[NewJob], now: float) -> int:
        """Insert ``jobs``, numbered in order; the first one's id."""
        if len(jobs) == 1:  # enqueue: the statement numbers the job
            job_id = conn.execute(SQL["insert_job_batch"], batch_row(None, jobs[0], now)).lastrowid
            assert job_id is not None
            return job_id
        return self._insert_numbered(conn, [(jobs, now)])[0]

    def _insert_numbered(
        self, conn: sqlite3.Connection, batches: Sequence[tuple[Sequence[NewJob], float]]
    ) -> list[int]:
        """The jobs of each batch (with its own time) with one executemany; the id of each
        batch's first job (the rest follow it). Numbered here from the last id handed out:
        this transaction holds the only write lock, and executemany cannot return ids."""
        next_id = conn.execute(SQL["last_insert_id"]).fetchone()[0] + 1
        rows: list[tuple[Any, ...]] = []
        firsts: list[int] = []
        for jobs, now in batches:
            firsts.append(next_id)
            rows.extend([batch_row(n, job, now) for n, job in enumerate(jobs, next_id)])
            next_id += len(jobs)
        conn.executemany(SQL["insert_job_batch"], rows)
        return firsts

    def now(self) -> float:
        return time.time()

    # -- schema ------------------------------------------------------------------------

    def migrate(self, *, create: bool = True) -> int:
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
                if not create:  # an empty file, e.g. left by a tool: set up only on purpose
                    raise no_database(self.path)
            for migration in migrations("sqlite"):
                if migration.version <= version:
                    continue
                for statement in _statements(migration.sql):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {migration.version:d}")
                version = migration.version
            return version

        return self._write(work)

    # -- waiting for work ----------------------------------------------------------------

    def wait_for_change(self, timeout: float) -> bool:
        return self._watch(lambda: self._local_writes)(timeout)

    @contextmanager
    def watch_job(self, job_id: int) -> Iterator[Callable[[float], bool]]:
        yield self._watch(lambda: self._local_commits)

    def _watch(self, local: Callable[[], int]) -> Callable[[float], bool]:
        """A wait for commits after now: this process's (as ``local`` counts them, woken at
        once) or another's (``PRAGMA data_version``, looked at every POLL_SECONDS)."""
        with self._changed:
            seen_local = local()
        seen_version = self._data_version()

        def wait(timeout: float) -> bool:
            nonlocal seen_local, seen_version
            deadline = time.monotonic() + timeout
            while (remaining := deadline - time.monotonic()) > 0:
                with self._changed:
                    if local() == seen_local:
                        self._watching += 1
                        try:
                            self._changed.wait(min(remaining, POLL_SECONDS))
                        finally:
                            self._watching -= 1
                    if local() != seen_local:
                        seen_local = local()
                        return True
                version = self._data_version()
                if version != seen_version:
                    seen_version = version
                    return True
            return False

        return wait

    def _data_version(self) -> int:
        row = self._read(lambda conn: conn.execute("PRAGMA data_version").fetchone())
        return int(row[0])

    def _unwritable(self) -> str | None:
        if not self.path.exists():
            return f"{self.path}: the database file is missing"
        problem = _access_problem(self.path)
        if problem:
            return f"{self.path}: {problem}"
        try:
            stats = os.statvfs(self.path)
        except OSError as exc:
            return f"{self.path}: {exc.strerror}"
        free = stats.f_bavail * stats.f_frsize
        if free < MIN_FREE_BYTES:
            return f"{self.path}: the disk is full ({free:,} bytes free)"
        return None

    def storage(self) -> StorageInfo:
        path = Path(self._absolute).resolve()
        try:
            usage = shutil.disk_usage(path.parent)
        except OSError:
            free = total = None
        else:
            free, total = usage.free, usage.total
        size, wal = _file_size(path), _file_size(Path(f"{path}-wal"))
        return StorageInfo(str(path), size, wal, free, total)

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


#: Connections a forked child inherited, kept and never closed: a thread of the parent may
#: have been inside SQLite with the connection's mutex held at the fork; closing it (or
#: letting it be freed, which closes it) would wait for that mutex forever.
_INHERITED: list[sqlite3.Connection] = []


def _reset_locks_after_fork() -> None:
    for backend in list(_BACKENDS):
        if backend._conn is not None:
            _INHERITED.append(backend._conn)
            backend._conn = None
        backend._reset_locks()


os.register_at_fork(after_in_child=_reset_locks_after_fork)


def batch_row(job_id: int | None, job: NewJob, now: float) -> tuple[Any, ...]:
    """The parameters of ``insert_job_batch``, in the order its numbers give them."""
    return (
        job_id,
        job.queue,
        job.payload,
        job.priority,
        now,
        job.delay_seconds,
        job.max_attempts,
        job.timeout,
    )


def _new_jobs(jobs: Sequence[NewJob], first_id: int, now: float) -> list[Job]:
    """The rows just inserted, built from what was written rather than read back."""
    at = epoch_to_datetime(now)
    payloads = decode_payloads(jobs)
    if len(jobs) == 1:  # enqueue: nothing to zip (a fifth of the Jobs' cost)
        return [new_job(jobs[0], payloads[0], first_id, _due_at(jobs[0], now, at), at)]
    return [
        new_job(job, payload, first_id + i, _due_at(job, now, at), at)
        for i, (job, payload) in enumerate(zip(jobs, payloads, strict=True))
    ]


def _due_at(job: NewJob, now: float, created: datetime) -> datetime:
    """When a job inserted at ``now`` (``created``, converted) becomes due."""
    return epoch_to_datetime(now + job.delay_seconds) if job.delay_seconds else created


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
