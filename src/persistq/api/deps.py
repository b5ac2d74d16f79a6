"""What the routes share: the process's queue, how an async route calls it, the job a lease
token names."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Annotated, TypeVar

from fastapi import Depends, Path, Request
from fastapi.responses import JSONResponse

from persistq.api.schemas import QUEUE_NAME_PATTERN, CanonicalId
from persistq.model import INT64_MAX, Health, Job
from persistq.queue import Queue


async def get_queue(request: Request) -> Queue:
    queue: Queue = request.app.state.queue
    return queue


QueueDep = Annotated[Queue, Depends(get_queue)]
T = TypeVar("T")


async def in_thread(work: Callable[[], T]) -> T:
    """Run a library call from an async route on the API's thread pool (:data:`THREADS`
    threads), never on the event loop. A call may wait for the database (a busy SQLite
    file is retried for up to a minute); on the loop that wait would hold every other
    request, even a 401 or /openapi.json.

    The pool is a plain executor, not anyio's (``run_in_threadpool``, which FastAPI's sync
    routes and the long polls use): its hop costs ~50 us of CPU to anyio's ~65 (a lone
    call), 78k fewer instructions per enqueue request with 16 at once. As with anyio, the
    call runs to its end whatever happens to the request."""
    return await asyncio.get_running_loop().run_in_executor(_POOL, work)


#: As many as anyio's default limiter gave the routes before.
THREADS = 40
_POOL = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="persistq-api")


JobId = Annotated[int, Path(ge=1, le=INT64_MAX, description="The job's id."), CanonicalId]
QueuePath = Annotated[str, Path(pattern=QUEUE_NAME_PATTERN, description="The queue's name.")]


class HealthProbe:
    """``Queue.health()`` for /healthz, without a probe ever waiting long on the database.

    One call at a time runs, on a thread of its own: probes neither pile threads up nor
    take the pool's. A probe waits for the call at most ``wait`` seconds. Past that, the
    previous answer stands while the call is younger than ``stale_after`` (a quick check
    of a large database takes seconds); an older call means the database is not answering,
    and the probe gets None.
    """

    def __init__(
        self, queue: Queue, *, check_every: float, wait: float = 0.5, stale_after: float = 10.0
    ) -> None:
        self.queue = queue
        self.check_every = check_every
        self.wait = wait
        self.stale_after = stale_after
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="persistq-health")
        self._running: Future[Health] | None = None
        self._started = 0.0
        self._last: Health | None = None

    async def get(self) -> Health | None:
        running = self._running
        if running is None or running.done():
            if running is not None and running.exception() is None:
                self._last = running.result()
            running = self._executor.submit(self.queue.health, check_every=self.check_every)
            self._running, self._started = running, time.monotonic()
        try:
            waited = asyncio.shield(asyncio.wrap_future(running))
            self._last = await asyncio.wait_for(waited, self.wait)
        except TimeoutError:
            return self._last if time.monotonic() - self._started < self.stale_after else None
        return self._last

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def leased(q: Queue, job_id: int, token: str) -> Job:
    """The job as its lease holder sees it: the library then checks the token (fencing)."""
    return replace(q.get(job_id), lease_token=token)


def job_response(job: Job, *, status: int = 200, with_token: bool = False) -> JSONResponse:
    """A job as JSON (``JobOut``, or ``LeasedJobOut`` ``with_token``).

    Rendered with the standard JSON encoder rather than through pydantic: a payload nests as
    deep as the JSON decoder allowed it in, past pydantic's serializer's depth limit.
    """
    data = job.to_dict()
    if with_token:
        data["lease_token"] = job.lease_token
    return JSONResponse(data, status_code=status)


def jobs_response(jobs: list[Job], *, status: int = 200, with_token: bool = False) -> JSONResponse:
    rows = []
    for job in jobs:
        row = job.to_dict()
        if with_token:
            row["lease_token"] = job.lease_token
        rows.append(row)
    return JSONResponse(rows, status_code=status)
