"""REST API overhead: the same work through the API and through the library, in one run.

Four client threads, each with its own keep-alive ``httpx.Client`` (API) or sharing one
``Queue`` (library, as the API server does), first enqueue N jobs each, then claim and
complete N jobs each. Every call is timed; the script prints requests/s and p50/p99 per
operation for both, and whether the API adds at most 2 ms p50 per call (the target).
Each round also runs raw S1 (bench_group's ``raw_s1``: raw sqlite3, one job per
transaction, one thread, its own file, same durability) and prints the API's enqueue
requests/s over it and the enqueue p99: issue 14 wants >= 2x raw S1 and p99 <= 25 ms
with 16 clients. It also prints the server process's CPU time (utime + stime from
/proc) per request of each phase.

    .venv/bin/python bench/bench_api.py                     # 3 rounds of 4 x 500 jobs
    .venv/bin/python bench/bench_api.py --jobs 2000 --durability normal --repeat 5
    .venv/bin/python bench/bench_api.py --clients 16 --group-commit off   # issue 14
    .venv/bin/python bench/bench_api.py --clients 16 --http-client stdlib

The clients run in this process on the same cores as the server. An httpx client (what
persistq.remote uses) costs about 0.5 ms of CPU per request here, more than the server
itself; ``--http-client stdlib`` (http.client keep-alive connections, ~0.1 ms) leaves the
cores to the server. The bench's own CPU per request is printed beside the server's.

The API runs as a real ``persistq api`` process (uvicorn, access log off) on 127.0.0.1,
on its own SQLite file; the library runs in this process on another file with the same
durability. Both share this machine's cores with the client threads (and with anything
else running: the load average is printed). Each round runs both; the verdict is on the
median round. It measures and prints; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import persistq
from bench_group import raw_s1

TOKEN = "bench-token-0123456789abcdef"
CLIENTS = 4
HTTP_CLIENT = "httpx"
TARGET_MS = 2.0
#: issue 14: API enqueue requests/s >= this x raw S1, and enqueue p99 <= TARGET_P99_MS.
TARGET_RAW_RATIO = 2.0
TARGET_P99_MS = 25.0
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(url: str, directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSISTQ_")}
    env["PERSISTQ_API_TOKEN"] = TOKEN
    # the server opens only a database that exists (create=False)
    subprocess.run([sys.executable, "-m", "persistq", "--url", url, "init"], env=env, check=True)
    command = [sys.executable, "-m", "persistq", "--url", url, "api", "--port", str(port)]
    command += ["--no-access-log", "--log-level", "warning"]
    log = (directory / "api.log").open("wb")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"persistq api did not start; see {directory / 'api.log'}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class StdlibResponse:
    def __init__(self, status: int, body: bytes) -> None:
        self.status_code = status
        self.text = body.decode()

    def json(self) -> Any:
        return json.loads(self.text)


class StdlibClient:
    """The part of ``httpx.Client`` the phases use, on one http.client keep-alive connection."""

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.connection = HTTPConnection(host, int(port), timeout=30)
        self.headers = {**headers, "Content-Type": "application/json"}

    def request(self, method: str, path: str, body: bytes | None = None) -> StdlibResponse:
        self.connection.request(method, path, body=body, headers=self.headers)
        response = self.connection.getresponse()
        return StdlibResponse(response.status, response.read())

    def get(self, path: str) -> StdlibResponse:
        return self.request("GET", path)

    def post(self, path: str, **body: Any) -> StdlibResponse:  # body: json=...
        return self.request("POST", path, json.dumps(body["json"]).encode())

    def close(self) -> None:
        self.connection.close()


def http_client(base: str, headers: dict[str, str]) -> httpx.Client | StdlibClient:
    if HTTP_CLIENT == "stdlib":
        return StdlibClient(base, headers)
    return httpx.Client(base_url=base, headers=headers, timeout=30)


Timings = dict[str, list[float]]


def run_threads(work: Callable[[int, Timings], None]) -> tuple[Timings, float]:
    """Run ``work(thread_index, timings)`` in CLIENTS threads; merged timings, wall seconds."""
    per_thread: list[Timings] = [{} for _ in range(CLIENTS)]
    threads = [threading.Thread(target=work, args=(i, per_thread[i])) for i in range(CLIENTS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    merged: Timings = {}
    for timings in per_thread:
        for op, samples in timings.items():
            merged.setdefault(op, []).extend(samples)
    return merged, wall


def timed(timings: Timings, op: str, call: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = call()
    timings.setdefault(op, []).append((time.perf_counter() - started) * 1000)
    return result


def library_phases(url: str, jobs: int) -> dict[str, tuple[Timings, float]]:
    q = persistq.connect(url)

    def produce(i: int, timings: Timings) -> None:
        for n in range(jobs):
            timed(timings, "enqueue", lambda n=n: q.enqueue({"client": i, "n": n}, queue="b"))

    def consume(i: int, timings: Timings) -> None:
        for _ in range(jobs):
            job = timed(timings, "claim", lambda: q.claim(queue="b", worker=f"w{i}"))
            assert job is not None
            timed(timings, "complete", lambda job=job: q.complete(job, {"ok": True}))

    try:
        return {"enqueue": run_threads(produce), "claim+complete": run_threads(consume)}
    finally:
        q.close()


Phase = tuple[Timings, float, float, float]


def api_phases(base: str, jobs: int, pid: int) -> dict[str, Phase]:
    """Each phase's timings, wall seconds, the server's and this process's CPU seconds."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    clients = [http_client(base, headers) for _ in range(CLIENTS)]

    def produce(i: int, timings: Timings) -> None:
        http = clients[i]
        for n in range(jobs):
            body = {"payload": {"client": i, "n": n}}
            response = timed(timings, "enqueue", lambda b=body: http.post("/queues/b/jobs", json=b))
            assert response.status_code == 201, response.text

    def consume(i: int, timings: Timings) -> None:
        http = clients[i]
        for _ in range(jobs):
            claimed = timed(
                timings, "claim", lambda: http.post("/queues/b/claim", json={"worker": f"w{i}"})
            )
            assert claimed.status_code == 200, claimed.text
            job = claimed.json()
            body = {"lease_token": job["lease_token"], "result": {"ok": True}}
            done = timed(
                timings,
                "complete",
                lambda j=job, b=body: http.post(f"/jobs/{j['id']}/complete", json=b),
            )
            assert done.status_code == 200, done.text

    def measured(work: Callable[[int, Timings], None]) -> Phase:
        before, own = cpu_seconds(pid), time.process_time()
        timings, wall = run_threads(work)
        return timings, wall, cpu_seconds(pid) - before, time.process_time() - own

    for http in clients:  # open the keep-alive connections before timing
        http.get("/healthz")
    try:
        return {"enqueue": measured(produce), "claim+complete": measured(consume)}
    finally:
        for http in clients:
            http.close()


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summarize(
    phases: dict[str, tuple[Timings, float]] | dict[str, Phase],
) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for phase, (timings, wall, *cpu) in phases.items():
        calls = sum(len(s) for s in timings.values())
        out[phase] = {"requests_per_second": calls / wall}
        if cpu:
            out[phase]["server_cpu_ms_per_request"] = cpu[0] * 1000 / calls
            out[phase]["client_cpu_ms_per_request"] = cpu[1] * 1000 / calls
        for op, samples in timings.items():
            out[f"{phase}/{op}"] = {
                "p50_ms": statistics.median(samples),
                "p99_ms": percentile(samples, 0.99),
                "calls": float(len(samples)),
            }
    return out


OPS = ("enqueue/enqueue", "claim+complete/claim", "claim+complete/complete")
Summary = dict[str, dict[str, float]]


def one_round(
    directory: Path, n: int, jobs: int, query: str, durability: str
) -> tuple[Summary, Summary, float]:
    """API, library, then raw S1 (as many jobs as the API's enqueue phase), each on a fresh
    database: (library, api) summaries and raw S1 jobs/s."""
    proc, base = start_server(f"sqlite:///{directory / f'api-{n}.db'}{query}", directory)
    try:
        api = summarize(api_phases(base, jobs, proc.pid))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    library = summarize(library_phases(f"sqlite:///{directory / f'lib-{n}.db'}{query}", jobs))
    raw_dir = directory / f"raw-{n}"
    raw_dir.mkdir()
    return library, api, raw_s1(raw_dir, durability, CLIENTS * jobs)


def print_round(library: Summary, api: Summary, raw: float) -> None:
    print(f"{'':28}{'library':>24}{'API':>24}")
    for phase in ("enqueue", "claim+complete"):
        lib, web = library[phase]["requests_per_second"], api[phase]["requests_per_second"]
        print(f"{phase + ' calls/s':28}{lib:>24,.0f}{web:>24,.0f}")
    for key in OPS:
        lib_op, web_op = library[key], api[key]
        print(
            f"{key.split('/')[-1] + ' p50 / p99 ms':28}"
            f"{lib_op['p50_ms']:>12.2f} /{lib_op['p99_ms']:>9.2f}"
            f"{web_op['p50_ms']:>12.2f} /{web_op['p99_ms']:>9.2f}"
        )
    for phase in ("enqueue", "claim+complete"):
        for side in ("server", "client"):
            cpu = api[phase][f"{side}_cpu_ms_per_request"]
            print(f"{phase + f' {side} CPU ms/req':28}{'':>24}{cpu:>24.3f}")
    ratio = api["enqueue"]["requests_per_second"] / raw
    print(f"{'raw S1 jobs/s':28}{raw:>24,.0f}{'API/raw S1 ' + f'{ratio:.2f}x':>24}")


def main() -> None:
    global CLIENTS, HTTP_CLIENT  # the settings the phases read
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=500, help="jobs per client per phase")
    parser.add_argument("--durability", choices=("full", "normal"), default="full")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; verdict on the median")
    parser.add_argument("--clients", type=int, default=CLIENTS, help="concurrent clients")
    parser.add_argument(
        "--group-commit", choices=("on", "off"), default="on", help="SQLite group commit"
    )
    parser.add_argument(
        "--http-client",
        choices=("httpx", "stdlib"),
        default=HTTP_CLIENT,
        help="the API clients: httpx (as persistq.remote) or http.client (cheaper)",
    )
    args = parser.parse_args()
    CLIENTS = args.clients
    HTTP_CLIENT = args.http_client
    options = [f"synchronous={args.durability}"] if args.durability == "normal" else []
    if args.group_commit == "off":
        options.append("group_commit=off")
    query = f"?{'&'.join(options)}" if options else ""
    print(
        f"persistq REST API vs library: {CLIENTS} concurrent clients x {args.jobs} jobs, "
        f"SQLite synchronous={args.durability.upper()}, group commit {args.group_commit}, "
        f"{HTTP_CLIENT} clients, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    rounds = []
    with tempfile.TemporaryDirectory(prefix="persistq-bench-api-") as tmp:
        for n in range(args.repeat):
            library, api, raw = one_round(Path(tmp), n, args.jobs, query, args.durability)
            print(f"\nround {n + 1} of {args.repeat} (load average {os.getloadavg()[0]:.2f})")
            print_round(library, api, raw)
            rounds.append({"library": library, "api": api, "raw_s1_jobs_per_second": raw})
    print(f"\nadded p50 per call, API over library (target <= {TARGET_MS:.0f} ms):")
    for key in OPS:
        added = sorted(r["api"][key]["p50_ms"] - r["library"][key]["p50_ms"] for r in rounds)
        median = statistics.median(added)
        status = "met" if median <= TARGET_MS else "NOT MET"
        each = ", ".join(f"{a:+.2f}" for a in added)
        print(f"  {key.split('/')[-1]:9} median {median:+.2f} ms (rounds: {each}): {status}")
    ratios = sorted(
        r["api"]["enqueue"]["requests_per_second"] / r["raw_s1_jobs_per_second"] for r in rounds
    )
    p99s = sorted(r["api"]["enqueue/enqueue"]["p99_ms"] for r in rounds)
    ratio, p99 = statistics.median(ratios), statistics.median(p99s)
    print(
        f"API enqueue over raw S1 (target >= {TARGET_RAW_RATIO:.0f}x): median {ratio:.2f}x "
        f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)}): "
        f"{'met' if ratio >= TARGET_RAW_RATIO else 'NOT MET'}"
    )
    print(
        f"API enqueue p99 (target <= {TARGET_P99_MS:.0f} ms): median {p99:.1f} ms "
        f"(rounds: {', '.join(f'{p:.1f}' for p in p99s)}): "
        f"{'met' if p99 <= TARGET_P99_MS else 'NOT MET'}"
    )
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    record = {
        "when": stamp,
        "jobs_per_client": args.jobs,
        "clients": CLIENTS,
        "http_client": HTTP_CLIENT,
        "durability": args.durability,
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "rounds": rounds,
    }
    (RESULTS_DIR / f"api-{stamp}.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
