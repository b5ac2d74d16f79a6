"""Jobs, events and the states a job moves through.

::

    enqueue ──► PENDING ──claim──► PROCESSING ──complete──► COMPLETED
                  ▲  ▲                │  │  │
     retry (fail, │  └── release ─────┘  │  └── fail, last attempt ─────► FAILED
     attempts     │      (shutdown)      └───── lease expired, last ─────► UNPROCESSABLE
     left) or     └─ lease expired, attempts left
    resubmit ◄── FAILED / UNPROCESSABLE / CANCELLED / COMPLETED
    cancel: PENDING, FAILED, UNPROCESSABLE ──► CANCELLED;
            PROCESSING ──► cancel requested ──► CANCELLED when the holder lets go

FAILED and UNPROCESSABLE together are the dead-letter queue.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from persistq.errors import InvalidJob

JSON = Any  # a value json.dumps accepts; the type system cannot say more


class State(StrEnum):
    #: Waiting to be claimed, possibly not before ``run_at``. Enqueue, retry, release,
    #: lease recovery and resubmit put jobs here; claim takes them out.
    PENDING = "PENDING"
    #: Leased to one worker until ``lease_expires_at``. Only the lease holder moves it on;
    #: the sweeper moves it back when the lease expires.
    PROCESSING = "PROCESSING"
    #: The handler returned. Terminal; purge reaps it.
    COMPLETED = "COMPLETED"
    #: The handler raised on the last allowed attempt (or raised Unrecoverable). Dead letter.
    FAILED = "FAILED"
    #: The lease expired on the last allowed attempt: the job keeps killing or stalling its
    #: consumers. Dead letter.
    UNPROCESSABLE = "UNPROCESSABLE"
    #: Cancelled by hand. Terminal until resubmitted.
    CANCELLED = "CANCELLED"


DEAD_LETTER = frozenset({State.FAILED, State.UNPROCESSABLE})
TERMINAL = frozenset({State.COMPLETED, State.FAILED, State.UNPROCESSABLE, State.CANCELLED})
UNFINISHED = frozenset({State.PENDING, State.PROCESSING})
RESUBMITTABLE = frozenset({State.FAILED, State.UNPROCESSABLE, State.CANCELLED, State.COMPLETED})
CANCELLABLE = frozenset({State.PENDING, State.PROCESSING, State.FAILED, State.UNPROCESSABLE})


class EventKind(StrEnum):
    """Why a job changed: past-tense API verbs, kept apart from the state it landed in."""

    ENQUEUED = "enqueued"
    CLAIMED = "claimed"
    COMPLETED = "completed"
    FAILED = "failed"
    RETRIED = "retried"
    LEASE_EXPIRED = "lease_expired"
    RELEASED = "released"
    CANCEL_REQUESTED = "cancel_requested"
    CANCELLED = "cancelled"
    RESUBMITTED = "resubmitted"


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    queue: str
    payload: JSON
    status: State
    priority: int
    run_at: datetime
    attempts: int
    max_attempts: int
    key: str | None
    worker: str | None
    lease_expires_at: datetime | None
    last_error: str | None
    result: JSON
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    #: Proof of holding the lease; set only on the copy returned by a claim or heartbeat.
    lease_token: str | None = None
    #: Someone asked to cancel this PROCESSING job; it ends CANCELLED when its holder lets go.
    cancel_requested: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (times as ISO 8601 UTC); the lease token is left out."""
        out: dict[str, Any] = {}
        for name in self.__slots__:
            if name == "lease_token":
                continue
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        out["status"] = str(self.status)
        return out


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    job_id: int
    at: datetime
    kind: EventKind
    worker: str | None
    detail: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "job_id": self.job_id,
            "at": self.at.isoformat(),
            "kind": str(self.kind),
            "worker": self.worker,
            "detail": self.detail,
        }


# One encoder for every call (json.dumps with options builds a new one each time).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
MAX_KEY_LENGTH = 255
MAX_WORKER_LENGTH = 255
INT64_MAX = 2**63 - 1


def validate_queue_name(name: object) -> str:
    if not isinstance(name, str) or not QUEUE_NAME.match(name):
        raise InvalidJob(
            f"invalid queue name {name!r}: 1-64 characters of letters, digits, '_.:-', "
            "starting with a letter or digit"
        )
    return name


def encode_json(value: JSON, *, what: str, max_bytes: int | None = None) -> str:
    """Encode ``value`` as compact JSON, refusing what JSON cannot hold (NaN, objects)."""
    try:
        text = _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise InvalidJob(f"{what} is not JSON: {exc}") from None
    # A str is at most 4 bytes a character: only long texts need the exact count.
    if max_bytes is not None and len(text) * 4 > max_bytes:
        size = len(text.encode())
        if size > max_bytes:
            raise InvalidJob(f"{what} is {size} bytes encoded; the limit is {max_bytes}")
    return text


def validate_int(value: object, *, what: str, minimum: int, maximum: int = INT64_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJob(f"{what} must be an integer, got {value!r}")
    if not minimum <= value <= maximum:
        raise InvalidJob(f"{what} must be between {minimum} and {maximum}, got {value}")
    return value


def validate_seconds(value: object, *, what: str, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidJob(f"{what} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < minimum or seconds > 10 * 365 * 86400:
        raise InvalidJob(f"{what} must be between {minimum} and ten years in seconds, got {value}")
    return seconds


def validate_text(value: object, *, what: str, max_length: int, optional: bool) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= max_length:
        raise InvalidJob(f"{what} must be a string of 1-{max_length} characters, got {value!r}")
    return value


def validate_state(value: object) -> State:
    try:
        return State(str(value).upper()) if isinstance(value, str) else State(value)  # type: ignore[arg-type]
    except ValueError:
        allowed = ", ".join(s.value for s in State)
        raise InvalidJob(f"unknown state {value!r}; one of {allowed}") from None


@dataclass(frozen=True, slots=True)
class QueueInfo:
    name: str
    paused: bool
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "paused": self.paused, "created_at": self.created_at.isoformat()}


@dataclass(frozen=True, slots=True)
class Health:
    """What :meth:`persistq.Queue.health` found: ``ok``, or ``reason`` (for people) says why
    not; ``schema_version`` as the database reports it (None when it did not answer)."""

    ok: bool
    reason: str | None
    schema_version: int | None


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker process that announced itself; ``job_ids`` are the jobs it holds now."""

    id: str
    queues: tuple[str, ...]
    started_at: datetime
    last_seen_at: datetime
    job_ids: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "queues": list(self.queues),
            "started_at": self.started_at.isoformat(),
            "last_seen_at": self.last_seen_at.isoformat(),
            "job_ids": list(self.job_ids),
        }


@dataclass(frozen=True, slots=True)
class Timing:
    """When a finished job became due, started and finished (epoch seconds)."""

    queue: str
    status: State
    run_at: float
    started_at: float
    finished_at: float
