"""Several machines against one PostgreSQL: workers in their own network namespaces.

Issue 4, "show it, not just say it". Each namespace is a small machine of its own: its own
network stack, one veth to the host, addresses 10.200.N.2/24 (host side 10.200.N.1).
PostgreSQL is made to listen on 10.200.1.1 as well, with a trust line for 10.200.0.0/16;
real ``persistq worker`` processes run inside the namespaces (``ip netns exec``) and claim
over TCP from that address. Only addresses these tests create are ever contacted.
Teardown removes the namespaces, the listen address and the pg_hba.conf line, and
restarts the server, leaving the machine as it was found.

Where namespaces cannot be made (not root, no ``ip``, no kernel support), the namespace
test skips and says why, and the fallback runs the workers as separate processes over
TCP to 127.0.0.1 instead. Like every test that restarts the server, the namespace test
runs under PERSISTQ_REQUIRE_PG (``.ci/run``) or PERSISTQ_TEST_PG_RESTARTS=1 only (see
tests/pgserver.py); the fallback runs whenever the namespace test cannot.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

import persistq
from persistq import State
from pgserver import (
    PG_URL,
    RESTARTS_ALLOWED,
    require_restarts_allowed,
    server_control,
    wait_until,
)
from procs import Children

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

#: (namespace, its /24); the host side of the veth is .1, the namespace side .2.
NAMESPACES = (("pqns1", "10.200.1"), ("pqns2", "10.200.2"), ("pqns3", "10.200.3"))
SERVER_ADDRESS = "10.200.1.1"
HBA_LINE = "host all all 10.200.0.0/16 trust  # added by persistq tests/crash/test_netns.py"
JOBS = 300
#: Read before conftest strips PERSISTQ_* from the environment: forces the fallback.
NO_NETNS = os.environ.get("PERSISTQ_TEST_NO_NETNS", "") not in ("", "0")


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def remove_namespaces() -> None:
    for name, _ in NAMESPACES:
        # Deleting a namespace deletes its end of the veth, and so the pair.
        with contextlib.suppress(subprocess.CalledProcessError):
            ip("netns", "delete", name)
        with contextlib.suppress(subprocess.CalledProcessError):
            ip("link", "delete", f"{name}h")


def make_namespaces() -> None:
    for name, net in NAMESPACES:
        host, inside = f"{name}h", f"{name}n"
        ip("netns", "add", name)
        ip("link", "add", host, "type", "veth", "peer", "name", inside)
        ip("link", "set", inside, "netns", name)
        ip("addr", "add", f"{net}.1/24", "dev", host)
        ip("link", "set", host, "up")
        ip("-n", name, "addr", "add", f"{net}.2/24", "dev", inside)
        ip("-n", name, "link", "set", inside, "up")
        ip("-n", name, "link", "set", "lo", "up")
        if f"{net}.1" != SERVER_ADDRESS:  # one host route, to the server, and nothing else
            ip("-n", name, "route", "add", f"{SERVER_ADDRESS}/32", "via", f"{net}.1")


def netns_unavailable() -> str | None:
    """Why namespaces cannot be made here, or None (and then they exist)."""
    if NO_NETNS:
        return "PERSISTQ_TEST_NO_NETNS is set"
    if os.geteuid() != 0:
        return f"creating network namespaces needs root (running as uid {os.geteuid()})"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2) on this machine"
    taken = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    if " 10.200." in taken and "pqns" not in taken:
        return "10.200.0.0/16 is already used on this machine; not touching it"
    remove_namespaces()  # leftovers of an interrupted run
    try:
        make_namespaces()
    except subprocess.CalledProcessError as exc:
        remove_namespaces()
        return f"`{' '.join(exc.cmd)}` failed: {(exc.stderr or '').strip()}"
    return None


@contextlib.contextmanager
def namespaces() -> Iterator[None]:
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(f"network namespaces cannot be made: {reason}")
    try:
        yield
    finally:
        remove_namespaces()


def admin() -> Any:
    import psycopg

    return psycopg.connect(PG_URL, autocommit=True, connect_timeout=10)


@contextlib.contextmanager
def server_listening_on(address: str) -> Iterator[None]:
    """The server also listens on ``address`` and trusts 10.200.0.0/16; undone afterwards."""
    with server_control() as restart:
        with admin() as conn:
            row = conn.execute(
                "SELECT setting, sourcefile FROM pg_settings WHERE name = 'listen_addresses'"
            ).fetchone()
            hba_row = conn.execute("SHOW hba_file").fetchone()
        assert row is not None and hba_row is not None
        listen, source = row
        by_alter_system = (source or "").endswith("postgresql.auto.conf")
        hba = Path(hba_row[0])
        original_hba = hba.read_text()
        try:
            with admin() as conn:
                conn.execute(f"ALTER SYSTEM SET listen_addresses = '{listen},{address}'")
            hba.write_text(original_hba.rstrip("\n") + "\n" + HBA_LINE + "\n")
            restart()
            yield
        finally:
            hba.write_text(original_hba)
            with admin() as conn:
                if by_alter_system:
                    conn.execute(f"ALTER SYSTEM SET listen_addresses = '{listen}'")
                else:
                    conn.execute("ALTER SYSTEM RESET listen_addresses")
            restart()
            with admin() as conn:
                now = conn.execute("SHOW listen_addresses").fetchone()
            assert now is not None and now[0] == listen, f"listen_addresses left as {now}"


def url_at(url: str, host: str) -> str:
    """``url`` with its host (not its port, user, database or options) replaced."""
    parts = urlsplit(url)
    netloc = f"{parts.username}@" if parts.username else ""
    netloc += host + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def run_workers(
    tmp_path: Path,
    url: str,
    worker_url: str,
    prefixes: dict[str, list[str]],
    addresses: set[str] | None = None,
) -> Counter[str]:
    """One worker per entry of ``prefixes`` claims ``JOBS`` jobs over ``worker_url``; check
    each job completed exactly once, and (``addresses``) where the server saw the workers'
    connections come from; how many jobs each worker completed."""
    q = persistq.connect(url)
    try:
        with Children(tmp_path) as kids:
            workers = [
                kids.worker(name, worker_url, "-c", "2", prefix=prefix)
                for name, prefix in prefixes.items()
            ]

            def announced() -> bool:
                assert all(w.alive() for w in workers), "\n".join(w.log() for w in workers)
                return {w.id for w in q.workers()} == set(prefixes)

            wait_until(announced, "every worker to reach the server")
            if addresses is not None:
                seen = client_addresses()
                print(f"\nclients in 10.200.0.0/16 seen by the server: {sorted(seen)}")
                assert seen == addresses
            jobs = q.enqueue_many([{"sleep": 0.02, "n": n} for n in range(JOBS)])

            def unfinished() -> int:
                counts = q.stats()["queues"]["default"]
                return int(counts["PENDING"] + counts["PROCESSING"])

            wait_until(lambda: unfinished() == 0, "every job to be completed")
            for w in workers:
                w.stop()  # asserts exit 0, no traceback, and a clean stop
                assert "Traceback" not in w.log(), f"{w.name}:\n{w.log()}"
        finished = {job.id: job for job in q.jobs(limit=10_000)}
        assert {job.status for job in finished.values()} == {State.COMPLETED}
        assert set(finished) == {job.id for job in jobs}
        for job in jobs:
            kinds = [str(e.kind) for e in q.events(job.id)]
            assert kinds == ["enqueued", "claimed", "completed"], (job.id, kinds)
        by_worker = Counter(job.worker or "" for job in finished.values())
    finally:
        q.close()
    print(f"jobs completed by worker: {dict(by_worker)}")
    return by_worker


def client_addresses() -> set[str]:
    with admin() as conn:
        rows = conn.execute(
            "SELECT DISTINCT host(client_addr) FROM pg_stat_activity"
            " WHERE client_addr <<= '10.200.0.0/16'"
        ).fetchall()
    return {row[0] for row in rows}


# Alone, as server_control would take the run alone at its start: so marked, it runs last,
# where the wait for the other worker's current test is short (conftest).
@pytest.mark.alone
def test_workers_in_three_network_namespaces_complete_every_job_once_over_tcp(
    pg_url: str, tmp_path: Path
) -> None:
    require_restarts_allowed()  # before making anything
    with namespaces(), server_listening_on(SERVER_ADDRESS):
        persistq.connect(pg_url).close()  # create the schema over 127.0.0.1 first
        prefixes = {f"{name}-worker": ["ip", "netns", "exec", name] for name, _ in NAMESPACES}
        ns_url = url_at(pg_url, SERVER_ADDRESS)
        expected = {f"{net}.2" for _, net in NAMESPACES}
        by_worker = run_workers(tmp_path, pg_url, ns_url, prefixes, expected)
    # Every namespace's worker took part: more than one "machine" shared the queue.
    assert set(by_worker) == set(prefixes), by_worker
    assert sum(by_worker.values()) == JOBS


def test_fallback_workers_as_separate_processes_over_tcp(pg_url: str, tmp_path: Path) -> None:
    netns_possible = not NO_NETNS and os.geteuid() == 0 and shutil.which("ip") is not None
    if netns_possible and RESTARTS_ALLOWED:
        pytest.skip("network namespaces can be made here: the namespace test covers this")
    host = urlsplit(PG_URL).hostname
    tcp_url = url_at(pg_url, "127.0.0.1") if host in (None, "localhost") else pg_url
    persistq.connect(tcp_url).close()
    prefixes: dict[str, list[str]] = {f"process{n}-worker": [] for n in range(3)}
    started = time.monotonic()
    by_worker = run_workers(tmp_path, tcp_url, tcp_url, prefixes)
    print(f"took {time.monotonic() - started:.1f}s")
    assert len(by_worker) > 1, by_worker
    assert sum(by_worker.values()) == JOBS
