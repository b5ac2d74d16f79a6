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
    """The process's queue, and how a route calls it: always from a thread, never on the
    event loop. A call may wait for the database (a busy SQLite file is retried for up to a
    minute); on the loop that wait would hold every other request, even a 401 or
    /openapi.json. A thread hop costs about 0.1 ms (bench/bench_api.py)."""

    queue: Queue

    async def call(self, work: Callable[[], T]) -> T:
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
