"""Dependencies the routes share: the process's queue, and the job a lease token names."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.responses import JSONResponse

from persistq.api.schemas import INT64_MAX, QUEUE_NAME_PATTERN
from persistq.model import Job
from persistq.queue import Queue


async def get_queue(request: Request) -> Queue:
    queue: Queue = request.app.state.queue
    return queue


QueueDep = Annotated[Queue, Depends(get_queue)]
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
