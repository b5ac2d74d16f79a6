"""Load the named SQL of a dialect: ``queries.sql`` blocks and numbered migrations."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


@cache
def queries(dialect: str) -> dict[str, str]:
    """``{name: statement}`` from ``sql/<dialect>/queries.sql``, split at ``-- name:`` lines."""
    text = resources.files(__package__).joinpath(dialect, "queries.sql").read_text()
    parts = _NAME.split(text)
    # parts = [header, name1, body1, name2, body2, ...]
    named = {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}
    if len(named) != len(parts) // 2:
        raise RuntimeError(f"duplicate query name in {dialect}/queries.sql")
    return named


@cache
def migrations(dialect: str) -> tuple[Migration, ...]:
    """Migrations in version order, from files named ``NNNN_what.sql``."""
    folder = resources.files(__package__).joinpath(dialect, "migrations")
    found = []
    for entry in folder.iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{dialect} migrations must be numbered 0001, 0002, ... without gaps")
    return tuple(found)
