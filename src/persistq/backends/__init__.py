"""Backends, chosen by URL scheme."""

from __future__ import annotations

from persistq.backends.base import Backend, NewJob
from persistq.config import Settings
from persistq.errors import StorageUnavailable

__all__ = ["Backend", "NewJob", "open_backend"]


def open_backend(settings: Settings, *, create: bool = True) -> Backend:
    """The backend for ``settings.url``; ``create=False``: a missing SQLite file is an error
    (PostgreSQL's missing schema is found by ``migrate(create=False)``)."""
    url = settings.url
    if url.startswith("sqlite:"):
        from persistq.backends.sqlite import SQLiteBackend

        return SQLiteBackend(
            url,
            busy_timeout_seconds=settings.busy_timeout_seconds,
            create=create,
            group_commit_max=settings.group_commit_max,
        )
    if url.startswith(("postgresql:", "postgres:")):
        try:
            from persistq.backends.postgres import PostgresBackend
        except ImportError:
            raise StorageUnavailable(
                "PostgreSQL needs psycopg: pip install 'persistq[postgres]'"
            ) from None
        return PostgresBackend(
            url,
            busy_timeout_seconds=settings.busy_timeout_seconds,
            pool_size=settings.pg_pool_size,
            group_commit_max=settings.group_commit_max,
        )
    scheme = url.partition(":")[0] or url
    raise StorageUnavailable(
        f"unsupported database URL scheme {scheme!r}: use sqlite:///path/to/file.db "
        "or postgresql://user@host:5432/db"
    )
