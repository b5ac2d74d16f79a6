"""persistq: a persistent job queue on SQLite or PostgreSQL."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, overload

from persistq.app import App
from persistq.backends import open_backend
from persistq.clock import Clock, ManualClock, SystemClock
from persistq.config import Settings
from persistq.dispatch import current_job
from persistq.errors import (
    InvalidJob,
    InvalidTransition,
    JobNotFound,
    LeaseLost,
    QueueError,
    QueueNotEmpty,
    QueueNotFound,
    QueuePaused,
    StorageBusy,
    StorageCorrupt,
    StorageError,
    StorageFull,
    StorageReplaced,
    StorageUnavailable,
    TaskFailed,
    Unrecoverable,
)
from persistq.model import BulkResult, Event, EventKind, Job, JobFilter, JobPage, QueueInfo, State
from persistq.queue import Queue

if TYPE_CHECKING:
    from persistq.remote import RemoteQueue

try:
    __version__ = version("persistq")  # pyproject.toml's, as installed: the one place it is set
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"

__all__ = [
    "App",
    "BulkResult",
    "Clock",
    "Event",
    "EventKind",
    "InvalidJob",
    "InvalidTransition",
    "Job",
    "JobFilter",
    "JobNotFound",
    "JobPage",
    "LeaseLost",
    "ManualClock",
    "Queue",
    "QueueError",
    "QueueInfo",
    "QueueNotEmpty",
    "QueueNotFound",
    "QueuePaused",
    "Settings",
    "State",
    "StorageBusy",
    "StorageCorrupt",
    "StorageError",
    "StorageFull",
    "StorageReplaced",
    "StorageUnavailable",
    "SystemClock",
    "TaskFailed",
    "Unrecoverable",
    "__version__",
    "connect",
    "current_job",
    "get_queue",
]


@overload
def connect(
    url: str | None = None,
    *,
    lease: float | None = None,
    backoff_base: float | None = None,
    backoff_max: float | None = None,
    max_payload_bytes: int | None = None,
    clock: Clock | None = None,
    create: bool = True,
) -> Queue: ...


@overload
def connect(
    url: str,
    *,
    token: str | None,
    lease: float | None = None,
    timeout: float = 30.0,
    retries: int = 3,
) -> RemoteQueue: ...


def connect(
    url: str | None = None,
    *,
    lease: float | None = None,
    backoff_base: float | None = None,
    backoff_max: float | None = None,
    max_payload_bytes: int | None = None,
    clock: Clock | None = None,
    create: bool = True,
    token: str | None = None,
    timeout: float = 30.0,
    retries: int = 3,
) -> Queue | RemoteQueue:
    """Open (creating or migrating) the queue at ``url``.

    ``create=False`` opens only a database that already exists (what the CLI, API, UIs and
    workers do): a missing SQLite file, or a PostgreSQL schema persistq never set up,
    raises ``StorageUnavailable`` ("no database at ...") and nothing is created.

    Unset arguments come from ``PERSISTQ_*`` environment variables, then the defaults:
    ``sqlite:///data/queue.db``, a 300 s lease, backoff 2 s doubling up to 300 s.

    An ``http(s)://`` URL gives a :class:`~persistq.remote.RemoteQueue` on the REST API
    instead, with ``token`` (None: the first of ``PERSISTQ_API_TOKEN``); pass ``token=`` for
    type checkers to know it. Backoff and payload limits are then the server's.
    """
    settings = Settings.from_env(
        url=url,
        lease_seconds=lease,
        backoff_base_seconds=backoff_base,
        backoff_max_seconds=backoff_max,
        max_payload_bytes=max_payload_bytes,
    )
    if settings.url.startswith(("http://", "https://")):
        from persistq.remote import RemoteQueue

        return RemoteQueue(
            settings.url, token=token, settings=settings, timeout=timeout, retries=retries
        )
    backend = open_backend(settings, create=create)
    try:
        backend.migrate(create=create)
    except BaseException:
        backend.close()
        raise
    return Queue(backend, settings, clock)


get_queue = connect
