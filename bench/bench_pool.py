"""Process pool and limits (issue 12): printed, not asserted.

1. jobs/s of a no-op handler through ``Worker(pool="thread")`` and ``Worker(pool="process")``
   in the same run, same database, same concurrency (target: process >= 0.7x thread);
2. a pool child's RSS after 100 and after 10,000 jobs (target: within 10%);
3. the cost of one claim (+ complete) on a queue with a concurrency limit against one
   without, on SQLite and (when reachable) PostgreSQL (target: <= 1.2x).

    PYTHONPATH=src:bench python bench/bench_pool.py [--jobs 2000] [--pg URL]
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path

import noop_tasks
import persistq
from persistq import State
from persistq.model import Job
from persistq.pool import ProcessPool
from persistq.worker import Worker, resolve_handler

NOOP = "noop_tasks:noop"


def pool_rate(url: str, pool: str, jobs: int, concurrency: int) -> float:
    with persistq.connect(url) as q:
        name = f"{pool}-{uuid.uuid4().hex[:6]}"
        q.enqueue_many([{}] * jobs, queue=name)
        worker = Worker(
            queue=q,
            handler=noop_tasks.noop,
            queues=[name],
            concurrency=concurrency,
            pool=pool,
            wait_seconds=0.05,
            child_handler=functools.partial(resolve_handler, NOOP),
        )
        thread = threading.Thread(target=worker.run)
        started = time.perf_counter()
        thread.start()
        while q.stats()["queues"][name][State.COMPLETED] < jobs:
            time.sleep(0.02)
        took = time.perf_counter() - started  # includes starting the children
        worker.stop()
        thread.join()
        return jobs / took


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def child_rss() -> tuple[int, int]:
    pool = ProcessPool(1, functools.partial(resolve_handler, NOOP))
    with persistq.connect(f"sqlite:///{tempfile.mkdtemp()}/rss.db") as q:
        template = q.enqueue({"n": 0, "pad": "x" * 200})
    try:
        after: dict[int, int] = {}
        for n in range(1, 10_001):
            outcome = pool.run(0, template)
            assert outcome.error is None and outcome.crashed is None, outcome
            if n in (100, 10_000):
                (pid,) = pool.pids()
                after[n] = rss_kib(pid)
        return after[100], after[10_000]
    finally:
        pool.close()


def claim_cost(url: str, rounds: int) -> tuple[float, float]:
    """Seconds per claim + complete, without and with a concurrency limit (same queue size)."""
    with persistq.connect(url) as q:
        times = []
        for limited in (False, True):
            name = f"claim-{uuid.uuid4().hex[:6]}"
            q.enqueue_many([{}] * rounds, queue=name)
            if limited:
                q.set_limits(name, concurrency=1000)
            started = time.perf_counter()
            for _ in range(rounds):
                job: Job | None = q.claim(queue=name, worker="bench")
                assert job is not None
                q.complete(job)
            times.append((time.perf_counter() - started) / rounds)
        return times[0], times[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--claims", type=int, default=500)
    parser.add_argument(
        "--pg",
        default=os.environ.get("PERSISTQ_TEST_PG_URL", "postgresql://postgres@127.0.0.1/test"),
    )
    args = parser.parse_args()
    url = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    thread = pool_rate(url, "thread", args.jobs, args.concurrency)
    process = pool_rate(url, "process", args.jobs, args.concurrency)
    print(
        f"no-op jobs/s, concurrency {args.concurrency}, {args.jobs} jobs, SQLite: thread "
        f"{thread:.0f}, process {process:.0f} ({process / thread:.2f}x)"
    )
    small, large = child_rss()
    print(f"child RSS: {small} KiB after 100 jobs, {large} KiB after 10,000 ({large / small:.3f}x)")
    backends = [("sqlite", url)]
    try:
        import psycopg

        psycopg.connect(args.pg, connect_timeout=3).close()
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        backends.append(("postgres", f"{args.pg}?schema={schema}"))
    except Exception as exc:  # no server: SQLite only, and say why
        print(f"postgres skipped: {exc}")
        schema = ""
    for dialect, where in backends:
        free, limited = claim_cost(where, args.claims)
        print(
            f"claim+complete {dialect}: {1e3 * free:.2f} ms without a limit, "
            f"{1e3 * limited:.2f} ms with concurrency 1000 ({limited / free:.2f}x)"
        )
    if schema:
        with psycopg.connect(args.pg, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
