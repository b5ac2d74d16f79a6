"""Moving a PostgreSQL schema from version 10 to 11 (the CHECKs of jobs become domains).

The schema is built at version 10 with the SQL of that time (no persistq code), holding jobs
in every state. After the migration every row reads the same, no row was rewritten and no
index built again but jobs_claim, whose condition names status (the same files); the
constraints accept exactly what they accepted before, and the table keeps no CHECK (what
every write parsed again, the cost the change removes).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import persistq
from migration_support import postgres_at_version
from persistq import State
from persistq.backends.sql import migrations

DOMAINS = 11


@pytest.fixture
def db(pg_url: str) -> Iterator[tuple[str, psycopg.Connection[Any]]]:
    """``pg_url``'s schema at version 10, three jobs in every state, and a
    connection on it."""
    with postgres_at_version(pg_url, DOMAINS - 1) as conn:
        conn.execute("INSERT INTO queues (name, paused, created_at) VALUES ('q', false, now())")
        for n, status in enumerate([str(s) for s in State] * 3, start=1):
            conn.execute(
                "INSERT INTO jobs (queue, payload, status, run_at, attempts, max_attempts,"
                " timeout, created_at, updated_at, fence) VALUES"
                " ('q', %s, %s, now(), %s, %s, %s, now(), now(), %s)",
                (f'{{"n": {n}}}', status, n % 2, 1 + n % 3, None if n % 2 else 0.5 * n, n % 4),
            )
        yield pg_url, conn


def _files(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """The storage file of the jobs table and of each of its indexes."""
    rows = conn.execute(
        "SELECT c.relname, c.relfilenode FROM pg_class AS c"
        " WHERE c.oid = 'jobs'::regclass"
        " OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'jobs'::regclass)"
    ).fetchall()
    return {name: node for name, node in rows}


BAD = [
    ("status", "'DONE'"),
    ("max_attempts", "0"),
    ("fence", "-1"),
    ("timeout", "0"),
    ("timeout", "-2.5"),
]


def _refused(conn: psycopg.Connection[Any]) -> list[str]:
    """Which of BAD the schema refuses (an UPDATE of the first job each, rolled back)."""
    refused = []
    for column, value in BAD:
        try:
            with conn.transaction(force_rollback=True):
                conn.execute(f"UPDATE jobs SET {column} = {value} WHERE id = 1")
        except psycopg.errors.CheckViolation:
            refused.append(f"{column}={value}")
    return refused


def test_schema_10_moves_to_11_with_every_row_index_and_rule_intact(
    db: tuple[str, psycopg.Connection[Any]],
) -> None:
    url, conn = db
    rows_before = conn.execute("SELECT * FROM jobs ORDER BY id").fetchall()
    files_before = _files(conn)
    assert _refused(conn) == [f"{c}={v}" for c, v in BAD]

    with persistq.connect(url) as q:
        assert q.check()["schema_version"] == migrations("postgres")[-1].version >= DOMAINS
        assert q.backend.count_by_status() == {"q": {s: 3 for s in State}}
        # The same rules: what was refused is refused, a NULL timeout is still allowed.
        assert _refused(conn) == [f"{c}={v}" for c, v in BAD]
        with conn.transaction(force_rollback=True):
            conn.execute("UPDATE jobs SET timeout = NULL, fence = 0, max_attempts = 1")
        job = q.enqueue({"new": True}, queue="q", timeout=2.0)
        assert q.get(job.id) == job

    kept = conn.execute("SELECT * FROM jobs WHERE id <= %s ORDER BY id", (len(rows_before),))
    assert kept.fetchall() == rows_before
    # No row rewritten, no index rebuilt but jobs_claim, whose condition names status.
    files = _files(conn)
    assert files.pop("jobs_claim") != files_before.pop("jobs_claim")
    assert files == files_before
    checks = conn.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = 'jobs'::regclass AND contype = 'c'"
    ).fetchall()
    assert checks == []  # what each write parsed again is gone from the table


def test_a_row_the_old_rules_refuse_stops_the_migration_whole(
    db: tuple[str, psycopg.Connection[Any]],
) -> None:
    url, conn = db
    # Only a hand-edited schema can hold one: the CHECK dropped to write it, then put back
    # unchecked (NOT VALID holds new rows only).
    conn.execute("ALTER TABLE jobs DROP CONSTRAINT jobs_fence_check")
    conn.execute("UPDATE jobs SET fence = -5 WHERE id = 2")
    conn.execute("ALTER TABLE jobs ADD CONSTRAINT jobs_fence_check CHECK (fence >= 0) NOT VALID")
    with pytest.raises(persistq.StorageError, match=r"fence.*violate"):
        persistq.connect(url).close()
    version = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    assert version == (DOMAINS - 1,)
    types = conn.execute(
        "SELECT data_type, domain_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = 'jobs' AND column_name = 'status'"
    ).fetchall()
    assert types == [("text", None)]  # rolled back: the column is as it was
