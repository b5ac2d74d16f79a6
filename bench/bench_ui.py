"""Query time of the web UI pages on a large queue (1,000,000 jobs by default).

Builds a SQLite database of the size asked for (raw inserts into the schema persistq
creates, about 25 s per million jobs), then times what each page reads, through the same
read models the pages call, and counts the rows those reads return. It also runs the real
Streamlit scripts through AppTest, which times a whole page run (queries plus rendering).
It measures and prints; it asserts nothing.

    .venv/bin/python bench/bench_ui.py                      # 1,000,000 jobs
    .venv/bin/python bench/bench_ui.py --jobs 100000        # smaller
    .venv/bin/python bench/bench_ui.py --db /tmp/ui.db      # reuse a database built before
    .venv/bin/python bench/bench_ui.py --full-scan          # also count every job

"rows read" counts the jobs the reads returned; for the bulk rows, the jobs changed. A
Manager page is its "counts" row plus its own row.

The database: 24 hours of jobs in three queues, one every 86 ms; 95 % COMPLETED, 3 %
FAILED, 1 % UNPROCESSABLE, 1 % CANCELLED, the newest 2,000 PENDING; stored events
only where the row cannot hold them (failed, lease_expired, cancelled).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import persistq
from persistq import JobFilter, Queue, State, insights

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
UI_DIR = Path(persistq.__file__).resolve().parent / "ui"
QUEUES = ("files", "emails", "reports")
PASSWORD = "bench-password"
#: As the Manager's page: 50 rows.
PAGE = 50
#: Jobs the bulk scenarios act on (on a copy of the database).
BULK_JOBS = 100_000


# -- the database ---------------------------------------------------------------------------


def build(path: Path, jobs: int) -> float:
    """Create the schema with persistq, then insert ``jobs`` rows directly; returns seconds."""
    started = time.perf_counter()
    persistq.connect(f"sqlite:///{path}").close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")  # building only; the bench reads at FULL
    now = time.time()
    rng = random.Random(42)
    conn.execute("BEGIN")
    for name in QUEUES:
        conn.execute(
            "INSERT OR IGNORE INTO queues (name, paused, created_at) VALUES (?, 0, ?)",
            (name, now - 86400),
        )
    conn.executemany(
        "INSERT INTO jobs (queue, payload, status, priority, run_at, attempts, max_attempts,"
        " last_error, result, created_at, updated_at, started_at, finished_at, worker)"
        " VALUES (?, ?, ?, 0, ?, ?, 3, ?, ?, ?, ?, ?, ?, ?)",
        _rows(jobs, now, rng),
    )
    # What persistq stores (migration 0008): one claim per attempt (fence), and an event only
    # where the row cannot hold it; enqueued, claimed and completed are derived from the row.
    conn.execute("UPDATE jobs SET fence = attempts")
    conn.execute(
        "INSERT INTO events (job_id, at, kind, worker, detail, fence, attempt, started_at,"
        " holder) SELECT id, finished_at, CASE status WHEN 'FAILED' THEN 'failed'"
        " WHEN 'UNPROCESSABLE' THEN 'lease_expired' ELSE 'cancelled' END, worker, last_error,"
        " fence, attempts, started_at, worker"
        " FROM jobs WHERE status IN ('FAILED', 'UNPROCESSABLE', 'CANCELLED') ORDER BY finished_at"
    )
    for i in range(4):
        conn.execute(
            "INSERT INTO workers (id, queues, started_at, last_seen_at) VALUES (?, ?, ?, ?)",
            (f"host:{1000 + i}", "files", now - 3600, now),
        )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - started


def _rows(count: int, now: float, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    for i in range(count):
        created = now - 86400 + 86400 * i / count
        roll = rng.random()
        status = "COMPLETED"
        if i >= count - 2000:
            status = "PENDING"
        elif roll < 0.03:
            status = "FAILED"
        elif roll < 0.04:
            status = "UNPROCESSABLE"
        elif roll < 0.05:
            status = "CANCELLED"
        payload = json.dumps({"path": f"data/files/{i:07d}.txt", "user": f"u{i % 997}"})
        started = finished = error = result = worker = None
        if status != "PENDING":
            started = created + rng.random() * 2
            finished = started + 7 + rng.random() * 8
            worker = f"host:{1000 + i % 4}"
        if status == "FAILED":
            error = (
                'Traceback (most recent call last):\n  File "task.py", line 12, in run\n'
                f"ValueError: bad row {i}"
            )
        elif status == "UNPROCESSABLE":
            error = "lease expired"
        elif status == "COMPLETED":
            result = '{"ok":true}'
        yield (
            QUEUES[i % 3],
            payload,
            status,
            created,
            0 if started is None else 1,
            error,
            result,
            created,
            finished or created,
            started,
            finished,
            worker,
        )


# -- measuring ------------------------------------------------------------------------------


class RowCounter:
    """Counts the jobs that Queue.jobs and Queue.search return: what a page read."""

    def __init__(self) -> None:
        self.rows = 0
        self._jobs = Queue.jobs
        self._search = Queue.search

    def __enter__(self) -> RowCounter:
        counter, jobs, search = self, self._jobs, self._search

        def counted_jobs(self: Queue, **kwargs: Any) -> Any:
            found = jobs(self, **kwargs)
            counter.rows += len(found)
            return found

        def counted_search(self: Queue, *args: Any, **kwargs: Any) -> Any:
            page = search(self, *args, **kwargs)
            counter.rows += len(page.jobs)
            return page

        Queue.jobs = counted_jobs  # type: ignore[method-assign]
        Queue.search = counted_search  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        Queue.jobs = self._jobs  # type: ignore[method-assign]
        Queue.search = self._search  # type: ignore[method-assign]


def timed(work: Callable[[], object], repeat: int) -> tuple[list[float], int]:
    """Milliseconds of each run, and the rows read by one run."""
    samples = []
    rows = 0
    for _ in range(repeat):
        with RowCounter() as counter:
            started = time.perf_counter()
            work()
            samples.append((time.perf_counter() - started) * 1000)
        rows = counter.rows
    return samples, rows


def scenarios(queue: Queue, full_scan: bool) -> list[tuple[str, Callable[[], object], int]]:
    """(name, what the page reads, repeats)."""
    now = datetime.now(UTC)

    def cursor(flt: JobFilter, offset: int) -> int | None:
        """The ``after`` of the page that starts at ``offset`` (found once, untimed)."""
        if offset == 0:
            return None
        state = flt.states[0] if flt.states else None
        return queue.jobs(status=state, queue=flt.queue, limit=1, offset=offset - 1)[0].id

    def page(flt: JobFilter, *, offset: int = 0, oldest_first: bool = False) -> Callable[[], Any]:
        after = cursor(flt, offset)

        def run() -> Any:  # the counts every page starts with are a row of their own
            return queue.search(flt, after=after, limit=PAGE, oldest_first=oldest_first)

        return run

    def dead_letters() -> None:
        for state in (State.FAILED, State.UNPROCESSABLE):
            queue.search(JobFilter(states=(state,)), limit=PAGE)

    def ops_refresh() -> None:  # what one refresh of the Ops dashboard reads
        insights.stats(queue)
        rows = insights.workers(queue)
        report = insights.storage(queue)
        insights.alerts(queue, worker_rows=rows, database_report={"ok": True, **report})
        insights.throughput(queue, window_seconds=3600, bucket_seconds=60)
        insights.latency(queue, window_seconds=3600, bucket_seconds=300)
        insights.recent_failures(queue, limit=20)

    def count(flt: JobFilter) -> Callable[[], Any]:
        # As "Count matching jobs" does: the newest id, then one count per state.
        def run() -> int:
            newest = queue.search(JobFilter(), limit=1).jobs[0].id
            bounded = replace(flt, max_id=newest)
            return sum(queue.count(replace(bounded, states=(s,))) for s in flt.states or State)

        return run

    failed = JobFilter(states=(State.FAILED,))
    found: list[tuple[str, Callable[[], object], int]] = [
        ("Manager: the counts every page starts with (stats)", lambda: insights.stats(queue), 5),
        ("Manager jobs: first page, no filter", page(JobFilter()), 5),
        ("Manager jobs: last page (oldest first)", page(JobFilter(), oldest_first=True), 5),
        ("Manager jobs: state FAILED, page 1", page(failed), 5),
        ("Manager jobs: state FAILED, page 500", page(failed, offset=499 * PAGE), 5),
        ("Manager jobs: queue files, page 1", page(JobFilter(queue="files")), 3),
        (
            "Manager jobs: queue files, page 2,000",
            page(JobFilter(queue="files"), offset=1999 * PAGE),
            3,
        ),
        (
            "Manager jobs: enqueued in the last hour",
            page(JobFilter(created_from=now - timedelta(hours=1))),
            5,
        ),
        (
            "Manager jobs: 10 minutes 12 h ago",
            page(
                JobFilter(
                    created_from=now - timedelta(hours=12),
                    created_to=now - timedelta(hours=11, minutes=50),
                )
            ),
            3,
        ),
        ("Manager jobs: text, many matches", page(JobFilter(text='u42"}')), 3),
        ("Manager jobs: text, no match (reads every job)", page(JobFilter(text="no such text")), 3),
        (
            "Manager jobs: FAILED + text in the error",
            page(JobFilter(states=(State.FAILED,), text="bad row 4242")),
            3,
        ),
        ("Manager dead letters: both tabs", dead_letters, 5),
        ("Ops: one refresh of the dashboard", ops_refresh, 5),
        ("Ops: integrity check (background, every 10 min)", lambda: insights.database(queue), 1),
        ("Bulk: count all FAILED (before confirming)", count(failed), 1),
        (
            "Bulk: count FAILED matching a text",
            count(JobFilter(states=(State.FAILED,), text="bad row 1")),
            1,
        ),
        ("Bulk: count a text over every job", count(JobFilter(text="bad row 4242")), 1),
    ]
    if full_scan:
        found.append(("Bulk: count every job", count(JobFilter()), 1))
    return found


def bulk_runs(path: Path) -> list[tuple[str, list[float], int]]:
    """Resubmit, then cancel, BULK_JOBS jobs matching a filter, on a copy of the database
    (the reads above stay comparable between runs)."""
    with tempfile.TemporaryDirectory(prefix="persistq-bench-bulk-") as directory:
        copy = Path(directory) / "queue.db"
        for suffix in ("", "-wal"):
            if Path(f"{path}{suffix}").exists():
                shutil.copyfile(f"{path}{suffix}", f"{copy}{suffix}")
        with persistq.connect(f"sqlite:///{copy}") as queue:
            # The oldest COMPLETED jobs of one queue, BULK_JOBS of them.
            last = queue.count(JobFilter(queue="files", states=(State.COMPLETED,)))
            older = queue.jobs(
                status=State.COMPLETED, queue="files", limit=1, offset=last - BULK_JOBS
            )
            bound = older[0].id
            done = JobFilter(queue="files", states=(State.COMPLETED,), max_id=bound)
            out = []
            for name, act, flt in (
                (f"Bulk: resubmit {BULK_JOBS:,} matching jobs", queue.resubmit_matching, done),
                (
                    f"Bulk: cancel {BULK_JOBS:,} matching jobs",
                    queue.cancel_matching,
                    replace(done, states=(State.PENDING,)),
                ),
            ):
                started = time.perf_counter()
                changed = act(flt).done
                out.append((name, [(time.perf_counter() - started) * 1000], changed))
    return out


def page_runs(url: str, repeat: int) -> list[tuple[str, list[float], int]]:
    """Whole Streamlit page runs (script, queries, rendering) through AppTest."""
    from streamlit.testing.v1 import AppTest

    os.environ["PERSISTQ_URL"] = url
    os.environ["PERSISTQ_ADMIN_PASSWORD"] = PASSWORD
    out = []
    for name in ("manager", "ops"):
        at = AppTest.from_file(str(UI_DIR / f"{name}.py"), default_timeout=300).run()
        at.text_input(key="login_password").input(PASSWORD)
        next(b for b in at.button if b.label == "Log in").click()
        at.run()
        at.run()  # the login's run only sends the browser to set the cookie: draw the page
        samples = []
        with RowCounter() as counter:
            for _ in range(repeat):
                if name == "manager":  # read the page again, as the Refresh button does
                    at.session_state["jobs_shown"] = None
                started = time.perf_counter()
                at.run()
                samples.append((time.perf_counter() - started) * 1000)
        if at.exception:
            raise SystemExit(f"{name} page failed: {at.exception}")
        out.append((f"Whole page run: {name} (AppTest)", samples, counter.rows // repeat))
    return out


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=BENCH_DIR, capture_output=True, text=True)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs in the database")
    parser.add_argument("--db", type=Path, help="database file (built when missing)")
    parser.add_argument("--keep", action="store_true", help="keep a temporary database")
    parser.add_argument("--full-scan", action="store_true", help="also a text search of all")
    args = parser.parse_args(argv)

    directory = None
    path = args.db
    if path is None:
        directory = Path(tempfile.mkdtemp(prefix="persistq-bench-ui-"))
        path = directory / "queue.db"
    if not path.exists():
        print(f"building {args.jobs:,} jobs in {path} ...", flush=True)
        print(f"built in {build(path, args.jobs):.1f} s", flush=True)
    url = f"sqlite:///{path}"
    queue = persistq.connect(url)
    total = sum(sum(row[str(s)] for s in State) for row in queue.stats()["queues"].values())
    size = path.stat().st_size
    print(f"database: {total:,} jobs, {size / 1024**2:.0f} MiB; load {os.getloadavg()[0]:.2f}\n")

    results = []
    print(f"{'what the page reads':58} {'best ms':>9} {'median':>9} {'rows read':>10}")
    for name, work, repeat in scenarios(queue, args.full_scan):
        samples, rows = timed(work, repeat)
        results.append({"scenario": name, "ms": samples, "rows_read": rows})
        median = statistics.median(samples)
        print(f"{name:58} {min(samples):9.1f} {median:9.1f} {rows:10,}", flush=True)
    for name, samples, rows in [*bulk_runs(path), *page_runs(url, 3)]:
        results.append({"scenario": name, "ms": samples, "rows_read": rows})
        median = statistics.median(samples)
        print(f"{name:58} {min(samples):9.1f} {median:9.1f} {rows:10,}", flush=True)
    queue.close()

    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    report = {
        "jobs": total,
        "database_bytes": size,
        "commit": _git("rev-parse", "HEAD"),
        "dirty_src": bool(_git("status", "--porcelain", "--", "src")),
        "load_average": list(os.getloadavg()),
        "python": sys.version.split()[0],
        "results": results,
    }
    out = RESULTS_DIR / f"ui-{stamp}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {out}")
    if directory is not None and not args.keep:
        for leftover in directory.iterdir():
            leftover.unlink()
        directory.rmdir()
    elif directory is not None:
        print(f"kept {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
