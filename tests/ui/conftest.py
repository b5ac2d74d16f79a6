"""Fixtures of the web UI tests: the database the scripts open, and the test's own queue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ui_support import PASSWORD, reset_streamlit

import persistq
from persistq import Queue


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The database the UI scripts open (PERSISTQ_URL), with the admin password they take."""
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    monkeypatch.setenv("PERSISTQ_URL", url)
    monkeypatch.setenv("PERSISTQ_ADMIN_PASSWORD", PASSWORD)
    reset_streamlit()
    return url


@pytest.fixture
def queue(url: str) -> Iterator[Queue]:
    """The test's own queue on that database (it creates the file), on the real clock."""
    with persistq.connect(url) as q:
        yield q
