"""The read-only Ops web UI, run by Streamlit's AppTest on an empty and on a busy database."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from ui_support import PASSWORD, app, failed_job, login, reset_streamlit, table, texts

import persistq
from apiserver import ApiServer
from persistq import ManualClock, Queue


def charts(at: AppTest) -> list[object]:
    return list(at.get("vega_lite_chart"))


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: str(m.value) for m in at.metric}


def test_ops_asks_for_the_password_first(queue: Queue) -> None:
    at = app("ops").run()
    assert at.text_input(key="login_password")
    assert not at.metric


def test_ops_renders_on_an_empty_database(queue: Queue) -> None:
    at = login(app("ops"))
    assert not at.exception, at.exception
    shown = metrics(at)
    assert shown["PENDING"] == "0" and shown["FAILED"] == "0"
    assert shown["Oldest pending"] == "none"
    assert "All clear" in texts(at)
    assert len(charts(at)) == 1  # throughput, all zero; no latency without finished jobs
    assert "No job finished in the last hour" in texts(at)
    assert shown["Database size"].endswith("KiB")
    assert shown["Free disk"] != "n/a"


def test_ops_renders_a_busy_database_with_alerts(queue: Queue, url: str) -> None:
    for i in range(40):
        queue.enqueue({"n": i}, queue="files")
    for _ in range(25):
        job = queue.claim(queue="files", worker="host:1")
        assert job is not None
        queue.complete(job, {"ok": True})
    held = queue.claim(queue="files", worker="host:1")
    assert held is not None
    failed_job(queue, queue_name="mail", error="Traceback ...\nSMTPError: relay refused")
    queue.enqueue({"n": 1}, queue="reports")
    queue.pause("reports")
    queue.set_limits("files", concurrency=3, rate="20/m")
    queue.worker_seen("host:1", ["files"])
    with persistq.connect(url, clock=ManualClock(start=time.time() - 600)) as past:
        past.worker_seen("host:2", ["mail"])  # silent for 10 minutes: stalled

    at = login(app("ops"))
    assert not at.exception, at.exception
    shown = metrics(at)
    assert (shown["PENDING"], shown["PROCESSING"], shown["COMPLETED"]) == ("15", "1", "25")
    assert shown["FAILED"] == "1"
    page = texts(at)
    assert "Needs attention" in page
    assert "reports" in page and "paused" in page
    assert "host:2 silent for" in page.replace("\\", "")
    assert len(charts(at)) == 2  # throughput and latency
    assert "wait p50" in page
    queues = table(at, 0)
    assert list(queues["queue"]) == ["files", "mail", "reports"]
    assert list(queues["paused"]) == ["no", "no", "yes"]
    assert list(queues["running / limit"]) == ["1 / 3", "0 / -", "0 / -"]
    assert list(queues["rate"]) == ["20/m", "-", "-"]
    workers = table(at, 1).set_index("worker")
    assert workers.loc["host:1", "current job"] == str(held.id)
    assert workers.loc["host:2", "state"] == "STALLED"
    failures = table(at, 2)
    assert "SMTPError: relay refused" in list(failures["error"])
    assert list(failures["task"]) == ["fails"]  # failed_job's payload is {"task": "fails"}
    assert list(failures["arguments"]) == [""]


def test_ops_never_writes(queue: Queue, url: str) -> None:
    failed_job(queue)
    before = [j.to_dict() for j in queue.jobs()]
    at = login(app("ops"))
    at.run()
    assert [j.to_dict() for j in queue.jobs()] == before
    assert not [b for b in at.button if b.label != "Log out"]


def test_ops_renders_over_the_rest_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with ApiServer(tmp_path / "server") as server:
        with persistq.connect(server.db_url, create=False) as q:
            for i in range(3):
                q.enqueue({"n": i}, queue="files")
            job = q.claim(queue="files", worker="host:1")
            assert job is not None
            q.complete(job)
            failed_job(q, queue_name="mail", error="Traceback ...\nSMTPError: relay refused")
        monkeypatch.setenv("PERSISTQ_URL", server.url)
        monkeypatch.setenv("PERSISTQ_API_TOKEN", server.token)
        monkeypatch.setenv("PERSISTQ_HOME", str(tmp_path))  # the login throttle's file
        monkeypatch.setenv("PERSISTQ_ADMIN_PASSWORD", PASSWORD)
        reset_streamlit()
        at = login(app("ops"))
        assert not at.exception, at.exception
        shown = metrics(at)
        assert (shown["PENDING"], shown["COMPLETED"], shown["FAILED"]) == ("2", "1", "1")
        assert shown["Database size"].endswith("KiB") and shown["Free disk"] != "n/a"
        assert len(charts(at)) == 2  # throughput and latency, read over HTTP
        assert "SMTPError: relay refused" in list(table(at, -1)["error"])  # no workers table


def test_recent_failures_survive_a_bulk_enqueue(queue: Queue) -> None:
    """Issue 15: the failures were looked for among the newest 100,000 events only."""
    failed_job(queue, queue_name="mail", error="SMTPError: relay refused")
    for _ in range(11):
        queue.enqueue_many([{"n": i} for i in range(10_000)], queue="bulk")
    at = login(app("ops"))
    assert not at.exception, at.exception
    assert list(table(at, -1)["error"]) == ["SMTPError: relay refused"]  # no workers table


# -- issue 15's defects ----------------------------------------------------------------------


def test_empty_tables_say_so_instead_of_an_empty_grid(queue: Queue) -> None:
    at = login(app("ops"))
    assert not at.exception, at.exception
    assert not at.dataframe  # no bare "empty" grid
    page = texts(at)
    assert "no queues yet" in page and "no worker seen" in page and "no failures" in page


def test_queues_show_every_state_yes_no_paused_and_grouped_counts(queue: Queue, url: str) -> None:
    queue.enqueue_many([{"n": i} for i in range(1500)], queue="bulk")
    queue.enqueue({"n": 1}, queue="reports")
    queue.pause("reports")
    clock = ManualClock(start=time.time() - 3725)
    with persistq.connect(url, clock=clock) as past:
        past.enqueue({"old": True}, queue="reports")
    at = login(app("ops"))
    assert not at.exception, at.exception
    shown = metrics(at)
    assert shown["PENDING"] == "1,502"
    assert shown["Oldest pending"] == "1h 2m"  # short enough for its cell at 1500 px
    queues = table(at, 0)
    assert list(queues["paused"]) == ["no", "yes"]
    assert {"UNPROCESSABLE", "CANCELLED"} <= set(queues.columns)
    assert list(queues["PENDING"]) == ["1,500", "2"]  # as the metrics print counts
    # The table has the page's width: in half of it the last states scrolled out of sight.
    assert not any(column.get("arrow_data_frame") for column in at.columns)


def test_chart_axes_span_the_hour_with_ticks_a_minute_apart(queue: Queue) -> None:
    at = login(app("ops"))
    [chart] = charts(at)
    spec = json.loads(chart.proto.spec)  # type: ignore[attr-defined]
    x = spec["encoding"]["x"]
    assert x["axis"]["tickMinStep"] == 60_000  # never two ticks, labelled alike, in a minute
    start, end = (datetime.fromisoformat(t) for t in x["scale"]["domain"])
    assert (end - start).total_seconds() == 3600  # a whole hour, however few the points
