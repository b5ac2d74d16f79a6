"""Load the named SQL of a dialect: ``queries.sql`` blocks and numbered migrations.

Backends look a statement up by name right where they run it (``conn.execute(SQL[name],
...)``), so :class:`NamedSQL` can count the statements that ran while :func:`recording`
(the test that every named statement is used: a dead one fails it).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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


#: (dialect, statement name) -> times run, while recording; None otherwise.
_ran: Counter[tuple[str, str]] | None = None


class NamedSQL(Mapping[str, str]):
    """A dialect's statements by name, as the backends run them."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self._statements = queries(dialect)

    def __getitem__(self, name: str) -> str:
        statement = self._statements[name]
        if _ran is not None:
            _ran[(self.dialect, name)] += 1
        return statement

    def __iter__(self) -> Iterator[str]:
        return iter(self._statements)

    def __len__(self) -> int:
        return len(self._statements)


@contextmanager
def recording() -> Iterator[Counter[tuple[str, str]]]:
    """Count the named statements backends run, in every thread, until the block ends."""
    global _ran
    previous, _ran = _ran, Counter()
    try:
        yield _ran
    finally:
        _ran = previous


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
