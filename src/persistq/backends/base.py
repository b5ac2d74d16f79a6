"""The storage seam. Every backend implements :class:`Backend`; it is documented only here.

Rules every implementation keeps:

* Each method is one transaction: it happens whole or not at all, and every state change
  writes its event in that same transaction.
* ``now`` is seconds since the Unix epoch, passed in by the caller (the queue's clock), so
  tests move time without sleeping; None means the database's own clock (PostgreSQL: the
  server's, one clock for every machine; SQLite: this machine's).
* Owner-only writes (``extend_lease``, ``complete_job``, ``retry_job``, ``fail_job``,
  ``release_job``) change the row only when it is PROCESSING, holds ``lease_token`` and the
  lease has not expired at ``now``; otherwise they change nothing and raise ``LeaseLost``
  (or ``JobNotFound`` when there is no such job).
* Driver errors leave as :class:`persistq.errors.StorageError` subclasses, never as driver
  exceptions; a busy database is waited on, within a bound, not reported.
* A database is created only when asked (``create=True``); otherwise a missing one raises
  :func:`no_database`'s error and nothing is created.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, NamedTuple, Protocol

from persistq.errors import JobNotFound, LeaseLost, StorageUnavailable
from persistq.model import (
    Completion,
    Event,
    Job,
    JobFilter,
    QueueInfo,
    State,
    StorageInfo,
    Timing,
    WorkerInfo,
)


def no_database(where: object) -> StorageUnavailable:
    """The error for a database that was never created, where one is expected."""
    return StorageUnavailable(f"no database at {where}; run `persistq init`")


class NewJob(NamedTuple):
    """A validated job to insert; ``payload`` is already encoded JSON. A named tuple: an
    ``enqueue_many`` makes one per job, at a third of a frozen dataclass's cost."""

    queue: str
    payload: str
    priority: int
    delay_seconds: float
    max_attempts: int
    key: str | None
    timeout: float | None = None


class Backend(Protocol):
    url: str
    #: True when wait_for_change() wakes only for writes that may make a job claimable
    #: (PostgreSQL's NOTIFY); False when any commit wakes it (SQLite's data_version).
    wakes_only_for_claimable_jobs: bool
    #: True when complete_and_claim_jobs is one transaction (SQLite): a lone worker then
    #: commits once per job. False when it is two (PostgreSQL), where a worker does better
    #: to complete in its settler while it claims, on two connections at once.
    completes_with_next_claim: bool

    def migrate(self, *, create: bool = True) -> int:
        """Create or upgrade the schema; returns the schema version. Re-running is a no-op.
        ``create=False``: a database persistq never set up raises :func:`no_database`'s
        error and is left as it was."""
        ...

    def close(self) -> None: ...

    def insert_jobs(self, jobs: Sequence[NewJob], now: float | None) -> list[Job]:
        """Insert all jobs or none, in input order. A job whose ``key`` already exists in its
        queue is not inserted: the existing job is returned in its place."""
        ...

    def insert_job(self, job: NewJob, now: float | None) -> tuple[Job, bool]:
        """``insert_jobs`` of one job, and whether it was created (False: its ``key``
        existed, and that job is returned)."""
        ...

    def claim_jobs(
        self,
        queues: Sequence[str],
        worker: str,
        limit: int,
        lease_seconds: float,
        now: float | None,
    ) -> list[Job]:
        """Lease up to ``limit`` claimable jobs (PENDING, ``run_at <= now``, queue not paused)
        to ``worker``: queues in the order given, within a queue by priority then id. Each
        returned job carries a fresh ``lease_token``; ``attempts`` is already incremented."""
        ...

    def has_claimable(self, queues: Sequence[str], now: float | None) -> bool:
        """A cheap read: would ``claim_jobs`` find something now?"""
        ...

    def next_run_at(self, queues: Sequence[str], now: float | None) -> float | None:
        """Earliest ``run_at`` after ``now`` of PENDING jobs in these queues (to sleep until)."""
        ...

    def wait_for_change(self, timeout: float) -> bool:
        """Block until another writer may have committed, or ``timeout`` seconds pass.
        May wake early without a change; returns whether it saw one."""
        ...

    def watch_job(self, job_id: int) -> AbstractContextManager[Callable[[float], bool]]:
        """Watch for changes that may have finished this job. The context gives a function
        that blocks until such a change happened since the watch began (or since its last
        return), or ``timeout`` seconds pass, and says whether it saw one. Enter the watch
        *before* reading the job, so a change in between is not missed. It may wake for
        changes to other jobs (SQLite: any commit); it never reads the job itself."""
        ...

    def extend_lease(self, job_id: int, lease_token: str, now: float | None) -> Job:
        """Move ``lease_expires_at`` to ``now`` + the lease length chosen at claim."""
        ...

    def extend_leases(
        self, leases: Sequence[tuple[int, str]], now: float | None
    ) -> list[Job | LeaseLost]:
        """``extend_lease`` of each ``(job_id, lease_token)`` in one transaction: per lease,
        in input order, the refreshed job or a ``LeaseLost`` (also for a job that is gone);
        a lost lease changes nothing and leaves the others extended."""
        ...

    def complete_job(
        self, job: Job, lease_token: str, result: str | None, now: float | None
    ) -> Job:
        """PROCESSING -> COMPLETED with ``result`` (JSON text); CANCELLED if cancel requested.
        ``job``: the lease holder's copy (see :class:`persistq.model.Completion`)."""
        ...

    def complete_jobs(
        self, items: Sequence[Completion], now: float | None
    ) -> list[Job | JobNotFound | LeaseLost]:
        """``complete_job`` of each completion in one transaction (a
        worker's completions settled together): per item, in input order, the finished job
        or the error ``complete_job`` would have raised for it alone; such a miss changes
        nothing and leaves the others completed."""
        ...

    def complete_and_claim_jobs(
        self,
        items: Sequence[Completion],
        queues: Sequence[str],
        worker: str,
        limit: int,
        lease_seconds: float,
        now: float | None,
    ) -> tuple[list[Job | JobNotFound | LeaseLost], list[Job]]:
        """``complete_jobs(items)`` and then ``claim_jobs(...)`` (which never waits), in one
        transaction where that saves a commit (SQLite: a lone worker's finished job and its
        next claim share one write transaction): both answers, as each call gives it. Where
        they are two transactions (PostgreSQL), a storage error of the claim after the
        completions committed claims nothing instead of hiding their answers."""
        ...

    def retry_job(
        self,
        job_id: int,
        lease_token: str,
        error: str,
        delay_seconds: float,
        now: float | None,
        timed_out: str | None = None,
    ) -> Job:
        """PROCESSING -> PENDING, not claimable before ``now + delay_seconds``; FAILED
        when the stored attempts are used up (whatever the caller's copy said).
        ``timed_out``: the attempt ran past its timeout; a ``timed_out`` event with this
        detail is written first, in the same transaction."""
        ...

    def fail_job(
        self,
        job_id: int,
        lease_token: str,
        error: str,
        now: float | None,
        timed_out: str | None = None,
    ) -> Job:
        """PROCESSING -> FAILED (dead letter); ``timed_out`` as for ``retry_job``."""
        ...

    def release_job(
        self,
        job_id: int,
        lease_token: str,
        now: float | None,
        delay_seconds: float = 0.0,
        detail: str | None = None,
    ) -> Job:
        """PROCESSING -> PENDING unprocessed, refunding the attempt; with ``delay_seconds``
        not claimable before ``now + delay_seconds``. ``detail`` goes on the event."""
        ...

    def crash_job(self, job_id: int, lease_token: str, detail: str, now: float | None) -> Job:
        """The process running the handler died: PROCESSING -> PENDING while attempts
        remain, else UNPROCESSABLE (CANCELLED when a cancel was requested), as a lease
        expiry would, at once; ``detail`` (the exit code or signal) on a ``crashed`` event."""
        ...

    def recover_expired(self, now: float | None, limit: int) -> int:
        """Expired leases (at most ``limit``): PENDING while attempts remain, else
        UNPROCESSABLE; CANCELLED when a cancel was requested. Returns how many moved."""
        ...

    def cancel_job(self, job_id: int, now: float | None) -> Job:
        """PENDING/FAILED/UNPROCESSABLE -> CANCELLED; PROCESSING -> cancel requested.
        Other states raise ``InvalidTransition``."""
        ...

    def fail_job_by_hand(self, job_id: int, error: str, now: float | None) -> Job:
        """An operator's PENDING/PROCESSING -> FAILED (no retry). Other states raise
        ``InvalidTransition``; the lease holder, if any, gets ``LeaseLost`` afterwards."""
        ...

    def resubmit_job(self, job_id: int, now: float | None) -> Job:
        """FAILED/UNPROCESSABLE/CANCELLED/COMPLETED -> PENDING with attempts 0.
        Other states raise ``InvalidTransition``."""
        ...

    def get_job(self, job_id: int) -> Job: ...

    def last_job_with_key_prefix(self, queue: str, prefix: str) -> Job | None:
        """The newest job (highest id) of ``queue`` whose key starts with ``prefix``."""
        ...

    def list_jobs(
        self, status: State | None, queue: str | None, limit: int, offset: int
    ) -> list[Job]:
        """Newest first."""
        ...

    def search_jobs(
        self, flt: JobFilter, after: int | None, limit: int, oldest_first: bool
    ) -> list[Job]:
        """Up to ``limit`` jobs matching ``flt`` (checked, ``states`` never empty), newest
        (or oldest) first, past the cursor ``after`` (an id: below it, or above it when
        oldest first). Reads no more than the page needs from each (queue, state)."""
        ...

    def count_jobs(self, flt: JobFilter) -> int:
        """How many jobs match ``flt`` (checked, ``states`` never empty)."""
        ...

    def resubmit_matching(
        self, flt: JobFilter, after: int | None, limit: int, now: float | None
    ) -> tuple[int, int | None]:
        """One transaction: the next ``limit`` matching jobs below id ``after`` (newest
        first) that are still resubmittable are resubmitted, as ``resubmit_job`` each.
        Returns how many, and the cursor to go on from (None: no matching job is left)."""
        ...

    def cancel_matching(
        self, flt: JobFilter, after: int | None, limit: int, now: float | None
    ) -> tuple[int, int | None]:
        """``resubmit_matching`` for ``cancel_job``: PENDING/FAILED/UNPROCESSABLE ->
        CANCELLED, PROCESSING -> cancel requested; others are left as they are."""
        ...

    def list_events(self, job_id: int) -> list[Event]:
        """Oldest first; ``JobNotFound`` when the job does not exist."""
        ...

    def count_by_status(self) -> dict[str, dict[State, int]]:
        """``{queue: {state: count}}`` for states with at least one job."""
        ...

    def counters(self) -> dict[str, dict[str, int]]:
        """``{queue: {counter: value}}``: lifetime counts kept by the database itself, never
        lowered by a purge (see the counters migration for the names)."""
        ...

    def oldest_pending(self, now: float | None) -> dict[str, float]:
        """``{queue: earliest run_at}`` among PENDING jobs already due at ``now``."""
        ...

    def list_queues(self) -> list[QueueInfo]: ...

    def create_queue(self, name: str, now: float | None) -> QueueInfo:
        """Create the queue, or return it unchanged when it exists."""
        ...

    def delete_queue(self, name: str, force: bool) -> int:
        """Delete the queue with its jobs and their events; returns the jobs deleted.
        Refused with ``QueueNotEmpty`` while it holds PENDING/PROCESSING jobs unless ``force``."""
        ...

    def set_queue_paused(self, name: str, paused: bool) -> QueueInfo: ...

    def set_queue_limits(
        self,
        name: str,
        concurrency: int | None,
        rate: tuple[int, float] | None,
        now: float | None,
    ) -> QueueInfo:
        """Set (None: lift) the queue's global limits, creating the queue if need be:
        ``concurrency`` jobs PROCESSING under an unexpired lease, ``rate`` = (N claims,
        per window seconds). ``claim_jobs`` and ``has_claimable`` honour them."""
        ...

    def purge_jobs(self, status: State, before: float, limit: int) -> int:
        """Delete at most ``limit`` jobs in terminal ``status`` finished before ``before``,
        with their events; returns how many."""
        ...

    def check(self, *, full: bool = False) -> dict[str, Any]:
        """Health of the database: ``ok``, ``integrity``, ``schema_version`` and
        dialect-specific sizes. Never raises for a damaged database; reports it."""
        ...

    def storage(self) -> StorageInfo:
        """Sizes of the database's local files and the free space on their disk, found
        without reading the database (cheap enough to poll, unlike ``check``); every field
        None where the database has no local files."""
        ...

    def write_problem(self) -> str | None:
        """Why a write would fail now, found without writing (cheap enough for every health
        probe): the last write of this process failed with a storage error (remembered
        until a later write succeeds, at most ``FAILED_WRITE_SECONDS``), or a cheap check
        fails (SQLite: the file, its WAL or its directory not writable, a read-only file
        system, free space below a floor; PostgreSQL: a read-only server or session).
        None when nothing is seen."""
        ...

    # -- read models for insights (Ops UI, /metrics) and worker presence ---------------

    def now(self) -> float:
        """The backend's clock, epoch seconds (the database's, where it has one)."""
        ...

    def count_finished(self, since: float, bucket_seconds: int) -> list[tuple[float, State, int]]:
        """``(bucket start, final state, count)`` of jobs finished since ``since``."""
        ...

    def finished_since(self, since: float, limit: int) -> list[Timing]:
        """Timings of jobs finished since ``since``, newest first, at most ``limit``."""
        ...

    def recent_failures(self, limit: int) -> list[tuple[Event, str]]:
        """The newest events of :data:`~persistq.model.FAILURE_KINDS` with their job's queue,
        newest first, however many other events there are (an index of them alone)."""
        ...

    def worker_seen(self, worker: str, queues: Sequence[str], now: float | None) -> None:
        """Record that ``worker`` is alive (first call: started)."""
        ...

    def worker_gone(self, worker: str) -> None:
        """Forget ``worker``: it said it stopped."""
        ...

    def list_workers(self, since: float) -> list[WorkerInfo]:
        """Workers seen since ``since``, with the jobs each holds."""
        ...

    def prune_workers(self, before: float) -> int:
        """Forget workers not seen since ``before``."""
        ...
