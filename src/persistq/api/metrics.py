"""``/metrics``: a Prometheus collector over the database, so it counts every process.

Workers, producers and sweepers run in many processes (and machines); counting in the API
process would only see the calls made through it. So everything here is read from the
database at scrape time:

- gauges (jobs per queue and state, paused, oldest pending age, workers, database size)
  are the current values; a queue with nothing due has no oldest-pending-age sample (0
  would read as "a job is waiting, just now");
- the counters (``persistq_jobs_*_total{queue}``) are the database's own lifetime counts
  (``Queue.counters``: a table the job transactions bump by trigger), so they are exact,
  never go down across API restarts and purges, and every known queue has every counter
  from its first scrape on, at 0 before its first event: ``increase()`` sees the first one;
- the two histograms accumulate in this process, from its first scrape on, the finished
  jobs the database shows since the previous scrape (wait and run times); like any
  in-process Prometheus histogram they restart from zero with the process, which
  ``rate()``/``histogram_quantile`` handle. A finish is counted once it is
  :data:`SETTLE_SECONDS` old, so a commit delayed by a busy database is still seen; a job
  that finishes, is resubmitted and finishes again within one interval counts once.
"""

from __future__ import annotations

import bisect
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
from persistq.config import DEFAULT_METRICS_BUCKETS
from persistq.model import State, Timing
from persistq.ports import ReadQueue

SETTLE_SECONDS = 5.0
#: Most finished jobs read per scrape (a scrape every 15 s keeps up with ~6,000 jobs/s).
MAX_FINISHED_PER_SCRAPE = 100_000
#: quick_check reads every page; the size and disk figures are refreshed this often.
DATABASE_REPORT_SECONDS = 60.0
#: (family, Queue.counters name, help): every one present for every known queue.
COUNTERS = (
    ("persistq_jobs_enqueued", "enqueued", "Jobs enqueued."),
    ("persistq_jobs_completed", "completed", "Jobs completed."),
    ("persistq_jobs_failed", "failed", "Jobs that failed on their last attempt."),
    ("persistq_jobs_unprocessable", "unprocessable", "Jobs whose last lease expired."),
    ("persistq_jobs_cancelled", "cancelled", "Jobs cancelled."),
    ("persistq_jobs_recovered", "lease_expired", "Expired leases recovered by a sweep."),
    ("persistq_jobs_retried", "retried", "Handler failures retried later."),
)


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.sum += value
        index = bisect.bisect_left(self.buckets, value)  # the first bound >= value
        self.counts[index] += 1

    def cumulative(self) -> list[tuple[str, float]]:
        out, total = [], 0
        for bound, count in zip([*map(str, self.buckets), "+Inf"], self.counts, strict=True):
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
    def __init__(self, queue: ReadQueue, buckets: tuple[float, ...]) -> None:
        self.queue = queue
        self._lock = threading.Lock()
        self._finished_mark: float | None = None
        self._counts: dict[str, dict[str, int]] = {}
        self._known: list[str] = []
        self._wait: dict[str, Histogram] = defaultdict(lambda: Histogram(buckets))
        self._run: dict[str, Histogram] = defaultdict(lambda: Histogram(buckets))
        self._database = Cached(lambda: insights.database(queue), DATABASE_REPORT_SECONDS)

    def describe(self) -> list[Metric]:
        return []  # do not scrape the database when registered

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            stats = insights.stats(self.queue)["queues"]
            self._counts = self.queue.counters()
            self._known = sorted(set(stats) | set(self._counts))
            self._accumulate()
            yield from self._gauges(stats)
            yield from self._counters()
            yield from self._histograms()

    # -- reading the database -------------------------------------------------------------

    def _accumulate(self) -> None:
        until = self.queue.now() - SETTLE_SECONDS
        if self._finished_mark is not None:
            finished = self.queue.finished(since=self._finished_mark, limit=MAX_FINISHED_PER_SCRAPE)
            for timing in finished:
                if timing.finished_at < until:
                    self._count_finished(timing)
        self._finished_mark = until

    def _count_finished(self, timing: Timing) -> None:
        self._wait[timing.queue].observe(max(0.0, timing.started_at - timing.run_at))
        self._run[timing.queue].observe(max(0.0, timing.finished_at - timing.started_at))

    # -- metrics ------------------------------------------------------------------------

    def _gauges(self, stats: dict[str, Any]) -> Iterator[Metric]:
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
        for name, row in stats.items():
            for state in State:
                jobs.add_metric([name, str(state)], row[str(state)])
            paused.add_metric([name], 1.0 if row["paused"] else 0.0)
            if row["oldest_pending_age"] is not None:
                oldest.add_metric([name], row["oldest_pending_age"])
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
        for family_name, counter, text in COUNTERS:
            family = CounterMetricFamily(family_name, text, labels=["queue"])
            for queue in self._known:
                family.add_metric([queue], self._counts.get(queue, {}).get(counter, 0))
            yield family

    def _histograms(self) -> Iterator[Metric]:
        for name, histograms, text in (
            ("persistq_job_wait_seconds", self._wait, "From due (run_at) to claimed."),
            ("persistq_job_run_seconds", self._run, "From claimed to finished."),
        ):
            family = HistogramMetricFamily(name, text + " Finished jobs.", labels=["queue"])
            for queue in self._known:
                histogram = histograms[queue]
                family.add_metric([queue], histogram.cumulative(), histogram.sum)
            yield family


def registry_for(
    queue: ReadQueue, *, buckets: tuple[float, ...] = DEFAULT_METRICS_BUCKETS
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(queue, buckets))
    return registry
