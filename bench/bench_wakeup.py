"""Enqueue-to-start latency on an idle worker (issue 3 target: p50 <= 10 ms on SQLite).

A real `persistq worker` process waits on an empty queue; this script enqueues one job at a
time, spaced out so the worker is idle each time, and reads back when the handler started.

    .venv/bin/python bench/bench_wakeup.py [--jobs 200] [--url sqlite:///...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import persistq
from persistq import State

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.05, help="idle seconds between jobs")
    parser.add_argument("--url", default=None, help="database URL [default: a temp SQLite file]")
    args = parser.parse_args()
    url = args.url or f"sqlite:///{tempfile.mkdtemp()}/wakeup.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSISTQ_")}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    q = persistq.connect(url)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "persistq",
            "--url",
            url,
            "worker",
            "--queue",
            "wake",
            "--handler",
            "wakeup_handler:record_start",
            "--log-level",
            "WARNING",
        ],
        env=env,
    )
    try:
        time.sleep(1.5)  # let the worker start and go idle
        latencies = []
        for _ in range(args.jobs):
            time.sleep(args.gap)
            sent = time.time()
            job = q.enqueue({"sent": sent}, queue="wake")
            while (done := q.get(job.id)).status != State.COMPLETED:
                time.sleep(0.001)
            latencies.append((done.result["started"] - sent) * 1000)
    finally:
        worker.terminate()
        worker.wait(30)
    latencies.sort()
    pct = {
        p: latencies[min(len(latencies) - 1, int(len(latencies) * p / 100))] for p in (50, 95, 99)
    }
    backend = url.split(":", 1)[0]
    print(f"enqueue-to-start latency, idle worker, {backend}, {len(latencies)} jobs:")
    print(
        f"  p50 {pct[50]:.1f} ms   p95 {pct[95]:.1f} ms   p99 {pct[99]:.1f} ms   "
        f"mean {statistics.mean(latencies):.1f} ms   max {latencies[-1]:.1f} ms"
    )
    target = 10.0 if backend == "sqlite" else 5.0
    print(f"  target p50 <= {target:.0f} ms: {'met' if pct[50] <= target else 'NOT MET'}")


if __name__ == "__main__":
    main()
