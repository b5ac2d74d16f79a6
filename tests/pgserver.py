"""The local PostgreSQL server, for the tests that restart or reconfigure it.

They need the server on this machine (PERSISTQ_TEST_PG_URL on 127.0.0.1) and
``pg_ctlcluster`` (Debian's postgresql-common); else they skip and say which is missing.
Whatever a test does, :func:`server_control` leaves the server running afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest

from conftest import PG_URL

TIMEOUT = 60.0


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

    def restart() -> float:
        started = time.monotonic()
        pg_ctlcluster("restart")
        wait_until(server_ready, "the server to accept connections again", timeout=30)
        return time.monotonic() - started

    try:
        yield restart
    finally:
        if not server_ready():
            with contextlib.suppress(subprocess.SubprocessError):
                pg_ctlcluster("start")
            wait_until(server_ready, "the server to come back", timeout=30)
