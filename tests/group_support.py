"""Making a group commit form on purpose, on either backend (tests/test_group_commit.py,
and tests/test_sql.py for the statements only a group runs).

Another connection (as another process would) holds what the writes need (SQLite's write
lock; PostgreSQL's jobs table, locked against writes) while a first call waits on it as the
leader; the calls under test are then started one at a time, each only once the one before
it is queued, so they make up the next group, in a known order.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from persistq import Queue
from persistq.backends.group import Groups
from persistq.backends.sqlite import SQLiteBackend

POISON = "poison"


def backend_of(q: Queue) -> SQLiteBackend:
    backend = q.backend
    assert isinstance(backend, SQLiteBackend)
    return backend


def groups_of(q: Queue, kind: str = "enqueue") -> Groups[Any]:
    """The groups a call of ``kind`` (enqueue, complete) joins: SQLite has one for all."""
    backend = q.backend
    if isinstance(backend, SQLiteBackend):
        return backend._groups
    from persistq.backends.postgres import PostgresBackend  # psycopg: the postgres extra

    assert isinstance(backend, PostgresBackend)
    return {"enqueue": backend._enqueues, "complete": backend._completes}[kind]


def raw_pg(url: str) -> Any:
    """A bare psycopg connection to the queue's own schema."""
    import psycopg

    from persistq.backends.postgres import parse_postgres_url

    conninfo, schema = parse_postgres_url(url)
    return psycopg.connect(conninfo, autocommit=True, options=f"-c search_path={schema}")


def poison_payloads(path: Path) -> None:
    """A payload the database itself refuses (Python validation lets it through)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        f"CREATE TRIGGER poison BEFORE INSERT ON jobs WHEN NEW.payload LIKE '%{POISON}%' "
        "BEGIN SELECT RAISE(ABORT, 'poisoned payload'); END"
    )
    conn.close()


def poison(q: Queue) -> None:
    """poison_payloads on either backend (PostgreSQL: a trigger function that raises)."""
    if isinstance(q.backend, SQLiteBackend):
        poison_payloads(q.backend.path)
        return
    with raw_pg(q.backend.url) as pg:
        pg.execute(
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.payload LIKE '%{POISON}%' THEN RAISE EXCEPTION 'poisoned payload'; "
            "END IF; RETURN NEW; END $$"
        )
        pg.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION poison()"
        )


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.001)


@dataclass
class Answer:
    result: Any = None
    error: BaseException | None = None


def answer_into(call: Callable[[], Any], answer: Answer) -> None:
    """``call()``'s result or error in ``answer`` (a thread's target)."""
    try:
        answer.result = call()
    except BaseException as exc:
        answer.error = exc


@dataclass
class Grouped:
    """What ``one_group`` ran: each call's answer, in the order given."""

    answers: list[Answer] = field(default_factory=list)


@contextmanager
def lock_held(path: Path) -> Iterator[Callable[[], None]]:
    """Another connection's write lock on ``path``; yields its release."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    with _rolled_back(holder) as release:
        yield release


@contextmanager
def writes_held(q: Queue) -> Iterator[Callable[[], None]]:
    """lock_held on either backend: on PostgreSQL another session's EXCLUSIVE lock on jobs
    (reads go on; every insert into or update of jobs waits for it). Yields its release."""
    if isinstance(q.backend, SQLiteBackend):
        with lock_held(q.backend.path) as release:
            yield release
        return
    holder = raw_pg(q.backend.url)
    holder.execute("BEGIN")
    holder.execute("LOCK TABLE jobs IN EXCLUSIVE MODE")
    with _rolled_back(holder) as release:
        yield release


@contextmanager
def _rolled_back(holder: Any) -> Iterator[Callable[[], None]]:
    """Yields the release of ``holder``'s open transaction (a rollback, once); closes it."""
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            holder.execute("ROLLBACK")
            released = True

    try:
        yield release
    finally:
        release()
        holder.close()


def one_group(
    q: Queue,
    calls: Sequence[Callable[[], Any]],
    between: Callable[[], None] | None = None,
    *,
    kind: str = "enqueue",
    lead: Callable[[], Any] | None = None,
) -> Grouped:
    """Run ``calls`` (of ``kind``) from threads of their own as one group commit, in this
    order, behind ``lead`` (of the same kind; default: an enqueue)."""
    groups = groups_of(q, kind)
    before = groups.sizes[len(calls)]
    grouped = Grouped([Answer() for _ in calls])

    leader = Answer()
    first = lead or (lambda: q.enqueue("lead", queue="lead"))
    with writes_held(q) as release:
        threads = [threading.Thread(target=answer_into, args=(first, leader))]
        threads[0].start()
        wait_until(lambda: groups.leading and not groups.queued, "the leader waits")
        for n, (call, answer) in enumerate(zip(calls, grouped.answers, strict=True)):
            thread = threading.Thread(target=answer_into, args=(call, answer))
            thread.start()
            threads.append(thread)
            wait_until(lambda n=n: len(groups.queued) == n + 1, f"call {n} is queued")
        if between is not None:
            between()
        release()
        for thread in threads:
            thread.join(30)
    if leader.error is None:  # else the group failed too; the test looks at the answers
        assert groups.sizes[len(calls)] == before + 1, groups.sizes
    return grouped
