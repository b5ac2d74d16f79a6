"""Stats, Prometheus metrics, health, recovery, worker presence, the database and its clock."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from persistq import insights
from persistq.api.deps import HealthProbe, QueueDep
from persistq.api.routes import PROTECTED, TOO_LARGE
from persistq.api.schemas import (
    CheckOut,
    ClockOut,
    HealthOut,
    PrunedOut,
    RecoveredOut,
    StatsOut,
    StorageOut,
    WorkerGoneIn,
    WorkerOut,
    WorkerPruneIn,
    WorkerSeenIn,
)

router = APIRouter(tags=["system"], **PROTECTED)
public = APIRouter(tags=["system"])
#: The classic text format (what generate_latest writes), which every Prometheus reads.
TEXT_FORMAT = CONTENT_TYPE_PLAIN_0_0_4
TEXT_SCHEMA = {"schema": {"type": "string", "description": "Prometheus text format 0.0.4."}}


@router.get("/stats", operation_id="stats")
def stats(q: QueueDep) -> StatsOut:
    """Jobs per queue and state, paused flag, oldest pending age (seconds)."""
    return StatsOut.model_validate(insights.stats(q))


@router.get(
    "/metrics",
    operation_id="metrics",
    response_class=Response,
    responses={200: {"content": {TEXT_FORMAT: TEXT_SCHEMA}, "description": "Prometheus text."}},
)
def metrics(request: Request) -> Response:
    """Prometheus text format; see persistq/api/metrics.py for what each series counts."""
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_PLAIN_0_0_4)


@router.post("/recover", operation_id="recover")
def recover(q: QueueDep) -> RecoveredOut:
    """Sweep: recover every PROCESSING job whose lease expired (remote workers call this)."""
    return RecoveredOut(recovered=q.recover_stalled())


@router.get("/workers", operation_id="list_workers")
def workers(
    q: QueueDep, seen_within: Annotated[float, Query(gt=0, le=30 * 86400)] = 300.0
) -> list[WorkerOut]:
    """Workers seen in the last `seen_within` seconds, with the jobs they hold."""
    return [
        WorkerOut.model_validate(w, from_attributes=True)
        for w in q.workers(seen_within=seen_within)
    ]


@router.post("/workers/seen", operation_id="worker_seen", status_code=204, responses=TOO_LARGE)
def worker_seen(body: WorkerSeenIn, q: QueueDep) -> Response:
    """A worker says it is alive (every few seconds while it runs)."""
    q.worker_seen(body.worker, body.queues)
    return Response(status_code=204)


@router.post("/workers/gone", operation_id="worker_gone", status_code=204, responses=TOO_LARGE)
def worker_gone(body: WorkerGoneIn, q: QueueDep) -> Response:
    """A worker says it stopped."""
    q.worker_gone(body.worker)
    return Response(status_code=204)


@router.post("/workers/prune", operation_id="prune_workers", responses=TOO_LARGE)
def prune_workers(body: WorkerPruneIn, q: QueueDep) -> PrunedOut:
    """Forget workers not seen for `unseen_for` seconds (remote workers' sweepers call this)."""
    return PrunedOut(pruned=q.prune_workers(unseen_for=body.unseen_for))


@router.get("/clock", operation_id="clock")
def clock(q: QueueDep) -> ClockOut:
    """The queue's clock: what `since` and the ages of the other reads are measured on."""
    return ClockOut(now=q.now())


@router.get("/counters", operation_id="counters")
def counters(q: QueueDep) -> dict[str, dict[str, int]]:
    """Lifetime counts per queue (what /metrics' counters show), exact across restarts and
    purges."""
    return q.counters()


@router.get("/storage", operation_id="storage")
def storage(q: QueueDep) -> StorageOut:
    """Database and WAL file sizes and free disk, cheap enough to poll (no integrity check)."""
    return StorageOut.model_validate(q.storage(), from_attributes=True)


@router.get("/check", operation_id="check")
def check(
    q: QueueDep,
    full: Annotated[bool, Query(description="Read every page (slow on a large database).")] = False,
) -> CheckOut:
    """The database check: integrity, schema version and sizes (`persistq check`)."""
    return CheckOut.model_validate(q.check(full=full))


@public.get(
    "/healthz",
    operation_id="healthz",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "Unhealthy or busy: why."}},
)
async def healthz(request: Request) -> JSONResponse:
    """No token needed. 200 when the database answers, passes its quick check and this
    process's writes would succeed; 503 with the reason otherwise, or when the database did
    not answer within half a second (``busy``)."""
    probe: HealthProbe = request.app.state.health
    health = await probe.get()
    if health is None:
        detail = f"the database did not answer within {probe.wait:g} s"
        return _health(503, "busy", detail, headers={"Retry-After": "1"})
    if health.ok:
        return _health(200, "ok", None, health.schema_version)
    return _health(503, "unhealthy", health.reason, health.schema_version)


def _health(
    status: int,
    word: Literal["ok", "unhealthy", "busy"],
    detail: str | None,
    version: int | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = HealthOut(status=word, detail=detail, schema_version=version)
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)
