"""The attempts timeline of a job's detail, from its events (a pure function)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import persistq
from persistq import ManualClock, Queue
from persistq.model import Event, EventKind
from persistq.ui.timeline import RUNNING, attempts

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _events(*kinds: tuple[str, str | None, str | None]) -> list[Event]:
    return [
        Event(i, 7, T0 + timedelta(seconds=i), EventKind(kind), worker, detail)
        for i, (kind, worker, detail) in enumerate(kinds, 1)
    ]


def test_each_claim_opens_an_attempt_and_its_closing_event_ends_it() -> None:
    events = _events(
        ("enqueued", None, None),
        ("claimed", "w1", None),
        ("retried", "w1", "KeyError: 'path'"),
        ("claimed", "w2", None),
        ("lease_expired", None, "lease expired"),
        ("claimed", "w3", None),
        ("completed", "w3", None),
    )
    found = attempts(reversed(events))  # any order: by event id
    assert [(a.number, a.worker, a.outcome) for a in found] == [
        (1, "w1", "failed, will retry"),
        (2, "w2", "lease expired"),
        (3, "w3", "completed"),
    ]
    assert found[0].error == "KeyError: 'path'"
    assert (found[0].started, found[0].ended) == (events[1].at, events[2].at)


def test_a_timeout_marks_its_attempt_and_an_open_claim_is_running() -> None:
    found = attempts(
        _events(
            ("claimed", "w1", None),
            ("timed_out", "w1", None),
            ("failed", "w1", "TimeoutError"),
            ("resubmitted", None, None),
            ("claimed", "w2", None),
        )
    )
    assert [(a.outcome, a.timed_out) for a in found] == [
        ("timed out, failed", True),
        (RUNNING, False),
    ]
    assert found[1].ended is None
    assert attempts(_events(("enqueued", None, None), ("cancelled", None, None))) == []


def test_attempts_of_a_real_job(tmp_path: Path) -> None:
    clock = ManualClock(start=T0.timestamp())
    with persistq.connect(f"sqlite:///{tmp_path / 'q.db'}", clock=clock) as q:
        assert isinstance(q, Queue)
        job = q.enqueue({"n": 1}, max_attempts=2)
        claimed = q.claim(worker="w1")
        assert claimed is not None
        clock.advance(3)
        q.fail(claimed, "boom")
        clock.advance(3600)  # past the retry's backoff
        again = q.claim(worker="w2")
        assert again is not None
        q.complete(again)
        found = attempts(q.events(job.id))
    assert [(a.worker, a.outcome) for a in found] == [
        ("w1", "failed, will retry"),
        ("w2", "completed"),
    ]
    assert found[0].ended is not None and (found[0].ended - found[0].started).total_seconds() == 3
