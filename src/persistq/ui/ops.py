"""The Ops web UI (``persistq ui ops``, port 8502): read-only, refreshing every few seconds.

The dashboard is one ``st.fragment(run_every=...)``: each refresh reruns only it, and the
elements are replaced in place, so the page does not flicker. Everything comes from the
read models of :mod:`persistq.insights`; nothing here writes. They read through the queue
API only, so with ``PERSISTQ_URL=http://…`` (and ``PERSISTQ_API_TOKEN``) the page shows a
queue behind the REST API.
"""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import UTC, datetime
from typing import Any

import altair as alt
import streamlit as st

import persistq
from persistq import insights
from persistq.errors import JobNotFound, QueueError
from persistq.model import QueueInfo, State
from persistq.ports import ReadQueue
from persistq.ui import common

REFRESH_SECONDS = 5
#: The charts show the last hour.
WINDOW_SECONDS = 3600
#: The integrity check reads every page of the database (about 4 s at 1,000,000 jobs), so
#: it runs in the background, on its own connection, this often.
INTEGRITY_EVERY_SECONDS = 600


class IntegrityWatch:
    """The latest :func:`persistq.insights.database` report, refreshed by a daemon thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latest: dict[str, Any] | None = None
        threading.Thread(target=self._run, name="persistq-integrity", daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                with persistq.connect(self.url, create=False) as queue:
                    self.latest = insights.database(queue)
            except (QueueError, OSError) as exc:
                self.latest = {"ok": False, "integrity": f"cannot check: {exc}"}
            time.sleep(INTEGRITY_EVERY_SECONDS)


@st.cache_resource(show_spinner=False)
def _integrity(url: str) -> IntegrityWatch:
    return IntegrityWatch(url)


def database_report(queue: ReadQueue) -> dict[str, Any]:
    """Sizes read now; integrity from the last background check (assumed fine until then)."""
    checked = _integrity(common.database_url()).latest
    report: dict[str, Any] = dict(checked or {"ok": True, "integrity": "checking"})
    report.update({k: v for k, v in insights.storage(queue).items() if v is not None})
    return report


def show_alerts(alerts: list[str]) -> None:
    if alerts:
        st.error(
            "**Needs attention**\n\n" + "\n".join(f"- {common.plain(a)}" for a in alerts),
            icon="🚨",
        )
    else:
        st.success("All clear: no stalled worker, old backlog, paused queue or disk problem.")


def show_counts(report: dict[str, Any]) -> None:
    totals = common.state_totals(report)
    ages = [r["oldest_pending_age"] for r in report["queues"].values()]
    oldest = max((a for a in ages if a is not None), default=None)
    # The age gets a wider cell and a short form: at 1500 px "1 h 2 min" was cut off.
    cells = st.columns([1.0] * len(State) + [1.3])
    for cell, state in zip(cells, State, strict=False):
        cell.metric(str(state), common.count(totals[str(state)]))
    cells[-1].metric("Oldest pending", common.age(oldest) or "none")


def _chart(rows: list[dict[str, Any]], series: list[str], title: str, colors: list[str]) -> Any:
    """Lines of ``series`` over time (``at``, epoch seconds) on the last hour, the axis in
    UTC. The axis spans the whole hour, ticks at least a minute apart: fitted to a few
    points, vega-lite put several ticks in one minute, all labelled alike. (The domain is
    ISO text: vega-lite drew numbers there, and a tickCount object, as a blank chart.)"""
    end = time.time()
    domain = [_iso(end - WINDOW_SECONDS), _iso(end)]
    data = alt.InlineData(
        values=[
            {"at": r["at"] * 1000, "series": name, "value": r[name]}
            for r in rows
            for name in series
        ]
    )
    return (
        alt.Chart(data, height=240)
        .mark_line(point=alt.OverlayMarkDef(size=20), interpolate="monotone")
        .encode(
            x=alt.X(
                "at:T",
                title=None,
                scale=alt.Scale(type="utc", domain=domain),
                axis=alt.Axis(format="%H:%M", tickMinStep=60_000),
            ),
            y=alt.Y("value:Q", title=title),
            color=alt.Color(
                "series:N",
                title=None,
                scale=alt.Scale(domain=series, range=colors),
                legend=alt.Legend(orient="bottom"),
            ),
            tooltip=[
                alt.Tooltip("utchoursminutes(at):T", title="UTC"),
                alt.Tooltip("series:N", title="series"),
                alt.Tooltip("value:Q", title=title, format=".2f"),
            ],
        )
    )


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def show_charts(queue: ReadQueue) -> None:
    left, right = st.columns(2)
    with left:
        st.markdown("**Finished per minute, last hour** (UTC)")
        rows = [
            {"at": r["at"], "completed": r["COMPLETED"], "failed": r["FAILED"] + r["UNPROCESSABLE"]}
            for r in insights.throughput(queue, window_seconds=WINDOW_SECONDS, bucket_seconds=60)
        ]
        st.altair_chart(
            _chart(rows, ["completed", "failed"], "jobs", ["#2e9f5b", "#d6443a"]),
            key="chart_throughput",
        )
    with right:
        st.markdown("**Wait and run time, last hour** (seconds, per 5 minutes)")
        latency = insights.latency(queue, window_seconds=WINDOW_SECONDS, bucket_seconds=300)
        if not latency["buckets"]:
            st.caption("No job finished in the last hour.")
            return
        rows = [
            {
                "at": b["at"],
                "wait p50": b["wait"]["p50"],
                "wait p95": b["wait"]["p95"],
                "run p50": b["run"]["p50"],
                "run p95": b["run"]["p95"],
            }
            for b in latency["buckets"]
        ]
        series = ["wait p50", "wait p95", "run p50", "run p95"]
        colors = ["#f0a04b", "#c4581c", "#6aa3d8", "#1f5fa8"]
        st.altair_chart(_chart(rows, series, "seconds", colors), key="chart_latency")
        wait, run = latency["wait"], latency["run"]
        st.caption(
            f"Whole hour, {common.count(latency['sampled'])} jobs: wait p50 {_secs(wait['p50'])}, "
            f"p95 {_secs(wait['p95'])} · run p50 {_secs(run['p50'])}, p95 {_secs(run['p95'])}"
        )


def _secs(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def show_queues(report: dict[str, Any], limits: dict[str, QueueInfo]) -> None:
    st.markdown("**Queues**")
    common.table(common.queue_rows(report, limits), "no queues yet")


def show_workers(workers: list[dict[str, Any]]) -> None:
    st.markdown(f"**Workers** ({common.count(len(workers))} seen in the last hour)")
    common.table(
        [
            {
                "worker": w["id"],
                "queues": ", ".join(w["queues"]),
                "last heartbeat": f"{common.duration(w['seconds_since_seen'])} ago",
                "current job": ", ".join(str(j) for j in w["job_ids"]) or "idle",
                "state": "STALLED" if w["stalled"] else "ok",
                "started (UTC)": common.when(datetime.fromisoformat(w["started_at"])),
            }
            for w in workers
        ],
        "no worker seen",
    )


def show_failures(queue: ReadQueue) -> None:
    failures = insights.recent_failures(queue, limit=20)
    payloads = _payloads(queue, {f["job_id"] for f in failures})
    st.markdown("**Recent failures**")
    common.table(
        [
            {
                "at (UTC)": common.when(datetime.fromisoformat(f["at"])),
                "job": f["job_id"],
                "queue": f["queue"],
                "task": common.task_name(payloads.get(f["job_id"])),
                "arguments": common.clip(common.task_arguments(payloads.get(f["job_id"])), 80),
                "event": f["kind"],
                "worker": f["worker"] or "",
                "error": common.clip(f["error"], 160),
            }
            for f in failures
        ],
        "no failures",
    )


def _payloads(queue: ReadQueue, ids: set[int]) -> dict[int, Any]:
    """The payloads of these jobs (at most a screenful), for their task and arguments."""
    found = {}
    for job_id in ids:
        with contextlib.suppress(JobNotFound):  # purged since its failure
            found[job_id] = queue.get(job_id).payload
    return found


def show_database(report: dict[str, Any]) -> None:
    st.markdown("**Database**")
    cells = st.columns(4)
    cells[0].metric("Database size", common.size(report.get("size_bytes")), border=True)
    cells[1].metric("WAL size", common.size(report.get("wal_bytes")), border=True)
    cells[2].metric("Free disk", common.size(report.get("free_disk_bytes")), border=True)
    cells[3].metric("Integrity", str(report.get("integrity", "n/a")), border=True)


@st.fragment(run_every=REFRESH_SECONDS)
def dashboard() -> None:
    if common.session_expired():
        st.rerun()  # the whole script: it shows the login form
    queue = common.queue()
    report = insights.stats(queue)
    workers = insights.workers(queue)
    database = database_report(queue)
    show_alerts(insights.alerts(queue, worker_rows=workers, database_report=database))
    show_counts(report)
    show_charts(queue)
    # Full width each: in half the page the queues table hid its last states.
    show_queues(report, common.queue_limits(queue))
    show_workers(workers)
    show_failures(queue)
    show_database(database)
    st.caption(
        f"Updated {common.when(time.time())} UTC · refreshes every {REFRESH_SECONDS} s · read-only"
    )


def main() -> None:
    common.setup_page("Ops")
    common.require_login("Ops", idle=False)
    with st.sidebar:
        st.title("persistq Ops")
        common.account_box()
    dashboard()


main()
