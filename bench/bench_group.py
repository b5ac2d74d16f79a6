"""SQLite group commit: 16 threads enqueueing through one Queue, grouping on and off.

In one run, at FULL and NORMAL, on fresh database files:

- raw S1: bench_core's RawAdapter, one job per transaction from one thread (the floor);
- persistq, 16 threads sharing one ``Queue``, ``?group_commit=off`` and on;
- a lone caller (one thread) with grouping off and on: mean / p50 / p99 latency, to show
  that a caller alone pays nothing for the grouping;
- with ``--caps``, 64 threads at several group-size caps (how the default was chosen).

It prints jobs/s, the ratio to raw S1 (target: >= 4x at FULL with grouping on) and the
histogram of group sizes the backend committed (``backend.group_sizes``). Rounds
interleave the variants; the best round is reported. It measures; it asserts nothing.

    .venv/bin/python bench/bench_group.py                  # 3 rounds, 4,000 jobs per run
    .venv/bin/python bench/bench_group.py --jobs 8000 --repeat 5 --caps 4,16,64,256
    .venv/bin/python bench/bench_group.py --backend postgres [--url postgresql://...]

With ``--backend postgres`` (the server's ``synchronous_commit`` as it is, printed): raw
psycopg S1 (bench_postgres's RawPsycopg: one autocommit INSERT per job) from one thread and
from 16 threads with a connection each, against persistq with 16 threads sharing one
``Queue`` (its pool), grouping off and on; target: persistq >= 2x raw S1 (one thread).
Also 16 threads claiming and completing through one ``Queue`` (a worker's slots), off and
on. Each run gets fresh schemas, dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

import persistq
from bench_core import RawAdapter, make_payload
from persistq.backends import open_backend
from persistq.config import Settings
from persistq.queue import Queue

THREADS = 16
CAP_THREADS = 64
R = TypeVar("R")
QUEUE = "bench"
TARGET = 4.0
PG_TARGET = 2.0  # persistq 16 threads >= 2x raw psycopg S1 (one thread, one job a commit)
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def raw_s1(directory: Path, sync: str, jobs: int) -> float:
    raw = RawAdapter(directory, sync)
    try:
        started = time.perf_counter()
        for n in range(jobs):
            raw.enqueue(make_payload(n))
        return jobs / (time.perf_counter() - started)
    finally:
        raw.close()


def url_of(directory: Path, sync: str, group: bool) -> str:
    options = [f"synchronous={sync}", f"group_commit={'on' if group else 'off'}"]
    return f"sqlite:///{directory / 'queue.db'}?{'&'.join(options)}"


def threaded(
    directory: Path, sync: str, group: bool, jobs: int, threads: int, cap: int | None = None
) -> tuple[float, Counter[int]]:
    """jobs/s of ``threads`` threads enqueueing ``jobs`` in all through one Queue, and the
    sizes of the groups its backend committed."""
    settings = Settings.from_env(url=url_of(directory, sync, group))
    if cap is not None:
        settings = replace(settings, group_commit_max=cap)
    backend = open_backend(settings)
    backend.migrate()
    with Queue(backend, settings) as q:
        q.enqueue("warm-up", queue=QUEUE)
        sizes: Counter[int] = q.backend.group_sizes  # type: ignore[attr-defined]
        sizes.clear()
        start = threading.Barrier(threads + 1)
        each = jobs // threads

        def produce(t: int) -> None:
            start.wait()
            for n in range(each):
                q.enqueue(make_payload(t * each + n), queue=QUEUE)

        workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
        for worker in workers:
            worker.start()
        start.wait()
        began = time.perf_counter()
        for worker in workers:
            worker.join()
        took = time.perf_counter() - began
        assert q.stats()["queues"][QUEUE]["PENDING"] == each * threads + 1
        return each * threads / took, Counter(sizes)


def lone(directory: Path, sync: str, jobs: int) -> dict[bool, list[float]]:
    """Latencies (ms) of one thread's enqueues, one at a time, alternating between a Queue
    with grouping off and one with it on (two files side by side): drift in the disk's
    flush time, or in the machine's load, falls on both alike."""
    took: dict[bool, list[float]] = {False: [], True: []}
    queues = {}
    for group in (False, True):
        (directory / str(group)).mkdir()
        queues[group] = persistq.connect(url_of(directory / str(group), sync, group))
        queues[group].enqueue("warm-up", queue=QUEUE)
    try:
        for n in range(jobs):
            for group in (n % 2 == 0, n % 2 == 1):
                began = time.perf_counter()
                queues[group].enqueue(make_payload(n), queue=QUEUE)
                took[group].append((time.perf_counter() - began) * 1000)
    finally:
        for q in queues.values():
            q.close()
    return took


def fresh(root: Path, run: Callable[[Path], R]) -> R:
    """``run`` on a new directory under ``root``, removed afterwards."""
    directory = Path(tempfile.mkdtemp(dir=root))
    try:
        return run(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def histogram(sizes: Counter[int]) -> str:
    total = sum(sizes.values())
    if not total:
        return "(none)"
    calls = sum(size * n for size, n in sizes.items())
    bins = [(1, 1), (2, 3), (4, 7), (8, 11), (12, 15), (16, 16), (17, 63), (64, 10**9)]
    parts = []
    for low, high in bins:
        n = sum(count for size, count in sizes.items() if low <= size <= high)
        if n:
            label = str(low) if low == high else f"{low}-{high}" if high < 10**9 else f"{low}+"
            parts.append(f"{label}: {n}")
    return f"{total} commits, mean {calls / total:.1f} calls/commit; " + ", ".join(parts)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(root: Path, sync: str, args: argparse.Namespace) -> None:
    raws: list[float] = []
    rates: dict[bool, list[float]] = {False: [], True: []}
    sizes: dict[bool, Counter[int]] = {}
    lones: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeat):
        raws.append(fresh(root, partial(raw_s1, sync=sync, jobs=args.jobs)))
        for group in (False, True):
            run = partial(threaded, sync=sync, group=group, jobs=args.jobs, threads=THREADS)
            rate, sizes[group] = fresh(root, run)
            rates[group].append(rate)
        for group, took in fresh(root, partial(lone, sync=sync, jobs=args.lone_jobs)).items():
            lones[group] += took
    raw, off, on = max(raws), max(rates[False]), max(rates[True])
    print(f"\n== synchronous={sync.upper()}  {args.jobs} jobs per run, best of {args.repeat}")
    print(f"{'':34} {'jobs/s':>9} {'x raw S1':>9}")
    print(f"{'raw S1 (1 thread, 1 job/commit)':34} {raw:9.0f} {1.0:9.2f}")
    print(f"{'persistq 16 threads, group off':34} {off:9.0f} {off / raw:9.2f}")
    met = "met" if on / raw >= TARGET else "NOT met"
    verdict = f"  target >= {TARGET:.0f}x: {met}" if sync == "full" else ""
    print(f"{'persistq 16 threads, group on':34} {on:9.0f} {on / raw:9.2f}{verdict}")
    print(f"group sizes, on (last round):  {histogram(sizes[True])}")
    print(f"group sizes, off (last round): {histogram(sizes[False])}")
    for group in (False, True):
        took = lones[group]
        print(
            f"lone caller, group {'on ' if group else 'off'}: mean {statistics.mean(took):.3f} ms,"
            f" p50 {percentile(took, 0.5):.3f} ms, p99 {percentile(took, 0.99):.3f} ms"
        )
    p50 = percentile(lones[True], 0.5) / percentile(lones[False], 0.5)
    mean = statistics.mean(lones[True]) / statistics.mean(lones[False])
    print(f"lone caller on/off: p50 {p50:.3f}, mean {mean:.3f} (target: within 10%)")
    if args.caps:
        print(f"{CAP_THREADS} threads by group size cap:")
        for cap in (int(c) for c in args.caps.split(",")):
            best, best_sizes = 0.0, Counter[int]()
            for _ in range(args.repeat):
                run = partial(
                    threaded, sync=sync, group=True, jobs=args.jobs, threads=CAP_THREADS, cap=cap
                )
                rate, found = fresh(root, run)
                if rate > best:
                    best, best_sizes = rate, found
            print(f"  cap {cap:4}: {best:7.0f} jobs/s {best / raw:6.2f}x raw; ", end="")
            print(histogram(best_sizes))


# -- PostgreSQL ------------------------------------------------------------------------------


def pg_threads(threads: int, jobs: int, enqueue: Callable[[int, int], None]) -> float:
    """jobs/s of ``threads`` threads calling ``enqueue(thread, n)``, ``jobs`` in all."""
    start = threading.Barrier(threads + 1)
    each = jobs // threads

    def produce(t: int) -> None:
        start.wait()
        for n in range(each):
            enqueue(t, t * each + n)

    workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    return each * threads / (time.perf_counter() - began)


#: Raw S1 plus what persistq's enqueue also does in its statement: a NOTIFY at commit.
RAW_INSERT_NOTIFY = (
    "WITH new AS (INSERT INTO jobs (payload, status) VALUES (%s, 'PENDING') RETURNING id) "
    "SELECT pg_notify('bench_group', '') FROM new"
)


#: Raw S1 plus what persistq's counters trigger (migration 0008) does: one row per queue
#: incremented, its lock held until the commit has been flushed.
RAW_INSERT_COUNT = (
    "WITH new AS (INSERT INTO jobs (payload, status) VALUES (%s, 'PENDING') RETURNING id) "
    "INSERT INTO counter (name, value) SELECT 'enqueued', 1 FROM new "
    "ON CONFLICT (name) DO UPDATE SET value = counter.value + 1"
)
RAW_INSERT_BOTH = (
    "WITH new AS (INSERT INTO jobs (payload, status) VALUES (%s, 'PENDING') RETURNING id), "
    "counted AS (INSERT INTO counter (name, value) SELECT 'enqueued', 1 FROM new "
    "ON CONFLICT (name) DO UPDATE SET value = counter.value + 1) "
    "SELECT pg_notify('bench_group', '') FROM new"
)


def pg_raw(directory: Path, threads: int, jobs: int, extra: str = "") -> float:
    """Raw psycopg S1 from ``threads`` threads, each on a connection of its own; ``extra``:
    "notify", "count" or "both": more in the same statement, as persistq does it."""
    from bench_postgres import RawPsycopg

    adapters = [RawPsycopg(directory, "on") for _ in range(threads)]  # one schema, made once
    adapters[0].conn.execute(
        "CREATE TABLE IF NOT EXISTS counter (name text PRIMARY KEY, value bigint NOT NULL)"
    )
    statement = {
        "notify": RAW_INSERT_NOTIFY,
        "count": RAW_INSERT_COUNT,
        "both": RAW_INSERT_BOTH,
    }.get(extra)

    def enqueue(t: int, n: int) -> None:
        if statement is None:
            adapters[t].enqueue(make_payload(n))
        else:
            adapters[t].conn.execute(statement, (json.dumps(make_payload(n)),))

    try:
        enqueue(0, -1)  # warm-up
        return pg_threads(threads, jobs, enqueue)
    finally:
        for adapter in adapters:
            adapter.close()


def pg_queue(directory: Path, group: bool) -> tuple[Queue, Callable[[], None]]:
    """A Queue on a fresh schema, grouping on or off (``?group_commit=``); and its close."""
    import bench_postgres

    adapter = bench_postgres.PersistqPg(directory, "on")  # makes and migrates the schema
    if group:
        return adapter.q, adapter.close
    adapter.q.close()
    q = persistq.connect(f"{bench_postgres.SERVER_URL}?schema={adapter.schema}&group_commit=off")
    return q, q.close


def pg_persistq(
    directory: Path, threads: int, jobs: int, group: bool = True
) -> tuple[float, Counter[int]]:
    """persistq: ``threads`` threads enqueueing through one Queue; jobs/s and group sizes."""
    q, close = pg_queue(directory, group)
    try:
        q.enqueue("warm-up", queue=QUEUE)
        sizes: Counter[int] = q.backend.group_sizes  # type: ignore[attr-defined]
        sizes.clear()
        rate = pg_threads(threads, jobs, lambda t, n: q.enqueue(make_payload(n), queue=QUEUE))
        assert q.stats()["queues"][QUEUE]["PENDING"] == jobs // threads * threads + 1
        return rate, Counter(sizes)
    finally:
        close()


def pg_settle(
    directory: Path, threads: int, jobs: int, group: bool = True
) -> tuple[float, Counter[int]]:
    """persistq: ``threads`` threads claiming and completing ``jobs`` (enqueued beforehand in
    one enqueue_many) through one Queue, as a worker's slots do; jobs/s and group sizes."""
    q, close = pg_queue(directory, group)
    try:
        q.enqueue_many([make_payload(n) for n in range(jobs)], queue=QUEUE)
        sizes: Counter[int] = q.backend.group_sizes  # type: ignore[attr-defined]
        sizes.clear()

        def settle(t: int, n: int) -> None:
            job = q.claim(queue=QUEUE, worker=f"w{t}")
            assert job is not None
            q.complete(job)

        rate = pg_threads(threads, jobs, settle)
        completed = q.stats()["queues"][QUEUE]["COMPLETED"]
        assert completed == jobs // threads * threads, completed
        return rate, Counter(sizes)
    finally:
        close()


def pg_lone(directories: tuple[Path, Path], jobs: int) -> dict[bool, list[float]]:
    """Latencies (ms) of one thread's enqueues and completions, alternating between a Queue
    with grouping off and one with it on (two schemas side by side), as ``lone`` does."""
    took: dict[bool, list[float]] = {False: [], True: []}
    queues = {}
    closes = []
    for group, directory in zip((False, True), directories, strict=True):
        queues[group], close = pg_queue(directory, group)
        closes.append(close)
        queues[group].enqueue("warm-up", queue=QUEUE)
    try:
        for n in range(jobs):
            for group in (n % 2 == 0, n % 2 == 1):
                q = queues[group]
                began = time.perf_counter()
                q.enqueue(make_payload(n), queue=QUEUE)
                took[group].append((time.perf_counter() - began) * 1000)
                job = q.claim(queue=QUEUE, worker="lone")
                assert job is not None
                began = time.perf_counter()
                q.complete(job)
                took[group].append((time.perf_counter() - began) * 1000)
    finally:
        for close in closes:
            close()
    return took


def measure_pg(args: argparse.Namespace) -> None:
    import bench_postgres

    bench_postgres.SERVER_URL = args.url
    ws = bench_postgres.PgWorkspace(keep=False)
    raws = {
        "raw1": partial(pg_raw, threads=1),
        "raw16": partial(pg_raw, threads=THREADS),
        "notify16": partial(pg_raw, threads=THREADS, extra="notify"),
        "count16": partial(pg_raw, threads=THREADS, extra="count"),
        "both16": partial(pg_raw, threads=THREADS, extra="both"),
    }
    ours: dict[str, Callable[..., tuple[float, Counter[int]]]] = {
        "pq1 off": partial(pg_persistq, threads=1, group=False),
        "pq1 on": partial(pg_persistq, threads=1),
        "pq16 off": partial(pg_persistq, threads=THREADS, group=False),
        "pq16 on": partial(pg_persistq, threads=THREADS),
        "settle16 off": partial(pg_settle, threads=THREADS, group=False),
        "settle16 on": partial(pg_settle, threads=THREADS),
    }
    rates: dict[str, list[float]] = {k: [] for k in [*raws, *ours]}
    sizes: dict[str, Counter[int]] = {}
    lones: dict[bool, list[float]] = {False: [], True: []}
    try:
        for r in range(args.repeat):  # interleaved, so drift in load falls on all alike
            for key, raw in raws.items():
                rates[key].append(raw(ws.fresh(f"{key}-{r}"), jobs=args.jobs))
            for key, run in ours.items():
                rate, sizes[key] = run(ws.fresh(f"{key.replace(' ', '-')}-{r}"), jobs=args.jobs)
                rates[key].append(rate)
            pair = (ws.fresh(f"lone-off-{r}"), ws.fresh(f"lone-on-{r}"))
            for group, took in pg_lone(pair, args.lone_jobs).items():
                lones[group] += took
        with bench_postgres._connect("public") as conn:
            row = conn.execute("SHOW synchronous_commit").fetchone()
    finally:
        ws.cleanup()
    best = {key: max(found) for key, found in rates.items()}
    raw1, raw16 = best["raw1"], best["raw16"]
    print(f"\n== PostgreSQL {args.url}, synchronous_commit={row[0] if row else '?'}")
    print(f"   {args.jobs} jobs per run, best of {args.repeat}; all rounds (jobs/s): ")
    for key in rates:
        print(f"   {key}: " + ", ".join(f"{rate:.0f}" for rate in rates[key]))
    print(f"{'':44} {'jobs/s':>9} {'x raw S1':>9} {'x raw S1 16':>12}")
    labels = {
        "raw1": "raw psycopg S1, 1 thread",
        "raw16": "raw psycopg S1, 16 threads (16 conns)",
        "notify16": "raw S1 + pg_notify, 16 threads",
        "count16": "raw S1 + one counter row, 16 threads",
        "both16": "raw S1 + counter + pg_notify, 16 threads",
        "pq1 off": "persistq 1 thread, group off",
        "pq1 on": "persistq 1 thread, group on",
        "pq16 off": "persistq 16 threads, one Queue, group off",
        "pq16 on": "persistq 16 threads, one Queue, group on",
        "settle16 off": "claim+complete 16 threads, group off",
        "settle16 on": "claim+complete 16 threads, group on",
    }
    for key, label in labels.items():
        rate = best[key]
        line = f"{label:44} {rate:9.0f} {rate / raw1:9.2f} {rate / raw16:12.2f}"
        if key == "pq16 on":
            met = "met" if rate / raw1 >= PG_TARGET else "NOT met"
            line += f"  target >= {PG_TARGET:.0f}x raw S1: {met}"
        print(line)
    for key in ours:
        print(f"group sizes, {key:12} (last round): {histogram(sizes[key])}")
    for group in (False, True):
        took = lones[group]
        print(
            f"lone caller (enqueue, complete), group {'on ' if group else 'off'}: mean "
            f"{statistics.mean(took):.3f} ms, p50 {percentile(took, 0.5):.3f} ms, "
            f"p99 {percentile(took, 0.99):.3f} ms"
        )
    p50 = percentile(lones[True], 0.5) / percentile(lones[False], 0.5)
    mean = statistics.mean(lones[True]) / statistics.mean(lones[False])
    print(f"lone caller on/off: p50 {p50:.3f}, mean {mean:.3f} (target: within 10%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4000, help="jobs per threaded run")
    parser.add_argument("--lone-jobs", type=int, default=1000, help="enqueues of the lone caller")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--durability", default="full,normal")
    parser.add_argument("--caps", default="", help=f"e.g. 4,16,64: {CAP_THREADS} threads each")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--url", default=PG_URL, help="the PostgreSQL server (--backend postgres)")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f}, {os.cpu_count()} cores")
    if args.backend == "postgres":
        measure_pg(args)
        return
    root = Path(tempfile.mkdtemp(prefix="bench-group-"))
    try:
        for sync in args.durability.split(","):
            measure(root, sync, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
