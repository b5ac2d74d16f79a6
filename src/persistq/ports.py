"""What a worker needs from a queue, so it can run on a local ``Queue`` or over HTTP.

:class:`persistq.queue.Queue` (a database) and :class:`persistq.remote.RemoteQueue` (the
REST API) both satisfy :class:`WorkQueue` structurally; neither imports this module. The
worker and the sweeper are typed with it, which keeps them free of either transport.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from persistq.config import Settings
from persistq.model import JSON, Job


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
        timed_out: str | None = None,
    ) -> Job: ...

    def crashed(self, job: Job, detail: str) -> Job: ...

    def release(self, job: Job, *, delay: float = 0, reason: str | None = None) -> Job: ...

    def recover_stalled(self) -> int: ...

    def worker_seen(self, worker: str, queues: Sequence[str]) -> None: ...

    def worker_gone(self, worker: str) -> None: ...
