"""Moving a SQLite database from schema 8 to 9 (PENDING rows leave jobs_state).

The database is built at schema 8 with the SQL of that time (no persistq code): jobs of
two queues in every state, several priorities, some delayed. After the migration every
row reads the same, and what used to read the PENDING range of jobs_state (counts per
state, listing and searching by state, the oldest and the next due job, the claim order)
gives what the rows themselves say.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import persistq
from migration_support import sqlite_at_version
from persistq import JobFilter, ManualClock, State
from persistq.backends.sql import migrations

STATES = [str(s) for s in State]
QUEUES = ("a", "b")


def _build_schema_8(path: Path, now: float) -> None:
    db = sqlite_at_version(path, 8)
    db.execute("BEGIN")
    for queue in QUEUES:
        db.execute("INSERT INTO queues (name, paused, created_at) VALUES (?, 0, ?)", (queue, now))
    for n in range(240):
        queue = QUEUES[n % 2]
        status = STATES[n // 2 % len(STATES)] if n % 3 else "PENDING"
        started = None if status == "PENDING" else now + n + 0.5
        finished = now + n + 1 if status not in ("PENDING", "PROCESSING") else None
        lease = now + 1000 if status == "PROCESSING" else None
        db.execute(
            "INSERT INTO jobs (queue, payload, status, priority, run_at, attempts, max_attempts,"
            " worker, lease_token, lease_seconds, lease_expires_at, created_at, updated_at,"
            " started_at, finished_at, fence) VALUES (?, ?, ?, ?, ?, ?, 3, ?, ?, ?, ?, ?, ?, ?,"
            " ?, ?)",
            (
                queue,
                json.dumps({"n": n, "task": "even" if n % 2 == 0 else "odd"}),
                status,
                n // 2 % 4 - 1,  # priorities -1 .. 2
                now + n + (10_000 if n % 7 == 0 else 0),  # every 7th one delayed
                int(started is not None),
                None if started is None else "old-worker",
                "token" if lease else None,
                30.0 if lease else None,
                lease,
                now + n,
                now + n,
                started,
                finished,
                int(started is not None),
            ),
        )
    db.execute("COMMIT")
    db.close()


def _rows(path: Path) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT * FROM jobs ORDER BY id").fetchall()
    finally:
        db.close()


def test_schema_8_moves_to_9_with_every_row_and_every_read_intact(
    tmp_path: Path, clock: ManualClock
) -> None:
    path = tmp_path / "queue.db"
    now = clock.now()
    _build_schema_8(path, now)
    before = _rows(path)
    by_state: dict[tuple[str, str], list[int]] = {}
    for row in before:
        by_state.setdefault((row[1], row[3]), []).append(row[0])
    clock.advance(500)  # the delayed jobs are still ahead, every other one is due

    with persistq.connect(f"sqlite:///{path}", clock=clock) as q:
        assert q.check()["schema_version"] == migrations("sqlite")[-1].version
        assert _rows(path) == before  # only indexes changed
        counts = q.backend.count_by_status()
        assert counts == {
            queue: {State(s): len(ids) for (qq, s), ids in by_state.items() if qq == queue}
            for queue in QUEUES
        }
        for (queue, status), ids in by_state.items():
            newest = sorted(ids, reverse=True)
            assert [j.id for j in q.jobs(status=status, queue=queue, limit=500)] == newest
            assert [j.id for j in q.jobs(status=status, queue=queue, limit=7, offset=3)] == (
                newest[3:10]
            )
            page = q.search(JobFilter.of(queue=queue, states=status), limit=9)
            assert [j.id for j in page.jobs] == newest[:9]
            oldest = q.search(JobFilter.of(queue=queue, states=status), limit=9, oldest_first=True)
            assert [j.id for j in oldest.jobs] == sorted(ids)[:9]
            evens = [i for i in newest if json.loads(before[i - 1][2])["task"] == "even"]
            found = q.search(JobFilter.of(queue=queue, states=status, task="even"), limit=500)
            assert [j.id for j in found.jobs] == evens
            assert q.count(JobFilter.of(queue=queue, states=status)) == len(ids)
        pending = [i for (_, s), ids in by_state.items() if s == "PENDING" for i in ids]
        listed = [j.id for j in q.jobs(status="PENDING", limit=500)]
        assert listed == sorted(pending, reverse=True)
        assert [j.id for j in q.jobs(status="PENDING", limit=5, offset=2)] == listed[2:7]
        for queue in QUEUES:
            every = sorted((i for (qq, _), ids in by_state.items() if qq == queue for i in ids))
            assert [j.id for j in q.jobs(queue=queue, limit=500)] == every[::-1]

        # The oldest due job per queue and the next due time read jobs_claim.
        rows = {r[0]: r for r in before}
        stats = q.stats()["queues"]
        for queue in QUEUES:
            mine = [rows[i] for i in pending if rows[i][1] == queue]
            oldest_run_at = min(r[5] for r in mine)
            assert stats[queue]["oldest_pending_age"] == clock.now() - oldest_run_at
            delayed = min(r[5] for r in mine if r[5] > clock.now())
            assert q.backend.next_run_at([queue], clock.now()) == delayed
            # Claims take priority first, then id, and skip the delayed jobs.
            due = sorted((r for r in mine if r[5] <= clock.now()), key=lambda r: (-r[4], r[0]))
            claimed = q.claim_many(queue=queue, worker="new", limit=500)
            assert [j.id for j in claimed] == [r[0] for r in due]
            for job in claimed:
                q.complete(job)
        after = q.backend.count_by_status()
        for queue in QUEUES:
            assert after[queue][State.COMPLETED] == counts[queue][State.COMPLETED] + len(
                [i for i in pending if rows[i][1] == queue and rows[i][5] <= clock.now()]
            )
    db = sqlite3.connect(path)
    indexes = dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'"))
    assert "WHERE status <> 'PENDING'" in indexes["jobs_state"]
    assert "run_at, status) WHERE status = 'PENDING'" in indexes["jobs_claim"]
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
