"""Every error persistq raises derives from :class:`QueueError`.

Exceptions carry their data as attributes (``LeaseLost.job_id``,
``InvalidTransition.current``) so interfaces can render them without parsing text, and
each class says how the REST API answers with it: the remote client reads the answer back
into the same class (:meth:`QueueError.restore`), so neither names the classes one by one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self


class QueueError(Exception):
    """A queue operation could not be carried out."""

    #: Names this error in the REST API's JSON, so a remote client raises the same class.
    code: ClassVar[str] = "queue_error"
    #: The REST API's HTTP status for it.
    http_status: ClassVar[int] = 400
    #: The attributes holding its data, sent along in the REST API's JSON.
    data_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @classmethod
    def restore(cls, message: str, data: Mapping[str, Any]) -> Self:
        """The error as another process reported it (the API's error JSON): this class, its
        message and its data attributes, whatever the arguments of ``__init__``."""
        error = cls.__new__(cls)
        QueueError.__init__(error, message)
        for name in cls.data_fields:
            setattr(error, name, data.get(name))
        return error


class JobNotFound(QueueError):
    """No job has this id."""

    code = "job_not_found"
    http_status = 404
    data_fields = ("job_id",)

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id} not found")


class LeaseLost(QueueError):
    """The caller no longer holds the job's lease: it expired, or another worker holds it."""

    code = "lease_lost"
    http_status = 409
    data_fields = ("job_id",)

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id}: lease lost (expired or held by another worker)")


class InvalidJob(QueueError):
    """The job's fields are not acceptable (bad queue name, payload, priority, ...)."""

    code = "invalid"
    http_status = 422


class InvalidTransition(QueueError):
    """The job's current state does not allow the requested change."""

    code = "invalid_transition"
    http_status = 409
    data_fields = ("job_id", "current", "requested")

    def __init__(self, job_id: int, current: str, requested: str) -> None:
        self.job_id = job_id
        self.current = current
        self.requested = requested
        super().__init__(f"job {job_id}: cannot {requested} a job that is {current}")


class QueuePaused(QueueError):
    """The queue is paused."""

    code = "queue_paused"
    http_status = 409
    data_fields = ("queue",)

    def __init__(self, queue: str) -> None:
        self.queue = queue
        super().__init__(f"queue {queue!r} is paused")


class QueueNotFound(QueueError):
    """No queue has this name."""

    code = "queue_not_found"
    http_status = 404
    data_fields = ("queue",)

    def __init__(self, queue: str) -> None:
        self.queue = queue
        super().__init__(f"queue {queue!r} not found")


class QueueNotEmpty(QueueError):
    """The queue still holds unfinished jobs."""

    code = "queue_not_empty"
    http_status = 409
    data_fields = ("queue", "unfinished")

    def __init__(self, queue: str, unfinished: int) -> None:
        self.queue = queue
        self.unfinished = unfinished
        super().__init__(
            f"queue {queue!r} holds {unfinished} unfinished job(s); cancel them or force the delete"
        )


class StorageError(QueueError):
    """The database cannot be used; the message names the cause."""

    code = "storage_error"
    http_status = 503


class StorageFull(StorageError):
    """The disk holding the database is full; nothing was written."""

    code = "storage_full"
    http_status = 507


class StorageCorrupt(StorageError):
    """The database file is damaged or is not a persistq database."""

    code = "storage_corrupt"


class StorageUnavailable(StorageError):
    """The database cannot be opened or written (permissions, missing directory, server down)."""

    code = "storage_unavailable"


class StorageReplaced(StorageUnavailable):
    """The database file was deleted or replaced while this process had it open.

    Writing on would go into a file no one can open again, so every call refuses; the
    process must be restarted once the file is back (restored, or made by ``persistq init``).
    """

    code = "storage_replaced"


class StorageBusy(StorageError):
    """The database stayed locked by other writers for longer than the bounded wait."""

    code = "storage_busy"


#: Every error class of the library, for what must know them all (the remote client reads
#: the API's ``code`` back into its class; a test checks the package exports each).
ERRORS: tuple[type[QueueError], ...] = (
    QueueError,
    JobNotFound,
    LeaseLost,
    InvalidJob,
    InvalidTransition,
    QueuePaused,
    QueueNotFound,
    QueueNotEmpty,
    StorageError,
    StorageFull,
    StorageCorrupt,
    StorageUnavailable,
    StorageReplaced,
    StorageBusy,
)


class TaskFailed(QueueError):
    """A task's job ended without a result: FAILED, UNPROCESSABLE or CANCELLED."""

    code = "task_failed"

    def __init__(self, job_id: int, status: str, last_error: str | None) -> None:
        self.job_id = job_id
        self.status = status
        self.last_error = last_error
        cause = _last_line(last_error)
        super().__init__(f"job {job_id} ended {status}" + (f": {cause}" if cause else ""))


def _last_line(text: str | None) -> str:
    """A traceback's last line names its cause."""
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


class Unrecoverable(Exception):
    """Raised by a handler to fail its job at once, skipping the remaining attempts."""


class ReleaseJob(Exception):
    """Raised by a handler to give its job back unprocessed (the attempt is refunded), not
    claimable again for ``delay_seconds``; ``reason`` is recorded on the ``released`` event."""

    def __init__(self, reason: str, delay_seconds: float) -> None:
        self.reason = reason
        self.delay_seconds = delay_seconds
        super().__init__(reason)

    def __reduce__(self) -> tuple[type[ReleaseJob], tuple[str, float]]:
        # Pickled from a process-pool child to its worker: both arguments, not just args.
        return (type(self), (self.reason, self.delay_seconds))
