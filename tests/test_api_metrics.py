"""/metrics as Prometheus sees it: scraped from a real ``persistq api`` and parsed with
prometheus_client's own parser, across an API restart and a purge.

``increase()`` only sees a counter's step when a sample exists before it, so every counter
of every known queue must be present at 0 before its first event, and none may ever go
down (an API restart or a purge is not a counter reset: the counts live in the database).
``promtool check metrics`` (Debian's ``prometheus`` package) lints the exposition where the
binary is there; CI (PERSISTQ_REQUIRE_PROMTOOL) installs it with apt-get and never skips.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import persistq
from apiserver import ApiServer
from persistq import insights
from persistq.api import metrics
from persistq.config import DEFAULT_METRICS_BUCKETS, Settings
from persistq.errors import QueueError

# Under pytest-xdist, on the worker of the other apt-get user (tests/ui/test_ui_browser.py).
pytestmark = pytest.mark.xdist_group("apt")

COUNTERS = (
    "persistq_jobs_enqueued_total",
    "persistq_jobs_completed_total",
    "persistq_jobs_failed_total",
    "persistq_jobs_unprocessable_total",
    "persistq_jobs_cancelled_total",
    "persistq_jobs_recovered_total",
    "persistq_jobs_retried_total",
)
# Read at import: the autouse fixture of conftest.py strips PERSISTQ_* before each test.
PROMTOOL_REQUIRED = bool(os.environ.get("PERSISTQ_REQUIRE_PROMTOOL"))

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(server: ApiServer) -> tuple[str, Samples, Samples]:
    """The text, its counter samples and its gauge samples, by (name, labels)."""
    with server.client() as http:
        response = http.get("/metrics")
    assert response.status_code == 200, response.text
    counters: Samples = {}
    gauges: Samples = {}
    for family in text_string_to_metric_families(response.text):
        into = counters if family.type in ("counter", "histogram") else gauges
        for sample in family.samples:
            if family.type == "counter" and not sample.name.endswith("_total"):
                continue  # the _created samples of prometheus_client's own counters
            into[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return response.text, counters, gauges


def value(samples: Samples, name: str, queue: str) -> float:
    return samples[(name, (("queue", queue),))]


def never_decreased(before: Samples, after: Samples) -> None:
    for key, old in before.items():
        assert key in after, f"{key} vanished"
        assert after[key] >= old, f"{key} went down: {old} -> {after[key]}"


def test_counters_are_present_at_zero_exact_and_monotonic_across_restart_and_purge(
    tmp_path: Path,
) -> None:
    server = ApiServer(tmp_path)
    with server:
        with server.client() as http:
            assert http.post("/queues", json={"name": "files"}).status_code == 201
        _, first, gauges = scrape(server)
    for name in COUNTERS:  # before any event: present, at 0, so increase() sees the first
        assert value(first, name, "files") == 0, name
    assert value(first, "persistq_job_run_seconds_count", "files") == 0
    assert ("persistq_queue_oldest_pending_age_seconds", (("queue", "files"),)) not in gauges

    # Three failures in another process, while no API runs at all.
    with persistq.connect(server.db_url) as other:
        for n in range(3):
            other.enqueue(n, queue="files", max_attempts=1)
            job = other.claim(queue="files", worker="elsewhere")
            assert job is not None
            other.fail(job, "boom")
        other.enqueue("waits", queue="files")
    with server:  # a restarted API
        _, restarted, gauges = scrape(server)
    never_decreased(first, restarted)
    assert value(restarted, "persistq_jobs_failed_total", "files") == 3  # increase() == 3
    assert value(restarted, "persistq_jobs_enqueued_total", "files") == 4
    assert value(gauges, "persistq_queue_oldest_pending_age_seconds", "files") >= 0

    with persistq.connect(server.db_url) as other:
        assert other.purge(status="FAILED", older_than=0) == 3
        job = other.claim(queue="files", worker="elsewhere")
        assert job is not None
        other.complete(job)
        other.enqueue("again", queue="files", max_attempts=1)
        job = other.claim(queue="files", worker="elsewhere")
        assert job is not None
        other.fail(job, "boom")
        assert other.delete_queue("files") == 2  # the queue and its jobs are gone
    with server:
        _, purged, gauges = scrape(server)
        _, again, _ = scrape(server)
    never_decreased(restarted, purged)
    never_decreased(purged, again)
    assert value(purged, "persistq_jobs_failed_total", "files") == 4
    assert value(purged, "persistq_jobs_completed_total", "files") == 1
    assert value(purged, "persistq_jobs_enqueued_total", "files") == 5
    assert value(purged, "persistq_jobs_recovered_total", "files") == 0
    assert ("persistq_queue_oldest_pending_age_seconds", (("queue", "files"),)) not in gauges


def test_histogram_buckets_are_configurable(tmp_path: Path) -> None:
    server = ApiServer(tmp_path, env={"PERSISTQ_METRICS_BUCKETS": "1, 10, 100"})
    with persistq.connect(server.db_url) as q:
        q.create_queue("b")
    with server:
        _, counters, _ = scrape(server)
    bounds = [
        dict(labels)["le"] for name, labels in counters if name == "persistq_job_run_seconds_bucket"
    ]
    assert sorted(bounds) == sorted(["1.0", "10.0", "100.0", "+Inf"])


def test_bad_buckets_are_refused_with_a_reason() -> None:
    with pytest.raises(QueueError, match="PERSISTQ_METRICS_BUCKETS='10,1'"):
        Settings.from_env({"PERSISTQ_METRICS_BUCKETS": "10,1"})
    assert Settings.from_env({"PERSISTQ_METRICS_BUCKETS": "0.5,2"}).metrics_buckets == (0.5, 2.0)


@pytest.fixture(scope="session")
def promtool() -> str:
    """Debian's promtool; installed with apt-get (as root) only when CI requires it: the
    package is ~100 MB and takes a minute or two, too much for a developer's run."""
    found = shutil.which("promtool")
    if found is None and PROMTOOL_REQUIRED and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"]
        for command in (["apt-get", "update"], install):
            subprocess.run(command, env=env, capture_output=True, check=False)
        found = shutil.which("promtool")
    if found is None:
        reason = "promtool is missing; install it with: apt-get install -y prometheus"
        if PROMTOOL_REQUIRED:
            pytest.fail(f"{reason} (PERSISTQ_REQUIRE_PROMTOOL is set)")
        pytest.skip(reason)
    return found


def test_promtool_finds_nothing_to_lint(tmp_path: Path, promtool: str) -> None:
    server = ApiServer(tmp_path)
    with persistq.connect(server.db_url) as q:
        q.enqueue(1, queue="a")
        job = q.claim(queue="a", worker="w")
        assert job is not None
        q.complete(job)
        q.enqueue(2, queue="b")
    with server:
        text, _, _ = scrape(server)
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "" and done.stderr.strip() == "", done.stdout + done.stderr


def test_counters_count_every_path_on_every_backend(backend_url: str) -> None:
    with persistq.connect(backend_url, lease=0.05) as q:
        q.enqueue_many([1, 2, 3, 4], queue="c", max_attempts=1)  # the batch path
        q.enqueue(5, queue="c", key="k")
        q.enqueue(6, queue="c", key="k")  # an existing key: nothing created, nothing counted
        job = q.claim(queue="c", worker="w")
        assert job is not None
        q.complete(job)
        job = q.claim(queue="c", worker="w")
        assert job is not None
        q.fail(job, "boom")
        q.cancel(q.jobs(status="PENDING", queue="c")[0].id)
        held = q.claim(queue="c", worker="w")
        assert held is not None
        time.sleep(0.1)
        assert q.recover_stalled() == 1  # its last attempt: UNPROCESSABLE
        assert q.purge(status="COMPLETED", older_than=0) == 1
        assert q.counters()["c"] == {
            "enqueued": 5,
            "completed": 1,
            "failed": 1,
            "cancelled": 1,
            "unprocessable": 1,
            "lease_expired": 1,
        }


def histogram_quantile(q: float, cumulative: list[tuple[str, float]]) -> float:
    """Prometheus's histogram_quantile: linear within the bucket the rank falls in."""
    total = cumulative[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in cumulative:
        if count >= rank:
            if bound == "+Inf":
                return lower
            return lower + (float(bound) - lower) * (rank - below) / (count - below)
        lower, below = float(bound), count
    raise AssertionError("unreachable")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_prometheus_and_the_ops_ui_read_about_the_same_p95(seed: int) -> None:
    """The demo's 7-15 s jobs: the Ops UI's exact p95 (insights.percentiles) and
    histogram_quantile over the default buckets agree within half a second."""
    rng = random.Random(seed)
    population = [rng.uniform(7, 15) for _ in range(2000)]
    histogram = metrics.Histogram(DEFAULT_METRICS_BUCKETS)
    for seconds in population:
        histogram.observe(seconds)
    ops = insights.percentiles(population).p95
    assert ops is not None
    prometheus = histogram_quantile(0.95, histogram.cumulative())
    assert abs(prometheus - ops) < 0.5, (prometheus, ops)
