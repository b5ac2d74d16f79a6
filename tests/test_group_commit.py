"""Group commit (issue 14): concurrent writes of one process share one commit, and each
call still gets exactly its own answer. SQLite groups every write into one transaction;
PostgreSQL groups enqueues into one statement and completions into another.

A group is made to form for real: another connection (as another process would) holds
what the writes need (SQLite's write lock; PostgreSQL's jobs table, locked against writes)
while a first call waits on it as the leader; the calls under test are then started one at a
time, each only once the one before it is queued, so they make up the next group, in a
known order. Releasing the lock lets the leader commit and hand over to that group, which
``backend.group_sizes`` shows committed as one.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import persistq
from group_support import (
    POISON,
    Answer,
    answer_into,
    backend_of,
    groups_of,
    one_group,
    poison,
    poison_payloads,
    raw_pg,
    wait_until,
    writes_held,
)
from persistq import InvalidTransition, Job, LeaseLost, Queue, State
from persistq.backends.group import Call, Groups
from persistq.backends.sqlite import parse_sqlite_url
from persistq.errors import StorageError, StorageReplaced, StorageUnavailable


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "queue.db"


@pytest.fixture
def q(path: Path) -> Iterator[Queue]:
    with persistq.connect(f"sqlite:///{path}") as queue:
        yield queue


@pytest.fixture
def any_q(backend_url: str) -> Iterator[Queue]:
    """A queue on each backend (a fresh SQLite file, a fresh PostgreSQL schema)."""
    with persistq.connect(backend_url) as queue:
        yield queue


def test_a_bad_enqueue_fails_alone_and_its_fifteen_neighbours_commit(any_q: Queue) -> None:
    q = any_q
    poison(q)
    payloads: list[Any] = [{"n": n} for n in range(15)]
    payloads.insert(7, {"n": POISON})
    calls = [
        # the poisoned one names a queue of its own: its ensure_queue must be undone too
        lambda p=p: q.enqueue(p, queue="bad" if p["n"] == POISON else "good")
        for p in payloads
    ]
    grouped = one_group(q, calls)
    errors = [a.error for a in grouped.answers]
    assert isinstance(errors[7], StorageError) and "poisoned payload" in str(errors[7])
    assert all(e is None for n, e in enumerate(errors) if n != 7), errors
    jobs = {j.id: j for j in q.jobs(queue="good", limit=100)}
    answered = [a.result for n, a in enumerate(grouped.answers) if n != 7]
    assert sorted(jobs) == sorted(j.id for j in answered)
    assert [jobs[j.id].payload for j in answered] == [{"n": n} for n in range(15)]
    assert all([e.kind for e in q.events(j.id)] == ["enqueued"] for j in answered)
    assert "bad" not in [info.name for info in q.queues()]
    assert not q.jobs(queue="bad")


def test_a_stale_complete_fails_alone_and_changes_nothing(any_q: Queue) -> None:
    q = any_q
    for n in range(17):
        q.enqueue(n)
    *held, leading = q.claim_many(worker="w", limit=17)
    stale = held[5]
    q.release(stale)
    again = q.claim(worker="w2")
    assert again is not None and again.id == stale.id
    events_before = q.events(stale.id)
    calls = [lambda j=j: q.complete(j, result=j.payload) for j in held]
    grouped = one_group(q, calls, kind="complete", lead=lambda: q.complete(leading))
    for n, (job, answer) in enumerate(zip(held, grouped.answers, strict=True)):
        if n == 5:
            assert isinstance(answer.error, LeaseLost), answer
            assert answer.error.job_id == job.id
        else:
            assert answer.error is None, answer
            assert answer.result.status is State.COMPLETED
            assert q.get(job.id).status is State.COMPLETED
    now = q.get(stale.id)
    assert (now.status, now.worker, now.attempts) == (State.PROCESSING, "w2", 1)
    assert q.events(stale.id) == events_before
    assert q.complete(again).status is State.COMPLETED  # the live lease still works


def test_mixed_calls_in_one_group_each_get_their_own_answer(q: Queue, path: Path) -> None:
    poison_payloads(path)
    done = q.enqueue("done")
    claimed = q.claim(worker="w")
    assert claimed is not None
    q.complete(claimed)
    pending = q.enqueue("pending")
    calls: list[Callable[[], Any]] = [
        lambda: q.enqueue("a", key="k"),
        lambda: q.resubmit(pending.id),  # PENDING: InvalidTransition
        lambda: q.enqueue("b", key="k"),  # the key taken two calls ago, in this group
        lambda: q.cancel(done.id),  # COMPLETED: InvalidTransition
        lambda: q.enqueue(POISON),
        lambda: q.claim(worker="w3"),
        lambda: q.resubmit(done.id),
    ]
    answers = one_group(q, calls).answers
    first, second = answers[0].result, answers[2].result
    assert second.id == first.id and second.payload == "a"
    assert isinstance(answers[1].error, InvalidTransition)
    assert isinstance(answers[3].error, InvalidTransition)
    assert answers[3].error.current == State.COMPLETED
    assert isinstance(answers[4].error, StorageError)
    assert answers[5].result.id == pending.id  # the oldest pending job
    assert answers[6].result.status is State.PENDING
    assert [j.payload for j in q.jobs(queue="default", limit=100)].count(POISON) == 0


def test_a_group_whose_file_was_replaced_fails_every_caller(q: Queue, path: Path) -> None:
    q.enqueue("before")

    def delete() -> None:
        for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            name.unlink(missing_ok=True)

    answers = one_group(q, [lambda n=n: q.enqueue(n) for n in range(8)], delete).answers
    assert all(isinstance(a.error, StorageReplaced) for a in answers), answers
    assert len({id(a.error) for a in answers}) == 8  # each caller raises its own copy


def with_option(url: str, option: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{option}"


def test_group_commit_off_commits_each_call_alone(backend_url: str) -> None:
    url = with_option(backend_url, "group_commit=off")
    if url.startswith("sqlite"):
        assert parse_sqlite_url(url).group_commit is False
        assert parse_sqlite_url(backend_url).group_commit is True
    else:  # libpq never sees the option
        from persistq.backends.postgres import parse_postgres_url

        assert "group_commit" not in parse_postgres_url(url)[0]
    with persistq.connect(url) as q:

        def work() -> None:
            for n in range(20):
                q.enqueue(n)
                while (job := q.claim(worker="w")) is not None:
                    q.complete(job)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert set(q.backend.group_sizes) == {1}  # type: ignore[attr-defined]
        assert q.stats()["queues"]["default"]["COMPLETED"] == 160
    with pytest.raises(StorageUnavailable, match="group_commit='sometimes'"):
        persistq.connect(with_option(backend_url, "group_commit=sometimes"))


def test_a_lone_caller_runs_alone_and_gets_its_own_answers(any_q: Queue) -> None:
    """No one else writing: every call is a group of one, run at once by its own caller (on
    PostgreSQL the one-call statements), with the same precise errors."""
    q = any_q
    for n in range(5):
        q.enqueue(n)
        job = q.claim(worker="w")
        assert job is not None
        assert q.complete(job, result=n).status is State.COMPLETED
        with pytest.raises(LeaseLost) as lost:
            q.complete(job)
        assert lost.value.job_id == job.id
    assert set(q.backend.group_sizes) == {1}  # type: ignore[attr-defined]
    assert not groups_of(q).leading and not groups_of(q, "complete").leading
    assert [j.result for j in q.jobs(limit=10)] == [4, 3, 2, 1, 0]


def test_concurrent_writers_form_groups_and_lose_nothing(any_q: Queue) -> None:
    """No lock trick: 16 threads enqueueing and settling at once group by themselves."""
    q = any_q

    def work(t: int) -> None:
        for n in range(25):
            q.enqueue({"t": t, "n": n})
            job = q.claim(worker=f"w{t}")
            if job is not None:
                q.complete(job)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sizes = q.backend.group_sizes  # type: ignore[attr-defined]
    print("group sizes:", dict(sorted(sizes.items())))
    assert max(sizes) > 1
    jobs = q.jobs(limit=1000)
    assert len(jobs) == 400
    assert sorted((j.payload["t"], j.payload["n"]) for j in jobs) == sorted(
        (t, n) for t in range(16) for n in range(25)
    )
    assert q.stats()["queues"]["default"]["COMPLETED"] == 400 - len(
        [j for j in jobs if j.status is State.PENDING]
    )


# -- concurrent calls against a model of the state machine --------------------------------


@dataclass
class ModelJob:
    status: State = State.PENDING
    token: str | None = None
    cancel_requested: bool = False
    key: str | None = None


OPS = st.one_of(
    st.tuples(st.just("enqueue"), st.sampled_from([None, None, "k1", "k2", POISON])),
    st.tuples(st.just("claim"), st.just(0)),
    st.tuples(st.sampled_from(["complete", "fail", "release", "heartbeat"]), st.integers(0, 30)),
    st.tuples(st.sampled_from(["cancel", "resubmit"]), st.integers(0, 30)),
)


class GroupModel:
    """The SPEC's transitions for the calls drawn, applied in the group's order."""

    def __init__(self) -> None:
        self.jobs: dict[int, ModelJob] = {}
        self.copies: list[Job] = []  # every lease copy handed out, stale ones too

    def plan(self, q: Queue, op: str, arg: Any) -> tuple[Callable[[], Any], Any] | None:
        """The call for ``op`` on the state before the group, and what it targets (a claim
        made in a group hands out its copy to the next groups)."""
        if op == "enqueue":
            return lambda: q.enqueue(arg or "x", key=arg if arg != POISON else None), arg
        if op == "claim":
            return lambda: q.claim(worker="w"), None
        if op in ("complete", "fail", "release", "heartbeat"):
            if not self.copies:
                return None
            copy = self.copies[arg % len(self.copies)]
            calls: dict[str, Callable[[], Any]] = {
                "complete": lambda: q.complete(copy),
                "fail": lambda: q.fail(copy, "no", retry=False),
                "release": lambda: q.release(copy),
                "heartbeat": lambda: q.heartbeat(copy),
            }
            return calls[op], copy
        if not self.jobs:
            return None
        job_id = sorted(self.jobs)[arg % len(self.jobs)]
        if op == "cancel":
            return lambda: q.cancel(job_id), job_id
        return lambda: q.resubmit(job_id), job_id

    def expect(self, op: str, target: Any, answer: Answer) -> None:
        """Check ``answer`` against the model, then apply it."""
        got, error = answer.result, answer.error
        if op == "enqueue":
            if target == POISON:
                assert isinstance(error, StorageError), answer
                return
            assert error is None, answer
            existing = [i for i, j in self.jobs.items() if target is not None and j.key == target]
            if existing:
                assert got.id == existing[0]
            else:
                assert got.id not in self.jobs
                self.jobs[got.id] = ModelJob(key=target)
            return
        if op == "claim":
            assert error is None, answer
            due = sorted(i for i, j in self.jobs.items() if j.status is State.PENDING)
            if not due:
                assert got is None
                return
            assert got.id == due[0]
            job = self.jobs[got.id]
            job.status, job.token = State.PROCESSING, got.lease_token
            self.copies.append(got)
            return
        if op in ("complete", "fail", "release", "heartbeat"):
            job = self.jobs[target.id]
            if job.status is not State.PROCESSING or job.token != target.lease_token:
                assert isinstance(error, LeaseLost), answer
                return
            assert error is None, answer
            after = {
                "complete": State.COMPLETED,
                "fail": State.FAILED,
                "release": State.PENDING,
                "heartbeat": State.PROCESSING,
            }[op]
            if after is not State.PROCESSING:
                if job.cancel_requested:  # the holder let go of a job asked to cancel
                    after = State.CANCELLED
                job.status, job.token = after, None
            assert got.status is after, (op, got, after)
            return
        job = self.jobs[target]
        if op == "cancel":
            if job.status in (State.COMPLETED, State.CANCELLED):
                assert isinstance(error, InvalidTransition), answer
            elif job.status is State.PROCESSING:
                assert error is None and got.cancel_requested, answer
                job.cancel_requested = True
            else:
                assert error is None and got.status is State.CANCELLED, answer
                job.status = State.CANCELLED
            return
        if job.status in (State.PENDING, State.PROCESSING):
            assert isinstance(error, InvalidTransition), answer
        else:
            assert error is None and got.status is State.PENDING, answer
            job.status, job.cancel_requested = State.PENDING, False


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(groups=st.lists(st.lists(OPS, min_size=2, max_size=10), min_size=1, max_size=4))
def test_concurrent_groups_agree_with_the_model(tmp_path: Path, groups: list[Any]) -> None:
    folder = Path(tempfile_dir(tmp_path))
    path = folder / "queue.db"
    with persistq.connect(f"sqlite:///{path}") as q:
        poison_payloads(path)
        model = GroupModel()
        for ops in groups:
            # the model is applied in the group's order, so each call is built from the
            # state before the group (a claim's copy is usable from the next group on)
            planned = [(op, model.plan(q, op, arg)) for op, arg in ops]
            calls = [(op, plan) for op, plan in planned if plan is not None]
            if len(calls) < 2:
                continue
            answers = one_group(q, [call for _, (call, _) in calls]).answers
            for (op, (_, target)), answer in zip(calls, answers, strict=True):
                model.expect(op, target, answer)
            for job_id, job in model.jobs.items():
                stored = q.get(job_id)
                assert stored.status is job.status, (job_id, stored, job)
                assert stored.cancel_requested == job.cancel_requested


_examples = iter(range(10**9))


def tempfile_dir(tmp_path: Path) -> Path:
    """A fresh directory per hypothesis example (tmp_path is one per test)."""
    folder = tmp_path / f"example-{next(_examples)}"
    folder.mkdir()
    return folder


def test_a_child_forked_while_a_group_waits_writes_on_its_own(q: Queue, path: Path) -> None:
    """At the fork another thread leads a group (it waits for the backend's lock, which this
    test's thread holds): the child has no such thread, so it must start with no leader and
    its own connection. The leader waits in persistq's code, not inside SQLite: a fork while a
    thread is inside SQLite leaves SQLite's own process-wide lock records half-copied (its
    "how to corrupt" guide, 2.6), which no library above it can undo; this test is about
    persistq's groups and locks, and failed now and then under load while the leader waited
    inside SQLite's busy handler."""
    backend = backend_of(q)
    q.stats()  # the parent has its connection open before the fork, as a running process does
    backend._lock.acquire()
    leader = threading.Thread(target=lambda: q.enqueue("parent"))
    leader.start()
    wait_until(lambda: backend._groups.leading, "the parent's leader waits")
    pid = os.fork()
    if pid == 0:  # the child: enqueue once the lock is free, then leave without cleanup
        code = 1
        try:
            q.enqueue("child")
            code = 0
        finally:
            os._exit(code)
    backend._lock.release()
    leader.join(30)
    deadline = time.monotonic() + 30
    while (done := os.waitpid(pid, os.WNOHANG)) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError("the child hung: it waited for the parent's leader")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(done[1]) == 0
    assert sorted(j.payload for j in q.jobs()) == ["child", "parent"]
    q.enqueue("after")  # the parent's own groups go on
    assert len(q.jobs()) == 3


def cut_off_the_one_blocked_by(holder: Any, watcher: Any) -> None:
    """Wait until one statement waits on a lock ``holder`` holds, then cut its connection
    (``watcher``: a connection of its own, to look and to terminate)."""

    def blocked() -> list[int]:
        rows = watcher.execute(
            "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
            (holder.info.backend_pid,),
        ).fetchall()
        return [pid for (pid,) in rows]

    wait_until(lambda: len(blocked()) == 1, "one statement waits on the lock")
    watcher.execute("SELECT pg_terminate_backend(%s)", (blocked()[0],))


def test_a_group_cut_off_mid_statement_is_every_callers_unknown_outcome(pg_url: str) -> None:
    """PostgreSQL ends the connection while a group's statement waits on a lock: no caller
    can tell whether its jobs were written, so each gets StorageUnavailable saying so (its
    own copy), and none is run again behind its back; the statement never committed."""
    with persistq.connect(pg_url) as q:
        groups = groups_of(q)
        holder, watcher = raw_pg(pg_url), raw_pg(pg_url)
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE jobs IN EXCLUSIVE MODE")

        leader, answers = Answer(), [Answer() for _ in range(6)]
        threads = [threading.Thread(target=answer_into, args=(lambda: q.enqueue("lead"), leader))]
        threads[0].start()
        wait_until(lambda: groups.leading and not groups.queued, "the leader waits")
        for n, answer in enumerate(answers):
            enqueue = functools.partial(q.enqueue, f"grouped-{n}")
            threads.append(threading.Thread(target=answer_into, args=(enqueue, answer)))
            threads[-1].start()
            wait_until(lambda n=n: len(groups.queued) == n + 1, f"call {n} is queued")
        cut_off_the_one_blocked_by(holder, watcher)  # the leader's own statement: its call alone
        wait_until(lambda: not groups.queued, "the group's statement went out")
        cut_off_the_one_blocked_by(holder, watcher)  # the group's
        holder.execute("ROLLBACK")
        for thread in threads:
            thread.join(30)
        holder.close()
        watcher.close()
        assert isinstance(leader.error, StorageUnavailable), leader
        for answer in [leader, *answers]:
            assert isinstance(answer.error, StorageUnavailable), answer
            assert "outcome is unknown" in str(answer.error)
        assert len({id(a.error) for a in answers}) == len(answers)
        assert groups.sizes[len(answers)] == 1
        assert q.jobs() == []  # cut off before its commit: nothing was written
        assert q.enqueue("after").payload == "after"  # the pool hands out live connections


def test_a_group_of_plain_enqueues_inserts_all_their_jobs_with_one_statement(
    q: Queue,
) -> None:
    """SQLite: the enqueues (no key) of a group go in with one executemany, under one
    savepoint, not a savepoint and two statements each; each caller gets its own jobs."""
    statements: list[str] = []
    q.backend._connection().set_trace_callback(statements.append)  # type: ignore[attr-defined]
    calls: list[Callable[[], Any]] = [
        lambda n=n: q.enqueue({"n": n}, queue=f"q{n % 3}") for n in range(12)
    ]
    calls.insert(4, lambda: q.enqueue_many([{"many": m} for m in range(5)], queue="m"))
    grouped = one_group(q, calls)
    assert [a.error for a in grouped.answers] == [None] * 13
    grouped_part = statements[statements.index("SAVEPOINT inserts") :]
    assert not [s for s in grouped_part if s.startswith(("SAVEPOINT call", "ROLLBACK"))]
    answers = [a.result for a in grouped.answers]
    many = answers.pop(4)
    assert [j.payload for j in many] == [{"many": m} for m in range(5)]
    assert [(j.payload, j.queue) for j in answers] == [({"n": n}, f"q{n % 3}") for n in range(12)]
    every = answers + many
    assert len({j.id for j in every}) == 17
    for job in every:
        assert q.get(job.id) == job


def test_a_waiting_caller_interrupted_by_ctrl_c_leaves_the_queue_and_blocks_no_one(
    q: Queue,
) -> None:
    """The main thread waits behind a leader and gets KeyboardInterrupt (SIGINT): it
    leaves the queue, its job is not stored, and the calls queued after it are answered."""
    groups = groups_of(q)
    results: dict[str, Any] = {}

    def enqueue(name: str) -> None:
        results[name] = q.enqueue(name)

    with writes_held(q) as release:
        leader = threading.Thread(target=enqueue, args=("leader",))
        leader.start()
        wait_until(lambda: groups.leading, "the leader leads")
        main_thread = threading.get_ident()

        def waiting_in_call_wait() -> bool:  # inside the try that handles the interrupt
            frame = sys._current_frames().get(main_thread)
            return frame is not None and frame.f_code.co_qualname == "Call.wait"

        interrupter = threading.Thread(
            target=lambda: (
                wait_until(waiting_in_call_wait, "main waits behind the leader"),
                signal.pthread_kill(main_thread, signal.SIGINT),
            )
        )
        interrupter.start()
        with pytest.raises(KeyboardInterrupt):
            q.enqueue("interrupted")
        interrupter.join()
        assert list(groups.queued) == []
        after = threading.Thread(target=enqueue, args=("after",))
        after.start()
        wait_until(lambda: len(groups.queued) == 1, "the next call is queued")
        release()
    leader.join(20)
    after.join(20)
    assert not after.is_alive(), "the call queued after the interrupted one was never answered"
    assert sorted(j.payload for j in q.jobs()) == ["after", "leader"]


def test_an_interrupted_caller_handed_the_lead_passes_it_on() -> None:
    """The race the test above cannot time: the lead reached the caller just as it was
    interrupted. It hands the lead to the next queued call, or leaves no one leading."""
    groups: Groups[None] = Groups(lambda group: None, 8)
    waiting = [Call(None), Call(None)]
    for call in waiting:
        call.ready = threading.Lock()
        call.ready.acquire()
        groups.queued.append(call)
    groups.leading = True
    waiting[0].wake()  # handed the lead (_hand_over); its caller is interrupted before it runs
    groups._give_up(waiting[0])
    assert list(groups.queued) == [waiting[1]]
    assert waiting[1].ready is not None and not waiting[1].ready.locked()  # woken: it leads
    groups._give_up(waiting[1])  # interrupted too, just as the lead reached it
    assert list(groups.queued) == [] and not groups.leading


def test_a_claim_cut_off_mid_statement_is_sent_again_and_claims_the_job(pg_url: str) -> None:
    """A claim is the one write retried after it was sent (at worst a job stays leased to
    no one until its lease expires): cut off while it waits on a lock, it goes out again on
    another connection and claims the job; a completion cut off the same way is not sent
    again, its outcome unknown."""
    with persistq.connect(pg_url) as q:
        job = q.enqueue("the job")
        holder, watcher = raw_pg(pg_url), raw_pg(pg_url)

        holder.execute("BEGIN")
        holder.execute("LOCK TABLE jobs IN EXCLUSIVE MODE")
        claimed = Answer()
        thread = threading.Thread(target=answer_into, args=(lambda: q.claim(worker="w"), claimed))
        thread.start()
        cut_off_the_one_blocked_by(holder, watcher)
        holder.execute("ROLLBACK")
        thread.join(30)
        assert claimed.error is None, claimed
        assert claimed.result is not None and claimed.result.id == job.id

        holder.execute("BEGIN")
        holder.execute("LOCK TABLE jobs IN EXCLUSIVE MODE")
        completed = Answer()
        thread = threading.Thread(
            target=answer_into, args=(lambda: q.complete(claimed.result), completed)
        )
        thread.start()
        cut_off_the_one_blocked_by(holder, watcher)
        holder.execute("ROLLBACK")
        thread.join(30)
        holder.close()
        watcher.close()
        assert isinstance(completed.error, StorageUnavailable), completed
        assert "outcome is unknown" in str(completed.error)
        assert q.get(job.id).status == State.PROCESSING  # cut off before its commit
