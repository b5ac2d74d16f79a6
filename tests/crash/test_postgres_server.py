"""The real PostgreSQL server under the queue: restarts mid-run, LISTEN/NOTIFY, its clock.

Issue 4: when PostgreSQL restarts, producers get a clear persistq error or succeed within
the bounded retry, workers reconnect and carry on, and no acknowledged job is lost or
completed twice. Every process here is real: producers are ``tests/procs.py`` children,
consumers are ``python -m persistq worker`` processes, and the server is restarted with
``pg_ctlcluster``. These tests need the server on this machine (PERSISTQ_TEST_PG_URL on
127.0.0.1 and ``pg_ctlcluster``); they leave it running whatever happens.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import persistq
from handlers import log_lines
from persistq import ManualClock, State
from pgserver import PG_URL, server_control, wait_until
from procs import Children

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def finished_by_pid(log: Path) -> Counter[int]:
    return Counter(pid for _, _, pid in log_lines(log, "finished"))


# Alone, as server_control would take the run alone at its start: so marked, it runs last,
# where the wait for the other worker's current test is short (conftest).
@pytest.mark.alone
def test_the_server_restarts_twice_mid_run_and_no_acknowledged_job_is_lost(
    pg_url: str, tmp_path: Path
) -> None:
    persistq.connect(pg_url).close()  # the schema exists before anyone races for it
    stop, log = tmp_path / "stop", tmp_path / "handler.log"
    with server_control() as restart, Children(tmp_path) as kids:
        # A short lease: a job whose COMPLETE was cut off by the restart is run again soon.
        workers = [
            kids.worker(f"w{i}", pg_url, "--lease", "3", "--sweep-every", "0.5", "-c", "2")
            for i in range(2)
        ]
        # p0 retries an unreachable server for the default 60 s: it should see no outage;
        # p1 gives up after 0.5 s: it gets StorageUnavailable during each restart.
        producers = [
            kids.spawn(f"p{i}", "enqueue-through-outages", pg_url, stop, log, 0.01, timeout)
            for i, timeout in enumerate(("", "0.5"))
        ]
        pids = [w.proc.pid for w in workers]
        wait_until(
            lambda: all(finished_by_pid(log)[pid] > 0 for pid in pids), "both workers to work"
        )
        took = []
        for _ in range(2):
            acked = [len(p.said("enqueued")) for p in producers]
            done = finished_by_pid(log)
            took.append(restart())
            # Both sides carry on by themselves: more acknowledged enqueues from every
            # producer and more finished jobs from every worker than before the restart.
            wait_until(
                lambda acked=acked: all(
                    len(p.said("enqueued")) > n + 10 for p, n in zip(producers, acked, strict=True)
                ),
                "every producer to enqueue again",
            )
            wait_until(
                lambda done=done: all(finished_by_pid(log)[pid] > done[pid] + 10 for pid in pids),
                "every worker to complete jobs again",
            )
        stop.touch()
        for p in producers:
            code = p.finish()
            assert code == 0 and "Traceback" not in p.errors(), f"{p.name}:\n{p.errors()}"
        acked_ids = [int(words[0]) for p in producers for words in p.said("enqueued")]
        refused = [" ".join(words) for p in producers for words in p.said("refused")]
        assert producers[1].said("refused"), "p1 never noticed the server was gone"
        assert all(w.alive() for w in workers), "a worker exited during the outages"

        q = persistq.connect(pg_url)
        try:

            def unfinished() -> int:
                counts = q.stats()["queues"]["default"]
                return int(counts["PENDING"] + counts["PROCESSING"])

            wait_until(lambda: unfinished() == 0, "every job to be completed")
            counts = q.stats()["queues"]["default"]
            jobs = {job.id: job for job in q.jobs(limit=10_000)}
            completions = {
                job_id: [str(e.kind) for e in q.events(job_id)].count("completed")
                for job_id in acked_ids
            }
        finally:
            q.close()
        for w in workers:
            w.stop()  # asserts exit 0, no traceback, and a clean stop
            assert "Traceback" not in w.log(), f"{w.name}:\n{w.log()}"

    print(
        f"\nrestarts took {', '.join(f'{t:.1f}s' for t in took)}; {len(acked_ids)} enqueues "
        f"acknowledged, {len(refused)} refused; {len(jobs)} jobs in the database; "
        f"handler runs by worker {dict(finished_by_pid(log))}"
    )
    for line in refused:
        print("  refused:", line)
    assert len(set(acked_ids)) == len(acked_ids)
    # A refusal names a persistq error (the role lets anything else escape as a traceback).
    assert all(line.startswith("StorageUnavailable ") for line in refused), refused
    assert set(acked_ids) <= set(jobs), "an acknowledged job is missing"
    assert {job.status for job in jobs.values()} == {State.COMPLETED}, counts
    assert set(completions.values()) == {1}, "a job was completed more than once"


def test_a_waiting_claim_wakes_on_notify_from_another_process(pg_url: str, tmp_path: Path) -> None:
    """The waiting claim's fallback polls once a second; a NOTIFY wakes it at once.

    So a wake-up well under the poll interval, every time, is the NOTIFY at work.
    """
    q = persistq.connect(pg_url)
    latencies: list[float] = []
    with Children(tmp_path) as kids:
        waiter = kids.spawn("waiter", "claim-wait", pg_url, 10)
        try:
            for n in range(1, 8):
                waiter.wait_for("waiting", n)
                time.sleep(0.3)  # the claim is asleep by now (it looked once, found nothing)
                job = q.enqueue({"n": n})
                sent = time.time()
                claimed = waiter.wait_for("claimed", n)[-1]
                assert int(claimed[0]) == job.id
                latencies.append(float(claimed[1]) - sent)
        finally:
            q.close()
    assert waiter.said("nothing") == [], "a claim waited out its 10 s"
    print(f"\nenqueue-to-claim wake-ups: {', '.join(f'{s * 1000:.1f} ms' for s in latencies)}")
    # Polling alone would spread these over 0-1 s (median about 0.5 s).
    assert statistics.median(latencies) < 0.2, latencies


def server_now() -> Any:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        row = conn.execute("SELECT now()").fetchone()
        assert row is not None
        return row[0]


def test_leases_are_timed_on_the_server_clock(pg_url: str) -> None:
    """With no clock given (every process in production), times come from the server.

    Shown here by bracketing with the server's own ``now()`` and by the lease being exactly
    its length on that one clock; a worker whose machine clock is off cannot be faked
    simply, but it never sends its time: the statements carry NULL and use ``now()``.
    """
    with persistq.connect(pg_url) as q:
        assert q.clock is None
        q.enqueue({"n": 1})
        before = server_now()
        job = q.claim(worker="w", lease=37.25)
        after = server_now()
        assert job is not None and job.started_at is not None
        assert job.lease_expires_at is not None
        assert before <= job.started_at <= after
        assert job.lease_expires_at - job.started_at == timedelta(seconds=37.25)
        claimed = [e for e in q.events(job.id) if str(e.kind) == "claimed"]
        assert [e.at for e in claimed] == [job.started_at]  # one transaction, one clock
        assert abs(q.now() - server_now().timestamp()) < 5
        beat = q.heartbeat(job)
        assert beat.lease_expires_at is not None
        assert beat.lease_expires_at > job.lease_expires_at  # extended from the server's now
        assert q.complete(beat).status == State.COMPLETED


def test_a_caller_clock_far_in_the_future_still_works_on_postgres(pg_url: str) -> None:
    """Caller-time mode (tests, simulations): every statement uses the given clock."""
    year_2100 = 4_102_444_800.0
    clock = ManualClock(year_2100)
    with persistq.connect(pg_url, clock=clock, lease=30) as q:
        job = q.enqueue({"n": 1})
        assert job.created_at.timestamp() == year_2100
        claimed = q.claim(worker="w")
        assert claimed is not None and claimed.started_at is not None
        assert claimed.started_at.timestamp() == year_2100
        assert claimed.lease_expires_at is not None
        assert claimed.lease_expires_at - claimed.started_at == timedelta(seconds=30)
        clock.advance(31)  # past the lease on the caller's clock, not the server's
        assert q.recover_stalled() == 1
        with pytest.raises(persistq.LeaseLost):
            q.complete(claimed)
        again = q.claim(worker="w2")
        assert again is not None and again.attempts == 2
        assert q.complete(again).status == State.COMPLETED
    # Mixing the two modes on one database is not meant to work: to a queue on the
    # server's clock, a job enqueued "in 2100" is not due yet.
    with persistq.connect(pg_url) as server_clock_q:
        q2 = persistq.connect(pg_url, clock=ManualClock(year_2100))
        try:
            q2.enqueue({"n": 2})
        finally:
            q2.close()
        assert server_clock_q.claim(worker="w3") is None
