"""Task dispatch cost against a plain ``--handler`` worker, and ``app.wait`` wake-up latency.

1. Dispatch: the worker's own loop (``Worker.drain``: claim, run under a heartbeat,
   settle, what ``persistq worker`` runs in each thread) on one SQLite file, draining N
   no-op jobs: a ``Worker(handler=noop)`` on plain payloads, as ``--handler`` builds it,
   and ``app.worker()`` on task payloads, as ``--app`` builds it. Rounds alternate the
   two, so load on a shared machine hits both alike; the median of the per-round ratios
   is the figure. ``synchronous=normal`` by default, so fsync noise does not hide a cost
   measured in microseconds (``--durability full`` for the default). The Dispatcher's
   own cost per call is printed too.
2. Wake-up: a second process claims each task job, holds it 20 ms, completes it and prints
   the time ``complete`` returned; this process sits in ``app.wait(job)`` and notes when it
   returned. On SQLite and, when reachable, PostgreSQL.

    .venv/bin/python bench/bench_tasks.py [--jobs 500] [--rounds 8] [--waits 60]
        [--pg-url postgresql://postgres@127.0.0.1:5432/test]

It measures and prints; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import uuid
from pathlib import Path

import noop_tasks
import persistq
from persistq import State
from persistq.dispatch import Dispatcher, task_payload
from persistq.worker import Worker

HERE = Path(__file__).resolve().parent
PG_URL = os.environ.get("PERSISTQ_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSISTQ_")}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    return env


def drain_once(q: persistq.Queue, worker: Worker, payload: object, jobs: int) -> float:
    """Seconds per job of ``worker`` draining ``jobs`` fresh jobs of its queue."""
    queue = worker.queues[0]
    q.enqueue_many([payload] * jobs, queue=queue)
    started = time.perf_counter()
    ran = worker.drain()
    took = time.perf_counter() - started
    assert ran == jobs and q.stats()["queues"][queue]["COMPLETED"] == jobs
    q.purge(status=State.COMPLETED, older_than=0)
    return took / jobs


def dispatch(args: argparse.Namespace, directory: Path) -> None:
    sync = "" if args.durability == "full" else "?synchronous=normal"
    q = persistq.connect(f"sqlite:///{directory / 'dispatch.db'}{sync}")
    plain_worker = Worker(queue=q, handler=noop_tasks.noop, queues=["plain"])
    task_worker = noop_tasks.app.worker(queue=q, queues=["tasks"])
    plain: list[float] = []
    tasks: list[float] = []
    for n in range(args.rounds):
        runs = [
            (plain, plain_worker, {"noop": True}),
            (tasks, task_worker, task_payload("noop")),
        ]
        for samples, worker, payload in runs if n % 2 == 0 else reversed(runs):
            samples.append(drain_once(q, worker, payload, args.jobs))
    ratios = [t / p for p, t in zip(plain, tasks, strict=True)]
    print(
        f"dispatch: {args.jobs} no-op jobs per round, {args.rounds} rounds, SQLite "
        f"synchronous={args.durability}, the worker's drain loop:"
    )
    for label, samples in (("--handler", plain), ("--app", tasks)):
        median = statistics.median(samples)
        rounds = ", ".join(f"{1e6 * x:.0f}" for x in samples)
        print(f"  {label:9}  {1e6 * median:6.0f} us/job  {1 / median:6.0f} jobs/s  ({rounds})")
    print(
        f"  task dispatch costs {100 * (statistics.median(ratios) - 1):+.1f}% per job "
        f"(median of the rounds' ratios; range {100 * (min(ratios) - 1):+.1f}% to "
        f"{100 * (max(ratios) - 1):+.1f}%); target: at most +10%"
    )
    job = q.enqueue(task_payload("noop"))
    dispatcher = Dispatcher(noop_tasks.app.tasks, unknown_task_seconds=3600)
    calls = 20_000
    per_call = timeit.timeit(lambda: dispatcher(job), number=calls) / calls
    per_handler = timeit.timeit(lambda: noop_tasks.noop(job), number=calls) / calls
    print(
        f"  the Dispatcher itself: {1e6 * per_call:.1f} us a call, "
        f"{100 * per_call / statistics.median(plain):.2f}% of a --handler job "
        f"(a bare handler call: {1e6 * per_handler:.2f} us)"
    )
    q.close()


def wake_up(url: str, label: str, waits: int) -> None:
    app = noop_tasks.app
    app.reconnect(url)
    app.queue.stats()  # the schema exists before the other process opens it
    completer = subprocess.Popen(
        [sys.executable, __file__, "--complete", url, str(waits)],
        env=child_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert completer.stdout is not None
    latencies = []
    try:
        for _ in range(waits):
            job = noop_tasks.noop_task.delay()
            app.wait(job, timeout=30)
            woke = time.time()
            completed = float(completer.stdout.readline())
            latencies.append(1000 * (woke - completed))
    finally:
        completer.wait(30)
        app.close()
    latencies.sort()
    p50 = statistics.median(latencies)
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
    target = 10.0 if label == "SQLite" else 5.0
    print(
        f"wait wake-up, {label}, {waits} jobs finished by another process: "
        f"p50 {p50:.1f} ms  p95 {p95:.1f} ms  max {latencies[-1]:.1f} ms  "
        f"(target p50 <= {target:.0f} ms: {'met' if p50 <= target else 'NOT MET'})"
    )


def complete(url: str, count: str) -> None:
    """The other process of the wake-up measure: claim, hold 20 ms, complete, say when."""
    with persistq.connect(url) as q:
        for _ in range(int(count)):
            job = q.claim(queue="tasks", worker=f"completer-{os.getpid()}", wait=30)
            assert job is not None
            time.sleep(0.02)
            q.complete(job)
            print(time.time(), flush=True)


def main() -> None:
    if sys.argv[1:2] == ["--complete"]:
        complete(*sys.argv[2:4])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--waits", type=int, default=60)
    parser.add_argument("--durability", choices=("normal", "full"), default="normal")
    parser.add_argument("--pg-url", default=PG_URL)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="bench-tasks-"))
    try:
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        dispatch(args, directory)
        wake_up(f"sqlite:///{directory / 'wait.db'}", "SQLite", args.waits)
        schema = f"bench_tasks_{uuid.uuid4().hex[:8]}"
        try:
            import psycopg

            with psycopg.connect(args.pg_url, autocommit=True, connect_timeout=3) as admin:
                try:
                    wake_up(f"{args.pg_url}?schema={schema}", "PostgreSQL", args.waits)
                finally:
                    admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        except (ImportError, OSError, persistq.StorageError) as exc:
            print(f"wait wake-up, PostgreSQL: skipped ({exc})")
        except Exception as exc:  # psycopg.OperationalError: no server to measure
            print(f"wait wake-up, PostgreSQL: skipped ({type(exc).__name__}: {exc})")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
