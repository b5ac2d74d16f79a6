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
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4000, help="jobs per threaded run")
    parser.add_argument("--lone-jobs", type=int, default=1000, help="enqueues of the lone caller")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--durability", default="full,normal")
    parser.add_argument("--caps", default="", help=f"e.g. 4,16,64: {CAP_THREADS} threads each")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f}, {os.cpu_count()} cores")
    root = Path(tempfile.mkdtemp(prefix="bench-group-"))
    try:
        for sync in args.durability.split(","):
            measure(root, sync, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
