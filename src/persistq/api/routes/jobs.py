"""Producing, consuming and managing jobs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from persistq.api.deps import (
    JobId,
    QueueDep,
    QueuePath,
    in_thread,
    job_response,
    jobs_response,
    leased,
)
from persistq.api.errors import error_body, error_response
from persistq.api.routes import CONFLICT, NOT_FOUND, PROTECTED, TOO_LARGE
from persistq.api.schemas import (
    MAX_WAIT_SECONDS,
    QUEUE_NAME_PATTERN,
    BatchIn,
    BulkIn,
    BulkOut,
    ClaimIn,
    ClaimManyIn,
    CompletedOut,
    CompleteIn,
    CompleteManyIn,
    CountIn,
    CountOut,
    CrashedIn,
    ErrorOut,
    EventOut,
    FailIn,
    HeartbeatManyIn,
    JobIn,
    JobOut,
    Key,
    LeasedJobOut,
    LeaseIn,
    ReleaseIn,
    SearchIn,
    SearchOut,
)
from persistq.errors import JobNotFound, LeaseLost, QueueError
from persistq.model import INT64_MAX, Event, Job, State, answered
from persistq.queue import Queue

T = TypeVar("T")
router = APIRouter(tags=["jobs"], **PROTECTED)
HOLDER = {**NOT_FOUND, **CONFLICT, **TOO_LARGE}


@router.post(
    "/queues/{queue}/jobs",
    operation_id="enqueue_job",
    status_code=201,
    response_model=JobOut,
    responses={
        200: {"model": JobOut, "description": "The key already existed: that job, unchanged."},
        **TOO_LARGE,
        409: {"model": ErrorOut, "description": "Header and body keys differ."},
    },
)
async def enqueue(
    queue: QueuePath,
    body: JobIn,
    q: QueueDep,
    idempotency_key: Annotated[Key | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    """Store one job: 201. A `key` (in the body or the Idempotency-Key header) that a job of
    this queue already has returns that job instead, with 200."""
    if idempotency_key is not None and body.key is not None and idempotency_key != body.key:
        return error_response(409, "key_conflict", "the Idempotency-Key header and key differ")
    return await store_job(q, queue, body, body.key or idempotency_key)


async def store_job(q: Queue, queue: str, body: JobIn, key: str | None) -> Response:
    """What ``enqueue`` does once its input is valid (also ``FastEnqueue``'s, in fastpath)."""
    job, created = await in_thread(
        lambda: q.enqueue_keyed(
            body.payload,
            queue=queue,
            priority=body.priority,
            delay=body.delay,
            run_at=body.run_at,
            max_attempts=body.max_attempts,
            key=key,
            timeout=body.timeout,
        )
    )
    return job_response(job, status=201 if created else 200)


@router.post(
    "/queues/{queue}/jobs/batch",
    operation_id="enqueue_jobs",
    status_code=201,
    response_model=list[JobOut],
    responses=TOO_LARGE,
)
async def enqueue_many(queue: QueuePath, body: BatchIn, q: QueueDep) -> Response:
    """Store every job in one transaction, or none (any invalid one refuses all). Always 201,
    also when some keys named existing jobs (those are returned in their place)."""
    jobs = await in_thread(
        lambda: q.enqueue_many(
            [item.payload for item in body.jobs],
            queue=queue,
            priority=body.priority,
            delay=body.delay,
            run_at=body.run_at,
            max_attempts=body.max_attempts,
            keys=[item.key for item in body.jobs],
            timeout=body.timeout,
        )
    )
    return jobs_response(jobs, status=201)


@router.post(
    "/queues/{queue}/claim",
    operation_id="claim_job",
    response_model=LeasedJobOut,
    responses={204: {"description": "No job became claimable in time."}, **TOO_LARGE},
)
async def claim(queue: QueuePath, body: ClaimIn, q: QueueDep, request: Request) -> Response:
    """Lease the next job (its `lease_token` proves the lease), or 204. With `wait`, a long
    poll: answers as soon as a job is claimable, at the latest after `wait` seconds."""
    jobs = await _claim(request, q, queue, body, 1)
    if not jobs:
        return Response(status_code=204)
    return job_response(jobs[0], with_token=True)


@router.post(
    "/queues/{queue}/claim/batch",
    operation_id="claim_jobs",
    response_model=list[LeasedJobOut],
    responses=TOO_LARGE,
)
async def claim_many(
    queue: QueuePath, body: ClaimManyIn, q: QueueDep, request: Request
) -> Response:
    """Lease up to `limit` jobs at once (an empty list when none came within `wait`)."""
    jobs = await _claim(request, q, queue, body, body.limit)
    return jobs_response(jobs, with_token=True)


async def _claim(request: Request, q: Queue, queue: str, body: ClaimIn, limit: int) -> list[Job]:
    deadline = time.monotonic() + body.wait

    def work() -> list[Job]:
        wait = max(0.0, deadline - time.monotonic())
        queues = [queue, *body.more_queues]
        return q.claim_many(
            queue=queues, worker=body.worker, limit=limit, lease=body.lease, wait=wait
        )

    if body.wait <= 0:
        return await in_thread(work)
    jobs = await _long_poll(request, work, deadline)
    # A long poll's client may have given up meanwhile: nobody would read the answer, so
    # give the jobs back rather than leave them leased until the lease expires.
    if jobs and await request.is_disconnected():
        await in_thread(lambda: _release_all(q, jobs))
        return []
    return jobs


async def _long_poll(request: Request, work: Callable[[], T], deadline: float) -> T:
    """Run ``work`` on one of the long-poll threads (see api/app.py). A poll that finds them
    all busy waits for one without holding a thread, at most until its own deadline, and
    then looks once without waiting."""
    slots: anyio.CapacityLimiter = request.app.state.waiting_claims
    acquired = False
    with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
        await slots.acquire()
        acquired = True
    if not acquired:
        return await run_in_threadpool(work)
    try:
        # Not cancellable, and nothing cancels it: a job claimed here is never dropped.
        return await anyio.to_thread.run_sync(work, limiter=anyio.CapacityLimiter(1))
    finally:
        slots.release()


def _release_all(q: Queue, jobs: list[Job]) -> None:
    for job in jobs:
        q.release(job)


@router.post(
    "/jobs/{id}/heartbeat",
    operation_id="heartbeat_job",
    response_model=LeasedJobOut,
    responses=HOLDER,
)
async def heartbeat(id: JobId, body: LeaseIn, q: QueueDep) -> Response:  # noqa: A002
    """Extend the lease by its length; 409 when the token no longer holds it."""
    job = await in_thread(lambda: q.heartbeat(leased(q, id, body.lease_token)))
    return job_response(job, with_token=True)


@router.post(
    "/jobs/heartbeat",
    operation_id="heartbeat_jobs",
    response_model=list[LeasedJobOut | ErrorOut],
    responses=TOO_LARGE,
)
async def heartbeat_many(body: HeartbeatManyIn, q: QueueDep) -> Response:
    """Extend every lease in one transaction (a worker's beat for all the jobs it runs):
    in order, per lease, the job or a `lease_lost` error; one lost lease leaves the others
    extended."""

    def work() -> list[Job | LeaseLost]:
        held: list[Job | LeaseLost] = []
        for lease in body.leases:
            try:
                held.append(leased(q, lease.id, lease.lease_token))
            except JobNotFound:
                held.append(LeaseLost(lease.id))
        jobs = [job for job in held if isinstance(job, Job)]
        beats = iter(q.heartbeat_many(jobs))
        return [next(beats) if isinstance(job, Job) else job for job in held]

    rows: list[dict[str, Any]] = []
    for beat in await in_thread(work):
        if isinstance(beat, LeaseLost):
            rows.append(error_body(beat))
        else:
            rows.append({**beat.to_dict(), "lease_token": beat.lease_token})
    return JSONResponse(rows)


@router.post(
    "/jobs/complete",
    operation_id="complete_jobs",
    response_model=CompletedOut,
    responses=TOO_LARGE,
)
async def complete_many(body: CompleteManyIn, q: QueueDep) -> Response:
    """Record several results at once (a worker's finished jobs), in order, each fenced by
    its own token: per completion the job or its own error. With `claim`, then claim as
    `/queues/{queue}/claim/batch` does without waiting, in the completions' transaction
    where the storage allows (SQLite): a worker's finished job and its next one in one
    request and one commit."""

    def work() -> tuple[list[Job | QueueError], list[Job]]:
        items: list[tuple[Job, Any]] = []
        refused: list[QueueError | None] = []  # per completion: a job that is not there
        for completion in body.completions:
            try:
                items.append((leased(q, completion.id, completion.lease_token), completion.result))
                refused.append(None)
            except JobNotFound as exc:
                refused.append(exc)
        claim = body.claim
        if claim is None:
            return answered(refused, q.complete_many(items)), []
        done, claimed = q.complete_and_claim(
            items,
            queue=[claim.queue, *claim.more_queues],
            worker=claim.worker,
            limit=claim.limit,
            lease=claim.lease,
        )
        return answered(refused, done), claimed

    done, claimed = await in_thread(work)
    completed = [a.to_dict() if isinstance(a, Job) else error_body(a) for a in done]
    leases = [{**job.to_dict(), "lease_token": job.lease_token} for job in claimed]
    return JSONResponse({"completed": completed, "claimed": leases})


@router.post(
    "/jobs/{id}/complete", operation_id="complete_job", response_model=JobOut, responses=HOLDER
)
async def complete(id: JobId, body: CompleteIn, q: QueueDep) -> Response:  # noqa: A002
    """Record the result; 409 when the token no longer holds the lease."""
    return job_response(
        await in_thread(lambda: q.complete(leased(q, id, body.lease_token), body.result))
    )


@router.post("/jobs/{id}/fail", operation_id="fail_job", response_model=JobOut, responses=HOLDER)
async def fail(id: JobId, body: FailIn, q: QueueDep) -> Response:  # noqa: A002
    """Record a failure: retried later with backoff while attempts remain (and `retry`),
    else FAILED. Without `lease_token`, an operator fails the job at once."""
    token = body.lease_token
    if token is None:
        return job_response(await in_thread(lambda: q.fail(id, body.error)))
    job = await in_thread(
        lambda: q.fail(
            leased(q, id, token),
            body.error,
            retry=body.retry,
            backoff_base=body.backoff_base,
            backoff_max=body.backoff_max,
            timed_out=body.timed_out,
        )
    )
    return job_response(job)


@router.post(
    "/jobs/{id}/release", operation_id="release_job", response_model=JobOut, responses=HOLDER
)
async def release(id: JobId, body: ReleaseIn, q: QueueDep) -> Response:  # noqa: A002
    """Give the job back unprocessed (worker shutting down); its attempt is refunded. With
    `delay`, not claimable again for that many seconds; `reason` goes on the event."""
    job = await in_thread(
        lambda: q.release(leased(q, id, body.lease_token), delay=body.delay, reason=body.reason)
    )
    return job_response(job)


@router.post(
    "/jobs/{id}/crashed", operation_id="crashed_job", response_model=JobOut, responses=HOLDER
)
async def crashed(id: JobId, body: CrashedIn, q: QueueDep) -> Response:  # noqa: A002
    """The process running the handler died (a process-pool worker saw it): back to
    PENDING at once, UNPROCESSABLE on the last attempt, as a lease expiry would."""
    job = await in_thread(lambda: q.crashed(leased(q, id, body.lease_token), body.detail))
    return job_response(job)


@router.post(
    "/jobs/{id}/resubmit",
    operation_id="resubmit_job",
    response_model=JobOut,
    responses={**NOT_FOUND, **CONFLICT},
)
async def resubmit(id: JobId, q: QueueDep) -> Response:  # noqa: A002
    """FAILED, UNPROCESSABLE, CANCELLED or COMPLETED -> PENDING, attempts reset; else 409."""
    return job_response(await in_thread(lambda: q.resubmit(id)))


@router.post(
    "/jobs/{id}/cancel",
    operation_id="cancel_job",
    response_model=JobOut,
    responses={**NOT_FOUND, **CONFLICT},
)
async def cancel(id: JobId, q: QueueDep) -> Response:  # noqa: A002
    """PENDING, FAILED, UNPROCESSABLE -> CANCELLED; PROCESSING: cancel requested; else 409."""
    return job_response(await in_thread(lambda: q.cancel(id)))


@router.get("/jobs", operation_id="list_jobs", response_model=list[JobOut])
def list_jobs(
    q: QueueDep,
    status: State | None = None,
    queue: Annotated[str | None, Query(pattern=QUEUE_NAME_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=INT64_MAX)] = 0,
) -> Response:
    """Jobs, newest first, optionally of one state and queue (in a thread: a large offset
    is slow)."""
    return jobs_response(q.jobs(status=status, queue=queue, limit=limit, offset=offset))


# The search routes take their filter as a JSON body (a list of states, times), so they
# are POSTs; search and count change nothing.
@router.post("/jobs/search", operation_id="search_jobs", response_model=SearchOut)
async def search(body: SearchIn, q: QueueDep) -> Response:
    """A page of the jobs matching `filter`, newest (or oldest) first. Keyset paging: pass
    the answer's `next` as `after` for the following page."""
    page = await in_thread(
        lambda: q.search(
            body.filter.to_filter(),
            after=body.after,
            limit=body.limit,
            oldest_first=body.oldest_first,
        )
    )
    return JSONResponse({"jobs": [job.to_dict() for job in page.jobs], "next": page.next})


@router.post("/jobs/count", operation_id="count_jobs")
async def count(body: CountIn, q: QueueDep) -> CountOut:
    """How many jobs match `filter`."""
    return CountOut(count=await in_thread(lambda: q.count(body.filter.to_filter())))


@router.post("/jobs/resubmit", operation_id="resubmit_matching")
async def resubmit_matching(body: BulkIn, q: QueueDep) -> BulkOut:
    """Resubmit the jobs matching `filter` that may be (FAILED, UNPROCESSABLE, CANCELLED,
    COMPLETED), newest first, at most `limit`, `batch` per transaction. Bad input changes
    nothing; `next` says where to go on (as `after`) when `limit` stopped it."""
    flt = body.filter.to_filter()
    done = await in_thread(
        lambda: q.resubmit_matching(flt, after=body.after, limit=body.limit, batch=body.batch)
    )
    return BulkOut(done=done.done, next=done.next)


@router.post("/jobs/cancel", operation_id="cancel_matching")
async def cancel_matching(body: BulkIn, q: QueueDep) -> BulkOut:
    """Cancel the jobs matching `filter` that may be (PENDING, FAILED, UNPROCESSABLE;
    PROCESSING: cancel requested), as `/jobs/resubmit` does."""
    flt = body.filter.to_filter()
    done = await in_thread(
        lambda: q.cancel_matching(flt, after=body.after, limit=body.limit, batch=body.batch)
    )
    return BulkOut(done=done.done, next=done.next)


@router.get("/jobs/{id}", operation_id="get_job", response_model=JobOut, responses=NOT_FOUND)
async def get_job(
    id: JobId,  # noqa: A002
    q: QueueDep,
    request: Request,
    wait: Annotated[
        float | None,
        Query(
            ge=0,
            le=MAX_WAIT_SECONDS,
            allow_inf_nan=False,
            description="Long poll: answer as soon as the job is finished, at the latest "
            "after this many seconds, with its state then.",
        ),
    ] = None,
) -> Response:
    if not wait:
        return job_response(await in_thread(lambda: q.get(id)))
    deadline = time.monotonic() + wait

    def work() -> Job:
        return q.wait(id, timeout=max(0.0, deadline - time.monotonic()))

    return job_response(await _long_poll(request, work, deadline))


@router.get("/jobs/{id}/events", operation_id="job_events", responses=NOT_FOUND)
async def events(id: JobId, q: QueueDep) -> list[EventOut]:  # noqa: A002
    """Every state change of the job, oldest first."""
    return [EventOut.from_event(e) for e in await in_thread(lambda: _events(q, id))]


def _events(q: Queue, job_id: int) -> list[Event]:
    q.get(job_id)  # 404 for an unknown id rather than an empty list
    return q.events(job_id)
