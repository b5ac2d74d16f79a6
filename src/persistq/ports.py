"""What a worker and the read models need from a queue, so they run on a local ``Queue``
or over HTTP.

:class:`persistq.queue.Queue` (a database) and :class:`persistq.remote.RemoteQueue` (the
REST API) both satisfy :class:`WorkQueue` and :class:`ReadQueue` structurally; neither
imports this module. The worker and the sweeper are typed with ``WorkQueue``, the read
models (:mod:`persistq.insights`, :mod:`persistq.search`, ``/metrics``) with
``ReadQueue``, which keeps them free of either transport.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from persistq.config import Settings
from persistq.model import (
    JSON,
    FailureEvent,
    FinishedCount,
    Job,
    State,
    StorageInfo,
    Timing,
    WorkerInfo,
)


class WorkQueue(Protocol):
    """The calls of the SPEC's queue API that a worker and a sweeper make."""

    @property
    def settings(self) -> Settings:
        """The worker reads ``settings.lease_seconds`` when it is given no lease."""
        ...

    def claim(
        self,
        *,
        queue: str | Sequence[str] = "default",
        worker: str,
        lease: float | None = None,
        wait: float = 0,
    ) -> Job | None: ...

    def heartbeat(self, job: Job) -> Job: ...

    def complete(self, job: Job, result: JSON = None) -> Job: ...

    def fail(
        self,
        job: Job,
        error: str | BaseException,
        *,
        retry: bool = True,
        backoff_base: float | None = None,
        backoff_max: float | None = None,
    ) -> Job: ...

    def release(self, job: Job, *, delay: float = 0, reason: str | None = None) -> Job: ...

    def recover_stalled(self) -> int: ...

    def worker_seen(self, worker: str, queues: Sequence[str]) -> None: ...

    def worker_gone(self, worker: str) -> None: ...


class ReadQueue(Protocol):
    """The reads of the SPEC's queue API that the read models make; nothing here writes."""

    @property
    def url(self) -> str: ...

    def now(self) -> float:
        """The queue's clock (the database's, for a remote queue the server's)."""
        ...

    def stats(self) -> dict[str, Any]: ...

    def jobs(
        self,
        *,
        status: State | str | None = None,
        queue: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Job]: ...

    def workers(self, *, seen_within: float = 300.0) -> list[WorkerInfo]: ...

    def finished(self, *, since: float, limit: int = 1000) -> list[Timing]: ...

    def throughput(self, *, since: float, bucket: int = 60) -> list[FinishedCount]: ...

    def recent_failures(self, *, limit: int = 20) -> list[FailureEvent]: ...

    def storage(self) -> StorageInfo: ...

    def check(self, *, full: bool = False) -> dict[str, Any]: ...
