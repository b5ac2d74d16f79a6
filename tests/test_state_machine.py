"""The job state machine of SPEC.md, checked against a small in-memory model of it.

Hypothesis runs random sequences of enqueue / claim / heartbeat / complete / fail / release /
cancel / resubmit / recover_stalled / clock advances (plus pause, resume, create and delete
queue, purge) against a real queue on a real database, and after every step checks that
the database agrees with a model written from the SPEC, not from the SQL (a
:class:`ModelJob` per job, kept by :class:`QueueMachine`): each job's state, attempts,
cancel request, lease, claimability and whole event history, the queues, and ``stats()``.

Every lease copy ever handed out is kept (in a bundle, and in a list drawn from by how each
copy stands) and used later, so the model must predict exactly when an owner-only call
succeeds and when it raises ``LeaseLost`` (re-claimed, expired but not yet swept,
completed, cancelled, ...). Every call that raises must change nothing in the database.

``test_a_fixed_run_...`` at the end drives the same steps through every transition in a
fixed order, so the machine is known not to be vacuous; ``--hypothesis-show-statistics``
shows which transitions the random runs took.

Times are whole seconds on a :class:`ManualClock` with a 10 s default lease, so leases
expire often and exactly on their boundary; ``backoff_base=0`` makes a retried job due at
once, so the model knows its ``run_at`` exactly.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

import persistq
from persistq import (
    EventKind,
    InvalidJob,
    InvalidTransition,
    Job,
    JobNotFound,
    LeaseLost,
    ManualClock,
    QueueNotEmpty,
    QueueNotFound,
    State,
    Unrecoverable,
)
from pgserver import REQUIRE_PG, new_pg_schema, pg_unavailable

# -- databases ---------------------------------------------------------------------------------
#
# Every example needs a fresh, empty database. A factory returns its URL and a cleanup.

DatabaseFactory = Callable[[], tuple[str, Callable[[], None]]]


def fresh_sqlite() -> tuple[str, Callable[[], None]]:
    folder = Path(tempfile.mkdtemp(prefix="persistq-sm-"))
    return f"sqlite:///{folder / 'queue.db'}", lambda: shutil.rmtree(folder, ignore_errors=True)


DATABASES: dict[str, DatabaseFactory] = {
    "sqlite": fresh_sqlite,
    "postgres": partial(new_pg_schema, "sm"),
}

# -- the model ---------------------------------------------------------------------------------

LEASE = 10
QUEUES = ("default", "high", "low")
#: What a claim asks for: one queue, or several tried in the order given.
CLAIM_TARGETS: tuple[str | tuple[str, ...], ...] = (
    "default",
    "high",
    ("high", "default"),
    ("default", "low"),
    ("low", "high", "default"),
)
RESUBMITTABLE = (State.FAILED, State.UNPROCESSABLE, State.CANCELLED, State.COMPLETED)
CANCEL_AT_ONCE = (State.PENDING, State.FAILED, State.UNPROCESSABLE)
TERMINAL = (State.COMPLETED, State.FAILED, State.UNPROCESSABLE, State.CANCELLED)
#: How ``fail`` is called: a text with retry, a text with retry=False, an exception (stored
#: with its traceback), ``Unrecoverable`` (never retried).
FAIL_MODES = ("retry", "no-retry", "exception", "unrecoverable")
ADMIN_OPS = (
    "pause",
    "resume",
    "create",
    "delete",
    "delete --force",
    "purge",
    "purge",
    "unknown id",
    "no token",
    "owner call, unknown id",
)
HOLDER_ACTIONS = (
    "heartbeat",
    "complete",
    "complete",
    "release",
    *(f"fail:{mode}" for mode in FAIL_MODES),
)


@dataclass
class ModelJob:
    id: int
    queue: str
    priority: int
    max_attempts: int
    key: str | None
    run_at: float
    status: State = State.PENDING
    attempts: int = 0
    cancel_requested: bool = False
    #: The token of the current lease (the model learns it from the claim, and checks it is
    #: new); a copy holds the lease only while it carries this token and the lease is live.
    token: str | None = None
    worker: str | None = None
    lease_seconds: float | None = None
    lease_expires_at: float | None = None
    finished_at: float | None = None
    result: Any = None
    #: A text the stored last_error must contain.
    last_error: str | None = None
    events: list[EventKind] = field(default_factory=lambda: [EventKind.ENQUEUED])

    def set_status(self, status: State, now: float) -> None:
        self.status = status
        if status is not State.PROCESSING:
            self.token = None
            self.lease_expires_at = None
        self.finished_at = now if status in TERMINAL else None


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _cover(label: str, covered: set[str]) -> None:
    """Note a transition taken: for the non-vacuity test, and for hypothesis statistics."""
    covered.add(label)
    with contextlib.suppress(InvalidArgument):  # outside a hypothesis run (scripted test)
        event(label)


class QueueMachine(RuleBasedStateMachine):
    database = "sqlite"

    leases: Bundle[Job] = Bundle("leases")
    job_ids: Bundle[int] = Bundle("job_ids")

    def __init__(self) -> None:
        super().__init__()
        self.url, self._cleanup = DATABASES[self.database]()
        self.clock = ManualClock()
        self.q = persistq.connect(
            self.url, lease=LEASE, backoff_base=0, backoff_max=0, clock=self.clock
        )
        self.now = self.clock.now()
        self.jobs: dict[int, ModelJob] = {}
        self.deleted: set[int] = set()
        #: name -> paused; a queue exists once something enqueued to it or created it.
        self.queues: dict[str, bool] = {}
        self.last_id = 0
        self.tokens_seen: set[str] = set()
        #: Every copy with a token handed out (by claim or heartbeat), stale ones too.
        self.copies: list[Job] = []
        self.covered: set[str] = set()
        self.checks = 0

    def teardown(self) -> None:
        self.q.close()
        self._cleanup()

    # -- helpers -------------------------------------------------------------------------------

    def cover(self, label: str) -> None:
        _cover(label, self.covered)

    def snapshot(self) -> tuple[object, ...]:
        jobs = self.q.jobs(limit=10_000)
        return (jobs, [self.q.events(j.id) for j in jobs], self.q.queues())

    def refused(self, error: type[Exception], call: Callable[[], object], label: str) -> None:
        """``call`` must raise exactly ``error`` and leave the database as it was."""
        before = self.snapshot()
        with pytest.raises(error):
            call()
        assert self.snapshot() == before, f"{label}: a refused call changed the database"
        self.cover(label)

    def check_job(self, got: Job, want: ModelJob) -> None:
        assert got.id == want.id
        assert (got.queue, got.priority, got.max_attempts, got.key) == (
            want.queue,
            want.priority,
            want.max_attempts,
            want.key,
        )
        assert got.status is want.status, f"job {want.id}: {got.status} != {want.status}"
        assert got.attempts == want.attempts, f"job {want.id}: attempts"
        assert got.cancel_requested == want.cancel_requested, f"job {want.id}: cancel_requested"
        assert _ts(got.lease_expires_at) == want.lease_expires_at, f"job {want.id}: lease"
        assert _ts(got.finished_at) == want.finished_at, f"job {want.id}: finished_at"
        if want.status is State.PENDING:
            assert _ts(got.run_at) == want.run_at, f"job {want.id}: run_at"
            assert want.attempts < want.max_attempts  # the model's own sanity
            assert got.worker is None, f"job {want.id}: PENDING but held by {got.worker}"
        if want.status is State.PROCESSING:
            assert got.worker == want.worker
        if want.status is State.COMPLETED:
            assert got.result == want.result
        if want.last_error is None:
            assert got.last_error is None
        else:
            assert got.last_error is not None and want.last_error in got.last_error

    def claimable(self, job: ModelJob) -> bool:
        return (
            job.status is State.PENDING
            and job.run_at <= self.now
            and not self.queues.get(job.queue, False)
        )

    def next_due(self, queues: Sequence[str], limit: int) -> list[int]:
        """What a claim takes: queues in the order given; priority desc, then oldest id."""
        picked: list[int] = []
        for name in queues:
            due = sorted(
                (j for j in self.jobs.values() if j.queue == name and self.claimable(j)),
                key=lambda j: (-j.priority, j.id),
            )
            picked.extend(j.id for j in due[: limit - len(picked)])
            if len(picked) >= limit:
                break
        return picked

    def lease_state(self, copy: Job) -> str:
        """``held`` when ``copy`` holds the job's lease, else why it does not."""
        job = self.jobs.get(copy.id)
        if job is None:
            return "deleted"
        if job.status is not State.PROCESSING:
            return str(job.status)  # completed, failed, cancelled, back to pending, ...
        if job.token != copy.lease_token:
            return "re-claimed"
        assert job.lease_expires_at is not None
        if self.now >= job.lease_expires_at:
            return "expired, not yet swept"
        return "held"

    def owner_call(
        self, op: str, copy: Job, call: Callable[[], Job]
    ) -> tuple[Job, ModelJob] | None:
        """Run an owner-only call; the model says whether it must succeed or be refused."""
        state = self.lease_state(copy)
        if state == "deleted":
            self.refused(JobNotFound, call, "JobNotFound: owner call on a deleted job")
            return None
        if state != "held":
            self.refused(LeaseLost, call, f"LeaseLost: {state}")
            self.cover(f"LeaseLost on {op}")
            return None
        return call(), self.jobs[copy.id]

    # -- producing -----------------------------------------------------------------------------

    def do_enqueue(
        self, queue: str, priority: int, delay: int, max_attempts: int, key: str | None
    ) -> int | None:
        got = self.q.enqueue(
            {"n": self.last_id},
            queue=queue,
            priority=priority,
            delay=delay,
            max_attempts=max_attempts,
            key=key,
        )
        self.queues.setdefault(queue, False)
        same = [
            j for j in self.jobs.values() if key is not None and (j.queue, j.key) == (queue, key)
        ]
        if same:  # idempotency key: hand back that job, create nothing
            self.check_job(got, same[0])
            self.cover("enqueue: existing key")
            return None
        assert got.id > self.last_id, "ids are new and increasing"
        self.last_id = got.id
        self.jobs[got.id] = ModelJob(got.id, queue, priority, max_attempts, key, self.now + delay)
        self.check_job(got, self.jobs[got.id])
        self.cover("enqueue" if delay == 0 else "enqueue: delayed")
        return got.id

    def do_enqueue_many(self, queue: str, count: int, priority: int) -> list[int]:
        got = self.q.enqueue_many([{"i": i} for i in range(count)], queue=queue, priority=priority)
        self.queues.setdefault(queue, False)
        ids = [job.id for job in got]
        assert ids == sorted(ids) and len(set(ids)) == count and ids[0] > self.last_id
        self.last_id = ids[-1]
        for job in got:
            self.jobs[job.id] = ModelJob(job.id, queue, priority, 3, None, self.now)
            self.check_job(job, self.jobs[job.id])
        self.cover("enqueue_many")
        return ids

    # -- consuming -----------------------------------------------------------------------------

    def do_claim(
        self, target: str | tuple[str, ...], worker: str, lease: int | None, limit: int = 1
    ) -> list[Job]:
        names = [target] if isinstance(target, str) else list(target)
        want = self.next_due(names, limit)
        if limit == 1:
            one = self.q.claim(queue=target, worker=worker, lease=lease)
            got = [] if one is None else [one]
        else:
            got = self.q.claim_many(queue=target, worker=worker, limit=limit, lease=lease)
        self.took(names, worker, lease, want, got)
        return got

    def took(
        self, names: list[str], worker: str, lease: int | None, want: list[int], got: list[Job]
    ) -> None:
        """A claim of ``names`` by ``worker`` leased ``got``; the model expected ``want``."""
        assert [j.id for j in got] == want, f"claimed {[j.id for j in got]}, expected {want}"
        if not got:
            paused_with_due = any(
                self.queues.get(n, False)
                and any(
                    j.queue == n and j.status is State.PENDING and j.run_at <= self.now
                    for j in self.jobs.values()
                )
                for n in names
            )
            self.cover(
                "claim: only paused queues have due jobs" if paused_with_due else "claim: none due"
            )
        for copy in got:
            job = self.jobs[copy.id]
            assert copy.lease_token and copy.lease_token not in self.tokens_seen, "a fresh token"
            self.tokens_seen.add(copy.lease_token)
            job.set_status(State.PROCESSING, self.now)
            job.token = copy.lease_token
            job.worker = worker
            job.attempts += 1
            job.cancel_requested = False
            job.lease_seconds = LEASE if lease is None else lease
            job.lease_expires_at = self.now + job.lease_seconds
            job.events.append(EventKind.CLAIMED)
            self.check_job(copy, job)
            self.copies.append(copy)
            self.cover("claim" if job.attempts == 1 else "claim: again")

    def do_complete_and_claim(
        self, copy: Job, target: str | tuple[str, ...], worker: str, limit: int
    ) -> list[Job]:
        """``complete_and_claim``: the completion answers as ``complete`` would (a refusal
        is its answer, not raised), then the claim leases what is due after it."""
        state = self.lease_state(copy)
        result = {"by": copy.worker}
        (answer,), got = self.q.complete_and_claim(
            [(copy, result)], queue=target, worker=worker, limit=limit
        )
        if state == "deleted":
            assert isinstance(answer, JobNotFound), answer
            self.cover("complete_and_claim: JobNotFound")
        elif state != "held":
            assert isinstance(answer, LeaseLost), answer
            self.cover("complete_and_claim: LeaseLost")
        else:
            assert isinstance(answer, Job), answer
            job = self.jobs[copy.id]
            job.result = result
            self.finish(job, State.COMPLETED, EventKind.COMPLETED)
            self.check_job(answer, job)
            self.cover("complete_and_claim")
        names = [target] if isinstance(target, str) else list(target)
        self.took(names, worker, None, self.next_due(names, limit), got)
        return got

    def do_heartbeat(self, copy: Job) -> Job | None:
        done = self.owner_call("heartbeat", copy, lambda: self.q.heartbeat(copy))
        if done is None:
            return None
        got, job = done
        assert job.lease_seconds is not None
        job.lease_expires_at = self.now + job.lease_seconds
        self.check_job(got, job)
        assert got.lease_token == copy.lease_token
        self.copies.append(got)
        self.cover("heartbeat")
        return got

    def finish(self, job: ModelJob, status: State, kind: EventKind) -> None:
        """The holder lets go: a job whose cancel was requested ends CANCELLED instead."""
        if job.cancel_requested:
            status, kind = State.CANCELLED, EventKind.CANCELLED
        job.set_status(status, self.now)
        job.events.append(kind)

    def do_complete(self, copy: Job, result: Any) -> None:
        done = self.owner_call("complete", copy, lambda: self.q.complete(copy, result))
        if done is None:
            return
        got, job = done
        job.result = result
        requested = job.cancel_requested
        self.finish(job, State.COMPLETED, EventKind.COMPLETED)
        self.check_job(got, job)
        self.cover("complete -> CANCELLED (cancel requested)" if requested else "complete")

    def do_fail(self, copy: Job, mode: str) -> None:
        errors: dict[str, str | BaseException] = {
            "retry": "handler said no",
            "no-retry": "handler said no",
            "exception": ValueError("handler crashed"),
            "unrecoverable": Unrecoverable("poison"),
        }
        error = errors[mode]
        retry = mode != "no-retry"
        done = self.owner_call("fail", copy, lambda: self.q.fail(copy, error, retry=retry))
        if done is None:
            return
        got, job = done
        requested = job.cancel_requested
        job.last_error = (
            f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else error
        )
        if mode in ("retry", "exception") and job.attempts < job.max_attempts:
            job.run_at = self.now  # backoff_base=0: due at once
            self.finish(job, State.PENDING, EventKind.RETRIED)
            label = "fail -> retried"
        else:
            self.finish(job, State.FAILED, EventKind.FAILED)
            label = f"fail ({mode}) -> FAILED"
        self.check_job(got, job)
        self.cover("fail -> CANCELLED (cancel requested)" if requested else label)

    def do_release(self, copy: Job) -> None:
        done = self.owner_call("release", copy, lambda: self.q.release(copy))
        if done is None:
            return
        got, job = done
        requested = job.cancel_requested
        job.attempts -= 1  # refunded
        self.finish(job, State.PENDING, EventKind.RELEASED)
        self.check_job(got, job)
        self.cover("release -> CANCELLED (cancel requested)" if requested else "release")

    def do_recover(self) -> None:
        expired = [
            j
            for j in self.jobs.values()
            if j.status is State.PROCESSING
            and j.lease_expires_at is not None
            and j.lease_expires_at <= self.now
        ]
        assert self.q.recover_stalled() == len(expired)
        for job in expired:
            if job.cancel_requested:
                status = State.CANCELLED
            elif job.attempts < job.max_attempts:
                status = State.PENDING  # run_at unchanged: due at once
            else:
                status = State.UNPROCESSABLE
            job.set_status(status, self.now)
            job.last_error = "lease expired"
            # The event says why the job moved (its lease expired), even when a requested
            # cancel makes it land in CANCELLED; a holder letting go of such a job records
            # `cancelled` instead (see finish). Neither is spelled out in SPEC.md.
            job.events.append(EventKind.LEASE_EXPIRED)
            self.cover(f"recover -> {status}")
        if not expired:
            self.cover("recover: nothing expired")

    # -- by hand -------------------------------------------------------------------------------

    def do_cancel(self, job_id: int) -> None:
        job = self.jobs.get(job_id)
        call = partial(self.q.cancel, job_id)
        if job is None:
            self.refused(JobNotFound, call, "JobNotFound: cancel")
            return
        if job.status in CANCEL_AT_ONCE:
            self.cover(f"cancel {job.status}")
            job.set_status(State.CANCELLED, self.now)
            job.events.append(EventKind.CANCELLED)
        elif job.status is State.PROCESSING and not job.cancel_requested:
            self.cover("cancel PROCESSING: requested")
            job.cancel_requested = True
            job.events.append(EventKind.CANCEL_REQUESTED)
        elif job.status is State.PROCESSING:
            self.cover("cancel PROCESSING: asked again, nothing changes")
        else:
            self.refused(InvalidTransition, call, f"InvalidTransition: cancel {job.status}")
            return
        self.check_job(call(), job)

    def do_resubmit(self, job_id: int) -> None:
        job = self.jobs.get(job_id)
        call = partial(self.q.resubmit, job_id)
        if job is None:
            self.refused(JobNotFound, call, "JobNotFound: resubmit")
            return
        if job.status not in RESUBMITTABLE:
            self.refused(InvalidTransition, call, f"InvalidTransition: resubmit {job.status}")
            return
        self.cover(f"resubmit {job.status}")
        job.set_status(State.PENDING, self.now)
        job.attempts = 0
        job.run_at = self.now
        job.cancel_requested = False
        job.result = None
        job.events.append(EventKind.RESUBMITTED)
        self.check_job(call(), job)

    def do_owner_call_without_token(self, job_id: int, op: str) -> None:
        """A copy from ``get`` carries no lease token: owner calls with it are refused."""
        if job_id not in self.jobs:
            self.refused(JobNotFound, lambda: self.q.get(job_id), "JobNotFound: get")
            return
        plain = self.q.get(job_id)
        assert plain.lease_token is None
        calls: dict[str, Callable[[], object]] = {
            "heartbeat": lambda: self.q.heartbeat(plain),
            "complete": lambda: self.q.complete(plain),
            "fail": lambda: self.q.fail(plain, "x"),
            "release": lambda: self.q.release(plain),
        }
        self.refused(LeaseLost, calls[op], "LeaseLost: a copy without a token")

    def do_owner_call_unknown_id(self, copy: Job, offset: int) -> None:
        ghost = replace(copy, id=self.last_id + offset)
        self.refused(
            JobNotFound, lambda: self.q.complete(ghost), "JobNotFound: owner call, unknown id"
        )

    def do_unknown_id(self, offset: int) -> None:
        ghost = self.last_id + offset
        self.refused(JobNotFound, lambda: self.q.cancel(ghost), "JobNotFound: unknown id")
        self.refused(JobNotFound, lambda: self.q.resubmit(ghost), "JobNotFound: unknown id")
        self.refused(JobNotFound, lambda: self.q.events(ghost), "JobNotFound: unknown id")

    # -- queues and maintenance ----------------------------------------------------------------

    def do_pause(self, name: str, paused: bool) -> None:
        call = partial(self.q.pause if paused else self.q.resume, name)
        if name not in self.queues:
            self.refused(QueueNotFound, call, "QueueNotFound: pause/resume")
            return
        assert call().paused is paused
        self.queues[name] = paused
        self.cover("pause" if paused else "resume")

    def do_create_queue(self, name: str) -> None:
        info = self.q.create_queue(name)
        self.queues.setdefault(name, False)
        assert info.paused is self.queues[name]
        self.cover("create_queue")

    def do_delete_queue(self, name: str, force: bool) -> None:
        call = partial(self.q.delete_queue, name, force=force)
        if name not in self.queues:
            self.refused(QueueNotFound, call, "QueueNotFound: delete_queue")
            return
        mine = [j for j in self.jobs.values() if j.queue == name]
        if not force and any(j.status in (State.PENDING, State.PROCESSING) for j in mine):
            self.refused(QueueNotEmpty, call, "QueueNotEmpty: delete_queue")
            return
        assert call() == len(mine)
        for job in mine:
            del self.jobs[job.id]
            self.deleted.add(job.id)
        del self.queues[name]
        self.cover("delete_queue" + (" --force" if force else ""))

    def do_purge(self, status: State, older_than: int) -> None:
        call = partial(self.q.purge, status=status, older_than=older_than)
        if status not in TERMINAL:
            self.refused(InvalidJob, call, "InvalidJob: purge of unfinished jobs")
            return
        old = [
            j
            for j in self.jobs.values()
            if j.status is status
            and j.finished_at is not None
            and j.finished_at < self.now - older_than
        ]
        assert call() == len(old)
        for job in old:
            del self.jobs[job.id]
            self.deleted.add(job.id)
        self.cover("purge" if old else "purge: nothing old enough")

    def do_advance(self, seconds: int) -> None:
        self.now = self.clock.advance(seconds)

    # -- rules ---------------------------------------------------------------------------------
    #
    # Hypothesis picks among enabled rules uniformly, so related calls share a rule: the
    # rare ones (bad ids, queue administration) do not crowd out the job's own life.

    @initialize(
        target=job_ids,
        max_attempts=st.lists(st.sampled_from([1, 2, 3]), min_size=1, max_size=4),
    )
    def some_jobs(self, max_attempts: list[int]) -> MultipleResults[int]:
        """Start with work in the default queue, whichever rules this example leaves out."""
        made = [self.do_enqueue("default", 0, 0, n, None) for n in max_attempts]
        return multiple(*(job_id for job_id in made if job_id is not None))

    @rule(
        target=job_ids,
        queue=st.sampled_from(QUEUES),
        count=st.sampled_from([1, 1, 1, 2, 3]),
        priority=st.integers(-1, 2),
        delay=st.sampled_from([0, 0, 0, 5, 15]),
        max_attempts=st.sampled_from([1, 2, 3]),
        key=st.sampled_from([None, None, "a", "b"]),
    )
    def enqueue(
        self, queue: str, count: int, priority: int, delay: int, max_attempts: int, key: str | None
    ) -> MultipleResults[int]:
        if count > 1:
            return multiple(*self.do_enqueue_many(queue, count, priority))
        new = self.do_enqueue(queue, priority, delay, max_attempts, key)
        return multiple() if new is None else multiple(new)

    @rule(
        target=leases,
        queue=st.sampled_from(CLAIM_TARGETS),
        worker=st.sampled_from(["w1", "w2"]),
        lease=st.sampled_from([None, None, 5, 20]),
    )
    def claim(
        self, queue: str | tuple[str, ...], worker: str, lease: int | None
    ) -> MultipleResults[Job]:
        return multiple(*self.do_claim(queue, worker, lease))

    # A second claim rule: hypothesis leaves random rules out of each example (swarm
    # testing), and an example without claims exercises little.
    @rule(
        target=leases,
        queue=st.sampled_from(CLAIM_TARGETS),
        worker=st.sampled_from(["w1", "w2"]),
        limit=st.integers(2, 3),
    )
    def claim_many(
        self, queue: str | tuple[str, ...], worker: str, limit: int
    ) -> MultipleResults[Job]:
        return multiple(*self.do_claim(queue, worker, None, limit))

    @rule(
        target=leases,
        copy=leases,
        queue=st.sampled_from(CLAIM_TARGETS),
        worker=st.sampled_from(["w1", "w2"]),
        limit=st.integers(1, 2),
    )
    def complete_and_claim(
        self, copy: Job, queue: str | tuple[str, ...], worker: str, limit: int
    ) -> MultipleResults[Job]:
        return multiple(*self.do_complete_and_claim(copy, queue, worker, limit))

    def act(self, copy: Job, action: str) -> MultipleResults[Job]:
        if action == "heartbeat":
            beat = self.do_heartbeat(copy)
            return multiple() if beat is None else multiple(beat)
        if action == "complete":
            self.do_complete(copy, {"by": copy.worker})
        elif action == "release":
            self.do_release(copy)
        else:
            self.do_fail(copy, action.removeprefix("fail:"))
        return multiple()

    @rule(target=leases, copy=leases, action=st.sampled_from(HOLDER_ACTIONS))
    def any_copy_acts(self, copy: Job, action: str) -> MultipleResults[Job]:
        """An owner call with any copy ever handed out (from the bundle, as it comes)."""
        return self.act(copy, action)

    @precondition(lambda self: bool(self.copies))
    @rule(target=leases, data=st.data(), action=st.sampled_from(HOLDER_ACTIONS))
    def copy_acts(self, data: st.DataObject, action: str) -> MultipleResults[Job]:
        """An owner call with a copy chosen by how it stands: held, re-claimed, expired, ...

        Drawing the standing first makes each way of holding a stale copy as likely as
        holding a live one, and lets held copies finish their jobs the ordinary way.
        """
        by_state: dict[str, list[Job]] = {}
        for copy in self.copies:
            by_state.setdefault(self.lease_state(copy), []).append(copy)
        state = data.draw(st.sampled_from(sorted(by_state)), label="lease state")
        return self.act(data.draw(st.sampled_from(by_state[state]), label="copy"), action)

    @rule()
    def recover_stalled(self) -> None:
        self.do_recover()

    @rule(seconds=st.integers(1, 25), sweep=st.sampled_from([False, False, False, True]))
    def advance_clock(self, seconds: int, sweep: bool) -> None:
        """Time passes; the sweeper may run right after (it also has a rule of its own)."""
        self.do_advance(seconds)
        if sweep:
            self.do_recover()

    def pick(self, data: st.DataObject, job_id: int) -> int:
        """``job_id`` from the bundle or, as often, a job of a state some job is in.

        Drawing the state first makes the rare states (a dead letter, a lease with a
        cancel requested) as likely targets as the common ones.
        """
        states = sorted({j.status for j in self.jobs.values()})
        if not states or not data.draw(st.booleans(), label="pick by state"):
            return job_id
        status = data.draw(st.sampled_from(states), label="state")
        ids = sorted(j.id for j in self.jobs.values() if j.status is status)
        return data.draw(st.sampled_from(ids), label="job id")

    @rule(data=st.data(), job_id=job_ids)
    def cancel(self, data: st.DataObject, job_id: int) -> None:
        self.do_cancel(self.pick(data, job_id))

    @rule(data=st.data(), job_id=job_ids)
    def resubmit(self, data: st.DataObject, job_id: int) -> None:
        self.do_resubmit(self.pick(data, job_id))

    @rule(
        data=st.data(),
        op=st.sampled_from(ADMIN_OPS),
        name=st.sampled_from(QUEUES),
        status=st.sampled_from([*TERMINAL, State.PENDING]),
        older_than=st.sampled_from([0, 5, 30]),
        offset=st.integers(1, 3),
    )
    def admin_or_bad_call(
        self, data: st.DataObject, op: str, name: str, status: State, older_than: int, offset: int
    ) -> None:
        """Queue administration, purge, and calls that must be refused (bad ids, no token)."""
        if op in ("pause", "resume"):
            self.do_pause(name, op == "pause")
        elif op == "create":
            self.do_create_queue(name)
        elif op in ("delete", "delete --force"):
            self.do_delete_queue(name, force=op.endswith("--force"))
        elif op == "purge":
            self.do_purge(status, older_than)
        elif op == "unknown id":
            self.do_unknown_id(offset)
        elif op == "no token" and self.jobs:
            job_id = data.draw(st.sampled_from(sorted(self.jobs)), label="job id")
            call = data.draw(st.sampled_from(["heartbeat", "complete", "fail", "release"]))
            self.do_owner_call_without_token(job_id, call)
        elif op == "owner call, unknown id" and self.copies:
            copy = data.draw(st.sampled_from(self.copies), label="copy")
            self.do_owner_call_unknown_id(copy, offset)

    # -- the database agrees with the model ----------------------------------------------------

    @invariant()
    def db_agrees_with_model(self) -> None:
        assert self.clock.now() == self.now
        queues = {info.name: info.paused for info in self.q.queues()}
        assert queues == self.queues
        rows = {job.id: job for job in self.q.jobs(limit=10_000)}
        assert sorted(rows) == sorted(self.jobs), "the same jobs exist"
        for job_id, want in self.jobs.items():
            got = rows[job_id]
            self.check_job(got, want)
            assert got.lease_token is None, "only claim and heartbeat hand out the token"
            db_claimable = (
                got.status is State.PENDING
                and got.run_at.timestamp() <= self.now
                and not queues[got.queue]
            )
            assert db_claimable == self.claimable(want), f"job {job_id}: claimable"
            kinds = [e.kind for e in self.q.events(job_id)]
            assert kinds == want.events, f"job {job_id}: events {kinds} != {want.events}"
        # Listing by state, one state per step (all six each step would double the run time).
        self.checks += 1
        status = list(State)[self.checks % len(State)]
        listed = {j.id for j in self.q.jobs(status=status, limit=10_000)}
        assert listed == {j.id for j in self.jobs.values() if j.status is status}, status
        for job_id in self.deleted:
            with pytest.raises(JobNotFound):
                self.q.get(job_id)
        self.check_stats()

    def check_stats(self) -> None:
        stats = self.q.stats()["queues"]
        assert sorted(stats) == sorted(self.queues)
        for name, row in stats.items():
            mine = [j for j in self.jobs.values() if j.queue == name]
            for status in State:
                assert row[str(status)] == sum(j.status is status for j in mine), (name, status)
            assert row["paused"] is self.queues[name]
            due = [j.run_at for j in mine if j.status is State.PENDING and j.run_at <= self.now]
            want_age = self.now - min(due) if due else None
            assert row["oldest_pending_age"] == want_age, name


SETTINGS = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

QueueMachine.TestCase.settings = SETTINGS
TestQueueStateMachine = QueueMachine.TestCase


class PostgresQueueMachine(QueueMachine):
    database = "postgres"


# Fewer examples: each needs a schema built on the server (tens of milliseconds).
PostgresQueueMachine.TestCase.settings = settings(SETTINGS, max_examples=40)
_PG_MISSING = pg_unavailable()
if _PG_MISSING and REQUIRE_PG:
    raise RuntimeError(_PG_MISSING + " (PERSISTQ_REQUIRE_PG is set)")
TestPostgresQueueStateMachine = pytest.mark.skipif(
    _PG_MISSING is not None, reason=_PG_MISSING or ""
)(PostgresQueueMachine.TestCase)


# -- the machine is not vacuous ---------------------------------------------------------------

#: Every transition of the SPEC, and every way a stale lease copy or a bad id is refused.
REQUIRED = {
    "enqueue",
    "enqueue: delayed",
    "enqueue: existing key",
    "enqueue_many",
    "claim",
    "claim: again",
    "claim: none due",
    "claim: only paused queues have due jobs",
    "heartbeat",
    "complete",
    "complete -> CANCELLED (cancel requested)",
    "complete_and_claim",
    "complete_and_claim: LeaseLost",
    "complete_and_claim: JobNotFound",
    "fail -> retried",
    "fail (no-retry) -> FAILED",
    "fail (retry) -> FAILED",
    "fail (unrecoverable) -> FAILED",
    "fail -> CANCELLED (cancel requested)",
    "release",
    "release -> CANCELLED (cancel requested)",
    "recover -> PENDING",
    "recover -> UNPROCESSABLE",
    "recover -> CANCELLED",
    "cancel PENDING",
    "cancel FAILED",
    "cancel UNPROCESSABLE",
    "cancel PROCESSING: requested",
    "cancel PROCESSING: asked again, nothing changes",
    "InvalidTransition: cancel COMPLETED",
    "InvalidTransition: cancel CANCELLED",
    "resubmit COMPLETED",
    "resubmit FAILED",
    "resubmit UNPROCESSABLE",
    "resubmit CANCELLED",
    "InvalidTransition: resubmit PENDING",
    "InvalidTransition: resubmit PROCESSING",
    "LeaseLost: re-claimed",
    "LeaseLost: expired, not yet swept",
    "LeaseLost: COMPLETED",
    "LeaseLost: CANCELLED",
    "LeaseLost: PENDING",
    "LeaseLost: FAILED",
    "LeaseLost: UNPROCESSABLE",
    "LeaseLost: a copy without a token",
    "LeaseLost on heartbeat",
    "LeaseLost on complete",
    "LeaseLost on fail",
    "LeaseLost on release",
    "JobNotFound: unknown id",
    "JobNotFound: owner call, unknown id",
    "JobNotFound: owner call on a deleted job",
    "JobNotFound: cancel",
    "pause",
    "resume",
    "QueueNotFound: pause/resume",
    "QueueNotEmpty: delete_queue",
    "delete_queue --force",
    "purge",
    "InvalidJob: purge of unfinished jobs",
}


def _claim_one(m: QueueMachine, queue: str = "default", lease: int | None = None) -> Job:
    got = m.do_claim(queue, "w1", lease)
    assert len(got) == 1
    return got[0]


def test_a_fixed_run_takes_every_transition_and_the_model_follows() -> None:
    """Drive the machine's own steps through every transition, checking after each one."""
    m = QueueMachine()
    try:
        steps: list[Callable[[], object]] = []

        def step(action: Callable[[], object]) -> Any:
            result = action()
            m.db_agrees_with_model()
            steps.append(action)
            return result

        def stale(copy: Job) -> None:
            """Every owner call with a copy that no longer holds the lease is refused."""
            m.do_heartbeat(copy)
            m.do_complete(copy, "late")
            m.do_fail(copy, "retry")
            m.do_fail(copy, "no-retry")
            m.do_release(copy)

        # enqueue, claim, heartbeat, complete; stale copies after completion and re-claim
        a = step(lambda: m.do_enqueue("default", 0, 0, 2, "a"))
        step(lambda: m.do_enqueue("default", 0, 0, 2, "a"))  # same key: same job
        step(lambda: m.do_enqueue("high", 1, 5, 1, None))  # delayed
        step(lambda: m.do_claim("high", "w1", None))  # nothing due yet
        first = step(lambda: _claim_one(m))
        beat = step(lambda: m.do_heartbeat(first))
        assert beat is not None
        step(lambda: m.do_resubmit(a))  # PROCESSING: refused
        step(lambda: m.do_release(first))  # back to PENDING, attempt refunded
        step(lambda: stale(first))  # LeaseLost: PENDING
        second = step(lambda: _claim_one(m))
        step(lambda: stale(first))  # LeaseLost: re-claimed
        step(lambda: m.do_complete(second, {"ok": True}))
        step(lambda: stale(second))  # LeaseLost: COMPLETED
        step(lambda: m.do_cancel(a))  # InvalidTransition: COMPLETED
        step(lambda: m.do_resubmit(a))
        step(lambda: m.do_resubmit(a))  # PENDING: refused
        # an expired lease is lost before the sweep; recovery retries, then dead-letters
        third = step(lambda: _claim_one(m))
        step(lambda: m.do_advance(LEASE - 1))
        step(lambda: m.do_recover())  # not expired yet: nothing
        step(lambda: m.do_advance(1))  # exactly at the end of the lease
        step(lambda: stale(third))  # LeaseLost: expired, not yet swept
        step(lambda: m.do_recover())  # -> PENDING
        step(lambda: stale(third))  # LeaseLost: PENDING
        fourth = step(lambda: _claim_one(m, lease=5))
        step(lambda: m.do_advance(5))
        step(lambda: m.do_recover())  # last attempt -> UNPROCESSABLE
        step(lambda: stale(fourth))  # LeaseLost: UNPROCESSABLE
        step(lambda: m.do_resubmit(a))
        step(lambda: m.do_cancel(a))  # PENDING -> CANCELLED
        step(lambda: stale(fourth))  # LeaseLost: CANCELLED
        step(lambda: m.do_cancel(a))  # CANCELLED: refused
        step(lambda: m.do_resubmit(a))
        # failures: retried, then FAILED on the last attempt; unrecoverable; no retry
        h = step(lambda: m.do_claim("high", "w2", None))  # the delayed job, due now
        step(lambda: m.do_fail(h[0], "retry"))  # max_attempts=1 -> FAILED
        step(lambda: stale(h[0]))  # LeaseLost: FAILED
        step(lambda: m.do_cancel(h[0].id))  # FAILED -> CANCELLED
        step(lambda: m.do_resubmit(h[0].id))
        step(lambda: m.do_advance(1))  # resubmitted after `a`: ordering by priority holds
        h2 = step(lambda: m.do_claim(("high", "default"), "w2", None))
        step(lambda: m.do_fail(h2[0], "unrecoverable"))
        step(lambda: m.do_resubmit(h2[0].id))  # FAILED -> PENDING
        a5 = step(lambda: _claim_one(m))
        step(lambda: m.do_fail(a5, "exception"))  # -> retried
        a6 = step(lambda: _claim_one(m))
        step(lambda: m.do_fail(a6, "no-retry"))
        # UNPROCESSABLE by hand
        u = step(lambda: m.do_enqueue("default", 0, 0, 1, None))
        u1 = step(lambda: _claim_one(m))
        assert u1.id == u
        step(lambda: m.do_advance(LEASE + 1))
        step(lambda: m.do_recover())
        step(lambda: m.do_resubmit(u))
        step(lambda: m.do_cancel(a))  # FAILED -> CANCELLED
        step(lambda: m.do_resubmit(a))
        u2 = step(lambda: _claim_one(m))
        assert u2.id == a  # older id first at equal priority
        step(lambda: m.do_cancel(a))  # PROCESSING -> requested
        step(lambda: m.do_cancel(a))  # asked again
        step(lambda: m.do_complete(u2, [1]))  # -> CANCELLED
        step(lambda: m.do_resubmit(a))
        u3 = step(lambda: _claim_one(m))
        assert u3.id == a
        step(lambda: m.do_cancel(a))
        step(lambda: m.do_fail(u3, "retry"))  # -> CANCELLED
        step(lambda: m.do_resubmit(a))
        u4 = step(lambda: _claim_one(m))
        step(lambda: m.do_cancel(a))
        step(lambda: m.do_release(u4))  # -> CANCELLED
        step(lambda: m.do_resubmit(a))
        step(lambda: _claim_one(m))
        step(lambda: m.do_cancel(a))
        step(lambda: m.do_advance(LEASE))
        step(lambda: m.do_recover())  # -> CANCELLED
        step(lambda: m.do_cancel(a))  # CANCELLED: refused
        # the UNPROCESSABLE job
        u6 = step(lambda: _claim_one(m))
        assert u6.id == u
        step(lambda: m.do_advance(LEASE))
        step(lambda: m.do_recover())
        step(lambda: m.do_cancel(u))  # UNPROCESSABLE -> CANCELLED
        step(lambda: m.do_resubmit(u))
        step(lambda: m.do_advance(1))
        u7 = step(lambda: _claim_one(m))
        step(lambda: m.do_advance(LEASE))
        step(lambda: m.do_recover())
        step(lambda: m.do_resubmit(u))  # UNPROCESSABLE -> PENDING
        # copies without a token, unknown ids
        for op in ("heartbeat", "complete", "fail", "release"):
            step(lambda op=op: m.do_owner_call_without_token(u, op))  # type: ignore[misc]
        step(lambda: m.do_owner_call_unknown_id(u7, 1))
        step(lambda: m.do_unknown_id(2))
        # queues: paused ones claim nothing; delete refuses unfinished jobs unless forced
        step(lambda: m.do_pause("low", True))  # unknown queue
        step(lambda: m.do_enqueue_many("low", 2, 0))
        step(lambda: m.do_enqueue("low", 2, 0, 3, None))
        step(lambda: m.do_enqueue("low", 1, 0, 3, None))
        step(lambda: m.do_pause("low", True))
        step(lambda: m.do_claim("low", "w1", None))  # paused: nothing
        step(lambda: m.do_create_queue("low"))
        step(lambda: m.do_pause("low", False))
        lows = step(lambda: m.do_claim(("low", "default"), "w1", None, 2))
        assert len(lows) == 2
        step(lambda: m.do_complete_and_claim(lows[0], "low", "w1", 1))  # and the next low job
        step(lambda: m.do_complete_and_claim(lows[0], "low", "w1", 1))  # LeaseLost; the last
        step(lambda: m.do_delete_queue("low", False))  # unfinished: refused
        step(lambda: m.do_delete_queue("low", True))
        step(lambda: m.do_complete(lows[0], None))  # JobNotFound: deleted
        step(lambda: m.do_complete_and_claim(lows[1], "low", "w1", 1))  # JobNotFound; none
        step(lambda: m.do_cancel(lows[1].id))  # JobNotFound
        # purge
        step(lambda: m.do_advance(40))
        step(lambda: m.do_purge(State.PENDING, 0))  # refused
        step(lambda: m.do_purge(State.UNPROCESSABLE, 30))  # u was resubmitted: none
        step(lambda: m.do_purge(State.CANCELLED, 30))  # `a`, cancelled long ago
        missing = REQUIRED - m.covered
        assert not missing, f"not covered: {sorted(missing)}"
        assert len(steps) > 90
    finally:
        m.teardown()
