"""The public queue API of SPEC.md: validation, time and retry policy over a Backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from persistq.backends import Backend, NewJob
from persistq.clock import Clock
from persistq.config import Settings
from persistq.errors import InvalidJob, LeaseLost, QueueError, StorageError, Unrecoverable
from persistq.model import (
    BULK_BATCH,
    CANCELLABLE,
    JSON,
    MAX_BULK,
    MAX_BULK_BATCH,
    MAX_KEY_LENGTH,
    MAX_PAGE,
    RESUBMITTABLE,
    TERMINAL,
    BulkResult,
    Checked,
    Event,
    FailureEvent,
    FinishedCount,
    Health,
    Job,
    JobFilter,
    JobOptions,
    JobPage,
    QueueInfo,
    State,
    StorageInfo,
    Timing,
    WorkerInfo,
    answered,
    encode_json,
    error_text,
    lease_token_of,
    owned_results,
    parse_rate,
    validate_claim_limit,
    validate_concurrency_limit,
    validate_int,
    validate_key,
    validate_page,
    validate_queue_list,
    validate_queue_name,
    validate_run_at,
    validate_seconds,
    validate_state,
    validate_text,
    validate_timeout,
    validate_worker,
)
from persistq.retry import backoff_seconds

RECOVER_BATCH = 1000
PURGE_BATCH = 5000
#: A waiting claim re-checks at least this often, so a resumed queue is noticed.
MAX_NAP_SECONDS = 1.0
#: Waiting for a job re-reads it at least this often even without a change signal (a
#: PostgreSQL listener that reconnected may have missed one).
MAX_JOB_NAP_SECONDS = 5.0
#: Most rows one read of finished jobs or failures returns (a bound on a response's size).
MAX_READ_ROWS = 100_000
#: The widest throughput bucket: a day.
MAX_BUCKET_SECONDS = 86_400
#: The latest instant a ``since`` may name: the last second a ``datetime`` holds (9999).
MAX_INSTANT = 253_402_300_799.0


class Queue:
    """A durable job queue on one database. Thread-safe; open one per process."""

    def __init__(self, backend: Backend, settings: Settings, clock: Clock | None = None) -> None:
        self.backend = backend
        self.settings = settings
        #: None: every statement uses the database's clock (on PostgreSQL, one clock for all
        #: machines); tests inject a ManualClock.
        self.clock: Clock | None = clock
        self._health_lock = threading.Lock()
        self._checked: tuple[float, dict[str, Any]] | None = None
        self._claims_checked: Checked[tuple[tuple[str, ...], str, int, float]] = Checked()

    @property
    def url(self) -> str:
        return self.backend.url

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Queue:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- producing ---------------------------------------------------------------------

    def enqueue(
        self,
        payload: JSON,
        *,
        queue: str = "default",
        priority: int = 0,
        delay: float = 0,
        run_at: datetime | None = None,
        max_attempts: int = 3,
        key: str | None = None,
        timeout: float | None = None,
    ) -> Job:
        """Store one job. With a ``key`` that a job of this queue already has, return that job.

        ``run_at`` (an aware datetime) instead of ``delay``: not claimable before then; a
        time already past makes the job due at once.
        """
        return self._enqueue(payload, queue, priority, delay, run_at, max_attempts, key, timeout)[0]

    def enqueue_keyed(
        self,
        payload: JSON,
        *,
        queue: str = "default",
        priority: int = 0,
        delay: float = 0,
        run_at: datetime | None = None,
        max_attempts: int = 3,
        key: str | None = None,
        timeout: float | None = None,
    ) -> tuple[Job, bool]:
        """``enqueue``, and whether the job was created: False when ``key`` named an existing
        job, which is returned (the REST API answers 200 rather than 201 then)."""
        return self._enqueue(payload, queue, priority, delay, run_at, max_attempts, key, timeout)

    def _enqueue(
        self,
        payload: JSON,
        queue: str,
        priority: int,
        delay: float,
        run_at: datetime | None,
        max_attempts: int,
        key: str | None,
        timeout: float | None,
    ) -> tuple[Job, bool]:
        # By position: enqueue and enqueue_keyed pass eight arguments on, and keywords cost
        # more to pass (callgrind).
        delay = self._delay_until(delay, run_at)
        new = self._new_job(payload, queue, priority, delay, max_attempts, key, timeout)
        if new.key is None:  # always created; the batch path is the backends' fastest
            return self.backend.insert_jobs([new], self._stamp())[0], True
        return self.backend.insert_job(new, self._stamp())

    def validate(
        self,
        payload: JSON,
        *,
        queue: str = "default",
        priority: int = 0,
        delay: float = 0,
        run_at: datetime | None = None,
        max_attempts: int = 3,
        key: str | None = None,
        timeout: float | None = None,
    ) -> None:
        """Raise ``InvalidJob`` where ``enqueue`` with these arguments would; stores nothing.

        A bulk loader checks every job of a file this way before its first commit.
        """
        delay = self._delay_until(delay, run_at)
        self._new_job(payload, queue, priority, delay, max_attempts, key, timeout)

    def enqueue_many(
        self,
        payloads: Iterable[JSON],
        *,
        queue: str = "default",
        priority: int = 0,
        delay: float = 0,
        run_at: datetime | None = None,
        max_attempts: int = 3,
        keys: Sequence[str | None] | None = None,
        timeout: float | None = None,
    ) -> list[Job]:
        """Store all jobs in one transaction, or none of them (any invalid one refuses all)."""
        payloads = list(payloads)
        delay = self._delay_until(delay, run_at)
        if keys is not None and len(keys) != len(payloads):
            raise InvalidJob(f"{len(keys)} keys for {len(payloads)} payloads")
        key_list = [validate_key(k) for k in keys] if keys is not None else None
        # The options are the same for the whole batch: validate them once, and build each
        # job from them directly (dataclasses.replace cost more than the insert).
        t = self._new_job(None, queue, priority, delay, max_attempts, None, timeout)
        limit = self.settings.max_payload_bytes
        try:
            texts = [encode_json(p, what="payload", max_bytes=limit) for p in payloads]
        except InvalidJob:
            # The error names the payload's place: found again, on the refusing path only
            # (naming each one up front was 1.5k of a batch job's 5.9k instructions).
            for i, p in enumerate(payloads):
                encode_json(p, what=f"payload {i}", max_bytes=limit)
            raise
        new = [
            NewJob(t.queue, text, t.priority, t.delay_seconds, t.max_attempts, key, t.timeout)
            for text, key in zip(texts, key_list or [None] * len(texts), strict=True)
        ]
        return self.backend.insert_jobs(new, self._stamp())

    def _delay_until(self, delay: float, run_at: datetime | None) -> float:
        """``run_at`` as a delay from now on the queue's clock (the database's, unless one
        was injected), so a job is timed on the same clock as every other."""
        if validate_run_at(run_at, delay) is None:
            return delay
        assert run_at is not None
        seconds = max(0.0, run_at.timestamp() - self.now())
        return validate_seconds(seconds, what="run_at (seconds from now)")

    def _new_job(
        self,
        payload: JSON,
        queue: str,
        priority: int,
        delay: float,
        max_attempts: int,
        key: str | None,
        timeout: float | None = None,
    ) -> NewJob:
        options = JobOptions.check(
            queue=queue, priority=priority, delay=delay, max_attempts=max_attempts, key=key
        )
        return NewJob(  # by position: NewJob's fields in order (keywords cost more)
            options.queue,
            encode_json(payload, what="payload", max_bytes=self.settings.max_payload_bytes),
            options.priority,
            options.delay,
            options.max_attempts,
            options.key,
            validate_timeout(timeout),
        )

    # -- consuming ---------------------------------------------------------------------

    def claim(
        self,
        *,
        queue: str | Sequence[str] = "default",
        worker: str,
        lease: float | None = None,
        wait: float = 0,
    ) -> Job | None:
        """Lease the next job, or ``None``. With ``wait``, block up to that many seconds.

        With several queues they are tried in the order given (like RQ); within a queue,
        higher priority first, then oldest first.
        """
        jobs = self.claim_many(queue=queue, worker=worker, limit=1, lease=lease, wait=wait)
        return jobs[0] if jobs else None

    @property
    def completes_with_next_claim(self) -> bool:
        return self.backend.completes_with_next_claim

    def claim_many(
        self,
        *,
        queue: str | Sequence[str] = "default",
        worker: str,
        limit: int,
        lease: float | None = None,
        wait: float = 0,
    ) -> list[Job]:
        claim = self._claim_args(queue, worker, limit, lease)
        wait = validate_seconds(wait, what="wait")
        deadline = time.monotonic() + wait
        while True:
            jobs = self.backend.claim_jobs(*claim, self._stamp())
            if jobs or not self._sleep_until_claimable(claim[0], deadline):
                return jobs

    def _claim_args(
        self, queue: str | Sequence[str], worker: str, limit: int, lease: float | None
    ) -> tuple[tuple[str, ...], str, int, float]:
        """A claim's queues, worker, limit and lease seconds, validated.

        A consumer claims with the same arguments over and over: those of a claim before
        are not checked again (a seventh of a claim's Python, by callgrind). Keyed by type
        too, so that True is never taken for a limit of 1. A worker claims from a list of
        queues: a list or tuple of plain strings is remembered as its tuple."""
        memo = None
        names: str | tuple[str, ...] | None = None
        if type(queue) is str:
            names = queue
        elif type(queue) in (list, tuple) and all(type(name) is str for name in queue):
            names = tuple(queue)
        if names is not None:
            memo = (names, worker, limit, type(limit), lease, type(lease))
            found = self._claims_checked.get(memo)
            if found is not None:
                return found
        checked = (
            tuple(validate_queue_list(queue)),
            validate_worker(worker),
            validate_claim_limit(limit),
            validate_seconds(
                self.settings.lease_seconds if lease is None else lease,
                what="lease",
                minimum=0.001,
            ),
        )
        if memo is not None:
            self._claims_checked.put(memo, checked)
        return checked

    def _sleep_until_claimable(self, queues: Sequence[str], deadline: float) -> bool:
        """Wait for a job to become claimable; False once the deadline passes."""
        if deadline <= time.monotonic():
            # No wait asked for (or none left): nothing to look up. A claim with wait=0
            # found its queue empty; listing the queues for their rates cost it a second
            # query (PostgreSQL: an empty claim 123 -> 82 us client CPU and 70 -> 43 us server).
            return False
        # A rate-limited queue's next token arrives without a commit to wake on: nap no
        # longer than one token's interval, or a late wake-up would let tokens go to waste
        # (the bucket holds at most one window's worth).
        longest = min([MAX_NAP_SECONDS, *self._token_intervals(queues)])
        while (remaining := deadline - time.monotonic()) > 0:
            now = self.now()
            nap = min(remaining, longest)
            next_at = self.backend.next_run_at(queues, now)
            if next_at is not None:
                nap = min(nap, max(next_at - now, 0.0))
            changed = self.backend.wait_for_change(nap)
            if changed and self.backend.wakes_only_for_claimable_jobs:
                return True  # no need to ask first: the claim itself will look
            if self.backend.has_claimable(queues, self._stamp()):
                return True
        return False

    def _token_intervals(self, queues: Sequence[str]) -> list[float]:
        """Seconds between two rate tokens of each rate-limited queue among ``queues``."""
        wanted = set(queues)
        intervals = []
        for info in self.backend.list_queues():
            if info.name in wanted and info.rate is not None:
                count, window = parse_rate(info.rate)
                intervals.append(window / count)
        return intervals

    def heartbeat(self, job: Job) -> Job:
        """Extend the lease by its length; ``LeaseLost`` when the caller no longer holds it."""
        return self.backend.extend_lease(job.id, lease_token_of(job), self._stamp())

    def heartbeat_many(self, jobs: Sequence[Job]) -> list[Job | LeaseLost]:
        """Extend the leases of ``jobs`` in one transaction (a worker's beat for all it
        runs): per job, in order, the refreshed job (``cancel_requested`` as it now stands)
        or a ``LeaseLost`` it is no longer the holder of; one lost lease leaves the rest
        extended."""
        held = [job for job in jobs if job.lease_token]
        extended = iter(
            self.backend.extend_leases([(j.id, lease_token_of(j)) for j in held], self._stamp())
            if held
            else []
        )
        return [next(extended) if job.lease_token else LeaseLost(job.id) for job in jobs]

    def complete(self, job: Job, result: JSON = None) -> Job:
        encoded = None if result is None else encode_json(result, what="result")
        return self.backend.complete_job(job, lease_token_of(job), encoded, self._stamp())

    def complete_many(self, items: Sequence[tuple[Job, JSON]]) -> list[Job | QueueError]:
        """``complete`` of each ``(job, result)`` in one transaction (a worker's completions
        settled together): per item, in order, the finished job or the error ``complete``
        would have raised for it alone (``LeaseLost``, ``JobNotFound``, ``InvalidJob`` for
        a result JSON cannot hold), which leaves the others completed. A storage error
        raises for the whole call and completes none."""
        answers, owned = owned_results(items)
        return answered(answers, self.backend.complete_jobs(owned, self._stamp()) if owned else [])

    def complete_and_claim(
        self,
        items: Sequence[tuple[Job, JSON]],
        *,
        queue: str | Sequence[str] = "default",
        worker: str,
        limit: int,
        lease: float | None = None,
    ) -> tuple[list[Job | QueueError], list[Job]]:
        """``complete_many(items)``, then ``claim_many(...)`` without waiting, in one
        transaction on SQLite (a lone worker's finished job and its next claim share one
        commit; PostgreSQL runs the two calls). Each half answers as its call would: per
        item the finished job or its own refusal, and the jobs claimed (maybe none). On
        SQLite a storage error raises for the whole call and writes nothing. On PostgreSQL
        a storage error of the completions raises; one of the claim, after the completions
        committed, claims nothing (the next claim meets it)."""
        claim = self._claim_args(queue, worker, limit, lease)
        answers, owned = owned_results(items)
        finished, claimed = self.backend.complete_and_claim_jobs(owned, *claim, self._stamp())
        return answered(answers, finished), claimed

    def fail(
        self,
        job: Job | int,
        error: str | BaseException,
        *,
        retry: bool = True,
        backoff_base: float | None = None,
        backoff_max: float | None = None,
        timed_out: str | None = None,
    ) -> Job:
        """Record a handler failure: retry later with backoff while attempts remain, else FAILED.

        ``timed_out``: the attempt ran past the job's timeout (the worker stopped it); a
        ``timed_out`` event with this detail comes before the retry or failure.

        An exception is stored with its traceback; ``Unrecoverable`` skips the retries.
        ``backoff_base``/``backoff_max`` override the queue's settings for this retry (a
        task's own policy). Given a job id instead of a claimed job, an operator fails a
        PENDING or PROCESSING job at once (no retry); its lease holder, if any, gets
        ``LeaseLost`` from then on.
        """
        text = error_text(error)
        if not isinstance(job, Job):
            return self.backend.fail_job_by_hand(_job_id(job), text, self._stamp())
        if isinstance(error, Unrecoverable):
            retry = False
        token = lease_token_of(job)
        now = self._stamp()
        detail = None if timed_out is None else error_text(timed_out)
        if retry and job.attempts < job.max_attempts:
            base = self.settings.backoff_base_seconds if backoff_base is None else backoff_base
            cap = self.settings.backoff_max_seconds if backoff_max is None else backoff_max
            delay = backoff_seconds(
                job.attempts,
                base=validate_seconds(base, what="backoff_base"),
                cap=validate_seconds(cap, what="backoff_max"),
            )
            return self.backend.retry_job(job.id, token, text, delay, now, detail)
        return self.backend.fail_job(job.id, token, text, now, detail)

    def crashed(self, job: Job, detail: str) -> Job:
        """The process running the handler died (``detail``: its exit code or signal): the
        job goes back to PENDING at once, UNPROCESSABLE on its last attempt, as a lease
        expiry would; event ``crashed``."""
        return self.backend.crash_job(
            job.id, lease_token_of(job), error_text(detail), self._stamp()
        )

    def release(self, job: Job, *, delay: float = 0, reason: str | None = None) -> Job:
        """Give the job back unprocessed (worker shutting down); its attempt is refunded.

        With ``delay`` it is not claimable again for that many seconds; ``reason`` is
        recorded on the ``released`` event.
        """
        seconds = validate_seconds(delay, what="delay")
        detail = None if reason is None else error_text(reason)
        return self.backend.release_job(job.id, lease_token_of(job), self._stamp(), seconds, detail)

    def wait(self, id: int, *, timeout: float | None = None) -> Job:  # noqa: A002
        """The job once it is finished (COMPLETED, FAILED, UNPROCESSABLE or CANCELLED), or
        as it is when ``timeout`` seconds (None: no limit) pass first.

        Blocks on the backend's change signal (SQLite's data version, PostgreSQL's NOTIFY
        of finished jobs) and reads the job again only when it may have changed.
        """
        job_id = _job_id(id)
        limit = None if timeout is None else validate_seconds(timeout, what="timeout")
        deadline = None if limit is None else time.monotonic() + limit
        # Watching starts before the first read, so a finish in between is not missed.
        with self.backend.watch_job(job_id) as changed:
            job = self.backend.get_job(job_id)
            while job.status not in TERMINAL:
                nap = MAX_JOB_NAP_SECONDS
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break  # nothing changed since the last read: that is its state
                    nap = min(nap, remaining)
                if changed(nap) or nap == MAX_JOB_NAP_SECONDS:
                    job = self.backend.get_job(job_id)
        return job

    def recover_stalled(self) -> int:
        """Recover every PROCESSING job whose lease has expired; returns how many."""
        total = 0
        while True:
            moved = self.backend.recover_expired(self._stamp(), RECOVER_BATCH)
            total += moved
            if moved < RECOVER_BATCH:
                return total

    # -- managing ----------------------------------------------------------------------

    def get(self, id: int) -> Job:  # noqa: A002 - the SPEC's name
        return self.backend.get_job(_job_id(id))

    def last_keyed_job(self, prefix: str, *, queue: str = "default") -> Job | None:
        """The newest job of ``queue`` whose idempotency key starts with ``prefix`` (a
        periodic schedule's last tick: keys ``periodic:NAME:TICK``), or None."""
        text = validate_text(prefix, what="key prefix", max_length=MAX_KEY_LENGTH, optional=False)
        assert text is not None
        return self.backend.last_job_with_key_prefix(validate_queue_name(queue), text)

    def jobs(
        self,
        *,
        status: State | str | None = None,
        queue: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Job]:
        """Jobs, newest first, optionally of one state and queue."""
        return self.backend.list_jobs(
            None if status is None else validate_state(status),
            None if queue is None else validate_queue_name(queue),
            *validate_page(limit, offset),
        )

    def search(
        self,
        where: JobFilter | None = None,
        *,
        after: int | None = None,
        limit: int = 50,
        oldest_first: bool = False,
    ) -> JobPage:
        """A page of the jobs matching ``where``, newest (or oldest) first. Keyset paging:
        pass the page's ``next`` as ``after`` for the following page; its cost does not
        grow with how deep the page is."""
        flt = _everything(where)
        cursor = None if after is None else validate_int(after, what="after", minimum=0)
        limit = validate_int(limit, what="limit", minimum=1, maximum=MAX_PAGE)
        found = self.backend.search_jobs(flt, cursor, limit + 1, bool(oldest_first))
        jobs = found[:limit]
        return JobPage(jobs, jobs[-1].id if len(found) > limit else None)

    def count(self, where: JobFilter | None = None) -> int:
        """How many jobs match ``where``."""
        return self.backend.count_jobs(_everything(where))

    def resubmit_matching(
        self,
        where: JobFilter | None = None,
        *,
        after: int | None = None,
        limit: int = MAX_BULK,
        batch: int = BULK_BATCH,
    ) -> BulkResult:
        """Resubmit the jobs matching ``where`` that may be resubmitted, newest first, at
        most ``limit``, ``batch`` per transaction (a crash keeps whole batches). Bad input
        changes nothing. ``next``: pass it as ``after`` to go on past ``limit``."""
        return self._bulk(self.backend.resubmit_matching, RESUBMITTABLE, where, after, limit, batch)

    def cancel_matching(
        self,
        where: JobFilter | None = None,
        *,
        after: int | None = None,
        limit: int = MAX_BULK,
        batch: int = BULK_BATCH,
    ) -> BulkResult:
        """``resubmit_matching`` for ``cancel``: PROCESSING jobs get a cancel request."""
        return self._bulk(self.backend.cancel_matching, CANCELLABLE, where, after, limit, batch)

    def _bulk(
        self,
        act: Callable[[JobFilter, int | None, int, float | None], tuple[int, int | None]],
        allowed: frozenset[State],
        where: JobFilter | None,
        after: int | None,
        limit: int,
        batch: int,
    ) -> BulkResult:
        flt = _everything(where).narrowed(allowed)
        cursor = None if after is None else validate_int(after, what="after", minimum=0)
        left = validate_int(limit, what="limit", minimum=1, maximum=MAX_BULK)
        size = validate_int(batch, what="batch", minimum=1, maximum=MAX_BULK_BATCH)
        if flt is None:
            return BulkResult(0, None)
        done = 0
        while left > 0:
            changed, cursor = act(flt, cursor, min(size, left), self._stamp())
            done += changed
            left -= min(size, left)
            if cursor is None:
                return BulkResult(done, None)
        return BulkResult(done, cursor)

    def events(self, id: int) -> list[Event]:  # noqa: A002
        return self.backend.list_events(_job_id(id))

    def resubmit(self, id: int) -> Job:  # noqa: A002
        return self.backend.resubmit_job(_job_id(id), self._stamp())

    def cancel(self, id: int) -> Job:  # noqa: A002
        return self.backend.cancel_job(_job_id(id), self._stamp())

    def stats(self) -> dict[str, Any]:
        now = self.now()
        counts = self.backend.count_by_status()
        oldest = self.backend.oldest_pending(now)
        paused = {q.name: q.paused for q in self.backend.list_queues()}
        queues: dict[str, Any] = {}
        for name in sorted(set(paused) | set(counts)):
            row: dict[str, Any] = {str(s): counts.get(name, {}).get(s, 0) for s in State}
            row["paused"] = paused.get(name, False)
            row["oldest_pending_age"] = max(0.0, now - oldest[name]) if name in oldest else None
            queues[name] = row
        return {"queues": queues}

    def queues(self) -> list[QueueInfo]:
        return self.backend.list_queues()

    def create_queue(self, name: str) -> QueueInfo:
        return self.backend.create_queue(validate_queue_name(name), self._stamp())

    def delete_queue(self, name: str, *, force: bool = False) -> int:
        """Delete a queue and its jobs; refused while it holds unfinished jobs unless ``force``."""
        return self.backend.delete_queue(validate_queue_name(name), force)

    def pause(self, name: str) -> QueueInfo:
        """Claims from a paused queue return nothing; enqueues are still accepted."""
        return self.backend.set_queue_paused(validate_queue_name(name), True)

    def resume(self, name: str) -> QueueInfo:
        return self.backend.set_queue_paused(validate_queue_name(name), False)

    def set_limits(
        self, queue: str, *, concurrency: int | None = None, rate: str | None = None
    ) -> QueueInfo:
        """Limit the queue across every worker and machine, checked inside the claim:
        ``concurrency`` jobs PROCESSING under an unexpired lease at once, ``rate`` claims
        per window ("N/s", "N/m", "N/h"). None lifts that limit."""
        return self.backend.set_queue_limits(
            validate_queue_name(queue),
            validate_concurrency_limit(concurrency),
            None if rate is None else parse_rate(rate),
            self._stamp(),
        )

    def purge(
        self,
        *,
        status: State | str,
        older_than: float | timedelta,
        on_progress: Callable[[int], None] | None = None,
    ) -> int:
        """Delete jobs in a finished state that finished more than ``older_than`` ago.

        Works in batches so writers are never blocked for long; ``on_progress`` gets the
        running total after each batch.
        """
        state = validate_state(status)
        if state not in TERMINAL:
            allowed = ", ".join(sorted(TERMINAL))
            raise InvalidJob(f"purge removes finished jobs only ({allowed}), not {state}")
        seconds = older_than.total_seconds() if isinstance(older_than, timedelta) else older_than
        before = self.now() - validate_seconds(seconds, what="older_than")
        total = 0
        while True:
            deleted = self.backend.purge_jobs(state, before, PURGE_BATCH)
            total += deleted
            if on_progress is not None:
                on_progress(total)
            if deleted < PURGE_BATCH:
                return total

    # -- worker presence ---------------------------------------------------------------

    def worker_seen(self, worker: str, queues: Sequence[str]) -> None:
        """A worker says it is alive (workers call this every few seconds while running)."""
        self.backend.worker_seen(
            validate_worker(worker), [validate_queue_name(q) for q in queues], self._stamp()
        )

    def worker_gone(self, worker: str) -> None:
        """A worker says it stopped."""
        self.backend.worker_gone(validate_worker(worker))

    def workers(self, *, seen_within: float = 300.0) -> list[WorkerInfo]:
        """Workers seen in the last ``seen_within`` seconds, with the jobs they hold."""
        return self.backend.list_workers(self.now() - seen_within)

    def prune_workers(self, *, unseen_for: float) -> int:
        """Forget workers not seen for ``unseen_for`` seconds (the sweeper does, daily);
        returns how many."""
        seconds = validate_seconds(unseen_for, what="unseen_for", minimum=1.0)
        return self.backend.prune_workers(self.now() - seconds)

    # -- what happened: the reads behind persistq.insights -------------------------------

    def finished(self, *, since: float, limit: int = 1000) -> list[Timing]:
        """When each job that finished at or after ``since`` (epoch seconds on the queue's
        clock, :meth:`now`) became due, started and finished: newest first, at most ``limit``."""
        return self.backend.finished_since(
            _instant(since, what="since"),
            validate_int(limit, what="limit", minimum=1, maximum=MAX_READ_ROWS),
        )

    def throughput(self, *, since: float, bucket: int = 60) -> list[FinishedCount]:
        """Jobs finished at or after ``since``, counted per final state and ``bucket``-second
        bucket (buckets start at multiples of ``bucket`` since the epoch), oldest first. A
        bucket or state in which nothing finished is left out."""
        rows = self.backend.count_finished(
            _instant(since, what="since"),
            validate_int(bucket, what="bucket", minimum=1, maximum=MAX_BUCKET_SECONDS),
        )
        return [FinishedCount(at, state, count) for at, state, count in rows]

    def recent_failures(self, *, limit: int = 20) -> list[FailureEvent]:
        """The newest failures (events of :data:`~persistq.model.FAILURE_KINDS`) with their
        job's queue, newest first, at most ``limit``."""
        limit = validate_int(limit, what="limit", minimum=1, maximum=MAX_READ_ROWS)
        return [FailureEvent(event, queue) for event, queue in self.backend.recent_failures(limit)]

    def counters(self) -> dict[str, dict[str, int]]:
        """Lifetime counts per queue, exact across restarts and purges: ``enqueued``,
        ``completed``, ``failed``, ``unprocessable``, ``cancelled``, ``retried``,
        ``lease_expired`` (a name is absent until its first count)."""
        return self.backend.counters()

    def storage(self) -> StorageInfo:
        """Database and WAL file sizes and free disk, cheap enough to poll (``check`` reads
        every page); None where the database has no local files (PostgreSQL)."""
        return self.backend.storage()

    def now(self) -> float:
        """The queue's clock: the injected one, else the database's."""
        return self.clock.now() if self.clock is not None else self.backend.now()

    def _stamp(self) -> float | None:
        """``now`` for a statement: None lets the database use its own clock."""
        return self.clock.now() if self.clock is not None else None

    def check(self, *, full: bool = False) -> dict[str, Any]:
        """Integrity, schema version and sizes of the database (``full`` reads every page)."""
        return self.backend.check(full=full)

    def health(self, *, check_every: float = 5.0) -> Health:
        """Whether this process can read and write the database now, for a health probe.

        Writes nothing. The database's quick check (integrity and schema version; it reads
        every page) runs at most every ``check_every`` seconds, its last result counting in
        between; writability is looked at on every call, by the backend's cheap checks and
        the outcome of this process's last write (see ``Backend.write_problem``).
        """
        with self._health_lock:
            if self._checked is None or time.monotonic() - self._checked[0] >= check_every:
                self._checked = (time.monotonic(), self.backend.check())
            report = self._checked[1]
        version = report.get("schema_version")
        if report.get("integrity") != "ok":
            return Health(False, f"database check failed: {report.get('integrity')}", version)
        if not report.get("ok"):
            latest = report.get("latest_schema_version")
            return Health(False, f"schema version {version}, expected {latest}", version)
        try:
            problem = self.backend.write_problem()
        except StorageError as exc:
            problem = str(exc)
        if problem:
            return Health(False, f"writes would fail: {problem}", version)
        return Health(True, None, version)


def _instant(value: object, *, what: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value <= MAX_INSTANT
    ):
        raise InvalidJob(f"{what} must be epoch seconds from 0 to {MAX_INSTANT:.0f}, got {value!r}")
    return float(value)


def _everything(where: JobFilter | None) -> JobFilter:
    """``where`` checked, with every state spelled out when it names none."""
    flt = JobFilter() if where is None else where.checked()
    return flt if flt.states else replace(flt, states=tuple(State))


def _job_id(value: object) -> int:
    return validate_int(value, what="job id", minimum=1)
