"""What a worker and the read models need from a queue, so they run on a local ``Queue``
or over HTTP.

:class:`persistq.queue.Queue` (a database) and :class:`persistq.remote.RemoteQueue` (the
REST API) both satisfy :class:`QueueAPI` (and so its parts :class:`WorkQueue` and
:class:`ReadQueue`) structurally; neither imports this module, and
``tests/test_ports.py`` holds them to it signature by signature. The worker and the
sweeper are typed with ``WorkQueue``, the read models (:mod:`persistq.insights`,
``/metrics``) with ``ReadQueue``, which keeps them free of either
transport.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

from persistq.config import Settings
from persistq.errors import LeaseLost, QueueError
from persistq.model import (
    BULK_BATCH,
    JSON,
    MAX_BULK,
    BulkResult,
    Event,
    FailureEvent,
    FinishedCount,
    Job,
    JobFilter,
    JobPage,
    QueueInfo,
    State,
    StorageInfo,
    Timing,
    WorkerInfo,
)


class WorkQueue(Protocol):
    """The calls of the SPEC's queue API that a worker and a sweeper make."""

    @property
    def settings(self) -> Settings:
        """The worker reads ``settings.lease_seconds`` when it is given no lease, the
        sweeper ``settings.worker_retention_seconds``."""
        ...

    @property
    def completes_with_next_claim(self) -> bool:
        """Whether ``complete_and_claim`` saves a commit (one transaction, SQLite): a
        one-slot worker then carries each completion into its next claim; else (PostgreSQL,
        the REST API) its settler completes while it claims."""
        ...

    def claim(
        self,
        *,
        queue: str | Sequence[str] = "default",
        worker: str,
        lease: float | None = None,
        wait: float = 0,
    ) -> Job | None: ...

    def claim_many(
        self,
        *,
        queue: str | Sequence[str] = "default",
        worker: str,
        limit: int,
        lease: float | None = None,
        wait: float = 0,
    ) -> list[Job]: ...

    def heartbeat(self, job: Job) -> Job: ...

    def heartbeat_many(self, jobs: Sequence[Job]) -> list[Job | LeaseLost]: ...

    def complete(self, job: Job, result: JSON = None) -> Job: ...

    def complete_many(self, items: Sequence[tuple[Job, JSON]]) -> list[Job | QueueError]: ...

    def complete_and_claim(
        self,
        items: Sequence[tuple[Job, JSON]],
        *,
        queue: str | Sequence[str] = "default",
        worker: str,
        limit: int,
        lease: float | None = None,
    ) -> tuple[list[Job | QueueError], list[Job]]: ...

    def fail(
        self,
        job: Job | int,
        error: str | BaseException,
        *,
        retry: bool = True,
        backoff_base: float | None = None,
        backoff_max: float | None = None,
        timed_out: str | None = None,
    ) -> Job: ...

    def crashed(self, job: Job, detail: str) -> Job: ...

    def release(self, job: Job, *, delay: float = 0, reason: str | None = None) -> Job: ...

    def recover_stalled(self) -> int: ...

    def worker_seen(self, worker: str, queues: Sequence[str]) -> None: ...

    def worker_gone(self, worker: str) -> None: ...

    def prune_workers(self, *, unseen_for: float) -> int: ...


class ReadQueue(Protocol):
    """The reads of the SPEC's queue API that the read models make; nothing here writes."""

    @property
    def url(self) -> str: ...

    def now(self) -> float:
        """The queue's clock (the database's, for a remote queue the server's)."""
        ...

    def stats(self) -> dict[str, Any]: ...

    def get(self, id: int) -> Job: ...  # noqa: A002 - the SPEC's name

    def jobs(
        self,
        *,
        status: State | str | None = None,
        queue: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Job]: ...

    def search(
        self,
        where: JobFilter | None = None,
        *,
        after: int | None = None,
        limit: int = 50,
        oldest_first: bool = False,
    ) -> JobPage: ...

    def count(self, where: JobFilter | None = None) -> int: ...

    def workers(self, *, seen_within: float = 300.0) -> list[WorkerInfo]: ...

    def finished(self, *, since: float, limit: int = 1000) -> list[Timing]: ...

    def throughput(self, *, since: float, bucket: int = 60) -> list[FinishedCount]: ...

    def recent_failures(self, *, limit: int = 20) -> list[FailureEvent]: ...

    def storage(self) -> StorageInfo: ...

    def counters(self) -> dict[str, dict[str, int]]: ...

    def check(self, *, full: bool = False) -> dict[str, Any]: ...


class QueueAPI(WorkQueue, ReadQueue, Protocol):
    """Every call both queues offer: a method that one of them gains goes here too (the
    signature test fails on a shared public method this Protocol does not declare)."""

    def close(self) -> None: ...

    def enqueue(
        self,
        payload: JSON,
        *,
        queue: str = "default",
        priority: int = 0,
        delay: float = 0,
        run_at: datetime | None = None,
        max_attempts: int = 3,
        key: str | None = None,
        timeout: float | None = None,
    ) -> Job: ...

    def enqueue_many(
        self,
        payloads: Iterable[JSON],
        *,
        queue: str = "default",
        priority: int = 0,
        delay: float = 0,
        run_at: datetime | None = None,
        max_attempts: int = 3,
        keys: Sequence[str | None] | None = None,
        timeout: float | None = None,
    ) -> list[Job]: ...

    def events(self, id: int) -> list[Event]: ...  # noqa: A002

    def wait(self, id: int, *, timeout: float | None = None) -> Job: ...  # noqa: A002

    def resubmit(self, id: int) -> Job: ...  # noqa: A002

    def cancel(self, id: int) -> Job: ...  # noqa: A002

    def resubmit_matching(
        self,
        where: JobFilter | None = None,
        *,
        after: int | None = None,
        limit: int = MAX_BULK,
        batch: int = BULK_BATCH,
    ) -> BulkResult: ...

    def cancel_matching(
        self,
        where: JobFilter | None = None,
        *,
        after: int | None = None,
        limit: int = MAX_BULK,
        batch: int = BULK_BATCH,
    ) -> BulkResult: ...

    def queues(self) -> list[QueueInfo]: ...

    def create_queue(self, name: str) -> QueueInfo: ...

    def delete_queue(self, name: str, *, force: bool = False) -> int: ...

    def pause(self, name: str) -> QueueInfo: ...

    def resume(self, name: str) -> QueueInfo: ...

    def set_limits(
        self, queue: str, *, concurrency: int | None = None, rate: str | None = None
    ) -> QueueInfo: ...
