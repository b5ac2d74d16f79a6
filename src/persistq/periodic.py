"""Periodic tasks: cron schedules, and the scheduler every ``worker --app`` runs beside its slots.

A :class:`Schedule` turns standard 5-field cron text (parsed by cronsim, in the schedule's
time zone, with its DST rules) into ticks. The :class:`Scheduler` enqueues a schedule's
task once per tick with the idempotency key ``periodic:NAME:TICK`` (TICK the tick in UTC,
``2026-01-01T12:05:00Z``), so any number of schedulers, on any number of machines, enqueue
each tick exactly once between them: the queue keeps one job per key.

Only the latest due tick is ever enqueued. A scheduler that starts after a time when none
ran (or wakes from a long stall) enqueues that one tick, not every one it missed; a schedule
whose queue holds no job of it yet (new, or every job of it purged) starts with its next
tick instead of running a stale one at once. Purging a periodic job frees its key, but no
scheduler computes an old tick again, so a purged tick is not run twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from persistq.clock import Clock, SystemClock
from persistq.dispatch import task_payload, validate_task_name
from persistq.errors import InvalidJob, QueueError
from persistq.model import JSON, MAX_KEY_LENGTH, Job, validate_queue_name

log = logging.getLogger("persistq.periodic")

KEY_PREFIX = "periodic"
#: ``2026-01-01T12:05:00Z``: fixed width, so keys of one schedule sort as their ticks do.
TICK_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_TICK_LENGTH = len("2026-01-01T12:05:00Z")
#: A scheduler looks at its clock at least this often (a clock that jumps is noticed).
DEFAULT_POLL_SECONDS = 1.0
_CRON_FIELDS = 5


class ScheduleQueue(Protocol):
    """What a scheduler needs of a queue (``persistq.Queue`` has it)."""

    def enqueue(self, payload: JSON, *, queue: str = "default", key: str | None = None) -> Job: ...


class KeyedQueue(ScheduleQueue, Protocol):
    """A queue that can also say a schedule's last tick (a local ``Queue``)."""

    def last_keyed_job(self, prefix: str, *, queue: str = "default") -> Job | None: ...


@dataclass(frozen=True, slots=True)
class Schedule:
    """Task ``name`` on ``queue``, at the ticks of ``cron`` in time zone ``tz``."""

    name: str
    cron: str
    queue: str = "default"
    tz: str = "UTC"

    def __post_init__(self) -> None:
        validate_task_name(self.name)
        if len(self.key_prefix) + _TICK_LENGTH > MAX_KEY_LENGTH:
            raise InvalidJob(f"periodic task name {self.name!r} is too long for its keys")
        validate_queue_name(self.queue)
        if not isinstance(self.cron, str) or len(self.cron.split()) != _CRON_FIELDS:
            fields = "minute hour day month weekday"
            raise InvalidJob(f"cron {self.cron!r} must have 5 fields: {fields}")
        try:
            zone = ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise InvalidJob(f"unknown time zone {self.tz!r}") from None
        try:
            CronSim(self.cron, datetime.now(zone))
        except CronSimError as exc:
            raise InvalidJob(f"cron {self.cron!r}: {exc}") from None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    @property
    def key_prefix(self) -> str:
        return f"{KEY_PREFIX}:{self.name}:"

    def latest(self, at: float) -> datetime:
        """The last tick at or before ``at`` (epoch seconds), in the schedule's zone."""
        start = datetime.fromtimestamp(at, self.zone) + timedelta(microseconds=1)
        return next(CronSim(self.cron, start, reverse=True))

    def next(self, at: float) -> datetime:
        """The first tick after ``at``."""
        return next(CronSim(self.cron, datetime.fromtimestamp(at, self.zone)))

    def key(self, tick: datetime) -> str:
        return self.key_prefix + tick.astimezone(UTC).strftime(TICK_FORMAT)

    def tick_of(self, job: Job) -> datetime | None:
        """The tick a job of this schedule was enqueued for (from its key)."""
        if job.key is None or not job.key.startswith(self.key_prefix):
            return None
        try:
            tick = datetime.strptime(job.key[len(self.key_prefix) :], TICK_FORMAT)
        except ValueError:
            return None
        return tick.replace(tzinfo=UTC).astimezone(self.zone)

    def last_tick(self, queue: KeyedQueue) -> datetime | None:
        """The newest tick enqueued so far, from the database."""
        job = queue.last_keyed_job(self.key_prefix, queue=self.queue)
        return None if job is None else self.tick_of(job)


class Scheduler:
    """Enqueues each schedule's latest due tick; :meth:`run_once` is what tests call.

    ``clock`` (default: the system's) is injectable so tests can run many ticks quickly;
    ``poll_seconds`` bounds each sleep, so a clock that jumps is noticed.
    """

    def __init__(
        self,
        queue: ScheduleQueue,
        schedules: Sequence[Schedule],
        *,
        clock: Clock | None = None,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
    ) -> None:
        self.queue = queue
        self.schedules = list(schedules)
        self.clock: Clock = clock or SystemClock()
        self.poll_seconds = poll_seconds
        #: name -> the newest tick this scheduler has handled (enqueued or found done).
        self._handled: dict[str, datetime] = {}

    def run_once(self) -> list[Job]:
        """Enqueue every schedule's latest due tick not handled yet; the jobs enqueued (or
        found: another scheduler may have enqueued the tick first)."""
        now = self.clock.now()
        jobs = []
        for schedule in self.schedules:
            due = schedule.latest(now)
            handled = self._handled.get(schedule.name)
            if handled is None:
                handled = self._first_look(schedule, due)
                if handled is not None:
                    self._handled[schedule.name] = handled
            if handled is not None and due <= handled:
                continue
            try:
                job = self.queue.enqueue(
                    task_payload(schedule.name), queue=schedule.queue, key=schedule.key(due)
                )
            except QueueError as exc:  # the database may come back: tried again next poll
                log.warning("event=periodic_failed task=%s error=%r", schedule.name, str(exc))
                continue
            self._handled[schedule.name] = due
            jobs.append(job)
            log.info(
                "event=periodic_tick task=%s key=%s job=%d",
                schedule.name,
                schedule.key(due),
                job.id,  # the tick's one job, whichever scheduler enqueued it
            )
        return jobs

    def _first_look(self, schedule: Schedule, due: datetime) -> datetime | None:
        """The tick to count as handled when this scheduler first sees ``schedule``: its
        last enqueued tick (so a later ``due`` is the one catch-up after downtime), or
        ``due`` itself when it never ran (it starts with its next tick). None, enqueue
        ``due``: the queue cannot say (a ``RemoteQueue``), or could not just now."""
        if not hasattr(self.queue, "last_keyed_job"):
            return None
        try:
            last = schedule.last_tick(cast(KeyedQueue, self.queue))
        except QueueError as exc:
            log.warning("event=periodic_failed task=%s error=%r", schedule.name, str(exc))
            return None
        return due if last is None else last

    def seconds_to_next(self) -> float:
        """Clock seconds until the soonest next tick, at most ``poll_seconds``."""
        now = self.clock.now()
        soonest = min((s.next(now).timestamp() - now for s in self.schedules), default=None)
        wait = self.poll_seconds if soonest is None else min(self.poll_seconds, soonest)
        return max(0.005, wait)

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set: enqueue due ticks, sleep until the next one."""
        if not self.schedules:
            return
        log.info("event=scheduler_started schedules=%s", ",".join(s.name for s in self.schedules))
        while not stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # never let one bad pass end the thread
                log.warning("event=periodic_failed error=%r", repr(exc))
            stop.wait(self.seconds_to_next())
