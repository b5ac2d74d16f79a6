"""A job's history as attempts: who ran it, from when to when, and how each run ended.

Pure (no Streamlit), built from :meth:`Queue.events` alone: an attempt opens at ``claimed``
and closes at the event that ends the lease (completed, failed, retried, lease expired,
crashed, released, cancelled). ``timed_out`` marks the attempt; the handler error that
follows it closes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from persistq.model import Event, EventKind

#: How each closing event reads as an attempt's outcome.
OUTCOMES: dict[EventKind, str] = {
    EventKind.COMPLETED: "completed",
    EventKind.FAILED: "failed",
    EventKind.RETRIED: "failed, will retry",
    EventKind.LEASE_EXPIRED: "lease expired",
    EventKind.CRASHED: "crashed",
    EventKind.RELEASED: "released",
    EventKind.CANCELLED: "cancelled",
}
RUNNING = "running"


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int
    worker: str | None
    started: datetime
    ended: datetime | None  # None while it runs
    outcome: str
    error: str | None  # the closing event's detail (a traceback, a reason)
    timed_out: bool = False


def attempts(events: Iterable[Event]) -> list[Attempt]:
    """The attempts of one job, oldest first, from its events (stored ones in any order)."""
    found: list[Attempt] = []
    start: Event | None = None
    timed_out = False
    given = list(events)
    # Stored events sort by id; a history with derived events (id None) is q.events()'s,
    # in order already.
    ordered = given if any(e.id is None for e in given) else sorted(given, key=lambda e: e.id or 0)
    for event in ordered:
        if event.kind == EventKind.CLAIMED:
            if start is not None:  # a claim without a closing event: its end is unknown
                found.append(_attempt(len(found) + 1, start, None, "unknown", None, timed_out))
            start, timed_out = event, False
        elif start is None:
            continue  # enqueued, resubmitted, a cancel of a waiting job: not an attempt
        elif event.kind == EventKind.TIMED_OUT:
            timed_out = True
        elif event.kind in OUTCOMES:
            outcome = OUTCOMES[event.kind]
            if timed_out:
                outcome = f"timed out, {outcome}"
            found.append(
                _attempt(len(found) + 1, start, event.at, outcome, event.detail, timed_out)
            )
            start = None
    if start is not None:
        found.append(_attempt(len(found) + 1, start, None, RUNNING, None, timed_out))
    return found


def _attempt(
    number: int,
    start: Event,
    ended: datetime | None,
    outcome: str,
    error: str | None,
    timed_out: bool,
) -> Attempt:
    return Attempt(number, start.worker, start.at, ended, outcome, error, timed_out)
