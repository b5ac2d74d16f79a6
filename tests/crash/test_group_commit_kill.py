"""SIGKILL during group commits (issue 14): a call that returned is durable, whatever group
it was committed in, and a call that failed left nothing.

Each round a child process runs 16 threads on one ``Queue``: they enqueue, claim and
complete, and now and then enqueue a payload the database refuses (a trigger), so that
calls fail inside groups of good ones. After each call returns (or raises) the thread
writes one line with ``os.write`` (no buffer: a line in the file means the call had
returned before the kill). The parent SIGKILLs the child at a random moment, 20 rounds on
one database (on PostgreSQL each round also waits for the server to end the child's
sessions, see wait_sessions_ended), then checks every line
against the database: every returned enqueue is stored once, every returned claim holds its
token (or completed, if its completion returned), every returned completion is COMPLETED,
every refused enqueue is absent; no payload is stored twice.

The child is this file run as a script: ``python test_group_commit_kill.py URL ROUND``. It
starts (its imports, half a second of a round) while the round before it runs, and opens the
queue only when the parent writes ``go`` on its stdin, once that round's child is dead.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import persistq
from persistq import Queue, State
from persistq.errors import StorageError

pytestmark = pytest.mark.slow

ROUNDS = 20
THREADS = 16
POISON = "poison"
TIMEOUT_SECONDS = 60.0


# -- the child ---------------------------------------------------------------------------------


def child(url: str, round_: str) -> None:
    if sys.stdin.readline() != "go\n":  # the parent ended the run before this round
        return
    q = persistq.connect(url)
    backend = q.backend

    def log(*words: object) -> None:
        os.write(1, (" ".join(str(w) for w in words) + "\n").encode())

    def run(t: int) -> None:
        rng = random.Random(f"{round_}-{t}")
        held = []
        for n in range(10**9):
            choice = rng.random()
            if choice < 0.05:
                try:
                    q.enqueue({"r": round_, "t": t, "n": n, "p": POISON})
                except StorageError:
                    log("refused", round_, t, n)
                else:
                    log("accepted-poison", round_, t, n)  # the test fails on this
            elif choice < 0.55:
                job = q.enqueue({"r": round_, "t": t, "n": n})
                log("enqueued", job.id, round_, t, n)
            elif choice < 0.75 or not held:
                job = q.claim(worker=f"w{round_}-{t}")
                if job is not None:
                    log("claimed", job.id, job.lease_token)
                    held.append(job)
            else:
                job = held.pop(rng.randrange(len(held)))
                q.complete(job, result=n)
                log("completed", job.id, n)

    threads = [threading.Thread(target=run, args=(t,), daemon=True) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    log("ready")
    while True:  # the group sizes so far, for the report
        time.sleep(0.1)
        sizes = getattr(backend, "group_sizes", {})
        log("groups", *(f"{size}:{n}" for size, n in sorted(sizes.items())))


if __name__ == "__main__":
    child(sys.argv[1], sys.argv[2])
    raise SystemExit(0)


# -- the parent --------------------------------------------------------------------------------


def sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///").partition("?")[0]


def raw_pg(url: str) -> Any:
    """A bare psycopg connection to the queue's own schema (the URL's ``?schema=``)."""
    import psycopg

    from persistq.backends.postgres import parse_postgres_url

    conninfo, schema = parse_postgres_url(url)
    return psycopg.connect(conninfo, autocommit=True, options=f"-c search_path={schema}")


def add_poison_trigger(url: str) -> None:
    """The database refuses payloads naming POISON (a statement error, not Python's)."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(sqlite_path(url), isolation_level=None)
        conn.execute(
            f"CREATE TRIGGER poison BEFORE INSERT ON jobs WHEN NEW.payload LIKE '%{POISON}%' "
            "BEGIN SELECT RAISE(ABORT, 'poisoned payload'); END"
        )
        conn.close()
        return
    with raw_pg(url) as pg:
        pg.execute(
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.payload LIKE '%{POISON}%' THEN RAISE EXCEPTION 'poisoned payload'; "
            "END IF; RETURN NEW; END $$"
        )
        pg.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION poison()"
        )


def lease_tokens(url: str) -> dict[int, str]:
    """The lease token of every PROCESSING job (the library hands them only to holders)."""
    query = "SELECT id, lease_token FROM jobs WHERE status = 'PROCESSING'"
    if url.startswith("sqlite"):
        conn = sqlite3.connect(sqlite_path(url))
        try:
            return dict(conn.execute(query))
        finally:
            conn.close()
    with raw_pg(url) as pg:
        return dict(pg.execute(query).fetchall())


def child_url(url: str, round_: int) -> str:
    """The child's URL: on PostgreSQL its sessions carry a name, for wait_sessions_ended."""
    if url.startswith("sqlite"):
        return url
    return f"{url}&application_name={session_name(url, round_)}"


def session_name(url: str, round_: int) -> str:
    """Unique on the server: other runs of this test may kill their children meanwhile."""
    from persistq.backends.postgres import parse_postgres_url

    return f"kill_{parse_postgres_url(url)[1]}_{round_}"


def wait_sessions_ended(url: str, round_: int) -> int:
    """Wait until the server has ended every session of the killed child; return how many
    were still running a statement when we first looked.

    A SQLite writer dies with its process, but a PostgreSQL session outlives its killed
    client until the statement it was running ends: an autocommit ``complete_job`` sent just
    before the kill commits after it. Checking before then reads the job PROCESSING in one
    query and COMPLETED in the next (what once failed this test with a KeyError)."""
    if url.startswith("sqlite"):
        return 0
    query = (
        "SELECT count(*) FILTER (WHERE state = 'active') AS active, count(*) AS sessions "
        "FROM pg_stat_activity WHERE application_name = %s"
    )
    deadline = time.monotonic() + TIMEOUT_SECONDS
    with raw_pg(url) as pg:
        first = None
        while True:
            active, sessions = pg.execute(query, (session_name(url, round_),)).fetchone()
            first = active if first is None else first
            if sessions == 0:
                return int(first)
            assert time.monotonic() < deadline, f"round {round_}: {sessions} sessions left"
            time.sleep(0.005)


def lines_of(path: Path) -> list[list[str]]:
    text = path.read_text()
    return [line.split() for line in text[: text.rfind("\n") + 1].splitlines()]


def wait_ready(proc: subprocess.Popen[bytes], out: Path, err: Path) -> None:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while not any(words == ["ready"] for words in lines_of(out)):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"child not ready (exit {proc.poll()}):\n{err.read_text()}")
        time.sleep(0.01)


def test_group_commits_killed_at_random_keep_every_returned_call(
    backend_url: str, tmp_path: Path
) -> None:
    with persistq.connect(backend_url) as q:
        run_rounds(q, backend_url, tmp_path, ROUNDS)


class Child:
    """One round's child process, started before its round (see the module's docstring)."""

    def __init__(self, url: str, tmp_path: Path, round_: int) -> None:
        self.round = round_
        self.out, self.err = tmp_path / f"child-{round_}.out", tmp_path / f"child-{round_}.err"
        with self.out.open("wb") as stdout, self.err.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, __file__, child_url(url, round_), str(round_)],
                stdin=subprocess.PIPE,
                stdout=stdout,
                stderr=stderr,
            )

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.close()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(TIMEOUT_SECONDS)
        if self.proc.stdin is not None:
            self.proc.stdin.close()


def run_rounds(q: Queue, url: str, tmp_path: Path, rounds: int) -> None:
    add_poison_trigger(url)
    rng = random.Random(14)
    lines: list[list[str]] = []
    largest: Counter[int] = Counter()
    outlived = 0
    following: Child | None = Child(url, tmp_path, 0)
    try:
        for round_ in range(rounds):
            assert following is not None
            current, following = following, None
            try:
                current.go()
                wait_ready(current.proc, current.out, current.err)
                if round_ + 1 < rounds:
                    following = Child(url, tmp_path, round_ + 1)
                time.sleep(rng.uniform(0.1, 0.6))
            finally:
                current.kill()
            outlived += wait_sessions_ended(url, round_)
            assert current.proc.returncode == -signal.SIGKILL, current.err.read_text()
            assert current.err.read_text() == "", current.err.read_text()
            found = lines_of(current.out)
            lines += found
            groups = [words for words in found if words[0] == "groups"]
            if groups and groups[-1][1:]:
                sizes = Counter({int(s): int(n) for s, n in (w.split(":") for w in groups[-1][1:])})
                largest[max(sizes)] += 1
    finally:
        if following is not None:  # a round failed: its successor never got its go
            following.kill()
    said = Counter(words[0] for words in lines)
    print(
        f"{rounds} rounds: {dict(said)}; largest group per round: {dict(sorted(largest.items()))}; "
        f"statements outliving their killed client: {outlived}"
    )

    assert not [w for w in lines if w[0] == "accepted-poison"]
    from procs import every_job  # here: this file also runs as the child, without tests/

    jobs = every_job(q)
    payloads = Counter(
        (job.payload["r"], job.payload["t"], job.payload["n"]) for job in jobs.values()
    )
    twice = [p for p, n in payloads.items() if n > 1]
    assert not twice, f"duplicates: {twice[:10]}"
    refused = {(w[1], int(w[2]), int(w[3])) for w in lines if w[0] == "refused"}
    stored = {(str(r), t, n) for r, t, n in payloads}
    assert not refused & stored, "a refused enqueue was stored"
    assert not [j for j in jobs.values() if POISON in str(j.payload)]

    enqueued = [w for w in lines if w[0] == "enqueued"]
    ids = [int(w[1]) for w in enqueued]
    assert len(ids) == len(set(ids)), "two enqueues returned one id"
    lost = [i for i in ids if i not in jobs]
    assert not lost, f"returned but lost: {lost[:10]}"
    for w in enqueued:
        payload = jobs[int(w[1])].payload
        assert (str(payload["r"]), payload["t"], payload["n"]) == (w[2], int(w[3]), int(w[4]))
    completed = {int(w[1]): int(w[2]) for w in lines if w[0] == "completed"}
    for job_id, result in completed.items():
        assert (jobs[job_id].status, jobs[job_id].result) == (State.COMPLETED, result), job_id
    tokens = lease_tokens(url)
    in_flight = 0
    for w in lines:
        if w[0] == "claimed" and int(w[1]) not in completed:
            # held by the killed child, with the token it was given (the lease, 300 s,
            # outlives the test), or completed by the call the kill cut off before its line
            if jobs[int(w[1])].status is State.COMPLETED:
                in_flight += 1
                continue
            assert jobs[int(w[1])].status is State.PROCESSING, jobs[int(w[1])]
            assert tokens[int(w[1])] == w[2]
    assert in_flight <= rounds * THREADS
    kinds = Counter(e.kind for job_id in completed for e in q.events(job_id))
    assert kinds["completed"] == len(completed)
    assert q.check(full=True)["ok"]
    print(
        f"returned: {len(ids)} enqueues, {said['claimed']} claims, {len(completed)} "
        f"completions, {len(refused)} refused; stored {len(jobs)} jobs ({len(jobs) - len(ids)} "
        f"enqueued by calls cut off), {in_flight} completions cut off after their commit; "
        "0 lost, 0 duplicates"
    )
