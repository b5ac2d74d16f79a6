"""The worker runtime: claim, run the handler under a heartbeat, settle the job.

Concurrency is ``concurrency`` slots, each a thread running one job at a time. One claimer
thread leases jobs for the slots that are free, all of them in one ``claim_many`` and never
more than are free, so no job waits leased behind a slow one. With one slot the claimer
runs the job itself; where that saves a commit (``completes_with_next_claim``: SQLite) it
records the completion in the call that claims the next job (``complete_and_claim``).
With the thread pool (the default) the handler runs in its slot's thread: handlers are
mostly I/O, threads share one connection. With the process pool (``pool="process"``, see
:mod:`persistq.pool`) each slot hands its job to a child process of its own, which can be
killed at the job's timeout and whose death is seen at once. Both end in one settle path.
A slot hands a completion to the worker's :class:`Settler` and is free at once; the
settler records those that queued meanwhile in one ``complete_many``. One heartbeat thread
per worker extends the leases of all the jobs its slots run, in one transaction per tick.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import queue as queuelib
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from persistq.errors import InvalidJob, LeaseLost, QueueError, ReleaseJob, StorageReplaced
from persistq.model import (
    MAX_WORKER_LENGTH,
    Job,
    State,
    validate_int,
    validate_queue_name,
    validate_seconds,
    validate_text,
)
from persistq.pool import Handler, HandlerFactory, Outcome, ProcessPool
from persistq.ports import WorkQueue
from persistq.retry import RetryPolicy
from persistq.signals import StopSignals
from persistq.sweeper import Sweeper, default_sweep_seconds

log = logging.getLogger("persistq.worker")

POOLS = ("thread", "process")
#: How a handler's error settles its job (retried or not, which backoff); the default
#: retries every error but Unrecoverable with the queue's backoff.
PolicyFor = Callable[[Job, BaseException], RetryPolicy]
DEFAULT_POLICY = RetryPolicy()
#: The log event of a job settled in each state (PENDING: released or retried).
SETTLED_EVENT = {
    State.COMPLETED: "completed",
    State.FAILED: "failed",
    State.CANCELLED: "cancelled",
}
#: Most handler threads one worker process runs.
MAX_CONCURRENCY = 256
#: How often the claimer, with every slot busy, looks at the stop flag.
STOP_CHECK_SECONDS = 0.2
#: Most completions one ``complete_many`` records: a bound on one transaction's length.
MAX_SETTLE_GROUP = 256


class HandlerNotFound(QueueError):
    """The handler named by ``module:function`` cannot be imported."""


def import_object(spec: str, what: str = "handler") -> Any:
    """``package.module:attribute`` -> the object; HandlerNotFound saying why not."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        shape = "function" if what == "handler" else what
        raise HandlerNotFound(f"{what} {spec!r} must look like package.module:{shape}")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except Exception as exc:  # a module may raise anything while it is imported
        reason = str(exc) if isinstance(exc, ImportError | AttributeError) else repr(exc)
        raise HandlerNotFound(f"cannot load {what} {spec!r}: {reason}") from None
    return target


def resolve_handler(spec: str) -> Handler:
    """``package.module:function`` -> the callable."""
    target = import_object(spec)
    if not callable(target):
        raise HandlerNotFound(f"handler {spec!r} is not callable")
    handler: Handler = target
    return handler


def check_options(
    queues: Sequence[str],
    *,
    worker_id: str,
    concurrency: int,
    lease_seconds: float | None,
    grace_seconds: float,
    sweep_seconds: float | None,
    pool: str = "thread",
) -> None:
    """Raise ``InvalidJob`` for options no worker can run with, before it starts: a bad
    queue name or worker id would otherwise fail every claim, logged once a second forever."""
    if isinstance(queues, str) or not queues:
        raise InvalidJob(f"a worker needs a list of one or more queues, got {queues!r}")
    for name in queues:
        validate_queue_name(name)
    validate_text(worker_id, what="worker id", max_length=MAX_WORKER_LENGTH, optional=False)
    validate_int(concurrency, what="concurrency", minimum=1, maximum=MAX_CONCURRENCY)
    if lease_seconds is not None:
        validate_seconds(lease_seconds, what="lease", minimum=0.001)
    validate_seconds(grace_seconds, what="grace")
    if sweep_seconds is not None:
        validate_seconds(sweep_seconds, what="sweep interval", minimum=0.001)
    if pool not in POOLS:
        raise InvalidJob(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def log_job(event: str, job: Job, worker: str, level: int = logging.INFO, **fields: Any) -> None:
    """One structured (logfmt) line per job state change."""
    if not log.isEnabledFor(level):
        return  # a line per job: not even formatted when nobody reads it
    parts = [
        f"event={event}",
        f"job={job.id}",
        f"queue={job.queue}",
        f"attempt={job.attempts}/{job.max_attempts}",
        f"worker={worker}",
    ]
    parts += [f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v!r}" for k, v in fields.items()]
    # The record made here, not by log.log: its caller is always this function, and
    # looking that up (Logger.findCaller's walk of the stack) was a sixth of the line's cost.
    log.handle(log.makeRecord(log.name, level, __file__, 0, " ".join(parts), (), None, "log_job"))


class Lease:
    """A job the worker runs, as its heartbeat sees it (plain attributes, not an Event: a
    job's costs on the hot path are counted in microseconds)."""

    __slots__ = ("cancel_requested", "job", "lost")

    def __init__(self, job: Job) -> None:
        self.job = job
        #: True once a beat is refused: the handler's result must not be recorded.
        self.lost = False
        #: As the last beat found it (someone asked to cancel the job meanwhile).
        self.cancel_requested = job.cancel_requested


class Heartbeat:
    """One thread per worker that extends the lease of every job it runs, all in one
    transaction each ``every_seconds`` (``Queue.heartbeat_many``).

    The thread runs while the heartbeat is entered (``with heartbeat:``, nestable: the
    worker's loop holds it for its whole run, so no job starts a thread of its own). A
    failed beat is logged and retried at the next tick; a lease refused to one job sets
    that job's :attr:`Lease.lost` and stops its beats, the others beat on.
    """

    def __init__(self, queue: WorkQueue, every_seconds: float, name: str = "heartbeat") -> None:
        self.queue = queue
        self.every_seconds = every_seconds
        self.name = name
        self._lock = threading.Lock()
        self._held: set[Lease] = set()
        self._users = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        with self._lock:
            self._users += 1
            if self._users == 1:
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(self._stop,), name=self.name, daemon=True
                )
                self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._users -= 1
            if self._users:
                return
            stop, thread, self._thread = self._stop, self._thread, None
        stop.set()
        if thread is not None:
            thread.join()

    @contextlib.contextmanager
    def hold(self, job: Job) -> Iterator[Lease]:
        """Beat for ``job`` until the block ends (a timed-out handler's lease is then no
        longer extended)."""
        lease = Lease(job)
        with self:
            with self._lock:
                self._held.add(lease)
            try:
                yield lease
            finally:
                with self._lock:
                    self._held.discard(lease)

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.every_seconds):
            with self._lock:
                leases = list(self._held)
            if leases:
                self.beat(leases)

    def beat(self, leases: Sequence[Lease]) -> None:
        try:
            beats = self.queue.heartbeat_many([lease.job for lease in leases])
        except QueueError as exc:
            log.warning(
                "event=heartbeat_failed jobs=%s error=%r",
                ",".join(str(lease.job.id) for lease in leases),
                str(exc),
            )
            return
        for lease, beat in zip(leases, beats, strict=True):
            if isinstance(beat, LeaseLost):
                with self._lock:
                    self._held.discard(lease)
                lease.lost = True
            else:
                lease.job = beat
                lease.cancel_requested = beat.cancel_requested


@dataclass(slots=True)
class Finished:
    """A job whose handler returned, waiting to be completed with its result."""

    job: Job
    result: Any
    duration: float


class Handover(Protocol):
    """Where a slot hands a completion: True once taken, False when it must settle it."""

    def submit(self, finished: Finished) -> bool: ...


class Carried:
    """A one-slot worker's completions, carried by its claimer into its next claim: one
    ``complete_and_claim`` records the finished job and leases the next (on SQLite one
    transaction, one commit per job instead of two), with no thread between them."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[Finished] = []

    def submit(self, finished: Finished) -> bool:
        self.items.append(finished)
        return True

    def take(self) -> list[Finished]:
        items, self.items = self.items, []
        return items


def answer_each(
    group: Sequence[Finished],
    answers: Sequence[Job | QueueError],
    answer: Callable[[Finished, Job | QueueError], None],
) -> None:
    """``answer`` for each finished job of ``group`` and its outcome."""
    for finished, outcome in zip(group, answers, strict=True):
        try:
            answer(finished, outcome)
        except Exception:  # one job's bookkeeping must not stop the others' completions
            log.exception("event=settle_failed job=%d", finished.job.id)


class Settler:
    """One thread per worker that completes the jobs its slots finished: those handed over
    while the last call ran, in one ``complete_many`` (one transaction; on PostgreSQL one
    round trip per group, not one per job). A slot that hands a job over is free at once.

    ``answer(finished, outcome)`` is called in the settler's thread for each, with the
    completed job or the error that refused it (a storage error: every job of its group).
    Once closed, nothing more is taken (``submit`` says False: the caller settles itself).
    """

    def __init__(
        self,
        queue: WorkQueue,
        answer: Callable[[Finished, Job | QueueError], None],
        name: str = "settler",
    ) -> None:
        self.queue = queue
        self._answer = answer
        self._ready = threading.Condition()
        self._pending: list[Finished] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, finished: Finished) -> bool:
        with self._ready:
            if self._closed:
                return False
            self._pending.append(finished)
            self._ready.notify()
        return True

    def close(self) -> None:
        """Record everything handed over, then stop."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._pending and not self._closed:
                    self._ready.wait()
                if not self._pending:
                    return
                group = self._pending[:MAX_SETTLE_GROUP]
                del self._pending[:MAX_SETTLE_GROUP]
            self._settle(group)

    def _settle(self, group: Sequence[Finished]) -> None:
        answers: Sequence[Job | QueueError]
        try:
            answers = self.queue.complete_many([(f.job, f.result) for f in group])
        except QueueError as exc:  # nothing of the group was written
            answers = [exc] * len(group)
        answer_each(group, answers, self._answer)


@dataclass
class Worker:
    """Claims from ``queues`` and runs ``handler`` (a callable or ``module:function``)."""

    #: A local ``Queue`` or a ``RemoteQueue`` (``persistq worker --url http://…``).
    queue: WorkQueue
    handler: Handler | str
    queues: Sequence[str] = ("default",)
    worker_id: str = field(default_factory=default_worker_id)
    concurrency: int = 1
    lease_seconds: float | None = None
    #: Longest a claim blocks before looking at the stop flag again.
    wait_seconds: float = 1.0
    sweep_seconds: float | None = None
    #: On SIGTERM, how long running jobs may take before they are released.
    grace_seconds: float = 30.0
    stop_event: threading.Event = field(default_factory=threading.Event)
    #: Per-job retry policy of a handler's error (a task app's ``retry_on`` and backoff).
    retry_policy: PolicyFor | None = None
    #: Background services run beside the slots until stop, each ``service(stop_event)``
    #: in a thread of its own (an app's periodic scheduler).
    services: Sequence[Callable[[threading.Event], None]] = ()
    #: "thread" (handlers in the slot threads) or "process" (in child processes).
    pool: str = "thread"
    #: How a child of the process pool makes its handler (picklable); default: from
    #: ``handler`` (its ``module:function`` spec, or the callable itself, pickled).
    child_handler: HandlerFactory | None = None
    #: Completions of the slots recorded together by one settler (``complete_many``);
    #: False: each slot completes its own job (bench_worker compares the two).
    settle_together: bool = True
    _resolved: Handler | None = field(default=None, init=False, repr=False)
    _running: dict[int, Job] = field(default_factory=dict, init=False, repr=False)
    #: Set when the database file was deleted or replaced: the worker stops, exit code 1.
    _storage_gone: StorageReplaced | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _processes: ProcessPool | None = field(default=None, init=False, repr=False)
    #: Set once the grace period is over: children are being killed, their jobs released.
    _abandoning: bool = field(default=False, init=False, repr=False)
    _slots: threading.local = field(default_factory=threading.local, init=False, repr=False)
    #: Free slots (the claimer takes, a slot gives back), and the jobs claimed for them.
    _free: threading.Condition = field(default_factory=threading.Condition, init=False, repr=False)
    _idle: int = field(default=0, init=False, repr=False)
    _handoff: queuelib.SimpleQueue[Job | None] = field(
        default_factory=queuelib.SimpleQueue, init=False, repr=False
    )
    _heartbeat: Heartbeat = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_options(
            self.queues,
            worker_id=self.worker_id,
            concurrency=self.concurrency,
            lease_seconds=self.lease_seconds,
            grace_seconds=self.grace_seconds,
            sweep_seconds=self.sweep_seconds,
            pool=self.pool,
        )
        self._heartbeat = Heartbeat(self.queue, self.lease / 3, f"heartbeat-{self.worker_id}")

    @property
    def lease(self) -> float:
        return self.lease_seconds or self.queue.settings.lease_seconds

    # -- one job --------------------------------------------------------------------

    def run_once(self, wait: float = 0) -> Job | None:
        """Claim one job (waiting up to ``wait`` s) and process it; the settled job or None."""
        job = self.queue.claim(
            queue=list(self.queues), worker=self.worker_id, lease=self.lease, wait=wait
        )
        return None if job is None else self.process(job)

    def drain(self, max_jobs: int | None = None) -> int:
        """Claim and process due jobs in this thread until none is left (or ``max_jobs``
        ran); returns how many ran. Jobs retried or released for later are not due."""
        ran = 0
        with self._heartbeat:  # one heartbeat thread for the whole drain
            while max_jobs is None or ran < max_jobs:
                job = self.queue.claim(
                    queue=list(self.queues), worker=self.worker_id, lease=self.lease
                )
                if job is None:
                    break
                self.process(job)
                ran += 1
        return ran

    def process(self, job: Job, settler: Handover | None = None) -> Job | None:
        """Run the handler for a claimed job and settle it; None when the lease was lost.
        With ``settler``, a completion is handed to it (and None returned) instead."""
        # DEBUG: at INFO a job is one line, when its attempt ends (the line names the attempt
        # and its duration); a second line per job cost the worker a third of its CPU.
        log_job("claimed", job, self.worker_id, logging.DEBUG)
        started = time.monotonic()
        with self._lock:
            self._running[job.id] = job
        try:
            return self._run_and_settle(job, started, settler)
        finally:
            with self._lock:
                self._running.pop(job.id, None)

    def _run_and_settle(
        self, job: Job, started: float, settler: Handover | None = None
    ) -> Job | None:
        straggler: threading.Thread | None = None
        with self._heartbeat.hold(job) as beat:
            if self._processes is not None:
                outcome = self._processes.run(getattr(self._slots, "slot", 0), job)
            else:
                outcome, straggler = self._run_in_thread(job)
        # The heartbeat stopped with the block: a timed-out handler's lease is not extended.
        duration = time.monotonic() - started
        try:
            if self._abandoning and outcome.crashed is not None:
                return None  # killed at shutdown: the job is released by _release_running
            if beat.lost:
                log_job(
                    "lease_lost",
                    job,
                    self.worker_id,
                    duration=duration,
                    note="result not recorded",
                )
                return None
            succeeded = outcome.error is None and outcome.timed_out is None
            if settler is not None and succeeded and outcome.crashed is None:
                with self._lock:  # no longer running: shutdown must not release it
                    self._running.pop(job.id, None)
                if settler.submit(Finished(job, outcome.result, duration)):
                    return None
            return self._settle_logged(job, outcome, duration)
        finally:
            if straggler is not None:
                # A thread cannot be killed: this slot stays busy until the handler
                # returns, and what it returns is discarded.
                straggler.join()
                log_job("discarded", job, self.worker_id, note="timed-out handler returned")

    def _run_in_thread(self, job: Job) -> tuple[Outcome, threading.Thread | None]:
        """Run the handler here; with a timeout, in a thread of its own watched by this one
        (a straggler is handed back to be waited for after the job is settled)."""
        if job.timeout is None:
            return self._call(job), None
        box: list[Outcome] = []
        thread = threading.Thread(
            target=lambda: box.append(self._call(job)), name=f"handler-{job.id}", daemon=True
        )
        thread.start()
        thread.join(job.timeout)
        if thread.is_alive():
            detail = f"timed out after {job.timeout:g} s: thread still running, result discarded"
            return Outcome(timed_out=detail), thread
        return box[0], None

    def _call(self, job: Job) -> Outcome:
        try:
            return Outcome(result=self._handler()(job))
        except (Exception, SystemExit) as exc:  # a handler error fails the job, not us
            return Outcome(error=exc)

    def _settle_logged(self, job: Job, outcome: Outcome, duration: float) -> Job | None:
        """The one settle path of both pools: a result, an error, a timeout or a crash."""
        error = outcome.error
        try:
            if outcome.crashed is not None:
                settled = self.queue.crashed(job, outcome.crashed)
                log_job(
                    "crashed", settled, self.worker_id, duration=duration, detail=outcome.crashed
                )
                return settled
            if outcome.timed_out is not None:
                error = TimeoutError(outcome.timed_out)
                log_job("timed_out", job, self.worker_id, duration=duration)
            settled = self._settle(job, outcome.result, error, timed_out=outcome.timed_out)
        except LeaseLost:
            log_job(
                "lease_lost", job, self.worker_id, duration=duration, note="result not recorded"
            )
            return None
        self._log_settled(settled, error, duration)
        return settled

    def _log_settled(self, settled: Job, error: BaseException | None, duration: float) -> None:
        if settled.status == State.PENDING:
            event = "released" if isinstance(error, ReleaseJob) else "retried"
        else:
            event = SETTLED_EVENT.get(settled.status, settled.status.lower())
        fields: dict[str, Any] = {"duration": duration}
        if error is not None:
            fields["error"] = f"{type(error).__name__}: {error}"
        log_job(event, settled, self.worker_id, **fields)

    def _completed(self, finished: Finished, answer: Job | QueueError) -> None:
        """The settler's answer for one job: logged as the slot would have logged it."""
        job, duration = finished.job, finished.duration
        if isinstance(answer, Job):
            self._log_settled(answer, None, duration)
        elif isinstance(answer, LeaseLost):
            log_job(
                "lease_lost", job, self.worker_id, duration=duration, note="result not recorded"
            )
        elif isinstance(answer, InvalidJob):  # a result JSON cannot hold fails the job
            self._settle_logged(job, Outcome(error=answer), duration)
        elif isinstance(answer, StorageReplaced):
            self._database_gone(answer)
        else:
            log.warning("event=complete_failed job=%d error=%r", job.id, str(answer))

    def _settle(
        self, job: Job, result: Any, error: BaseException | None, timed_out: str | None = None
    ) -> Job:
        if timed_out is not None:
            # A timeout is a handler error that is always retried (SPEC), with the task's
            # backoff, whatever its retry_on says.
            assert error is not None
            policy = DEFAULT_POLICY if self.retry_policy is None else self.retry_policy(job, error)
            return self.queue.fail(
                job,
                error,
                backoff_base=policy.backoff_base,
                backoff_max=policy.backoff_max,
                timed_out=timed_out,
            )
        if isinstance(error, ReleaseJob):
            return self.queue.release(job, delay=error.delay_seconds, reason=error.reason)
        if error is None:
            try:
                return self.queue.complete(job, result)
            except InvalidJob as exc:  # the handler returned something JSON cannot hold
                error = exc
        policy = DEFAULT_POLICY if self.retry_policy is None else self.retry_policy(job, error)
        return self.queue.fail(
            job,
            error,
            retry=policy.retry,
            backoff_base=policy.backoff_base,
            backoff_max=policy.backoff_max,
        )

    def _handler(self) -> Handler:
        # Resolved on first use, so a handler that cannot be imported fails jobs (and says
        # why in last_error) instead of crash-looping the worker.
        if self._resolved is None:
            self._resolved = (
                resolve_handler(self.handler) if isinstance(self.handler, str) else self.handler
            )
        return self._resolved

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> int:
        """Work until SIGTERM/SIGINT (or :meth:`stop`); returns the exit code: 0, or 1 when
        the database file was deleted or replaced under the worker (nothing it does could
        be kept, so it stops rather than retry forever)."""
        with self._heartbeat:  # one thread beats for every slot, for the whole run
            return self._run()

    def _run(self) -> int:
        signals = StopSignals(self.stop_event)
        signals.install()
        if self.pool == "process":
            self._processes = ProcessPool(self.concurrency, self._child_handler())
            self._processes.start()
        sweeper = Sweeper(self.queue, self.sweep_seconds or default_sweep_seconds(self.lease))
        settler = Settler(self.queue, self._completed, f"settler-{self.worker_id}")
        settler.start()
        # Fresh each run: a slot still busy when the last run returned never took its end.
        self._idle, self._handoff = self.concurrency, queuelib.SimpleQueue()
        given = settler if self.settle_together else None
        # One slot: the claimer runs its jobs itself (a hand-off to a thread of its own
        # would cost a thread switch per job and buy nothing).
        slots = 0 if self.concurrency == 1 else self.concurrency
        threads = [threading.Thread(target=self._claim_loop, args=(given, slots), name="claimer")]
        threads += [
            threading.Thread(target=self._slot, args=(i, given), name=f"worker-{i}")
            for i in range(slots)
        ]
        for thread in threads:
            thread.daemon = True
        threads.append(threading.Thread(target=sweeper.run, args=(self.stop_event,), daemon=True))
        threads.append(threading.Thread(target=self._announce, daemon=True))
        threads += [
            threading.Thread(target=service, args=(self.stop_event,), daemon=True)
            for service in self.services
        ]
        log.info(
            "event=started worker=%s queues=%s concurrency=%d pool=%s lease=%.0f",
            self.worker_id,
            ",".join(self.queues),
            self.concurrency,
            self.pool,
            self.lease,
        )
        for thread in threads:
            thread.start()
        received = signals.wait()
        if received is not None:
            log.info("event=signal signal=%s worker=%s", received.name, self.worker_id)
        log.info("event=stopping worker=%s grace=%.0f", self.worker_id, self.grace_seconds)
        deadline = time.monotonic() + self.grace_seconds
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        settler.close()  # what finished is recorded before what still runs is released
        if self._processes is not None:
            self._abandoning = True  # before the kill: a killed child is no crash
            with self._lock:
                running = list(self._running.values())
            self._processes.close()
            self._release(running)
        else:
            self._release_running()
        with contextlib.suppress(QueueError):
            self.queue.worker_gone(self.worker_id)
        log.info("event=stopped worker=%s", self.worker_id)
        return 0 if self._storage_gone is None else 1

    def stop(self) -> None:
        self.stop_event.set()

    def _child_handler(self) -> HandlerFactory:
        if self.child_handler is not None:
            return self.child_handler
        if isinstance(self.handler, str):
            return functools.partial(resolve_handler, self.handler)
        return functools.partial(_given, self.handler)

    def _claim_loop(self, settler: Settler | None, slots: int) -> None:
        """Lease jobs for the free slots, all in one claim, and hand them over to the
        ``slots`` slot threads (none: run them here, the one slot, whose completions this
        loop carries into its next claim); once stopping, tell every slot to end."""
        self._slots.slot = 0
        carried = None
        if settler is not None and not slots and self.queue.completes_with_next_claim:
            carried = Carried()
        given: Handover | None = settler if carried is None else carried
        try:
            while not self.stop_event.is_set():
                with self._free:
                    while self._idle == 0 and not self.stop_event.is_set():
                        self._free.wait(STOP_CHECK_SECONDS)
                    free = self._idle  # only this thread lowers it: still free at the claim
                if free == 0:
                    break  # stopping
                try:
                    jobs = self._claim(free, carried)
                except StorageReplaced as exc:
                    self._database_gone(exc)
                except QueueError as exc:  # the database is unwell; back off and retry
                    log.warning("event=claim_failed worker=%s error=%r", self.worker_id, str(exc))
                    self.stop_event.wait(1.0)
                else:
                    if self.stop_event.is_set():  # claimed while shutting down: give them back
                        self._give_back(jobs)
                        break
                    if not slots:
                        for job in jobs:
                            self._run_job(job, given)
                        continue
                    with self._free:
                        self._idle -= len(jobs)
                    for job in jobs:
                        self._handoff.put(job)
        finally:
            for finished in carried.take() if carried is not None else []:
                assert settler is not None  # a Carried only stands in for a settler
                if not settler.submit(finished):  # closed: past the grace period
                    self._settle_logged(
                        finished.job, Outcome(result=finished.result), finished.duration
                    )
            for _ in range(slots):
                self._handoff.put(None)

    def _claim(self, free: int, carried: Carried | None) -> list[Job]:
        """Jobs for ``free`` slots. The completions ``carried`` over are recorded first, in
        the same call (``complete_and_claim``), which never waits: only when it leased
        nothing does a claim wait for a job."""
        finished = carried.take() if carried is not None else []
        if finished:
            try:
                answers, jobs = self.queue.complete_and_claim(
                    [(f.job, f.result) for f in finished],
                    queue=list(self.queues),
                    worker=self.worker_id,
                    limit=free,
                    lease=self.lease,
                )
            except StorageReplaced:
                raise  # the worker stops; the jobs' leases expire
            except QueueError as exc:  # none of them was recorded: each is logged
                answer_each(finished, [exc] * len(finished), self._completed)
                raise
            answer_each(finished, answers, self._completed)
            if jobs or self.stop_event.is_set():
                return jobs
        return self.queue.claim_many(
            queue=list(self.queues),
            worker=self.worker_id,
            limit=free,
            lease=self.lease,
            wait=self.wait_seconds,
        )

    def _slot(self, slot: int, settler: Handover | None) -> None:
        """Run the jobs the claimer hands this slot until it hands over None."""
        self._slots.slot = slot
        while (job := self._handoff.get()) is not None:
            try:
                self._run_job(job, settler)
            finally:
                with self._free:
                    self._idle += 1
                    self._free.notify()

    def _run_job(self, job: Job, settler: Handover | None) -> None:
        try:
            if self.stop_event.is_set():  # claimed while shutting down: give it back
                self._give_back([job])
            else:
                self.process(job, settler)
        except StorageReplaced as exc:
            self._database_gone(exc)
        except QueueError as exc:  # the job stays leased; its lease expiry recovers it
            log.warning("event=settle_failed worker=%s error=%r", self.worker_id, str(exc))

    def _give_back(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            try:
                self.queue.release(job)
            except QueueError as exc:
                log.warning("event=release_failed job=%d error=%r", job.id, str(exc))

    def _database_gone(self, exc: StorageReplaced) -> None:
        log.error("event=database_gone worker=%s error=%r", self.worker_id, str(exc))
        self._storage_gone = exc
        self.stop_event.set()

    def _announce(self) -> None:
        """Tell the queue this worker is alive, so the Ops view lists idle workers too."""
        every = min(10.0, self.lease / 3)
        while not self.stop_event.is_set():
            try:
                self.queue.worker_seen(self.worker_id, self.queues)
            except QueueError as exc:
                log.warning("event=announce_failed worker=%s error=%r", self.worker_id, str(exc))
            self.stop_event.wait(every)

    def _release_running(self) -> None:
        """Give back jobs still running after the grace period, attempt refunded."""
        with self._lock:
            running = list(self._running.values())
        self._release(running)

    def _release(self, running: Sequence[Job]) -> None:
        for job in running:
            try:
                self.queue.release(job)
                log_job("released", job, self.worker_id, note="grace period over")
            except QueueError as exc:
                log.warning("event=release_failed job=%d error=%r", job.id, str(exc))


def _given(handler: Handler) -> Handler:
    """A child's handler when the worker was given the callable (pickled to the child)."""
    return handler
