"""Databases at an older schema, built with the SQL of that time (no persistq code), for
the tests that move them forward."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from persistq.backends.sql import migrations


def sqlite_at_version(path: Path, version: int) -> sqlite3.Connection:
    """A new SQLite file at schema ``version``, open in autocommit mode (the caller closes)."""
    db = sqlite3.connect(path, isolation_level=None)
    for migration in migrations("sqlite"):
        if migration.version <= version:
            db.executescript(migration.sql)
            db.execute(f"PRAGMA user_version = {migration.version}")
    return db


def postgres_at_version(url: str, version: int) -> Any:
    """A new PostgreSQL schema (``url``'s) at schema ``version``, and an autocommit
    psycopg connection whose search_path is that schema (the caller closes it)."""
    import psycopg  # only where a PostgreSQL server is tested

    from persistq.backends.postgres import parse_postgres_url

    server, schema = parse_postgres_url(url)
    db = psycopg.connect(server, autocommit=True)
    db.execute(f'CREATE SCHEMA "{schema}"')
    db.execute(f'SET search_path TO "{schema}"')
    db.execute("CREATE TABLE schema_version (version integer NOT NULL)")
    for migration in migrations("postgres"):
        if migration.version <= version:
            db.execute(migration.sql)
            db.execute("INSERT INTO schema_version VALUES (%s)", (migration.version,))
    return db
