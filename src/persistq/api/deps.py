"""Dependencies the routes share: the process's queue, and the job a lease token names."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Annotated, TypeVar

from fastapi import Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from persistq.api.schemas import INT64_MAX, QUEUE_NAME_PATTERN
from persistq.model import Job
from persistq.queue import Queue


async def get_queue(request: Request) -> Queue:
    queue: Queue = request.app.state.queue
    return queue


QueueDep = Annotated[Queue, Depends(get_queue)]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Library:
    """The process's queue, and how a route calls it.

    On SQLite every call goes through the process's one connection, one at a time, so a hop
    to a pool thread buys no parallelism and costs more than most calls (plus a GIL handoff
    back to the event loop): short calls then run inline. On PostgreSQL a pool of
    connections runs calls in parallel, so they go to the thread pool. Calls that can take
    long (counting every job, integrity checks, long polls) always run in threads.
    """

    queue: Queue
    inline: bool

    async def call(self, work: Callable[[], T]) -> T:
        if self.inline:
            return work()
        return await run_in_threadpool(work)


async def get_library(request: Request) -> Library:
    library: Library = request.app.state.library
    return library


LibraryDep = Annotated[Library, Depends(get_library)]
JobId = Annotated[int, Path(ge=1, le=INT64_MAX, description="The job's id.")]
QueuePath = Annotated[str, Path(pattern=QUEUE_NAME_PATTERN, description="The queue's name.")]


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
