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
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, Generic, NamedTuple, TypeVar

from persistq.errors import InvalidJob, LeaseLost, QueueError

T = TypeVar("T")

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
    #: The attempt ran past the job's timeout and was stopped; a handler error follows.
    TIMED_OUT = "timed_out"
    #: The process running the handler died (process pool); the job is back at once.
    CRASHED = "crashed"


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
    #: One more with every claim of this job, never reset (resubmit and release keep it): a
    #: handler tags downstream writes with it, so a store can refuse a stale holder's write
    #: (``... WHERE fence < :fence``). 0 until the first claim.
    fence: int = 0
    #: Seconds an attempt may run before the worker stops it; None: no limit.
    timeout: float | None = None

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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Job:
        """The inverse of :meth:`to_dict` (a job as the REST API sends it), keeping a
        ``lease_token`` when there is one. Fields the data lacks take their defaults: an
        older server sends no ``fence``, and 0, the never-claimed value, is one no fence
        guard (``WHERE fence < :fence``) lets through."""
        fields = cls.__dataclass_fields__
        values = {name: value for name, value in data.items() if name in fields}
        for name in _JOB_TIMES:
            if values.get(name) is not None:
                values[name] = datetime.fromisoformat(values[name])
        values["status"] = State(values["status"])
        return cls(**values)


class _UnfrozenJob:
    """A ``Job``'s slots on a plain class, so the backends can fill them with plain stores."""

    __slots__ = Job.__slots__


def build_job(
    id: int,  # noqa: A002 (the field's name)
    queue: str,
    payload: JSON,
    status: State,
    priority: int,
    run_at: datetime,
    attempts: int,
    max_attempts: int,
    key: str | None,
    worker: str | None,
    lease_expires_at: datetime | None,
    last_error: str | None,
    result: JSON,
    created_at: datetime,
    updated_at: datetime,
    started_at: datetime | None,
    finished_at: datetime | None,
    lease_token: str | None,
    cancel_requested: bool,
    fence: int,
    timeout: float | None,
    /,
) -> Job:
    """``Job(...)`` at a third of its cost, for the backends that build one per row.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``: 2.4 µs
    for a Job's 21, more than parsing its row. This sets them on a class of the same slots
    and then makes the object a ``Job``: Python allows ``__class__`` to change between two
    classes whose slots are the same, and the result is a Job like any other (equal to the
    one ``Job(...)`` makes, frozen from then on). Every argument is required, so a field
    added to Job and not here fails mypy and tests/test_rows.py, not silently.

    Positional only, in Job's field order: passing 21 arguments by keyword cost more than
    setting the 21 slots (1.9-3.0 µs against 0.7-0.9 µs a job, timeit).
    """
    job: Any = _UnfrozenJob()  # its slots are Job's, which mypy cannot see
    job.id = id
    job.queue = queue
    job.payload = payload
    job.status = status
    job.priority = priority
    job.run_at = run_at
    job.attempts = attempts
    job.max_attempts = max_attempts
    job.key = key
    job.worker = worker
    job.lease_expires_at = lease_expires_at
    job.last_error = last_error
    job.result = result
    job.created_at = created_at
    job.updated_at = updated_at
    job.started_at = started_at
    job.finished_at = finished_at
    job.lease_token = lease_token
    job.cancel_requested = cancel_requested
    job.fence = fence
    job.timeout = timeout
    job.__class__ = Job
    return job  # type: ignore[no-any-return]


_JOB_TIMES = ("run_at", "lease_expires_at", "created_at", "updated_at", "started_at", "finished_at")


@dataclass(frozen=True, slots=True)
class Event:
    id: int | None  # None: derived from the job row, not stored (SPEC)
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
# And its C encoder, made once: JSONEncoder.encode makes one (and a closure) per call, most
# of the cost of a small payload. No circular-reference markers (a dict an encoding that
# fails part-way would leave stale): a cycle ends in RecursionError instead, refused alike.
_C_ENCODE: Callable[[Any, int], Sequence[str]] | None = (
    None
    if c_make_encoder is None
    else c_make_encoder(
        None, _ENCODER.default, encode_basestring, None, ":", ",", False, False, False
    )
)
QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
MAX_KEY_LENGTH = 255
MAX_WORKER_LENGTH = 255
#: Largest id and count a column holds (both databases store them as 64-bit integers).
INT64_MAX = 2**63 - 1
#: Priorities are 32-bit integers in both schemas.
MIN_PRIORITY = -(2**31)
MAX_PRIORITY = 2**31 - 1
MAX_ATTEMPTS = 1000
#: Longest delay, lease or wait accepted: ten years, in seconds (past it is a mistake).
MAX_SECONDS = 10 * 365 * 86400.0
#: Longest error text stored with a job; tracebacks past it keep their end (the cause).
MAX_ERROR_CHARS = 64 * 1024
#: Characters no backend can store in a text column: lone surrogates have no UTF-8 form
#: (Python makes them of bytes that are not UTF-8 in argv, or of "\ud800" in JSON), and
#: PostgreSQL's text type refuses NUL.
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def validate_queue_name(name: object) -> str:
    # fullmatch: "$" alone would let a trailing newline through.
    if not isinstance(name, str) or not QUEUE_NAME.fullmatch(name):
        raise InvalidJob(
            f"invalid queue name {name!r}: 1-64 characters of letters, digits, '_.:-', "
            "starting with a letter or digit"
        )
    return name


#: The fields of a task payload, ``{"task": NAME, "args": [...], "kwargs": {...}}``.
TASK_PAYLOAD_KEYS = frozenset({"task", "args", "kwargs"})


def task_call(payload: JSON) -> tuple[str, list[JSON], dict[str, JSON]] | None:
    """``(name, args, kwargs)`` when ``payload`` is a well-formed task payload, else None
    (a plain payload). For display and filtering; the worker's dispatcher says what is
    wrong with a malformed one."""
    if not isinstance(payload, dict) or not isinstance(payload.get("task"), str):
        return None
    args = payload.get("args", [])
    kwargs = payload.get("kwargs", {})
    if set(payload) - TASK_PAYLOAD_KEYS or not isinstance(args, list):
        return None
    if not isinstance(kwargs, dict):
        return None
    return payload["task"], args, kwargs


def encode_json(value: JSON, *, what: str, max_bytes: int | None = None) -> str:
    """Encode ``value`` as compact JSON, refusing what JSON cannot hold (NaN, objects)."""
    try:
        text = _ENCODER.encode(value) if _C_ENCODE is None else "".join(_C_ENCODE(value, 0))
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidJob(f"{what} is not JSON: {exc}") from None
    # NUL is escaped by JSON; a lone surrogate is not, and only non-ASCII text can hold one.
    if text.isascii():
        size = len(text)
    else:
        try:
            size = len(text.encode())
        except UnicodeEncodeError as exc:
            raise InvalidJob(
                f"{what} is not valid Unicode: lone surrogate {text[exc.start]!r} "
                f"at character {exc.start} of its JSON"
            ) from None
    if max_bytes is not None and size > max_bytes:
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
    if not math.isfinite(seconds) or seconds < minimum or seconds > MAX_SECONDS:
        raise InvalidJob(f"{what} must be between {minimum} and ten years in seconds, got {value}")
    return seconds


def validate_timeout(value: object) -> float | None:
    """A job's or task's ``timeout``: None (no limit) or a positive number of seconds."""
    return None if value is None else validate_seconds(value, what="timeout", minimum=0.001)


def validate_text(value: object, *, what: str, max_length: int, optional: bool) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= max_length:
        raise InvalidJob(f"{what} must be a string of 1-{max_length} characters, got {value!r}")
    return _storable(value, what=what)


def _storable(text: str, *, what: str) -> str:
    found = _UNSTORABLE.search(text)
    if found is not None:
        kind = "NUL" if found.group() == "\x00" else "a lone surrogate (not UTF-8)"
        raise InvalidJob(
            f"{what} cannot be stored: {found.group()!r} at character {found.start()} is {kind}"
        )
    return text


def error_text(error: str | BaseException) -> str:
    """The ``last_error`` to store for ``error``: an exception's traceback, or the text given.

    Given text that cannot be stored is refused (InvalidJob). A traceback is the worker's
    to record, whatever the handler put in its message, so its unstorable characters are
    escaped instead: refusing it would leave the job held until its lease expired.
    """
    if isinstance(error, BaseException):
        text = "".join(traceback.format_exception(error)).rstrip()
        text = text.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\x00")
    else:
        text = _storable(str(error), what="error")
    if len(text) > MAX_ERROR_CHARS:
        text = "…" + text[-(MAX_ERROR_CHARS - 1) :]
    return text or "error"


def validate_state(value: object) -> State:
    try:
        return State(str(value).upper()) if isinstance(value, str) else State(value)  # type: ignore[arg-type]
    except ValueError:
        allowed = ", ".join(s.value for s in State)
        raise InvalidJob(f"unknown state {value!r}; one of {allowed}") from None


#: The most rows one listing returns.
MAX_PAGE = 10_000


class JobOptions(NamedTuple):
    """A job's options as ``enqueue`` takes them, checked: what both queues refuse, with
    the same words, before anything is stored or sent. A named tuple: every enqueue makes
    one, at a third of a frozen dataclass's cost."""

    queue: str
    priority: int
    delay: float
    max_attempts: int
    key: str | None

    @classmethod
    def check(
        cls, *, queue: object, priority: object, delay: object, max_attempts: object, key: object
    ) -> JobOptions:
        # Most enqueues repeat options already checked (the queue, the default priority and
        # attempts): checking them again was half of validate's cost (callgrind, 18k of 35k
        # instructions). Keyed by type too, so that True is never taken for 1, nor False
        # for 0; a key is checked every time (keys rarely repeat).
        memo: tuple[object, ...] | None = None
        if key is None:
            memo = (
                queue,
                priority,
                type(priority),
                delay,
                type(delay),
                max_attempts,
                type(max_attempts),
            )
            found = _OPTIONS_CHECKED.get(memo)
            if found is not None:
                return found
        options = cls(
            validate_queue_name(queue),
            validate_int(priority, what="priority", minimum=MIN_PRIORITY, maximum=MAX_PRIORITY),
            validate_seconds(delay, what="delay"),
            validate_int(max_attempts, what="max_attempts", minimum=1, maximum=MAX_ATTEMPTS),
            validate_key(key),
        )
        if memo is not None:
            _OPTIONS_CHECKED.put(memo, options)
        return options


class Checked(Generic[T]):
    """What a check answered for arguments it passed before, so that arguments repeated
    call after call (a producer's options, a consumer's claim) are checked once. Only
    valid arguments are kept (a check raises for the others), keyed by type as well as
    value by the caller, so that True is never taken for 1; at most ``size`` of them (a
    delay of its own per job would otherwise grow it without end)."""

    __slots__ = ("_answers", "_size")

    def __init__(self, size: int = 1024) -> None:
        self._answers: dict[tuple[object, ...], T] = {}
        self._size = size

    def get(self, arguments: tuple[object, ...]) -> T | None:
        try:
            return self._answers.get(arguments)
        except TypeError:  # unhashable: not kept, so checked (and refused) again
            return None

    def put(self, arguments: tuple[object, ...], answer: T) -> None:
        if len(self._answers) >= self._size:
            self._answers.clear()
        self._answers[arguments] = answer


_OPTIONS_CHECKED: Checked[JobOptions] = Checked()


def validate_key(value: object) -> str | None:
    return validate_text(value, what="key", max_length=MAX_KEY_LENGTH, optional=True)


def validate_worker(value: object) -> str:
    worker = validate_text(value, what="worker", max_length=MAX_WORKER_LENGTH, optional=False)
    assert worker is not None
    return worker


#: The most jobs one claim leases.
MAX_CLAIM = 10_000

#: The most items one REST API request carries: jobs enqueued or claimed, leases extended,
#: completions (the server refuses more; RemoteQueue sends longer lists in pieces).
MAX_BATCH = 1000


def validate_claim_limit(value: object) -> int:
    return validate_int(value, what="limit", minimum=1, maximum=MAX_CLAIM)


def validate_queue_list(queue: str | Sequence[str]) -> list[str]:
    """A claim's queues: one name or several, tried in order (repeats dropped)."""
    names = [queue] if isinstance(queue, str) else list(queue)
    if not names:
        raise InvalidJob("claim needs at least one queue")
    return list(dict.fromkeys(validate_queue_name(n) for n in names))


def validate_run_at(run_at: object, delay: float) -> datetime | None:
    """``run_at`` as ``enqueue`` takes it: an aware datetime, never together with a delay."""
    if run_at is None:
        return None
    if not isinstance(run_at, datetime) or run_at.utcoffset() is None:
        raise InvalidJob(
            f"run_at must be an aware datetime (e.g. datetime(..., tzinfo=UTC)), got {run_at!r}"
        )
    if delay != 0:
        raise InvalidJob("give delay or run_at, not both")
    return run_at


def validate_page(limit: object, offset: object) -> tuple[int, int]:
    return (
        validate_int(limit, what="limit", minimum=1, maximum=MAX_PAGE),
        validate_int(offset, what="offset", minimum=0),
    )


RATE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"^([1-9][0-9]{0,8})/([smh])$")
MAX_CONCURRENCY_LIMIT = 1_000_000


def parse_rate(text: object) -> tuple[int, float]:
    """``"N/s"``, ``"N/m"`` or ``"N/h"`` -> (N claims, per window seconds)."""
    match = _RATE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidJob(f"rate must look like N/s, N/m or N/h (N >= 1), got {text!r}")
    return int(match.group(1)), RATE_UNITS[match.group(2)]


def format_rate(count: int, window: float) -> str:
    unit = next((u for u, s in RATE_UNITS.items() if s == window), None)
    return f"{count}/{unit}" if unit is not None else f"{count}/{window:g}s"


def validate_concurrency_limit(value: object) -> int | None:
    if value is None:
        return None
    return validate_int(value, what="concurrency", minimum=0, maximum=MAX_CONCURRENCY_LIMIT)


@dataclass(frozen=True, slots=True)
class QueueInfo:
    name: str
    paused: bool
    created_at: datetime
    #: Most jobs of the queue PROCESSING at once, across every worker; None: no limit.
    concurrency: int | None = None
    #: Most claims per window, as "N/s", "N/m" or "N/h"; None: no limit.
    rate: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "paused": self.paused,
            "created_at": self.created_at.isoformat(),
            "concurrency": self.concurrency,
            "rate": self.rate,
        }


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


#: The events the read models count as failures: a handler error (retried or final) and an
#: expired lease.
FAILURE_KINDS = (EventKind.FAILED, EventKind.RETRIED, EventKind.LEASE_EXPIRED)


@dataclass(frozen=True, slots=True)
class FinishedCount:
    """How many jobs finished in ``status`` in the bucket that starts at ``at`` (epoch s)."""

    at: float
    status: State
    count: int


@dataclass(frozen=True, slots=True)
class FailureEvent:
    """An event of :data:`FAILURE_KINDS` with the queue of its job."""

    event: Event
    queue: str


@dataclass(frozen=True, slots=True)
class StorageInfo:
    """The database's files and the free space on their disk, where it has local files
    (SQLite); every field None otherwise (a PostgreSQL server's disk is not visible)."""

    path: str | None
    size_bytes: int | None
    wal_bytes: int | None
    free_disk_bytes: int | None
    total_disk_bytes: int | None

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


#: Longest text a search matches (a needle, not a document).
MAX_SEARCH_TEXT = 1000
#: Most jobs one bulk call acts on, and most in one of its transactions.
MAX_BULK = 1_000_000
MAX_BULK_BATCH = 10_000
#: Jobs a bulk resubmit or cancel changes per transaction unless told otherwise: enough that
#: a transaction's fixed cost (an fsync) fades, few enough that the write lock is held briefly.
BULK_BATCH = 1000


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs a search, a count or a bulk action means: every given condition holds.

    ``states``: any of these (empty: every state). ``text``: a case-insensitive substring
    of the payload (as stored, compact JSON) or of ``last_error`` (SQLite folds the case of
    ASCII letters only). ``created_from`` is inclusive, ``created_to`` exclusive (aware
    datetimes). ``task``: the payload's ``"task"`` is this name. ``max_id``: jobs up to
    this id, so an action confirmed after a count leaves out jobs enqueued since.
    """

    queue: str | None = None
    states: tuple[State, ...] = ()
    text: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    task: str | None = None
    max_id: int | None = None

    @classmethod
    def of(
        cls,
        *,
        queue: str | None = None,
        states: Sequence[State | str] | State | str | None = None,
        text: str | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        task: str | None = None,
        max_id: int | None = None,
    ) -> JobFilter:
        """A checked filter: ``InvalidJob`` for a bad name, state, text or time."""
        if states is None:
            states = ()
        elif isinstance(states, str):
            states = (states,)
        found = tuple(sorted({validate_state(s) for s in states}, key=list(State).index))
        for name, moment in (("created_from", created_from), ("created_to", created_to)):
            if moment is not None and (
                not isinstance(moment, datetime) or moment.utcoffset() is None
            ):
                raise InvalidJob(f"{name} must be an aware datetime, got {moment!r}")
        return cls(
            queue=None if queue is None else validate_queue_name(queue),
            states=found,
            text=validate_text(
                text or None, what="text", max_length=MAX_SEARCH_TEXT, optional=True
            ),
            created_from=created_from,
            created_to=created_to,
            task=validate_text(task or None, what="task", max_length=MAX_KEY_LENGTH, optional=True),
            max_id=None if max_id is None else validate_int(max_id, what="max_id", minimum=0),
        )

    def checked(self) -> JobFilter:
        return JobFilter.of(
            queue=self.queue,
            states=self.states,
            text=self.text,
            created_from=self.created_from,
            created_to=self.created_to,
            task=self.task,
            max_id=self.max_id,
        )

    def narrowed(self, allowed: frozenset[State]) -> JobFilter | None:
        """The filter's jobs in ``allowed`` states only (those a bulk action applies to);
        None when it leaves no state (an empty ``states`` would mean every one)."""
        states = tuple(s for s in self.states or State if s in allowed)
        return replace(self, states=states) if states else None

    def matches(self, job: Job) -> bool:
        """What the backends' search statements test, in Python (for checks and tests)."""
        if self.queue is not None and job.queue != self.queue:
            return False
        if self.states and job.status not in self.states:
            return False
        if self.max_id is not None and job.id > self.max_id:
            return False
        if self.created_from is not None and job.created_at < self.created_from:
            return False
        if self.created_to is not None and job.created_at >= self.created_to:
            return False
        if self.task and not (
            isinstance(job.payload, dict) and job.payload.get("task") == self.task
        ):
            return False
        if self.text:
            needle = self.text.lower()
            payload = encode_json(job.payload, what="payload").lower()
            return needle in payload or needle in (job.last_error or "").lower()
        return True


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of a search; ``next``: the cursor (``after``) of the following page, None
    after the last."""

    jobs: list[Job]
    next: int | None


@dataclass(frozen=True, slots=True)
class BulkResult:
    """What a bulk action did: ``done`` jobs changed; ``next``: the cursor to continue from
    (``after``) when it stopped at its ``limit``, None when no matching job is left."""

    done: int
    next: int | None


def lease_token_of(job: Job) -> str:
    """The token that proves ``job``'s lease; LeaseLost for a copy that holds none (not one
    from claim or heartbeat: its caller holds no lease)."""
    if not job.lease_token:
        raise LeaseLost(job.id)
    return job.lease_token


class Completion(NamedTuple):
    """One completion to record: the lease holder's copy of the job (from its claim or a
    heartbeat, or the stored job with the holder's token, as the REST API makes it), the
    token, and the result as JSON text. SQLite answers with that copy brought up to date
    instead of reading the row back (see ``SQLiteBackend._complete_step``)."""

    job: Job
    lease_token: str
    result: str | None


def owned_results(
    items: Sequence[tuple[Job, JSON]],
) -> tuple[list[QueueError | None], list[Completion]]:
    """Completions to send on, and per item its refusal (a result JSON cannot hold, a job
    never claimed) or None: those sent on answer for themselves. Queue and RemoteQueue
    refuse the same items alike."""
    answers: list[QueueError | None] = []
    owned: list[Completion] = []
    for job, result in items:
        try:
            encoded = None if result is None else encode_json(result, what="result")
            owned.append(Completion(job, lease_token_of(job), encoded))
            answers.append(None)
        except (InvalidJob, LeaseLost) as exc:
            answers.append(exc)
    return answers, owned


def answered(
    answers: Sequence[QueueError | None], done: Iterable[Job | QueueError]
) -> list[Job | QueueError]:
    """Per item, its refusal from :func:`owned_results`, or else the next answer of ``done``
    (one per owned item, in order)."""
    sent = iter(done)
    return [next(sent) if answer is None else answer for answer in answers]
