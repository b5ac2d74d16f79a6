"""S1-S5 of bench_core.py on PostgreSQL: persistq vs raw psycopg vs pgqueuer, one server.

The scenarios are bench_core's own code (run_s1 ... run_s5, its Measure and Sizes); this
file adds three PostgreSQL adapters and a workspace that gives every measurement a fresh
schema instead of a fresh file. Each implementation runs in schemas of its own, all
dropped at the end. Durability is the server's ``synchronous_commit=on`` for all three
(read back and printed). It measures and prints; it asserts nothing.

    .venv/bin/python bench/bench_postgres.py                 # everything, ~3 minutes
    .venv/bin/python bench/bench_postgres.py --quick         # counts / 10
    .venv/bin/python bench/bench_postgres.py --only S3,S4 --impl persistq,raw-psycopg
    .venv/bin/python bench/bench_postgres.py --url postgresql://user@host:5432/db

Implementations:

- persistq: ``persistq.connect("postgresql://...?schema=...")``; take = claim + complete.
- raw-psycopg: the least a durable PostgreSQL queue can do: one table with a partial
  index; INSERT; claim is one ``UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED
  LIMIT 1) RETURNING``; complete is one UPDATE; each its own autocommit transaction.
- pgqueuer (its ``Queries`` API over a psycopg AsyncConnection): enqueue; dequeue(batch
  1) + log_jobs(successful), which is what its QueueManager does per job.

Extra rows: S5a is S5 with the backlog's tables ANALYZEd after the fill, as autovacuum does
within a minute (S5 itself measures seconds after the enqueues, when PostgreSQL has no
statistics for the table yet); S5f (persistq only) claims 1,000 jobs next to 200,000
*finished* ones versus next to none, the question "do finished jobs slow claims down?";
and the enqueue-to-start latency of an idle worker (bench_wakeup.py on PostgreSQL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

import bench_core as core
import persistq
from bench_core import Adapter, Measure, Sizes, make_payload

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
IMPLS = ("persistq-pg", "raw-psycopg", "pgqueuer")
LABELS = {"persistq-pg": "persistq", "raw-psycopg": "raw psycopg", "pgqueuer": "pgqueuer"}
SCENARIOS = (*core.SCENARIOS, "S5a", "S5f")
SYNC = "on"  # bench_core's `sync` argument; PostgreSQL runs synchronous_commit=on throughout

TARGET_RATIO = 0.7  # S3, S4: persistq >= 0.7x raw psycopg
TARGET_S2 = 40_000.0
TARGET_S5 = 1.3
TARGET_WAKEUP_P50_MS = 5.0

#: The server the adapters use. The spawned S4 processes import this file again (as
#: __mp_main__, which also registers the adapters below), so --url travels by environment.
SERVER_URL = os.environ.get("PERSISTQ_BENCH_PG_URL", DEFAULT_URL)


def _schema_for(directory: Path) -> str:
    """bench_core hands adapters a directory; on PostgreSQL it names a schema instead."""
    run = re.sub(r"[^a-z0-9]", "", directory.parent.name.lower())[-8:]
    name = re.sub(r"[^a-z0-9]+", "_", directory.name.lower())
    return f"bench_{run}_{name}"[:63]


def _connect(schema: str, **kwargs: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(
        SERVER_URL, autocommit=True, options=f"-c search_path={schema}", **kwargs
    )


def _server_synchronous_commit(schema: str) -> str:
    with _connect(schema) as conn:
        row = conn.execute("SHOW synchronous_commit").fetchone()
    return f"synchronous_commit={row[0] if row else '?'} (SHOW, read back)"


def _n(payload: Any) -> int:
    return int(payload["n"])


class PersistqPg(Adapter):
    name = "persistq-pg"

    def __init__(self, directory: Path, sync: str) -> None:
        super().__init__(directory, sync)
        self.schema = _schema_for(directory)
        self.q = persistq.connect(f"{SERVER_URL}?schema={self.schema}")

    def enqueue(self, payload: dict[str, Any]) -> None:
        self.q.enqueue(payload, queue=core.QUEUE)

    def enqueue_batch(self, payloads: list[dict[str, Any]]) -> None:
        self.q.enqueue_many(payloads, queue=core.QUEUE)

    def take(self, worker: str) -> int | None:
        job = self.q.claim(queue=core.QUEUE, worker=worker)
        if job is None:
            return None
        self.q.complete(job)
        return _n(job.payload)

    def fill(self, count: int, start: int = 0) -> None:
        for first in range(start, start + count, 10_000):
            last = min(first + 10_000, start + count)
            self.q.enqueue_many([make_payload(n) for n in range(first, last)], queue=core.QUEUE)

    def completed_count(self) -> int:
        return int(self.q.stats()["queues"].get(core.QUEUE, {}).get("COMPLETED", 0))

    def effective_synchronous(self) -> str:
        return _server_synchronous_commit(self.schema) + "; persistq leaves it as it is"

    def close(self) -> None:
        self.q.close()


RAW_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS jobs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " payload text NOT NULL, status text NOT NULL, worker text,"
    " created_at timestamptz NOT NULL DEFAULT now())",
    "CREATE INDEX IF NOT EXISTS jobs_pending ON jobs (id) WHERE status = 'PENDING'",
)
RAW_INSERT = "INSERT INTO jobs (payload, status) VALUES (%s, 'PENDING')"
RAW_CLAIM = (
    "UPDATE jobs SET status = 'PROCESSING', worker = %s "
    "WHERE id = (SELECT id FROM jobs WHERE status = 'PENDING' ORDER BY id "
    "FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING id, payload"
)
RAW_COMPLETE = "UPDATE jobs SET status = 'COMPLETED' WHERE id = %s"


class RawPsycopg(Adapter):
    """The floor: three statements per job, each its own autocommit transaction."""

    name = "raw-psycopg"

    def __init__(self, directory: Path, sync: str) -> None:
        super().__init__(directory, sync)
        self.schema = _schema_for(directory)
        with _connect("public") as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        self.conn = _connect(self.schema)
        self.conn.execute("SET synchronous_commit = on")
        for statement in RAW_SCHEMA:
            self.conn.execute(statement)

    def enqueue(self, payload: dict[str, Any]) -> None:
        self.conn.execute(RAW_INSERT, (json.dumps(payload),))

    def enqueue_batch(self, payloads: list[dict[str, Any]]) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(RAW_INSERT, [(json.dumps(p),) for p in payloads])

    def take(self, worker: str) -> int | None:
        row = self.conn.execute(RAW_CLAIM, (worker,)).fetchone()
        if row is None:
            return None
        self.conn.execute(RAW_COMPLETE, (row[0],))
        return _n(json.loads(row[1]))

    def fill(self, count: int, start: int = 0) -> None:
        for first in range(start, start + count, 10_000):
            last = min(first + 10_000, start + count)
            self.enqueue_batch([make_payload(n) for n in range(first, last)])

    def completed_count(self) -> int:
        row = self.conn.execute("SELECT count(*) FROM jobs WHERE status = 'COMPLETED'").fetchone()
        return int(row[0]) if row else 0

    def effective_synchronous(self) -> str:
        row = self.conn.execute("SHOW synchronous_commit").fetchone()
        return f"synchronous_commit={row[0] if row else '?'} (SET on its connection, read back)"

    def close(self) -> None:
        self.conn.close()


class PgQueuer(Adapter):
    """pgqueuer's documented Queries API (async) driven from a private event loop.

    Its tables go in this adapter's schema through the connection's search_path (pgqueuer
    leaves ``db_schema`` unset then, and follows the search_path). It keeps finished jobs
    in a log table and deletes them from the queue table.
    """

    name = "pgqueuer"

    def __init__(self, directory: Path, sync: str) -> None:
        super().__init__(directory, sync)
        from pgqueuer.queries import EntrypointExecutionParameter, Queries

        self.schema = _schema_for(directory)
        self.loop = asyncio.new_event_loop()
        with _connect("public") as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        self.conn = self.loop.run_until_complete(
            psycopg.AsyncConnection.connect(
                SERVER_URL, autocommit=True, options=f"-c search_path={self.schema}"
            )
        )
        self.queries = Queries.from_psycopg_connection(self.conn)
        installed = self.loop.run_until_complete(self.queries.schema_is_installed())
        if not installed:
            with _connect(self.schema) as conn:  # one installer at a time (S4 processes)
                conn.execute("SELECT pg_advisory_lock(4242)")
                try:
                    if not self.loop.run_until_complete(self.queries.schema_is_installed()):
                        self.loop.run_until_complete(self.queries.install())
                finally:
                    conn.execute("SELECT pg_advisory_unlock(4242)")
        self.entrypoints = {core.QUEUE: EntrypointExecutionParameter(concurrency_limit=0)}
        self.manager_id = uuid.uuid4()

    def _run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def enqueue(self, payload: dict[str, Any]) -> None:
        self._run(self.queries.enqueue(core.QUEUE, json.dumps(payload).encode(), 0))

    def enqueue_batch(self, payloads: list[dict[str, Any]]) -> None:
        self._run(
            self.queries.enqueue(
                [core.QUEUE] * len(payloads),
                [json.dumps(p).encode() for p in payloads],
                [0] * len(payloads),
            )
        )

    def take(self, worker: str) -> int | None:
        jobs = self._run(
            self.queries.dequeue(
                batch_size=1,
                entrypoints=self.entrypoints,
                queue_manager_id=self.manager_id,
                global_concurrency_limit=None,
                heartbeat_timeout=timedelta(seconds=300),
            )
        )
        if not jobs:
            return None
        job = jobs[0]
        self._run(self.queries.log_jobs([(job, "successful", None)]))
        return _n(json.loads(job.payload))

    def fill(self, count: int, start: int = 0) -> None:
        for first in range(start, start + count, 10_000):
            last = min(first + 10_000, start + count)
            self.enqueue_batch([make_payload(n) for n in range(first, last)])

    def completed_count(self) -> int:
        with _connect(self.schema) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'"
            ).fetchone()
        return int(row[0]) if row else 0

    def effective_synchronous(self) -> str:
        return _server_synchronous_commit(self.schema) + "; its tables are LOGGED (durable)"

    def close(self) -> None:
        self._run(self.conn.close())
        self.loop.close()


core.ADAPTERS.update({cls.name: cls for cls in (PersistqPg, RawPsycopg, PgQueuer)})


class PgWorkspace(core.Workspace):
    """bench_core's Workspace, but each directory stands for a schema (created by the
    adapter that opens it); a prefilled one is filled in place, not copied, and with
    ``analyze`` set its tables are ANALYZEd afterwards."""

    analyze = False

    def prefilled(self, impl: str, count: int, sync: str, label: str) -> Path:
        target = self.fresh(label)
        adapter = core.ADAPTERS[impl](target, sync)
        try:
            adapter.fill(count)
        finally:
            adapter.close()
        if self.analyze:
            schema = _schema_for(target)
            with _connect(schema) as conn:
                tables = conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)
                ).fetchall()
                for (table,) in tables:
                    conn.execute(f'ANALYZE "{schema}"."{table}"')
        return target

    def cleanup(self) -> None:
        prefix = _schema_for(self.root / "x")[:-1]
        with _connect("public") as conn:
            rows = conn.execute(
                "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (prefix,)
            ).fetchall()
            for (schema,) in rows:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        shutil.rmtree(self.root, ignore_errors=True)


# -- S5f: finished jobs next to the pending ones ----------------------------------------------


def run_s5f(ws: PgWorkspace, claims: int, finished: int) -> Measure:
    """persistq: claim + complete ``claims`` jobs with ``finished`` COMPLETED rows beside them
    versus with none, alternating in chunks like S5.

    Setup shortcut (not measured): the finished rows are enqueued, then marked COMPLETED by
    one UPDATE of persistq's table and VACUUM ANALYZE'd, the state autovacuum leaves after
    a long run; draining them through the API would take minutes and measure nothing new.
    """
    with_history = PersistqPg(ws.fresh("s5f-history"), SYNC)
    fresh = PersistqPg(ws.fresh("s5f-fresh"), SYNC)
    try:
        with_history.fill(finished, start=10_000_000)
        with _connect(with_history.schema) as conn:
            conn.execute(
                "UPDATE jobs SET status = 'COMPLETED', finished_at = now(), updated_at = now()"
            )
            conn.execute("VACUUM ANALYZE jobs")
        for adapter in (with_history, fresh):
            adapter.fill(claims)
        adapters = {finished: with_history, 0: fresh}
        done = dict.fromkeys(adapters, 0)
        seconds = dict.fromkeys(adapters, 0.0)
        chunk = max(1, claims // core.S5_ROUNDS)
        for i, start in enumerate(range(0, claims, chunk)):
            size = min(chunk, claims - start)
            order = list(adapters) if i % 2 == 0 else list(adapters)[::-1]
            for key in order:
                n, s = core._timed(core._drain(adapters[key], size, "bench-1"))
                done[key] += n
                seconds[key] += s
    finally:
        with_history.close()
        fresh.close()
    ratio = (seconds[finished] / done[finished]) / (seconds[0] / done[0])
    extra = {
        "finished_rows": finished,
        "fresh_jobs_per_s": round(done[0] / seconds[0], 1),
        "ratio_time_history_over_fresh": ratio,
    }
    return Measure(done[finished], seconds[finished], None, extra)


# -- wake-up latency ---------------------------------------------------------------------------


def run_wakeup(jobs: int) -> tuple[str, float | None]:
    """bench_wakeup.py against schema bench_wakeup (dropped after); its output and p50."""
    schema = "bench_wakeup"
    try:
        out = subprocess.run(
            [
                sys.executable,
                str(core.BENCH_DIR / "bench_wakeup.py"),
                "--jobs",
                str(jobs),
                "--url",
                f"{SERVER_URL}?schema={schema}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        with _connect("public") as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    text = (out.stdout + out.stderr).strip()
    found = re.search(r"p50 ([0-9.]+) ms", text)
    return text, float(found.group(1)) if found else None


# -- report ------------------------------------------------------------------------------------


def evaluate(scenario: str, results: dict[str, Measure]) -> tuple[str, bool | None]:
    pq, raw = results.get("persistq-pg"), results.get("raw-psycopg")
    if pq is None:
        return "-", None
    if scenario in ("S3", "S4"):
        target = f">= {TARGET_RATIO}x raw"
        if raw is None or not raw.rate:
            return target, None
        met = pq.rate / raw.rate >= TARGET_RATIO
        if scenario == "S4":
            met = met and pq.extra["duplicates"] == 0 and pq.extra["losses"] == 0
        return target, met
    if scenario == "S2":
        return f">= {TARGET_S2:,.0f}/s", pq.rate >= TARGET_S2
    if scenario in ("S5", "S5a"):
        ratio = float(pq.extra["ratio_time_big_over_small"])
        return f"t_big/t_small <= {TARGET_S5}", ratio <= TARGET_S5
    if scenario == "S5f":
        ratio = float(pq.extra["ratio_time_history_over_fresh"])
        return f"t_hist/t_none <= {TARGET_S5}", ratio <= TARGET_S5
    return "(none)", None


def _rate(m: Measure | None) -> str:
    return "n/a" if m is None else f"{m.rate:,.0f}"


def print_table(
    sizes: Sizes, table: dict[str, dict[str, Measure]], impls: list[str], skipped: dict[str, str]
) -> None:
    width = 40
    cells = [LABELS[i] for i in IMPLS]
    header = f"{'scenario':<{width}} " + " ".join(f"{c:>12}" for c in cells)
    header += f" {'pq/raw':>7}  {'target':<20} result"
    print("\n=== PostgreSQL, synchronous_commit=on (jobs/s; higher is better) ===")
    print(header)
    print("-" * len(header))

    def row(
        label: str, values: list[str], ratio: str = "", target: str = "", verdict: str = ""
    ) -> None:
        line = f"{label:<{width}} " + " ".join(f"{v:>12}" for v in values)
        print(f"{line} {ratio:>7}  {target:<20} {verdict}".rstrip())

    for scenario, results in table.items():
        target, met = evaluate(scenario, results)
        verdict = "-" if met is None else ("met" if met else "NOT MET")
        pq, raw = results.get("persistq-pg"), results.get("raw-psycopg")
        ratio = f"{pq.rate / raw.rate:.2f}" if pq and raw and raw.rate else "-"
        values = [_rate(results.get(i)) if i in impls else "-" for i in IMPLS]
        if scenario in ("S5", "S5a"):
            tag = "S5 " if scenario == "S5" else "S5a "  # S5a: after ANALYZE
            small = [
                f"{results[i].extra['small_jobs_per_s']:,.0f}" if i in results else "-"
                for i in IMPLS
            ]
            row(f"{tag}claim+complete @{sizes.s5_small:,} pending", small)
            row(f"{tag}claim+complete @{sizes.s5_big:,} pending", values, ratio)
            slow = [
                f"{results[i].extra['ratio_time_big_over_small']:.2f}x" if i in results else "-"
                for i in IMPLS
            ]
            after = "" if scenario == "S5" else " analyzed"
            row(f"{tag}slowdown t_big/t_small{after}", slow, "", target, verdict)
            continue
        if scenario == "S5f":
            m = results["persistq-pg"]
            row("S5f claim+complete, 0 finished beside", [f"{m.extra['fresh_jobs_per_s']:,.0f}"])
            label = f"S5f ... {m.extra['finished_rows']:,} finished beside"
            row(label, [_rate(m)])
            ratio_text = f"{m.extra['ratio_time_history_over_fresh']:.2f}x"
            row("S5f slowdown t_hist/t_none", [ratio_text], "", target, verdict)
            continue
        row(core.describe(scenario, sizes), values, ratio, target, verdict)
        if scenario == "S4":
            dl = [
                f"{results[i].extra['duplicates']}/{results[i].extra['losses']}"
                if i in results
                else "-"
                for i in IMPLS
            ]
            row("S4 duplicates/losses", dl, "", "0/0")
    for impl, reason in skipped.items():
        print(f"{LABELS[impl]}: n/a: {reason}")
    notes = [
        f"  {scenario} {LABELS[impl]}: {m.note}"
        for scenario, results in table.items()
        for impl, m in results.items()
        if m.note
    ]
    if notes:
        print("notes:\n" + "\n".join(notes))


def parse_args(argv: Iterable[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=None, help=f"server [default: {DEFAULT_URL}]")
    parser.add_argument("--quick", action="store_true", help="divide every count by 10")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="e.g. S3,S4,S5f")
    parser.add_argument("--impl", default=",".join(IMPLS), help="subset of " + ",".join(IMPLS))
    parser.add_argument("--repeat", type=int, default=1, help="rounds; the best is reported")
    parser.add_argument("--wakeup-jobs", type=int, default=200, help="0 skips the wake-up run")
    args = parser.parse_args(None if argv is None else list(argv))
    args.scenarios = [s.strip() for s in args.only.split(",") if s.strip()]
    args.impls = [i.strip() for i in args.impl.split(",") if i.strip()]
    bad = [s for s in args.scenarios if s not in SCENARIOS]
    bad += [i for i in args.impls if i not in IMPLS]
    if bad:
        parser.error(f"unknown: {', '.join(bad)}")
    return args


def main(argv: Iterable[str] | None = None) -> int:
    global SERVER_URL
    args = parse_args(argv)
    if args.url:
        SERVER_URL = args.url
        os.environ["PERSISTQ_BENCH_PG_URL"] = args.url
    sizes = Sizes.for_run(args.quick)
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        server = conn.execute("SHOW server_version").fetchone()
        sync = conn.execute("SHOW synchronous_commit").fetchone()
    started = datetime.now(UTC)
    print(
        f"persistq PostgreSQL benchmark  {started:%Y-%m-%d %H:%M:%S} UTC  python "
        f"{sys.version.split()[0]}  PostgreSQL {server[0] if server else '?'} at "
        f"{SERVER_URL.split('@')[-1]}  server synchronous_commit={sync[0] if sync else '?'}  "
        f"cpus {os.cpu_count()}"
    )
    print(f"load average at start: {core._load()}  repeat: {args.repeat}")
    ws = PgWorkspace(keep=False)
    skipped: dict[str, str] = {}
    impls = list(args.impls)
    table: dict[str, dict[str, Measure]] = {}
    try:
        for impl in list(impls):
            try:
                adapter = core.ADAPTERS[impl](ws.fresh(f"probe-{impl}"), SYNC)
            except Exception as exc:  # an implementation that cannot run here: say why
                skipped[impl] = f"{type(exc).__name__}: {exc}"
                impls.remove(impl)
                continue
            try:
                print(f"  {LABELS[impl]:<12} {adapter.effective_synchronous()}")
            finally:
                adapter.close()
        for scenario in args.scenarios:
            if scenario == "S5f":
                if "persistq-pg" in impls:
                    m = run_s5f(ws, sizes.s5_claims, sizes.s5_big)
                    table[scenario] = {"persistq-pg": m}
                    print(
                        f"  S5f persistq  {m.rate:,.0f} jobs/s beside {sizes.s5_big:,} finished; "
                        f"{m.extra['fresh_jobs_per_s']:,.0f} beside none; "
                        f"t_hist/t_none {m.extra['ratio_time_history_over_fresh']:.2f}",
                        flush=True,
                    )
                continue
            runs: dict[str, list[Measure]] = {impl: [] for impl in impls}
            ws.analyze = scenario == "S5a"
            for _ in range(args.repeat):
                for impl in impls:
                    name = "S5" if scenario == "S5a" else scenario
                    runs[impl].append(core.run_scenario(ws, name, impl, SYNC, sizes))
            ws.analyze = False
            picked = "S5" if scenario == "S5a" else scenario
            table[scenario] = {impl: core.pick(picked, ms) for impl, ms in runs.items()}
            for impl in impls:
                m = table[scenario][impl]
                extra = ""
                if scenario == "S4":
                    extra = f"  dup={m.extra['duplicates']} lost={m.extra['losses']}"
                if scenario in ("S5", "S5a"):
                    extra = (
                        f"  @small {m.extra['small_jobs_per_s']:,.0f}/s"
                        f"  t_big/t_small {m.extra['ratio_time_big_over_small']:.2f}"
                    )
                print(
                    f"  {scenario} {LABELS[impl]:<12} {m.rate:>11,.0f} jobs/s "
                    f"({m.jobs:,} in {m.seconds:.2f}s){extra}{core._samples(m)}",
                    flush=True,
                )
    finally:
        ws.cleanup()
    print_table(sizes, table, impls, skipped)
    if args.wakeup_jobs:
        text, p50 = run_wakeup(args.wakeup_jobs)
        print("\n" + text)
        if p50 is not None:
            verdict = "met" if p50 <= TARGET_WAKEUP_P50_MS else "NOT MET"
            print(f"wake-up p50 {p50:.1f} ms, target <= {TARGET_WAKEUP_P50_MS:.0f} ms: {verdict}")
    print(f"load average at end: {core._load()} on {os.cpu_count()} cpus")
    return 0


if __name__ == "__main__":
    sys.exit(main())
