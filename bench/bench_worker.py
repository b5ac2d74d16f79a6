"""The library's worker against the loops it competes with, side by side in one run.

1. One process: a ``persistq worker`` process (the CLI, a no-op ``--handler``, default
   options) drains N pre-filled jobs; against it, a bare ``claim`` + ``complete`` loop
   (bench_core's S3 on persistq) and raw sqlite3's S3, on fresh copies of the same backlog.
   The worker's rate is read from the database (first ``started_at`` to last
   ``finished_at``), so its start-up and shutdown are not counted.
2. S4: 2 producer processes (one job per transaction) + 4 ``persistq worker`` processes
   (``--s4-concurrency``, default 8, as issue 14 asks), against bench_core's raw S4 (2
   producers + 4 raw consumer processes, one job at a time). The workers are
   up and polling before the producers start; the clock runs from the producers' start to
   the last ``finished_at``. Duplicates are counted from the events (one ``claimed`` per
   job expected, no retries with a no-op handler).

3. Over the REST API: a ``persistq worker --url http://…`` process (RemoteQueue) drains N
   jobs through a ``persistq api`` server on its own SQLite file, against a bare remote
   loop (``RemoteQueue.claim`` + ``complete`` in this process). A one-slot remote worker
   sends each completion with its next claim (``POST /jobs/complete``, one request and, on
   the server's SQLite, one transaction); ``before`` shows what two requests cost.

``--variants settler,slots`` runs each worker twice: as shipped (its settler completes
what the slots finished, one ``complete_many`` per group) and with each slot completing
its own job (``worker_variant.py``; on SQLite the backend's group commit still shares
their commits), to show what the settler adds. ``before`` runs the worker of another
checkout (``--before-src /path/to/src``, e.g. main's), so before and after share one run.

Rounds alternate the contenders, so load on a shared machine hits each alike; the median
of per-round ratios is printed with the load average.

    .venv/bin/python bench/bench_worker.py [--jobs 5000] [--rounds 3] [--durability full]
        [--concurrency 1] [--s4-concurrency 8] [--variants settler] [--only 1,2,3]

It measures and prints; it asserts nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import bench_core
import persistq
from bench_api import TOKEN, start_server
from bench_core import QUEUE, Workspace, run_s3, run_s4

HERE = Path(__file__).resolve().parent
WORKERS = 4
START_TIMEOUT = 60.0


def url_of(directory: Path, sync: str) -> str:
    url = "sqlite:///" + str(directory / "queue.db")
    return url + "?synchronous=normal" if sync == "normal" else url


#: How each variant of the worker starts: the CLI as shipped, or with slots settling alone.
VARIANTS = {
    "settler": ["-m", "persistq"],
    "slots": [str(HERE / "worker_variant.py")],
    "before": ["-m", "persistq"],  # with BEFORE_SRC first on the path
}
#: The ``src`` directory the ``before`` variant imports persistq from.
BEFORE_SRC: list[str] = []


def start_worker(
    url: str,
    worker_id: str,
    concurrency: int,
    variant: str = "settler",
    log_dir: Path | None = None,
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSISTQ_")}
    env["PERSISTQ_API_TOKEN"] = TOKEN  # read only by a worker whose --url is the API
    first = BEFORE_SRC if variant == "before" else []
    env["PYTHONPATH"] = os.pathsep.join([*first, str(HERE), env.get("PYTHONPATH", "")])
    command = [sys.executable, *VARIANTS[variant], "worker", "--url", url, "--queue", QUEUE]
    command += ["--handler", "noop_tasks:noop", "--worker-id", worker_id]
    command += ["--concurrency", str(concurrency)]
    # Its log (a line per job state change, as in production) goes to a file: a pipe nobody
    # reads would fill and block it.
    if log_dir is None:
        log_dir = Path(url.split("sqlite:///", 1)[1].split("?")[0]).parent
    log = log_dir / f"{worker_id}.log"
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=out)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        if proc.wait(timeout=60) != 0:
            print(f"  worker exit {proc.returncode}", file=sys.stderr)


def completed_span(q: persistq.Queue, jobs: int, since: float | None = None) -> float:
    """Seconds from ``since`` (else the first start) to the last finish of ``jobs`` jobs."""
    done = q.jobs(status="COMPLETED", queue=QUEUE, limit=jobs)
    assert len(done) == jobs, f"{len(done)} of {jobs} completed"
    finished = max(j.finished_at.timestamp() for j in done if j.finished_at)
    started = (
        since if since is not None else min(j.started_at.timestamp() for j in done if j.started_at)
    )
    return finished - started


def wait_completed(q: persistq.Queue, jobs: int, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while q.stats()["queues"].get(QUEUE, {}).get("COMPLETED", 0) < jobs:
        if time.monotonic() > deadline:
            raise TimeoutError(f"not all {jobs} jobs completed in {timeout:.0f} s")
        time.sleep(0.02)


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_drain(
    ws: Workspace, sync: str, jobs: int, concurrency: int, variant: str = "settler"
) -> tuple[float, float]:
    """jobs/s and CPU seconds per job of one worker process draining ``jobs`` jobs given it
    once it is up and idle (so its start-up is not counted)."""
    directory = ws.fresh(f"worker-{sync}")
    url = url_of(directory, sync)
    q = persistq.connect(url)
    try:
        return timed_drain(q, start_worker(url, "bench-worker", concurrency, variant), jobs)
    finally:
        q.close()


def timed_drain(q: persistq.Queue, proc: subprocess.Popen[bytes], jobs: int) -> tuple[float, float]:
    """Once worker ``proc`` is up and idle, enqueue ``jobs`` jobs through ``q`` and wait
    until it has completed them all; its jobs/s and CPU seconds per job, then stop it."""
    try:
        wait_workers(q, 1)
        before = cpu_seconds(proc.pid)
        for first in range(0, jobs, 1000):
            q.enqueue_many([{"n": n} for n in range(first, min(first + 1000, jobs))], queue=QUEUE)
        wait_completed(q, jobs)
        cpu = cpu_seconds(proc.pid) - before
    finally:
        stop([proc])
    return jobs / completed_span(q, jobs), cpu / jobs


def bare_drain(ws: Workspace, sync: str, jobs: int) -> tuple[float, float]:
    """bench_core's S3 on persistq (claim + complete, one job at a time, in this process):
    jobs/s and CPU seconds per job."""
    directory = ws.fresh(f"bare-{sync}")
    filler = bench_core.PersistqAdapter(directory, sync)
    filler.fill(jobs)
    filler.close()
    adapter = bench_core.PersistqAdapter(directory, sync)
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        while adapter.take("bench-1") is not None:
            pass
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        adapter.close()
    return jobs / wall, cpu / jobs


def remote_drain(
    ws: Workspace, sync: str, jobs: int, variant: str | None
) -> tuple[float, float | None]:
    """Through a fresh ``persistq api`` server: a worker process of ``variant`` (None: the
    bare remote loop in this process) drains ``jobs`` jobs; jobs/s and, for a worker, its
    CPU seconds per job (the server's are not counted)."""
    directory = ws.fresh(f"remote-{sync}-{variant}")
    url = url_of(directory, sync)
    server, base = start_server(url, directory)
    q = persistq.connect(url)
    try:
        if variant is None:
            q.enqueue_many([{"n": n} for n in range(jobs)], queue=QUEUE)
            with persistq.connect(base, token=TOKEN) as remote:
                wall = time.perf_counter()
                while (job := remote.claim(queue=QUEUE, worker="bench-1")) is not None:
                    remote.complete(job)
                return jobs / (time.perf_counter() - wall), None
        worker = start_worker(base, "bench-remote", 1, variant, log_dir=directory)
        return timed_drain(q, worker, jobs)
    finally:
        q.close()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def over_rest(ws: Workspace, sync: str, jobs: int, rounds: int, variants: list[str]) -> None:
    names = [f"worker {v}" for v in variants]
    rates: dict[str, list[float]] = {name: [] for name in [*names, "bare remote loop"]}
    cpus: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        for variant, name in zip(variants, names, strict=True):
            rate, cpu = remote_drain(ws, sync, jobs, variant)
            rates[name].append(rate)
            cpus[name].append(cpu or 0.0)
        rates["bare remote loop"].append(remote_drain(ws, sync, jobs, None)[0])
    title = f"3. over the REST API, one worker process draining {jobs} jobs, per round"
    print_rounds(title, rates, cpus)
    for name in names:
        print(ratios(f"{name} / bare remote loop", rates[name], rates["bare remote loop"]))


def wait_workers(q: persistq.Queue, count: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while len(q.workers(seen_within=60)) < count:  # each is up and polling
        if time.monotonic() > deadline:
            raise TimeoutError("workers did not start")
        time.sleep(0.05)
    time.sleep(0.3)


def worker_s4(
    ws: Workspace, sync: str, jobs: int, concurrency: int, variant: str = "settler"
) -> tuple[float, int, float, float]:
    """2 producers + 4 worker processes: jobs/s, duplicate claims, the producers' own
    enqueues/s (what the workers could at best keep up with) and the workers' CPU seconds
    per job (on a shared machine, taken from the producers)."""
    directory = ws.fresh(f"s4-worker-{sync}")
    url = url_of(directory, sync)
    q = persistq.connect(url)
    try:
        procs = [start_worker(url, f"w-{i}", concurrency, variant) for i in range(WORKERS)]
        try:
            wait_workers(q, WORKERS)
            cpu = -sum(cpu_seconds(proc.pid) for proc in procs)
            t0, produced, total = run_producers(directory, sync, jobs)
            wait_completed(q, total)
            cpu += sum(cpu_seconds(proc.pid) for proc in procs)
        finally:
            stop(procs)
        done = q.jobs(status="COMPLETED", queue=QUEUE, limit=total)
        extra_claims = sum(job.attempts for job in done) - total  # a no-op never retries
        rate = total / completed_span(q, total, since=t0)
        return rate, extra_claims, total / produced, cpu / total
    finally:
        q.close()


def run_producers(directory: Path, sync: str, jobs: int) -> tuple[float, float, int]:
    """bench_core's S4 producers (one job per transaction) into ``directory``: their start
    (epoch seconds), how long they took, how many jobs they enqueued."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(bench_core.S4_PRODUCERS + 1)
    abort = ctx.Event()
    per = jobs // bench_core.S4_PRODUCERS
    producers = [
        ctx.Process(
            target=bench_core._producer_main,
            args=(
                "persistq",
                str(directory),
                sync,
                i * per,
                per,
                barrier,
                abort,
                str(directory / f"producer-{i}.json"),
            ),
        )
        for i in range(bench_core.S4_PRODUCERS)
    ]
    for p in producers:
        p.start()
    barrier.wait(timeout=120)
    t0 = time.time()
    for p in producers:
        p.join()
    return t0, time.time() - t0, per * bench_core.S4_PRODUCERS


def producers_alone(ws: Workspace, sync: str, jobs: int) -> float:
    """The same 2 producers with no consumer at all: the most enqueues/s they can give, the
    ceiling of any consumer's rate in S4."""
    directory = ws.fresh(f"s4-producers-{sync}")
    persistq.connect(url_of(directory, sync)).close()  # the schema, before they race for it
    _, produced, total = run_producers(directory, sync, jobs)
    return total / produced


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--durability", choices=["full", "normal"], default="full")
    parser.add_argument("--concurrency", type=int, default=1, help="of the worker of part 1")
    parser.add_argument("--s4-concurrency", type=int, default=8, help="of each worker of S4")
    parser.add_argument("--variants", default="settler", help="settler,slots: see above")
    parser.add_argument("--before-src", default=None, help="src dir of the 'before' variant")
    parser.add_argument("--only", default="1,2,3")
    parser.add_argument("--remote-jobs", type=int, default=1500, help="jobs of part 3")
    args = parser.parse_args()
    if args.before_src is not None:
        BEFORE_SRC.append(str(Path(args.before_src).resolve()))
    sync, jobs, parts = args.durability, args.jobs, args.only.split(",")
    variants = args.variants.split(",")
    ws = Workspace(keep=False)
    print(f"load average before: {os.getloadavg()[0]:.2f}; synchronous={sync}; jobs={jobs}")
    try:
        if "1" in parts:
            one_process(ws, sync, jobs, args.rounds, args.concurrency, variants)
        if "2" in parts:
            s4(ws, sync, jobs, args.rounds, args.s4_concurrency, variants)
        if "3" in parts:
            over_rest(ws, sync, args.remote_jobs, args.rounds, variants)
    finally:
        ws.cleanup()
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


def row(name: str, values: list[float], scale: float = 1.0) -> str:
    return f"  {name:<30} " + "  ".join(f"{v * scale:8.0f}" for v in values)


def print_rounds(title: str, rates: dict[str, list[float]], cpus: dict[str, list[float]]) -> None:
    print(f"\n{title}")
    for name, values in rates.items():
        print(row(name + " jobs/s", values))
    for name, values in cpus.items():
        print(row(name + " CPU us/job", values, 1e6))


def ratios(name: str, ours: list[float], theirs: list[float], note: str = "") -> str:
    ratio = [a / b for a, b in zip(ours, theirs, strict=True)]
    return (
        f"  {name:<30} median {median(ratio):.2f}x  " + " ".join(f"{r:.2f}" for r in ratio) + note
    )


def one_process(
    ws: Workspace, sync: str, jobs: int, rounds: int, concurrency: int, variants: list[str]
) -> None:
    names = [f"worker {v}" for v in variants]
    rates: dict[str, list[float]] = {name: [] for name in [*names, "bare", "raw"]}
    cpus: dict[str, list[float]] = {name: [] for name in [*names, "bare"]}
    for _ in range(rounds):
        for variant, name in zip(variants, names, strict=True):
            rate, cpu = worker_drain(ws, sync, jobs, concurrency, variant)
            rates[name].append(rate)
            cpus[name].append(cpu)
        rate, cpu = bare_drain(ws, sync, jobs)
        rates["bare"].append(rate)
        cpus["bare"].append(cpu)
        rates["raw"].append(run_s3(ws, "raw", sync, jobs).rate)
    title = f"1. one process draining {jobs} jobs (worker --concurrency {concurrency}), per round"
    print_rounds(title, rates, cpus)
    for name in names:
        print(ratios(f"{name} / bare, jobs/s", rates[name], rates["bare"]))
        print(ratios(f"{name} / bare, by CPU/job", cpus["bare"], cpus[name]))
        print(ratios(f"{name} / raw S3", rates[name], rates["raw"]))


def s4(
    ws: Workspace, sync: str, jobs: int, rounds: int, concurrency: int, variants: list[str]
) -> None:
    names = [f"worker {v}" for v in variants]
    rates: dict[str, list[float]] = {name: [] for name in [*names, "raw S4"]}
    dups: dict[str, list[int]] = {name: [] for name in names}
    enqueues: dict[str, list[float]] = {name: [] for name in names}
    cpus: dict[str, list[float]] = {name: [] for name in names}
    alone: list[float] = []
    for _ in range(rounds):
        for variant, name in zip(variants, names, strict=True):
            rate, dup, enqueue_rate, cpu = worker_s4(ws, sync, jobs, concurrency, variant)
            rates[name].append(rate)
            dups[name].append(dup)
            enqueues[name].append(enqueue_rate)
            cpus[name].append(cpu)
        rates["raw S4"].append(run_s4(ws, "raw", sync, jobs).rate)
        alone.append(producers_alone(ws, sync, jobs))
    print(
        f"\n2. S4: 2 producers + {WORKERS} consumers (worker --concurrency {concurrency}),"
        f" {jobs} jobs, jobs/s per round"
    )
    for name, values in rates.items():
        print(row(name, values))
    print(row("  producers alone: enqueues/s", alone))
    for name in names:
        print(row(f"  {name}: producers' enqueues/s", enqueues[name]))
    for name in names:
        print(row(f"  {name}: workers' CPU us/job", cpus[name], 1e6))
    for name in names:
        note = f"  (duplicate claims {dups[name]})"
        print(ratios(f"{name} / raw S4", rates[name], rates["raw S4"], note))
    # What a consumer could at best reach: the producers' rate with nobody else writing.
    print(ratios("producers alone / raw S4", alone, rates["raw S4"], "  (the ceiling)"))


if __name__ == "__main__":
    main()
