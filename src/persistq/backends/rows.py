"""Rows to model objects: the one place stored values become ``Job``, ``datetime`` and JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import cache
from operator import itemgetter
from typing import Any, Protocol

from persistq.backends.base import NewJob
from persistq.model import Event, EventKind, Job, State, build_job

ToDatetime = Callable[[Any], datetime]


class Row(Protocol):
    """What every driver's row offers: values by column name (sqlite3.Row, psycopg dict rows)."""

    def __getitem__(self, key: str) -> Any: ...


def epoch_to_datetime(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


#: A state by its stored name: a dict lookup costs a tenth of State(name).
STATE_NAMED = {str(state): state for state in State}
_raw_decode = json.JSONDecoder().raw_decode


def decode_json(text: str) -> Any:
    """``json.loads(text)``, at a quarter of its cost for what persistq itself wrote (no
    whitespace around the value, so json.loads's two whitespace scans find nothing): any
    other text goes to json.loads, which gives its answer or its error."""
    try:
        value, end = _raw_decode(text)
    except ValueError:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


#: The columns :func:`row_to_job` reads, in the order it reads them: the table names its
#: columns as Job names its fields.
JOB_COLUMNS: tuple[str, ...] = tuple(Job.__slots__)
#: JOB_COLUMNS of a row whose values are found by column name (a dict, sqlite3.Row).
BY_NAME = itemgetter(*JOB_COLUMNS)


@cache
def job_columns_in(columns: tuple[str, ...]) -> itemgetter[Any]:
    """JOB_COLUMNS of a row (a tuple, or a sqlite3.Row) whose columns are ``columns``, by
    position: a third of the cost of finding them by name. Made once per shape of row."""
    at = {name: n for n, name in enumerate(columns)}
    return itemgetter(*[at[name] for name in JOB_COLUMNS])


def row_to_job(
    row: Any,
    convert: ToDatetime = epoch_to_datetime,
    *,
    with_token: bool = False,
    pick: Callable[[Any], tuple[Any, ...]] = BY_NAME,
) -> Job:
    """``with_token`` only for the lease holder's own copy (claim, heartbeat). ``pick``
    takes JOB_COLUMNS out of ``row``: by name (the default), or :func:`job_columns_in`."""
    (
        job_id,
        queue,
        payload,
        status,
        priority,
        run_at,
        attempts,
        max_attempts,
        key,
        worker,
        lease,
        last_error,
        result,
        created_at,
        updated,
        started,
        finished,
        lease_token,
        cancel_requested,
        fence,
        timeout,
    ) = pick(row)
    updated_at = convert(updated)
    # A transition stamps one time in several columns: each distinct value converted once
    # (and a job enqueued without a delay is due when it was created).
    created = convert(created_at)
    return build_job(  # Job's fields, in order
        job_id,
        queue,
        decode_json(payload),
        STATE_NAMED[status],
        priority,
        created if run_at == created_at else convert(run_at),
        attempts,
        max_attempts,
        key,
        worker,
        None if lease is None else convert(lease),
        last_error,
        None if result is None else decode_json(result),
        created,
        updated_at,
        None if started is None else updated_at if started == updated else convert(started),
        None if finished is None else updated_at if finished == updated else convert(finished),
        lease_token if with_token else None,
        bool(cancel_requested),
        fence,
        timeout,
    )


def decode_payloads(jobs: Sequence[NewJob]) -> list[Any]:
    """Each job's payload, decoded: the texts persistq encoded, joined into one JSON array
    and parsed in one call (a call per job costs twice as much for small payloads)."""
    if len(jobs) == 1:
        return [decode_json(jobs[0].payload)]
    return decode_json("[" + ",".join([job.payload for job in jobs]) + "]")  # type: ignore[no-any-return]


def new_job(job: NewJob, payload: Any, job_id: int, run_at: datetime, created_at: datetime) -> Job:
    """A job just inserted, built from what was written instead of read back (half the time
    of a 1,000-job ``enqueue_many`` went to parsing whole rows); ``payload``: decoded."""
    return build_job(  # Job's fields, in order
        job_id,
        job.queue,
        payload,
        State.PENDING,
        job.priority,
        run_at,
        0,  # attempts
        job.max_attempts,
        job.key,
        None,  # worker
        None,  # lease_expires_at
        None,  # last_error
        None,  # result
        created_at,
        created_at,  # updated_at
        None,  # started_at
        None,  # finished_at
        None,  # lease_token
        False,  # cancel_requested
        0,  # fence
        job.timeout,
    )


def claimed_job(row: Any, worker: str, started: datetime, lease_expires_at: datetime) -> Job:
    """The lease holder's job as a claim left it: ``row`` holds what the claim did not set,
    as SQLite's claim_jobs returns it (and in that order); the rest is what it set."""
    (
        job_id,
        queue,
        payload,
        priority,
        run_at,
        attempts,
        max_attempts,
        key,
        last_error,
        result,
        created_at,
        lease_token,
        fence,
        timeout,
        _rate_limited,
    ) = row
    created = epoch_to_datetime(created_at)
    return build_job(  # Job's fields, in order
        job_id,
        queue,
        decode_json(payload),
        State.PROCESSING,
        priority,
        created if run_at == created_at else epoch_to_datetime(run_at),
        attempts,
        max_attempts,
        key,
        worker,
        lease_expires_at,
        last_error,
        None if result is None else decode_json(result),
        created,
        started,  # updated_at
        started,  # started_at
        None,  # finished_at
        lease_token,
        False,  # cancel_requested
        fence,
        timeout,
    )


def completed_job(held: Job, result: str | None, finished: datetime) -> Job:
    """``held``, the lease holder's copy of its claim, as completing it at ``finished`` left
    the row: for a caller that did not read the row back (``result``: the JSON text written).
    Only COMPLETED: a job whose cancel was requested ends otherwise, read back."""
    return build_job(  # Job's fields, in order
        held.id,
        held.queue,
        held.payload,
        State.COMPLETED,
        held.priority,
        held.run_at,
        held.attempts,
        held.max_attempts,
        held.key,
        held.worker,
        None,  # lease_expires_at
        held.last_error,
        None if result is None else decode_json(result),
        held.created_at,
        finished,  # updated_at
        held.started_at,
        finished,  # finished_at
        None,  # lease_token
        False,  # cancel_requested
        held.fence,
        held.timeout,
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


def history(
    job: Row, stored: Sequence[Row], convert: ToDatetime = epoch_to_datetime
) -> list[Event]:
    """A job's whole history, oldest first: its stored events (in id order) merged with the
    ``enqueued``, ``claimed`` and ``completed`` events its row and their facts imply (id None).

    Stored events carry the fence of the claim they belong to (sqlite migration 0008), and
    fence numbers claims: ``enqueued``, then per claim k its ``claimed``, its stored events,
    and its ``completed``. Events written before that version are stored in every kind: a
    kind is derived for a claim only where none is stored.
    """
    job_id = job["id"]

    def derived(
        kind: EventKind, at: Any, worker: str | None = None, detail: str | None = None
    ) -> Event:
        return Event(
            id=None, job_id=job_id, at=convert(at), kind=kind, worker=worker, detail=detail
        )

    fence, started = job["fence"], job["started_at"]
    claims: dict[int, list[Row]] = {}
    for row in stored:
        claims.setdefault(row["fence"] or 0, []).append(row)  # NULL: written by hand, 0
    if fence >= 1 and started is not None:
        claims.setdefault(fence, [])
    events = []
    if not any(row["kind"] == EventKind.ENQUEUED for row in stored):
        events.append(derived(EventKind.ENQUEUED, job["created_at"]))
    for k in sorted(claims):
        rows = claims[k]
        kinds = {row["kind"] for row in rows}
        # The claim's facts: from its first event that has them (the one that ended it),
        # else from the row, which still holds its claim (running, or completed).
        facts = next(
            (
                (r["attempt"], r["started_at"], r["holder"])
                for r in rows
                if r["started_at"] is not None
            ),
            (job["attempts"], started, job["worker"])
            if k == fence and started is not None
            else None,
        )
        if k >= 1 and facts is not None and EventKind.CLAIMED not in kinds:
            events.append(derived(EventKind.CLAIMED, facts[1], facts[2], f"attempt {facts[0]}"))
        done = EventKind.COMPLETED in kinds
        for row in rows:
            if (
                row["kind"] == EventKind.RESUBMITTED
                and row["completed_at"] is not None
                and not done
            ):
                events.append(derived(EventKind.COMPLETED, row["completed_at"], row["holder"]))
            events.append(row_to_event(row, convert))
        completed = job["status"] == State.COMPLETED and job["finished_at"] is not None
        if k == fence and completed and not done:
            events.append(derived(EventKind.COMPLETED, job["finished_at"], job["worker"]))
    return events
