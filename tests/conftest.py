"""Shared fixtures: real database files in tmp dirs, an injected clock, a clean environment."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import persistq
from persistq import ManualClock, Queue

BACKENDS = ["sqlite", "postgres"]
# Read before the autouse fixture strips PERSISTQ_* from the environment.
PG_URL = os.environ.get("PERSISTQ_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("PERSISTQ_REQUIRE_PG", "") not in ("", "0")


def _pg_admin() -> Any:
    """A connection to the test server, or a skip (a failure when PostgreSQL is required)."""
    try:
        import psycopg

        return psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)
    except Exception as exc:  # ImportError or any connection failure: say which
        reason = f"PostgreSQL at {PG_URL} is not available: {exc}"
        if REQUIRE_PG:
            pytest.fail(reason + " (PERSISTQ_REQUIRE_PG is set)")
        pytest.skip(reason)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's PERSISTQ_* settings."""
    for name in list(os.environ):
        if name.startswith("PERSISTQ_"):
            monkeypatch.delenv(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'queue.db'}"


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL for each backend under test: a SQLite file in tmp_path,
    or a schema of its own on the PostgreSQL server, dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'queue.db'}"
        return
    _pg_admin().close()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{separator}schema={schema}"
    finally:
        _drop_schema(schema)


def _drop_schema(schema: str) -> None:
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


@pytest.fixture
def pg_url() -> Iterator[str]:
    """For PostgreSQL-only tests: a schema of its own on the test server (skipped, or failed
    under PERSISTQ_REQUIRE_PG, when there is none), dropped afterwards."""
    _pg_admin().close()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{separator}schema={schema}"
    finally:
        _drop_schema(schema)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_queue(backend_url: str, clock: ManualClock) -> Iterator[Callable[..., Queue]]:
    """Open queues on the test's database; all share the manual clock unless told otherwise."""
    opened: list[Queue] = []

    def make(**options: Any) -> Queue:
        options.setdefault("clock", clock)
        options.setdefault("lease", 30)
        q = persistq.connect(backend_url, **options)
        opened.append(q)
        return q

    yield make
    for q in opened:
        q.close()


#: The contract suite: its tests run on both twins, ``Queue`` and ``RemoteQueue``.
CONTRACT_MODULES = "test_queue_"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "queue_kind" not in metafunc.fixturenames:  # the `queue` below, not a module's own
        return
    contract = metafunc.module.__name__.rpartition(".")[2].startswith(CONTRACT_MODULES)
    remote = contract and metafunc.definition.get_closest_marker("local_only") is None
    metafunc.parametrize("queue_kind", ["local", "remote"] if remote else ["local"])


@pytest.fixture
def queue(queue_kind: str, make_queue: Callable[..., Queue]) -> Iterator[Queue]:
    """The queue under test: 30 s lease, manual clock, default backoff. In the contract
    suite (tests/test_queue_*.py) also as a ``RemoteQueue`` over the REST API (in process,
    on the same queue and clock), so one suite holds both twins; a test of what only a
    database queue offers is marked ``local_only``."""
    local = make_queue()
    if queue_kind == "local":
        yield local
        return
    from remote_support import in_process_remote

    with in_process_remote(local) as remote:
        yield remote  # type: ignore[misc]
