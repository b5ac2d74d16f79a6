"""Shared fixtures: real database files in tmp dirs (PostgreSQL schemas: pgserver.py), an
injected clock, a clean environment."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import fast_storage
import openapi_memo
import persistq
from persistq import ManualClock, Queue
from pgserver import new_pg_schema, require_pg, sharing_the_server

BACKENDS = ["sqlite", "postgres"]

# Before any test: tmp dirs on RAM; one OpenAPI document per distinct app.
fast_storage.install()
openapi_memo.install()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``--dist loadgroup``, a test marked ``xdist_group(NAME)`` gets its id suffixed
    with ``@NAME``, which is how the scheduler keeps a group on one worker. pytest-xdist 3.8
    sets that suffix on ``Node._nodeid``, which pytest 9 no longer reads (the id is
    ``Node._id``): without this, no group held (the two apt-get users ran on both workers,
    and one failed on dpkg's lock). Does nothing where xdist's own suffix took."""
    run_last_the_tests_that_run_alone(items)
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        names = {
            str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
            for mark in item.iter_markers("xdist_group")
        }
        if names and "@" not in item.nodeid:
            from _pytest.nodeid import NodeId  # pytest 9's; before it, xdist's suffix took

            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(sorted(names))}")


def run_last_the_tests_that_run_alone(items: list[pytest.Item]) -> None:
    """Tests marked ``alone`` go last (in their order). One waits for the other worker's
    current test before it starts, and the other worker then waits for it: among the short
    tests near the end of a run that first wait is short, where at the start (the browser
    and crash tests) it was up to half a minute of one worker idle."""
    alone = [item for item in items if item.get_closest_marker("alone") is not None]
    if alone:
        items[:] = [item for item in items if item.get_closest_marker("alone") is None] + alone


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's PERSISTQ_* settings."""
    for name in list(os.environ):
        if name.startswith("PERSISTQ_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """No root handler left by a test: a CLI command run in-process sets logging up
    (basicConfig, force) with a handler on that test's captured stderr, which later tests'
    log lines hit after it closed ("--- Logging error ---: I/O operation on closed file")."""
    root = logging.getLogger()
    before, level = set(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        # basicConfig's own (pytest's capture handlers subclass StreamHandler: kept)
        if type(handler) is logging.StreamHandler and handler not in before:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(autouse=True)
def _share_the_server(request: pytest.FixtureRequest) -> Iterator[None]:
    """Under pytest-xdist (``-n``): no test runs while another worker restarts PostgreSQL
    (pgserver.server_control), which would cut its connections; a test marked ``alone``
    runs while no other does."""
    if not hasattr(request.config, "workerinput"):
        yield
        return
    # Every worker's base temp is a dir of the run's own (popen-gwN): their parent is shared.
    factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
    alone = request.node.get_closest_marker("alone") is not None
    with sharing_the_server(factory.getbasetemp().parent / "run.lock", alone=alone):
        yield


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'queue.db'}"


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL for each backend under test: a SQLite file in tmp_path,
    or a schema of its own on the PostgreSQL server (``pg_url``), dropped afterwards."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'queue.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """For PostgreSQL-only tests: a schema of its own on the test server (skipped, or failed
    under PERSISTQ_REQUIRE_PG, when there is none), dropped afterwards."""
    require_pg()
    url, drop = new_pg_schema()
    try:
        yield url
    finally:
        drop()


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
