"""Request (``…In``) and response (``…Out``) models of the REST API.

Bounds are declared here, so the OpenAPI schema tells clients what is accepted; the queue
library validates again (names, payload size, JSON-ness), and its ``InvalidJob`` becomes a
422 too. Request models are strict and refuse unknown fields, so a typo such as ``max_attempt``
is an error rather than silently ignored. Strict means an integer field takes JSON
integers only: neither ``"5"`` nor ``5.0`` (which JSON Schema would count as an integer:
a client that sends floats for counts has a bug worth hearing about). A job id in a path
is canonical decimal only (:data:`JOB_ID_PATTERN`): ``/jobs/+1``, ``/jobs/01`` and
``/jobs/1_0`` are 422, not job 1 or job 10.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from persistq.model import (
    BULK_BATCH,
    INT64_MAX,
    MAX_ATTEMPTS,
    MAX_BATCH,
    MAX_BULK,
    MAX_BULK_BATCH,
    MAX_ERROR_CHARS,
    MAX_KEY_LENGTH,
    MAX_PAGE,
    MAX_PRIORITY,
    MAX_SEARCH_TEXT,
    MAX_SECONDS,
    MAX_WORKER_LENGTH,
    MIN_PRIORITY,
    QUEUE_NAME,
    Event,
    EventKind,
    JobFilter,
    State,
)

QUEUE_NAME_PATTERN = QUEUE_NAME.pattern
#: A long-polling claim holds a server thread; this bounds how long (see api/app.py).
MAX_WAIT_SECONDS = 30.0


#: A job id as a path gives it: digits, no sign, no leading zero (at most 19: int64).
JOB_ID_PATTERN = r"^[1-9][0-9]{0,18}$"


def _canonical_id(value: Any) -> Any:
    """Refuse what int() would take but is not how an id is written (+1, 01, 1_0, " 1")."""
    if isinstance(value, str) and not re.fullmatch(JOB_ID_PATTERN, value):
        raise ValueError("a job id is a decimal number without sign, spaces or leading zeros")
    return value


CanonicalId = BeforeValidator(_canonical_id)
QueueName = Annotated[str, Field(pattern=QUEUE_NAME_PATTERN, examples=["default"])]
Priority = Annotated[
    int, Field(ge=MIN_PRIORITY, le=MAX_PRIORITY, description="Higher is claimed first.")
]
Delay = Annotated[
    float,
    Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False, description="Seconds before claimable."),
]
MaxAttempts = Annotated[int, Field(ge=1, le=MAX_ATTEMPTS)]
Timeout = Annotated[
    float,
    Field(
        ge=0.001,
        le=MAX_SECONDS,
        allow_inf_nan=False,
        description="Seconds an attempt may run before the worker stops it.",
    ),
]
#: Documents, for clients and the schema fuzzer, that text fields refuse NUL (the library
#: enforces it with its own message, persistq.model; lone surrogates are not JSON text).
NO_NUL: dict[str, Any] = {"pattern": "^[^\\u0000]*$"}
Key = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        description="Idempotency key: an enqueue with a key a job of the queue already has "
        "returns that job instead of adding one.",
        json_schema_extra=NO_NUL,
    ),
]
Worker = Annotated[str, Field(min_length=1, max_length=MAX_WORKER_LENGTH, json_schema_extra=NO_NUL)]
LeaseToken = Annotated[str, Field(min_length=1, max_length=255)]
Lease = Annotated[
    float,
    Field(ge=0.001, le=MAX_SECONDS, allow_inf_nan=False, description="Lease length in seconds."),
]


class RequestModel(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


def _iso_text(value: Any) -> Any:
    """A time as ISO 8601 text (strict models take no strings for datetimes otherwise, and
    a bare number would pass for epoch seconds); the queue refuses one without an offset."""
    if value is None or isinstance(value, str | datetime):
        return value
    raise ValueError("must be an ISO 8601 time, e.g. 2026-12-01T12:00:00Z")


RunAt = Annotated[
    datetime | None,
    Field(
        strict=False,
        description="Not claimable before this time (ISO 8601 with a UTC offset, e.g. "
        "2026-12-01T12:00:00Z; a past time is due at once, at most ten years ahead), instead "
        "of `delay`.",
    ),
    BeforeValidator(_iso_text),
]


#: What the schema can say of "delay or run_at, not both" (the queue checks it too).
DELAY_OR_RUN_AT = ConfigDict(json_schema_extra={"not": {"required": ["delay", "run_at"]}})


class JobIn(RequestModel):
    model_config = {**RequestModel.model_config, **DELAY_OR_RUN_AT}

    payload: Any = Field(description="Any JSON value; at most 1 MiB encoded by default.")
    priority: Priority = 0
    delay: Delay = 0
    run_at: RunAt = None
    max_attempts: MaxAttempts = 3
    key: Key | None = None
    timeout: Timeout | None = None


class BatchItemIn(RequestModel):
    payload: Any
    key: Key | None = None


class BatchIn(RequestModel):
    """Jobs stored in one transaction (all or none); the options apply to every job."""

    model_config = {**RequestModel.model_config, **DELAY_OR_RUN_AT}

    jobs: list[BatchItemIn] = Field(min_length=1, max_length=MAX_BATCH)
    priority: Priority = 0
    delay: Delay = 0
    run_at: RunAt = None
    max_attempts: MaxAttempts = 3
    timeout: Timeout | None = None


Moment = Annotated[
    datetime | None,
    Field(strict=False, description="ISO 8601 with a UTC offset, e.g. 2026-12-01T12:00:00Z."),
    BeforeValidator(_iso_text),
]


class FilterIn(RequestModel):
    """Which jobs: every given condition holds (``persistq.JobFilter``)."""

    queue: str | None = Field(default=None, pattern=QUEUE_NAME_PATTERN)
    states: list[Annotated[State, Field(strict=False)]] = Field(
        default_factory=list, max_length=len(State), description="Any of these; none: every state."
    )
    text: str | None = Field(
        default=None,
        max_length=MAX_SEARCH_TEXT,
        description="A case-insensitive substring of the payload (compact JSON) or last error.",
        json_schema_extra=NO_NUL,
    )
    task: str | None = Field(
        default=None,
        max_length=255,
        description="The payload's `task` is this.",
        json_schema_extra=NO_NUL,
    )
    created_from: Moment = None
    created_to: Moment = None
    max_id: int | None = Field(default=None, ge=0, le=INT64_MAX, description="Jobs up to this id.")

    def to_filter(self) -> JobFilter:
        return JobFilter.of(
            queue=self.queue,
            states=self.states,
            text=self.text,
            task=self.task,
            created_from=self.created_from,
            created_to=self.created_to,
            max_id=self.max_id,
        )


class SearchIn(RequestModel):
    filter: FilterIn = Field(default_factory=lambda: FilterIn())
    after: int | None = Field(default=None, ge=0, le=INT64_MAX, description="The `next` of a page.")
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)
    oldest_first: bool = False


class CountIn(RequestModel):
    filter: FilterIn = Field(default_factory=lambda: FilterIn())


class BulkIn(RequestModel):
    filter: FilterIn = Field(default_factory=lambda: FilterIn())
    after: int | None = Field(default=None, ge=0, le=INT64_MAX, description="The `next` of a call.")
    limit: int = Field(default=MAX_BULK, ge=1, le=MAX_BULK)
    batch: int = Field(
        default=BULK_BATCH, ge=1, le=MAX_BULK_BATCH, description="Jobs per transaction."
    )


class ClaimerIn(RequestModel):
    worker: Worker
    lease: Lease | None = Field(
        default=None, description="Seconds; the server's default when absent."
    )


class ClaimIn(ClaimerIn):
    wait: float = Field(
        0,
        ge=0,
        le=MAX_WAIT_SECONDS,
        allow_inf_nan=False,
        description="Long poll: wait up to this many seconds for a job (204 when none came).",
    )
    more_queues: list[QueueName] = Field(
        default_factory=list,
        max_length=16,
        description="Further queues tried after the one in the path, in this order.",
    )


class ClaimManyIn(ClaimIn):
    limit: Annotated[int, Field(ge=1, le=MAX_BATCH)] = 1


class LeaseIn(RequestModel):
    lease_token: LeaseToken


class HeldLeaseIn(LeaseIn):
    id: Annotated[int, Field(ge=1, le=INT64_MAX, description="The job's id.")]


class HeartbeatManyIn(RequestModel):
    """Leases extended in one transaction; a lost one does not stop the others."""

    leases: list[HeldLeaseIn] = Field(min_length=1, max_length=MAX_BATCH)


class CompleteIn(LeaseIn):
    result: Any = None


class CompletionIn(HeldLeaseIn):
    result: Any = None


class ClaimNextIn(ClaimerIn):
    """The claim that follows the completions, in their transaction where the storage
    allows (SQLite): it never waits."""

    queue: QueueName
    more_queues: list[QueueName] = Field(
        default_factory=list, max_length=16, description="Tried after `queue`, in this order."
    )
    limit: Annotated[int, Field(ge=1, le=MAX_BATCH)] = 1


class CompleteManyIn(RequestModel):
    """Completions settled together (a worker's finished jobs), each fenced by its own
    token as `/jobs/{id}/complete` is; with `claim`, then the worker's next claim."""

    completions: list[CompletionIn] = Field(min_length=1, max_length=MAX_BATCH)
    claim: ClaimNextIn | None = None


class FailIn(RequestModel):
    lease_token: LeaseToken | None = Field(
        None,
        description="The claim's token. Without one, an operator fails a PENDING or "
        "PROCESSING job at once, with no retry; its lease holder gets 409 from then on.",
    )
    error: str = Field(min_length=1, max_length=MAX_ERROR_CHARS, json_schema_extra=NO_NUL)
    retry: bool = Field(True, description="False skips the remaining attempts.")
    backoff_base: Delay | None = Field(
        None, description="This retry's backoff base in seconds (the server's when absent)."
    )
    backoff_max: Delay | None = Field(
        None, description="This retry's backoff cap in seconds (the server's when absent)."
    )
    timed_out: str | None = Field(
        None,
        max_length=MAX_ERROR_CHARS,
        json_schema_extra=NO_NUL,
        description="The attempt ran past its timeout: the detail of a `timed_out` event.",
    )


class ReleaseIn(LeaseIn):
    delay: Delay = 0
    reason: str | None = Field(
        None, min_length=1, max_length=MAX_ERROR_CHARS, description="Recorded on the event."
    )


class CrashedIn(LeaseIn):
    detail: str = Field(
        min_length=1,
        max_length=MAX_ERROR_CHARS,
        json_schema_extra=NO_NUL,
        description="How the process running the handler died (exit code or signal).",
    )


class QueueIn(RequestModel):
    name: QueueName


class LimitsIn(RequestModel):
    """The queue's global limits; a field left out or null lifts that limit."""

    concurrency: int | None = Field(
        None, ge=0, le=1_000_000, description="Most jobs of the queue PROCESSING at once."
    )
    rate: str | None = Field(
        None,
        pattern=r"^[1-9][0-9]{0,8}/[smh]$",
        description='Most claims per window: "N/s", "N/m" or "N/h".',
    )


class WorkerSeenIn(RequestModel):
    worker: Worker
    queues: list[QueueName] = Field(min_length=1, max_length=64)


class WorkerGoneIn(RequestModel):
    worker: Worker


class WorkerPruneIn(RequestModel):
    unseen_for: float = Field(
        ge=1, le=MAX_SECONDS, allow_inf_nan=False, description="Seconds not seen."
    )


# -- responses -------------------------------------------------------------------------


class JobOut(BaseModel):
    id: int
    queue: str
    payload: Any
    status: State
    priority: int
    run_at: datetime
    attempts: int
    max_attempts: int
    key: str | None
    worker: str | None
    lease_expires_at: datetime | None
    last_error: str | None
    result: Any
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested: bool
    #: Grows by one with every claim, never reset: pass it to downstream writes (SPEC).
    fence: int
    timeout: float | None


class LeasedJobOut(JobOut):
    """A job the caller holds: ``lease_token`` proves it to heartbeat, complete and fail."""

    lease_token: str


class EventOut(BaseModel):
    id: int | None  # None: derived from the job row, not stored (SPEC)
    job_id: int
    at: datetime
    kind: EventKind
    worker: str | None
    detail: str | None

    @classmethod
    def from_event(cls, event: Event) -> EventOut:
        return cls.model_validate(event, from_attributes=True)


class QueueOut(BaseModel):
    name: str
    paused: bool
    created_at: datetime
    concurrency: int | None = None
    rate: str | None = None


class DeletedQueueOut(BaseModel):
    name: str
    deleted_jobs: int


class QueueStatsOut(BaseModel):
    PENDING: int
    PROCESSING: int
    COMPLETED: int
    FAILED: int
    UNPROCESSABLE: int
    CANCELLED: int
    paused: bool
    oldest_pending_age: float | None = Field(description="Seconds the oldest due job has waited.")


class StatsOut(BaseModel):
    queues: dict[str, QueueStatsOut]


class WorkerOut(BaseModel):
    id: str
    queues: list[str]
    started_at: datetime
    last_seen_at: datetime
    job_ids: list[int]


class SearchOut(BaseModel):
    jobs: list[JobOut]
    next: int | None = Field(description="`after` of the next page; null after the last.")


class CountOut(BaseModel):
    count: int


class BulkOut(BaseModel):
    done: int = Field(description="Jobs changed.")
    next: int | None = Field(description="`after` to go on from; null when none is left.")


class RecoveredOut(BaseModel):
    recovered: int


class PrunedOut(BaseModel):
    pruned: int


class TimingOut(BaseModel):
    """When a finished job became due, started and finished, in epoch seconds."""

    queue: str
    status: State
    run_at: float
    started_at: float
    finished_at: float


class FinishedCountOut(BaseModel):
    """Jobs that finished in ``status`` in the bucket starting at ``at`` (epoch seconds)."""

    at: float
    status: State
    count: int


class FailureOut(EventOut):
    """A failure event (``failed``, ``retried``, ``lease_expired``) and its job's queue."""

    queue: str


class StorageOut(BaseModel):
    """The database's local files and their disk; every field null without local files."""

    path: str | None
    size_bytes: int | None
    wal_bytes: int | None
    free_disk_bytes: int | None
    total_disk_bytes: int | None


class CheckOut(BaseModel):
    """The database check; further fields depend on the backend (sizes, journal mode...)."""

    model_config = ConfigDict(extra="allow")

    ok: bool
    backend: str
    integrity: str
    schema_version: int | None
    latest_schema_version: int


class ClockOut(BaseModel):
    now: float = Field(description="The queue's clock, epoch seconds (the database's).")


class HealthOut(BaseModel):
    """``ok`` (200); ``unhealthy`` (503: the database fails its check, or writes would fail)
    or ``busy`` (503: the database did not answer in time); ``detail`` says why."""

    status: Literal["ok", "unhealthy", "busy"] = Field(examples=["ok"])
    detail: str | None = None
    schema_version: int | None = None


class ErrorOut(BaseModel):
    """Every error: a sentence for people, a stable ``code`` for programs, and its data."""

    detail: str
    code: str = Field(examples=["lease_lost"])
    job_id: int | None = None
    queue: str | None = None
    current: str | None = None
    requested: str | None = None
    unfinished: int | None = None


class CompletedOut(BaseModel):
    completed: list[JobOut | ErrorOut] = Field(
        description="Per completion, in order: the finished job, or its own refusal "
        "(`lease_lost`, `not_found`, `invalid`); one refusal leaves the others completed."
    )
    claimed: list[LeasedJobOut] = Field(description="What the claim leased (maybe nothing).")
