"""The local PostgreSQL server, for the tests that restart or reconfigure it.

They need the server on this machine (PERSISTQ_TEST_PG_URL on 127.0.0.1) and
``pg_ctlcluster`` (Debian's postgresql-common); else they skip and say which is missing.
Whatever a test does, :func:`server_control` leaves the server running afterwards.

A restart cuts every connection to the server, including those of any other test run on
the same machine at that moment; so these tests run only where they are asked for: under
PERSISTQ_REQUIRE_PG (set by ``.ci/run``) or PERSISTQ_TEST_PG_RESTARTS=1. Two runs of them
at once take turns (a lock file).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest

from conftest import PG_URL, REQUIRE_PG

TIMEOUT = 60.0
#: Read at import, before conftest strips PERSISTQ_* from the environment.
RESTARTS_ALLOWED = REQUIRE_PG or os.environ.get("PERSISTQ_TEST_PG_RESTARTS", "") not in ("", "0")
LOCK_FILE = "/tmp/persistq-tests-pg-restart.lock"


def require_restarts_allowed() -> None:
    if not RESTARTS_ALLOWED:
        pytest.skip(
            "restarts the PostgreSQL server, cutting every other client's connections: "
            "runs under PERSISTQ_REQUIRE_PG (.ci/run) or PERSISTQ_TEST_PG_RESTARTS=1"
        )


def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


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

    with open(LOCK_FILE, "a") as lock:
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
