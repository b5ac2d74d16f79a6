"""``/metrics``: a Prometheus collector over the database, so it counts every process.

Workers, producers and sweepers run in many processes (and machines); counting in the API
process would only see the calls made through it. So everything here is read from the
database at scrape time:

- gauges (jobs per queue and state, paused, oldest pending age, workers, database size)
  are the current values;
- ``persistq_jobs_enqueued_total`` is the highest job id ever issued: ids are never reused,
  so it counts every enqueue of every process, and survives restarts and purges;
- the other counters and the two histograms accumulate, from the first scrape of this API
  process on, what the database shows happened since the previous scrape: jobs finished
  (with their wait and run times) and lease expiries. Like any Prometheus counter they
  restart from zero with the process; ``rate()`` handles that. A job's finish is counted
  once it is :data:`SETTLE_SECONDS` old, so a commit delayed by a busy database is still
  seen; a job that finishes, is resubmitted and finishes again within one scrape interval
  counts once.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from persistq import insights
from persistq.model import EventKind, State, Timing
from persistq.ports import ReadQueue

SETTLE_SECONDS = 5.0
#: Most finished jobs read per scrape (a scrape every 15 s keeps up with ~6,000 jobs/s).
MAX_FINISHED_PER_SCRAPE = 100_000
MAX_EVENTS_PER_SCRAPE = 10_000
#: quick_check reads every page; the size and disk figures are refreshed this often.
DATABASE_REPORT_SECONDS = 60.0
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.sum += value
        index = next((i for i, bound in enumerate(BUCKETS) if value <= bound), len(BUCKETS))
        self.counts[index] += 1

    def cumulative(self) -> list[tuple[str, float]]:
        out, total = [], 0
        for bound, count in zip([*map(str, BUCKETS), "+Inf"], self.counts, strict=True):
            total += count
            out.append((bound, float(total)))
        return out


class Cached:
    """The value of ``compute()``, recomputed at most every ``seconds``."""

    def __init__(self, compute: Callable[[], dict[str, Any]], seconds: float) -> None:
        self.compute = compute
        self.seconds = seconds
        self._value: dict[str, Any] | None = None
        self._at = 0.0

    def get(self) -> dict[str, Any]:
        if self._value is None or time.monotonic() - self._at > self.seconds:
            self._value = self.compute()
            self._at = time.monotonic()
        return self._value


class QueueCollector(Collector):
    def __init__(self, queue: ReadQueue) -> None:
        self.queue = queue
        self._lock = threading.Lock()
        self._enqueued = 0
        self._finished_mark: float | None = None
        self._event_mark: int | None = None
        self._finished: dict[tuple[str, str], int] = defaultdict(int)
        self._recovered: dict[str, int] = defaultdict(int)
        self._retried: dict[str, int] = defaultdict(int)
        self._wait: dict[str, Histogram] = defaultdict(Histogram)
        self._run: dict[str, Histogram] = defaultdict(Histogram)
        self._database = Cached(lambda: insights.database(queue), DATABASE_REPORT_SECONDS)

    def describe(self) -> list[Metric]:
        return []  # do not scrape the database when registered

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            self._accumulate()
            yield from self._gauges()
            yield from self._counters()
            yield from self._histograms()

    # -- reading the database -------------------------------------------------------------

    def _accumulate(self) -> None:
        newest = self.queue.jobs(limit=1)
        if newest:
            self._enqueued = max(self._enqueued, newest[0].id)
        until = self.queue.now() - SETTLE_SECONDS
        if self._finished_mark is not None:
            finished = self.queue.finished(since=self._finished_mark, limit=MAX_FINISHED_PER_SCRAPE)
            for timing in finished:
                if timing.finished_at < until:
                    self._count_finished(timing)
        self._finished_mark = until
        failures = self.queue.recent_failures(limit=MAX_EVENTS_PER_SCRAPE)
        if self._event_mark is not None:
            for failure in failures:
                if failure.event.id <= self._event_mark:
                    continue
                if failure.event.kind == EventKind.LEASE_EXPIRED:
                    self._recovered[failure.queue] += 1
                elif failure.event.kind == EventKind.RETRIED:
                    self._retried[failure.queue] += 1
        self._event_mark = max((f.event.id for f in failures), default=self._event_mark or 0)

    def _count_finished(self, timing: Timing) -> None:
        self._finished[(timing.queue, str(timing.status))] += 1
        self._wait[timing.queue].observe(max(0.0, timing.started_at - timing.run_at))
        self._run[timing.queue].observe(max(0.0, timing.finished_at - timing.started_at))

    # -- metrics ------------------------------------------------------------------------

    def _gauges(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "persistq_jobs", "Jobs per queue and state.", labels=["queue", "state"]
        )
        paused = GaugeMetricFamily(
            "persistq_queue_paused", "1 when the queue is paused.", labels=["queue"]
        )
        oldest = GaugeMetricFamily(
            "persistq_queue_oldest_pending_age_seconds",
            "How long the oldest due PENDING job has waited.",
            labels=["queue"],
        )
        for name, row in insights.stats(self.queue)["queues"].items():
            for state in State:
                jobs.add_metric([name, str(state)], row[str(state)])
            paused.add_metric([name], 1.0 if row["paused"] else 0.0)
            oldest.add_metric([name], row["oldest_pending_age"] or 0.0)
        workers = GaugeMetricFamily(
            "persistq_workers", "Workers seen in the last hour.", labels=["stalled"]
        )
        rows = insights.workers(self.queue)
        stalled = sum(1 for w in rows if w["stalled"])
        workers.add_metric(["false"], len(rows) - stalled)
        workers.add_metric(["true"], stalled)
        yield from (jobs, paused, oldest, workers)
        report = self._database.get()
        for key, name, text in (
            ("size_bytes", "persistq_database_size_bytes", "Size of the database file."),
            ("wal_bytes", "persistq_database_wal_bytes", "Size of the SQLite write-ahead log."),
            ("free_disk_bytes", "persistq_disk_free_bytes", "Free space on the database's disk."),
        ):
            if isinstance(report.get(key), int | float):
                yield GaugeMetricFamily(name, text, value=float(report[key]))

    def _counters(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "persistq_jobs_enqueued", "Jobs ever enqueued (the highest job id).", self._enqueued
        )
        for name, state, text in (
            ("persistq_jobs_completed", State.COMPLETED, "Jobs completed."),
            ("persistq_jobs_failed", State.FAILED, "Jobs that failed on their last attempt."),
            ("persistq_jobs_unprocessable", State.UNPROCESSABLE, "Jobs whose last lease expired."),
        ):
            family = CounterMetricFamily(name, text, labels=["queue"])
            for (queue, status), count in sorted(self._finished.items()):
                if status == state:
                    family.add_metric([queue], count)
            yield family
        for name, counts, text in (
            ("persistq_jobs_recovered", self._recovered, "Expired leases recovered by a sweep."),
            ("persistq_jobs_retried", self._retried, "Handler failures retried later."),
        ):
            family = CounterMetricFamily(name, text, labels=["queue"])
            for queue, count in sorted(counts.items()):
                family.add_metric([queue], count)
            yield family

    def _histograms(self) -> Iterator[Metric]:
        for name, histograms, text in (
            ("persistq_job_wait_seconds", self._wait, "From due (run_at) to claimed."),
            ("persistq_job_run_seconds", self._run, "From claimed to finished."),
        ):
            family = HistogramMetricFamily(name, text + " Finished jobs.", labels=["queue"])
            for queue, histogram in sorted(histograms.items()):
                family.add_metric([queue], histogram.cumulative(), histogram.sum)
            yield family


def registry_for(queue: ReadQueue) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(queue))
    return registry
