"""Moving a SQLite database from schema 9 to 10 (the CHECKs of jobs.status and events.kind
written as ORs of equalities instead of IN lists).

The database is built at schema 9 with the SQL of that time (no persistq code), holding
jobs in every state and events of every kind. After the migration every row of both tables
reads the same, the file passes SQLite's integrity check, the constraints accept exactly
what they accepted before, and the history and failure reads give what they gave.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

import persistq
from migration_support import sqlite_at_version
from persistq import EventKind, State
from persistq.backends.sql import migrations
from persistq.backends.sqlite import SQLiteBackend
from persistq.errors import StorageError


def _build_schema_9(path: Path, *, edit_jobs_text: bool = False) -> None:
    db = sqlite_at_version(path, 9)
    db.execute("BEGIN")
    db.execute("INSERT INTO queues (name, paused, created_at) VALUES ('q', 0, 1000)")
    states = [str(s) for s in State]
    for n, status in enumerate(states * 3, start=1):
        started = None if status == "PENDING" else 1000.0 + n
        db.execute(
            "INSERT INTO jobs (queue, payload, status, run_at, attempts, max_attempts, worker,"
            " created_at, updated_at, started_at, finished_at, fence) VALUES"
            " ('q', ?, ?, ?, ?, 3, ?, 1000, 1000, ?, ?, ?)",
            (
                f'{{"n": {n}}}',
                status,
                1000.0 + n,
                int(started is not None),
                None if started is None else "w",
                started,
                None if status in ("PENDING", "PROCESSING") else 2000.0 + n,
                int(started is not None),
            ),
        )
    for n, kind in enumerate(EventKind, start=1):
        db.execute(
            "INSERT INTO events (job_id, at, kind, worker, detail, fence)"
            " VALUES (?, ?, ?, 'w', ?, 1)",
            (n % len(states) + 1, 1500.0 + n, str(kind), f"detail {n}"),
        )
    if edit_jobs_text:  # a database whose stored CREATE differs from what 0001 wrote
        db.execute("PRAGMA writable_schema = ON")
        db.execute(
            "UPDATE sqlite_master SET sql = replace(sql, 'CHECK (status IN' || char(10),"
            " 'CHECK (status IN ') WHERE name = 'jobs'"
        )
        db.execute("PRAGMA writable_schema = RESET")
    db.execute("COMMIT")
    db.close()


def _read(path: Path, sql: str) -> list[Any]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def _tables(path: Path) -> tuple[list[Any], list[Any]]:
    return (
        _read(path, "SELECT * FROM jobs ORDER BY id"),
        _read(path, "SELECT * FROM events ORDER BY id"),
    )


def test_schema_9_moves_to_10_with_every_row_and_constraint_intact(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    _build_schema_9(path)
    before = _tables(path)
    with persistq.connect(f"sqlite:///{path}") as q:
        assert q.check()["schema_version"] == migrations("sqlite")[-1].version
        assert _tables(path) == before
        history = q.events(1)
        assert history[0].kind == EventKind.ENQUEUED
        failures = q.recent_failures(limit=50)
    failure_kinds = {"failed", "retried", "lease_expired"}
    failures_before = [r for r in before[1] if r[3] in failure_kinds]
    assert sorted(f.event.id for f in failures) == sorted(r[0] for r in failures_before)

    assert _read(path, "PRAGMA integrity_check") == [("ok",)]
    schema = dict(_read(path, "SELECT name, sql FROM sqlite_master"))
    assert "status IN" not in schema["jobs"]
    assert "kind IN" not in schema["events"]
    assert "kind IN" not in schema["events_failures"]

    db = sqlite3.connect(path, isolation_level=None)
    try:
        insert_job = (
            "INSERT INTO jobs (queue, payload, status, run_at, max_attempts, created_at,"
            " updated_at) VALUES ('q', '1', ?, 1, 1, 1, 1)"
        )
        db.execute("BEGIN")
        for status in State:  # every state is still accepted, and nothing else
            db.execute(insert_job, (str(status),))
        for kind in EventKind:
            db.execute("INSERT INTO events (job_id, at, kind) VALUES (1, 1, ?)", (str(kind),))
        db.execute("ROLLBACK")
        for bad in ("DONE", "pending", ""):
            with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
                db.execute(insert_job, (bad,))
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            db.execute("INSERT INTO events (job_id, at, kind) VALUES (1, 1, 'exploded')")
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            db.execute("UPDATE jobs SET status = 'DONE' WHERE id = 1")
    finally:
        db.close()
    assert _tables(path) == before


def test_a_schema_text_it_does_not_know_stops_the_migration_and_changes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "queue.db"
    _build_schema_9(path, edit_jobs_text=True)
    before = _tables(path), _read(path, "SELECT name, sql FROM sqlite_master ORDER BY name")
    with pytest.raises(StorageError):
        persistq.connect(f"sqlite:///{path}")
    after = _tables(path), _read(path, "SELECT name, sql FROM sqlite_master ORDER BY name")
    assert after == before
    assert _read(path, "PRAGMA user_version") == [(9,)]


def test_a_failed_migration_leaves_the_connection_as_it_found_it(tmp_path: Path) -> None:
    """writable_schema is off again on the backend's connection, and it reads the stored
    schema (the old CHECK text)."""
    path = tmp_path / "queue.db"
    _build_schema_9(path, edit_jobs_text=True)
    backend = SQLiteBackend(f"sqlite:///{path}")
    try:
        with pytest.raises(StorageError):
            backend.migrate()
        conn = backend._connection()
        assert conn.execute("PRAGMA writable_schema").fetchone()[0] == 0
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 9
        with pytest.raises(sqlite3.IntegrityError, match="status IN"):
            conn.execute(
                "INSERT INTO jobs (queue, payload, status, run_at, max_attempts, created_at,"
                " updated_at) VALUES ('q', '1', 'DONE', 1, 1, 1, 1)"
            )
    finally:
        backend.close()
