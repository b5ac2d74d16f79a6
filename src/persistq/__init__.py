"""persistq: a persistent job queue on SQLite or PostgreSQL."""

from __future__ import annotations

from persistq.backends import open_backend
from persistq.clock import Clock, ManualClock, SystemClock
from persistq.config import Settings
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
    StorageUnavailable,
    Unrecoverable,
)
from persistq.model import Event, EventKind, Job, QueueInfo, State
from persistq.queue import Queue

__all__ = [
    "Clock",
    "Event",
    "EventKind",
    "InvalidJob",
    "InvalidTransition",
    "Job",
    "JobNotFound",
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
    "StorageUnavailable",
    "SystemClock",
    "Unrecoverable",
    "connect",
    "get_queue",
]


def connect(
    url: str | None = None,
    *,
    lease: float | None = None,
    backoff_base: float | None = None,
    backoff_max: float | None = None,
    max_payload_bytes: int | None = None,
    clock: Clock | None = None,
) -> Queue:
    """Open (creating or migrating) the queue at ``url``.

    Unset arguments come from ``PERSISTQ_*`` environment variables, then the defaults:
    ``sqlite:///data/queue.db``, a 300 s lease, backoff 2 s doubling up to 300 s.
    """
    settings = Settings.from_env(
        url=url,
        lease_seconds=lease,
        backoff_base_seconds=backoff_base,
        backoff_max_seconds=backoff_max,
        max_payload_bytes=max_payload_bytes,
    )
    backend = open_backend(settings)
    try:
        backend.migrate()
    except BaseException:
        backend.close()
        raise
    return Queue(backend, settings, clock)


get_queue = connect
