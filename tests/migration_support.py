"""Databases at an older schema, built with the SQL of that time (no persistq code), for
the tests that move them forward."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from persistq.backends.sql import migrations


def sqlite_at_version(path: Path, version: int) -> sqlite3.Connection:
    """A new SQLite file at schema ``version``, open in autocommit mode (the caller closes)."""
    db = sqlite3.connect(path, isolation_level=None)
    for migration in migrations("sqlite"):
        if migration.version <= version:
            db.executescript(migration.sql)
            db.execute(f"PRAGMA user_version = {migration.version}")
    return db
