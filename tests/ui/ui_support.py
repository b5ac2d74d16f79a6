"""Helpers for the web UI tests: Streamlit's AppTest on the real scripts, real SQLite files.

The scripts open the queue from ``PERSISTQ_URL`` with the database's clock, as in
production; tests seed jobs through ``persistq.connect`` (a ManualClock where a job must
look old) and check the database afterwards, never the script's internals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st
from streamlit.testing.v1 import AppTest

import persistq
from persistq import Job, ManualClock, Queue

UI = Path(persistq.__file__).resolve().parent / "ui"
PASSWORD = "correct horse battery staple"


def reset_streamlit() -> None:
    """Streamlit's caches are per process: every test starts with no queue open."""
    st.cache_resource.clear()
    st.cache_data.clear()


def app(name: str) -> AppTest:
    return AppTest.from_file(str(UI / f"{name}.py"), default_timeout=60)


def login(at: AppTest, password: str = PASSWORD) -> AppTest:
    at.run()
    at.text_input(key="login_password").input(password)
    button(at, "Log in").click()
    at.run()
    # A good password: that run only sends the browser to set the cookie, and it comes
    # back. AppTest has no browser; its session keeps the sign-in, so run again.
    return at.run() if at.html else at


def button(at: AppTest, label: str) -> Any:
    """The button labelled ``label``, else the first whose label starts with it."""
    for found in at.button:
        if found.label == label:
            return found
    for found in at.button:
        if found.label.startswith(label):
            return found
    raise AssertionError(f"no button {label!r} in {[b.label for b in at.button]}")


def texts(at: AppTest) -> str:
    """Every message, caption, markdown and metric of the page, as one string."""
    parts: list[str] = []
    for kind in ("markdown", "caption", "error", "warning", "success", "info", "header", "title"):
        parts.extend(str(e.value) for e in getattr(at, kind))
    parts.extend(f"{m.label}: {m.value}" for m in at.metric)
    return "\n".join(parts)


def table(at: AppTest, index: int = 0) -> Any:
    """The pandas frame of the ``index``-th dataframe on the page."""
    return at.dataframe[index].value


def select_rows(at: AppTest, ids: list[int], index: int = 0) -> AppTest:
    """Select the rows of these job ids in the ``index``-th table, as a click would."""
    frame = at.dataframe[index]
    positions = [list(frame.value["id"]).index(i) for i in ids]
    at.session_state[frame.key] = {"selection": {"rows": positions, "columns": []}}
    return at.run()


def failed_job(queue: Queue, *, queue_name: str = "default", error: str = "boom") -> Job:
    """A FAILED job (its handler raised on its only attempt)."""
    new = queue.enqueue({"task": "fails"}, queue=queue_name, max_attempts=1, priority=100)
    job = queue.claim(queue=queue_name, worker="test-worker")
    assert job is not None and job.id == new.id
    return queue.fail(job, error)


def unprocessable_job(url: str, *, queue_name: str = "default") -> Job:
    """An UNPROCESSABLE job: its only lease expired (the clock is moved, not waited)."""
    clock = ManualClock(start=persistq.SystemClock().now())
    with persistq.connect(url, clock=clock) as queue:
        new = queue.enqueue({"task": "stalls"}, queue=queue_name, max_attempts=1, priority=100)
        job = queue.claim(queue=queue_name, worker="test-worker", lease=5)
        assert job is not None and job.id == new.id
        clock.advance(10)
        queue.recover_stalled()
        return queue.get(job.id)
