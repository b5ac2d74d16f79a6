"""What happened: finished jobs, throughput and failures, for read models over HTTP.

These back :class:`~persistq.remote.RemoteQueue`'s ``finished``, ``throughput`` and
``recent_failures``, so ``persistq.insights`` (the Ops UI, /metrics, stats) works over the
API as it does on a database. Bounds are the library's (``persistq.queue``), which
validates them again.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from persistq.api.deps import QueueDep
from persistq.api.routes import PROTECTED
from persistq.api.schemas import FailureOut, FinishedCountOut, TimingOut
from persistq.queue import MAX_BUCKET_SECONDS, MAX_INSTANT, MAX_READ_ROWS

router = APIRouter(tags=["activity"], **PROTECTED)

Since = Annotated[
    float,
    Query(
        ge=0,
        le=MAX_INSTANT,
        allow_inf_nan=False,
        description="Epoch seconds on the queue's clock (GET /clock): jobs finished from then.",
    ),
]
Limit = Annotated[int, Query(ge=1, le=MAX_READ_ROWS, description="Most rows returned.")]


@router.get("/finished", operation_id="finished", response_model=list[TimingOut])
def finished(q: QueueDep, since: Since, limit: Limit = 1000) -> JSONResponse:
    """When each job finished since `since` became due, started and finished (epoch
    seconds), newest first. (Rendered without pydantic: a window may hold many jobs.)"""
    rows = [asdict(t) for t in q.finished(since=since, limit=limit)]
    return JSONResponse(rows)


@router.get("/throughput", operation_id="throughput")
def throughput(
    q: QueueDep,
    since: Since,
    bucket: Annotated[
        int, Query(ge=1, le=MAX_BUCKET_SECONDS, description="Bucket width in seconds.")
    ] = 60,
) -> list[FinishedCountOut]:
    """Jobs finished since `since` per final state and bucket (buckets start at multiples of
    `bucket` since the epoch), oldest first; empty buckets are left out."""
    return [
        FinishedCountOut.model_validate(c, from_attributes=True)
        for c in q.throughput(since=since, bucket=bucket)
    ]


@router.get("/failures", operation_id="failures")
def failures(q: QueueDep, limit: Limit = 20) -> list[FailureOut]:
    """The newest failure events (`failed`, `retried`, `lease_expired`) with their job's
    queue, newest first."""
    return [
        FailureOut.model_validate({**f.event.to_dict(), "queue": f.queue})
        for f in q.recent_failures(limit=limit)
    ]
