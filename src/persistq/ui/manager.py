"""The Manager web UI (``persistq ui manager``, port 8501): jobs, dead letters, enqueue, queues.

A Streamlit script: Streamlit runs it top to bottom on every click. It reads and writes
through the Queue API (its job search included) and the read models of
:mod:`persistq.insights`, never SQL; each page queries only what it shows (counts come from
the per-state statistics).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import streamlit as st

from persistq import insights
from persistq.dispatch import task_payload
from persistq.errors import QueueError, QueueNotEmpty
from persistq.model import DEAD_LETTER, MAX_ATTEMPTS, State
from persistq.queue import Queue
from persistq.tasks.files import FILES_QUEUE, STAMP_TASK
from persistq.ui import common, jobs

#: How often the live jobs table reads the database again.
LIVE_SECONDS = 5


def jobs_page(queue: Queue) -> None:
    st.header("Jobs")
    live = st.toggle(
        "Live",
        value=True,
        key="jobs_live",
        help=f"Read the table again every {LIVE_SECONDS} s. It holds still while rows are "
        "selected, so the selection keeps meaning the jobs shown.",
    )
    # Only the fragment reruns on its timer, so the page does not flicker; paused, it has
    # no timer at all.
    st.fragment(_jobs_body, run_every=LIVE_SECONDS if live else None)(queue, live)


def _jobs_body(queue: Queue, live: bool) -> None:
    if common.session_expired():
        st.rerun()  # the whole script: it shows the login form
    report = insights.stats(queue)
    flt, oldest_first, page_size = jobs.filter_bar(report, "jobs")
    left, right = st.columns([6, 1])
    with left:
        selected = jobs.job_table(queue, report, flt, oldest_first, page_size, "jobs", live=live)
    with right:
        jobs.queue_summary(report, flt.queue)
    jobs.bulk_box(queue, report, flt, "jobs", verbs=("Resubmit", "Cancel"))
    st.divider()
    typed = st.number_input(
        "Open job by id", min_value=1, value=None, step=1, key="jobs_open", width=240
    )
    job_id = int(typed) if typed is not None else (selected[0].id if len(selected) == 1 else None)
    if job_id is None:
        st.caption("Select one row, or type a job id, to see its payload, error and attempts.")
    else:
        jobs.job_detail(queue, job_id, "jobs")
    if live:
        st.caption(f"Live: updated {common.when(time.time())} UTC")


def dead_letters_page(queue: Queue) -> None:
    st.header("Dead letters")
    st.caption(
        "FAILED: the handler raised on its last allowed attempt. UNPROCESSABLE: its lease "
        "expired on the last attempt, so it crashed or stalled its worker every time. "
        "Redrive puts a job back to PENDING with its attempts reset."
    )
    report = insights.stats(queue)
    totals = common.state_totals(report)
    states = sorted(DEAD_LETTER)  # FAILED, UNPROCESSABLE
    tabs = st.tabs([f"{state} ({common.count(totals[state])})" for state in states])
    for tab, state in zip(tabs, states, strict=True):
        with tab:
            key = f"dlq_{state.lower()}"
            flt, oldest_first, page_size = jobs.filter_bar(report, key, status=state)
            selected = jobs.job_table(
                queue, report, flt, oldest_first, page_size, key, verbs=("Redrive", "Cancel")
            )
            jobs.bulk_box(queue, report, flt, key, verbs=("Redrive", "Cancel"))
            if len(selected) == 1:
                jobs.job_detail(queue, selected[0].id, key)


def enqueue_page(queue: Queue) -> None:
    st.header("Enqueue a job")
    names = sorted(insights.stats(queue)["queues"]) or ["default"]
    kind = st.radio(
        "What", ["A task by name", "A raw JSON payload"], key="enqueue_kind", horizontal=True
    )
    as_task = kind == "A task by name"
    with st.form("enqueue"):
        name = st.text_input(
            "Queue",
            value=FILES_QUEUE if as_task else "default",
            key="enqueue_queue",
            help=f"Existing: {', '.join(names)}",
        )
        if as_task:
            task = st.text_input("Task name", value=STAMP_TASK, key="enqueue_task")
            left, right = st.columns(2)
            args_text = left.text_area(
                "Arguments (a JSON list)", value='["data/files/example.txt"]', key="enqueue_args"
            )
            kwargs_text = right.text_area(
                "Keyword arguments (a JSON object)", value="{}", key="enqueue_kwargs"
            )
        else:
            text = st.text_area(
                "Payload (JSON)", value='{"path": "data/files/example.txt"}', key="enqueue_payload"
            )
        left, middle, right = st.columns(3)
        priority = left.number_input("Priority (higher first)", value=0, step=1, key="enqueue_prio")
        delay = middle.number_input(
            "Delay (seconds)", min_value=0.0, value=0.0, step=1.0, key="enqueue_delay"
        )
        attempts = right.number_input(
            "Max attempts",
            min_value=1,
            max_value=MAX_ATTEMPTS,
            value=3,
            step=1,
            key="enqueue_attempts",
        )
        key = st.text_input("Idempotency key (optional)", key="enqueue_key")
        submitted = st.form_submit_button("Enqueue", type="primary")
    if not submitted:
        return
    try:
        if as_task:
            payload = _task_payload(task, args_text, kwargs_text)
        else:
            payload = _json_value(text, "The payload")
    except ValueError as exc:
        st.error(str(exc))
        return
    # Ids only grow: a returned job no newer than the newest before is the key's old job.
    newest = queue.jobs(limit=1)
    newest_id = newest[0].id if newest else 0
    try:
        job = queue.enqueue(
            payload,
            queue=name.strip(),
            priority=int(priority),
            delay=float(delay),
            max_attempts=int(attempts),
            key=key.strip() or None,
        )
    except QueueError as exc:
        st.error(str(exc))
        return
    if job.id <= newest_id:
        st.info(f"Queue `{job.queue}` already has a job with this key: job {job.id}. Nothing new.")
    else:
        st.success(f"Enqueued job {job.id} on queue `{job.queue}` ({job.status}).")


def _json_value(text: str, what: str) -> Any:
    """``text`` parsed as JSON; ValueError saying where it is not."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise ValueError(f"{what} is not JSON: {exc.msg} ({where}).") from None


def _task_payload(name: str, args_text: str, kwargs_text: str) -> dict[str, Any]:
    """The payload that runs task ``name``; ValueError for a bad name or arguments."""
    args = _json_value(args_text or "[]", "The arguments")
    kwargs = _json_value(kwargs_text or "{}", "The keyword arguments")
    if not isinstance(args, list):
        raise ValueError('The arguments must be a JSON list, e.g. [1, "a"].')
    if not isinstance(kwargs, dict):
        raise ValueError('The keyword arguments must be a JSON object, e.g. {"retries": 2}.')
    try:
        return task_payload(name.strip(), args, kwargs)
    except QueueError as exc:
        raise ValueError(str(exc)) from None


def queues_page(queue: Queue) -> None:
    st.header("Queues")
    report = insights.stats(queue)
    limits = common.queue_limits(queue)
    rows = common.queue_rows(report, limits)
    common.table(rows, "no queues yet", key="queues_table")
    left, right = st.columns(2)
    with left, st.form("create_queue", clear_on_submit=True):
        st.markdown("**Create a queue**")
        new = st.text_input("Name", key="queue_new", placeholder="letters, digits, _ . : -")
        if st.form_submit_button("Create"):
            _queue_action(lambda: f"Queue `{queue.create_queue(new.strip()).name}` exists now.")
    with right:
        st.markdown("**Change a queue**")
        names = sorted(report["queues"])
        if not names:
            st.caption("No queues yet.")
            return
        name = st.selectbox("Queue", names, key="queue_pick")
        row = report["queues"][name]
        unfinished = row["PENDING"] + row["PROCESSING"]
        a, b = st.columns(2)
        if a.button("Pause", key="queue_pause", disabled=row["paused"]):
            _queue_action(lambda: f"Queue `{queue.pause(name).name}` is paused: claims wait.")
        if b.button("Resume", key="queue_resume", disabled=not row["paused"]):
            _queue_action(lambda: f"Queue `{queue.resume(name).name}` is running again.")
        total = sum(row[str(s)] for s in State)
        force = st.checkbox(
            f"Also delete its {common.count(unfinished)} unfinished job(s)",
            key="queue_force",
            disabled=not unfinished,
            help="Without this, a queue holding PENDING or PROCESSING jobs is not deleted.",
        )
        typed = st.text_input(
            f"Type `{name}` to delete it and its {common.count(total)} job(s)", key="queue_confirm"
        )
        if st.button("Delete queue", key="queue_delete", disabled=typed != name):

            def delete() -> str:
                deleted = queue.delete_queue(name, force=force)
                return f"Deleted queue `{name}` and {common.count(deleted)} job(s)."

            _queue_action(delete)


def _queue_action(action: Callable[[], str]) -> None:
    try:
        message = action()
    except QueueNotEmpty as exc:
        jobs.flash("error", f"{exc}. Tick the box to delete them too.")
    except QueueError as exc:
        jobs.flash("error", str(exc))
    else:
        jobs.flash("success", message)
    st.rerun()


PAGES: dict[str, Callable[[Queue], None]] = {
    "Jobs": jobs_page,
    "Dead letters": dead_letters_page,
    "Enqueue": enqueue_page,
    "Queues": queues_page,
}


def main() -> None:
    common.setup_page("Manager")
    common.require_login("Manager")
    queue = common.queue()
    with st.sidebar:
        st.title("persistq Manager")
        page = st.radio("Page", list(PAGES), key="nav", label_visibility="collapsed")
        st.divider()
        common.account_box()
    jobs.show_flash()
    PAGES[str(page)](queue)


main()
