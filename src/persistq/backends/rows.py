"""Rows to model objects: the one place stored values become ``Job``, ``datetime`` and JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from persistq.backends.base import NewJob
from persistq.model import Event, EventKind, Job, State

ToDatetime = Callable[[Any], datetime]


class Row(Protocol):
    """What every driver's row offers: values by column name (sqlite3.Row, psycopg dict rows)."""

    def __getitem__(self, key: str) -> Any: ...


def epoch_to_datetime(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _optional(value: Any, convert: ToDatetime) -> datetime | None:
    return None if value is None else convert(value)


def row_to_job(
    row: Row, convert: ToDatetime = epoch_to_datetime, *, with_token: bool = False
) -> Job:
    """``with_token`` only for the lease holder's own copy (claim, heartbeat)."""
    result = row["result"]
    return Job(
        id=row["id"],
        queue=row["queue"],
        payload=json.loads(row["payload"]),
        status=State(row["status"]),
        priority=row["priority"],
        run_at=convert(row["run_at"]),
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        key=row["key"],
        worker=row["worker"],
        lease_expires_at=_optional(row["lease_expires_at"], convert),
        last_error=row["last_error"],
        result=None if result is None else json.loads(result),
        created_at=convert(row["created_at"]),
        updated_at=convert(row["updated_at"]),
        started_at=_optional(row["started_at"], convert),
        finished_at=_optional(row["finished_at"], convert),
        lease_token=row["lease_token"] if with_token else None,
        cancel_requested=bool(row["cancel_requested"]),
        fence=row["fence"],
        timeout=row["timeout"],
    )


def new_job(job: NewJob, job_id: int, run_at: datetime, created_at: datetime) -> Job:
    """A job just inserted, built from what was written instead of read back (half the time
    of a 1,000-job ``enqueue_many`` went to parsing whole rows)."""
    return Job(
        id=job_id,
        queue=job.queue,
        payload=json.loads(job.payload),
        status=State.PENDING,
        priority=job.priority,
        run_at=run_at,
        attempts=0,
        max_attempts=job.max_attempts,
        key=job.key,
        worker=None,
        lease_expires_at=None,
        last_error=None,
        result=None,
        created_at=created_at,
        updated_at=created_at,
        started_at=None,
        finished_at=None,
        timeout=job.timeout,
    )


def row_to_event(row: Row, convert: ToDatetime = epoch_to_datetime) -> Event:
    return Event(
        id=row["id"],
        job_id=row["job_id"],
        at=convert(row["at"]),
        kind=EventKind(row["kind"]),
        worker=row["worker"],
        detail=row["detail"],
    )
