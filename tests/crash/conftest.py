"""Fixtures of the crash and multi-process tests: their children, and the parent's view."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from persistq import Queue, SystemClock
from procs import Children


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    """Child processes of the test, in tmp_path; any still running at the end are killed."""
    with Children(tmp_path) as running:
        yield running


@pytest.fixture
def real_queue(make_queue: Callable[..., Queue]) -> Queue:
    """The parent's own view of the database, on the clock the children use."""
    return make_queue(clock=SystemClock())
