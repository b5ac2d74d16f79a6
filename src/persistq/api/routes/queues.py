"""Queues: list, create, delete, pause, resume, limits."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from persistq.api.deps import QueueDep, QueuePath, in_thread
from persistq.api.routes import PROTECTED, TOO_LARGE, Responses
from persistq.api.schemas import DeletedQueueOut, ErrorOut, LimitsIn, QueueIn, QueueOut

router = APIRouter(prefix="/queues", tags=["queues"], **PROTECTED)
NO_QUEUE: Responses = {404: {"model": ErrorOut, "description": "No such queue."}}


@router.get("", operation_id="list_queues")
async def list_queues(q: QueueDep) -> list[QueueOut]:
    found = await in_thread(q.queues)
    return [QueueOut.model_validate(info, from_attributes=True) for info in found]


@router.post("", operation_id="create_queue", status_code=201, responses=TOO_LARGE)
async def create_queue(body: QueueIn, q: QueueDep) -> QueueOut:
    """Create a queue (enqueueing creates one too); an existing queue is returned as is."""
    info = await in_thread(lambda: q.create_queue(body.name))
    return QueueOut.model_validate(info, from_attributes=True)


@router.delete(
    "/{queue}",
    operation_id="delete_queue",
    responses={
        **NO_QUEUE,
        409: {"model": ErrorOut, "description": "Unfinished jobs left and no `force`."},
    },
)
def delete_queue(
    queue: QueuePath,
    q: QueueDep,
    force: Annotated[bool, Query(description="Also delete PENDING and PROCESSING jobs.")] = False,
) -> DeletedQueueOut:
    """Delete the queue and its jobs; refused (409) while it holds unfinished jobs. (In a
    thread: it may delete many rows.)"""
    return DeletedQueueOut(name=queue, deleted_jobs=q.delete_queue(queue, force=force))


@router.post("/{queue}/pause", operation_id="pause_queue", responses=NO_QUEUE)
async def pause(queue: QueuePath, q: QueueDep) -> QueueOut:
    """Claims from a paused queue return nothing; enqueues are still accepted."""
    info = await in_thread(lambda: q.pause(queue))
    return QueueOut.model_validate(info, from_attributes=True)


@router.put("/{queue}/limits", operation_id="set_queue_limits", responses=TOO_LARGE)
async def set_limits(queue: QueuePath, body: LimitsIn, q: QueueDep) -> QueueOut:
    """Set the queue's global limits, across every worker (null lifts one); checked inside
    every claim. The queue is created if it does not exist yet."""
    info = await in_thread(
        lambda: q.set_limits(queue, concurrency=body.concurrency, rate=body.rate)
    )
    return QueueOut.model_validate(info, from_attributes=True)


@router.post("/{queue}/resume", operation_id="resume_queue", responses=NO_QUEUE)
async def resume(queue: QueuePath, q: QueueDep) -> QueueOut:
    info = await in_thread(lambda: q.resume(queue))
    return QueueOut.model_validate(info, from_attributes=True)
