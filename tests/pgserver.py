"""The test PostgreSQL server: its URL, whether it is there, fresh schemas on it; and, for the
tests that restart or reconfigure it, control of the local server.

Those need the server on this machine (PERSISTQ_TEST_PG_URL on 127.0.0.1) and
``pg_ctlcluster`` (Debian's postgresql-common); else they skip and say which is missing.
Whatever a test does, :func:`server_control` leaves the server running afterwards.

A restart cuts every connection to the server, including those of any other test run on
the same machine at that moment; so these tests run only where they are asked for: under
PERSISTQ_REQUIRE_PG (set by ``.ci/run``) or PERSISTQ_TEST_PG_RESTARTS=1. Two runs of them
at once take turns (a lock file); within a run under pytest-xdist, a restart waits for the
other workers' current tests and they wait for it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import pytest

from procs import wait_until

#: Read at import (conftest imports this module), before its autouse fixture strips
#: PERSISTQ_* from the environment.
PG_URL = os.environ.get("PERSISTQ_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("PERSISTQ_REQUIRE_PG", "") not in ("", "0")


def pg_unavailable() -> str | None:
    """Why the test server cannot be used here (psycopg missing, no server), or None."""
    try:
        import psycopg

        psycopg.connect(PG_URL, autocommit=True, connect_timeout=5).close()
    except Exception as exc:  # ImportError or any connection failure: say which
        return f"PostgreSQL at {PG_URL} is not available: {exc}"
    return None


def require_pg() -> None:
    """Skip the test without the server (fail it when PostgreSQL is required)."""
    reason = pg_unavailable()
    if reason is not None:
        if REQUIRE_PG:
            pytest.fail(reason + " (PERSISTQ_REQUIRE_PG is set)")
        pytest.skip(reason)


def new_pg_schema(prefix: str = "test") -> tuple[str, Callable[[], None]]:
    """The URL of a schema of its own on the test server (persistq creates it on first
    connect), and the cleanup that drops it: for fixtures, and for each example of the
    state machine."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{separator}schema={schema}", lambda: drop_schema(schema)


RESTARTS_ALLOWED = REQUIRE_PG or os.environ.get("PERSISTQ_TEST_PG_RESTARTS", "") not in ("", "0")
LOCK_FILE = "/tmp/persistq-tests-pg-restart.lock"


#: Under pytest-xdist the workers of one run take turns around a restart: every test holds
#: this lock shared (conftest's ``_share_the_server``), a test restarting the server holds
#: it alone. None outside xdist: a run of one process has nothing else to wait for.
_run_lock: IO[str] | None = None


@contextlib.contextmanager
def sharing_the_server(lock_path: Path, *, alone: bool = False) -> Iterator[None]:
    """Hold the run's lock for one test: shared (a restart elsewhere waits for the test), or
    ``alone`` (no other test of the run meanwhile: one that times the machine)."""
    global _run_lock
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        _run_lock = None if alone else lock
        try:
            yield
        finally:
            _run_lock = None


@contextlib.contextmanager
def _alone_on_the_server() -> Iterator[None]:
    lock = _run_lock
    if lock is None:  # outside xdist, or the test holds it alone already
        yield
        return
    fcntl.flock(lock, fcntl.LOCK_EX)  # the other workers' current tests finish first
    try:
        yield
    finally:
        fcntl.flock(lock, fcntl.LOCK_SH)


def require_restarts_allowed() -> None:
    if not RESTARTS_ALLOWED:
        pytest.skip(
            "restarts the PostgreSQL server, cutting every other client's connections: "
            "runs under PERSISTQ_REQUIRE_PG (.ci/run) or PERSISTQ_TEST_PG_RESTARTS=1"
        )


def server_version() -> str | None:
    """The local cluster's version (``/etc/postgresql/<version>``), or None."""
    with contextlib.suppress(OSError):
        versions = sorted(os.listdir("/etc/postgresql"))
        if versions:
            return versions[-1]
    return None


def server_ready() -> bool:
    import psycopg

    try:
        psycopg.connect(PG_URL, connect_timeout=2).close()
    except psycopg.OperationalError:
        return False
    return True


def pg_ctlcluster(action: str) -> None:
    version = server_version()
    assert version is not None
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        check=True,
        capture_output=True,
        timeout=120,
    )


@contextlib.contextmanager
def server_control() -> Iterator[Callable[[], float]]:
    """A function that restarts the local server (returns the seconds it took); whatever
    happens inside, the server is running again afterwards."""
    host = urlsplit(PG_URL).hostname or "localhost"
    if host not in ("127.0.0.1", "localhost", "::1"):
        pytest.skip(f"restarts the server: {PG_URL} is not on this machine")
    if shutil.which("pg_ctlcluster") is None or server_version() is None:
        pytest.skip("restarts the server: no pg_ctlcluster and /etc/postgresql/<version> here")
    require_restarts_allowed()

    def restart() -> float:
        started = time.monotonic()
        pg_ctlcluster("restart")
        wait_until(server_ready, "the server to accept connections again", timeout=30)
        return time.monotonic() - started

    with _alone_on_the_server(), open(LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run's restarts finish first
        try:
            yield restart
        finally:
            ensure_running()


def ensure_running() -> None:
    if not server_ready():
        with contextlib.suppress(subprocess.SubprocessError):
            pg_ctlcluster("start")
        wait_until(server_ready, "the server to come back", timeout=30)


def drop_schema(schema: str) -> None:
    """Over a new connection: a test (this one or a concurrent run's) may have restarted
    the server since the schema was made."""
    import psycopg

    for attempt in range(30):  # the server may still be coming back up
        try:
            with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as admin:
                admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            return
        except psycopg.OperationalError:
            if attempt == 29:
                raise
            time.sleep(1)
