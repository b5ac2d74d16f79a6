"""The Manager's job views: filter bar, paginated table, bulk actions and a job's detail.

A rendered page of jobs is kept in session state until the filter, the page or the data
changes on purpose (Refresh, an action). So a rerun caused by a click never reshuffles the
rows under the user's selection: the selected row positions always mean the jobs shown.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import streamlit as st

from persistq import search
from persistq.errors import InvalidTransition, JobNotFound, QueueError
from persistq.model import CANCELLABLE, RESUBMITTABLE, Job, State, encode_json, task_call
from persistq.queue import Queue
from persistq.search import JobFilter, JobPage
from persistq.ui import common, timeline

ALL = "(all)"
PERIODS: dict[str, int | None] = {
    "any time": None,
    "last 15 minutes": 15 * 60,
    "last hour": 3600,
    "last 24 hours": 86400,
    "last 7 days": 7 * 86400,
    "between…": -1,
}
PAGE_SIZES = (25, 50, 100, 200)
#: Jobs a page may read to find matches of a text or time filter; "Search deeper" x4.
SCAN_BUDGET = 20_000
Action = Callable[[int], Job]
#: What each action's report says it did: a redrive is a resubmit, but it is not called one.
DONE = {"Resubmit": "Resubmitted", "Redrive": "Redriven", "Cancel": "Cancelled"}


@dataclass(frozen=True, slots=True)
class View:
    """What the table shows: the filter, the order and the page."""

    flt: JobFilter
    oldest_first: bool
    page_size: int
    page: int
    budget: int


@dataclass(slots=True)
class Outcome:
    """What a bulk action did to the jobs it was given."""

    done: int = 0
    refused: int = 0  # their state does not allow the action (InvalidTransition)
    changed: int = 0  # no longer match the filter they were counted under
    gone: int = 0  # deleted meanwhile

    def summary(self, verb: str) -> str:
        parts = [f"{verb} {common.count(self.done)} job(s)"]
        if self.refused:
            parts.append(f"{common.count(self.refused)} refused by their state")
        if self.changed:
            parts.append(f"{common.count(self.changed)} skipped: no longer matching")
        if self.gone:
            parts.append(f"{common.count(self.gone)} no longer exist")
        return "; ".join(parts) + "."


def apply(
    action: Action,
    q: Queue,
    ids: Sequence[int],
    flt: JobFilter | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Outcome:
    """Run ``action`` on each job; with ``flt``, only on jobs that still match it."""
    outcome = Outcome()
    for done, job_id in enumerate(ids, 1):
        try:
            if flt is not None and not flt.matches(q.get(job_id)):
                outcome.changed += 1
            else:
                action(job_id)
                outcome.done += 1
        except JobNotFound:
            outcome.gone += 1
        except InvalidTransition:
            outcome.refused += 1
        if on_progress is not None and (done % 200 == 0 or done == len(ids)):
            on_progress(done)
    return outcome


def flash(kind: str, text: str) -> None:
    """A message shown at the top of the next run (actions rerun the page)."""
    st.session_state.setdefault("_flash", []).append((kind, text))


def show_flash() -> None:
    for kind, text in st.session_state.pop("_flash", []):
        getattr(st, kind)(text)


def invalidate(key: str) -> None:
    """Make the table of ``key`` read the database again on this run."""
    st.session_state.pop(f"{key}_shown", None)


# -- filters --------------------------------------------------------------------------------


def filter_bar(
    report: dict[str, Any], key: str, *, status: State | None = None
) -> tuple[JobFilter, bool, int]:
    """The filter widgets; ``status`` fixes the state (the dead-letter tabs)."""
    names = sorted(report["queues"])
    columns = st.columns([2, 2, 2, 3, 2, 2, 1] if status is None else [2, 2, 4, 2, 2, 1])
    it = iter(columns)
    chosen_queue = next(it).selectbox("Queue", [ALL, *names], key=f"{key}_queue")
    if status is None:
        chosen_state = next(it).selectbox(
            "State", [ALL, *(s.value for s in State)], key=f"{key}_state"
        )
        status = None if chosen_state == ALL else State(chosen_state)
    task = next(it).text_input(
        "Task", key=f"{key}_task", placeholder="e.g. stamp_file", help="Jobs of this task name"
    )
    text = next(it).text_input(
        "Text in payload or error", key=f"{key}_text", placeholder="e.g. report-42 or KeyError"
    )
    period = next(it).selectbox("Enqueued", list(PERIODS), key=f"{key}_period")
    order = next(it).selectbox("Order", ["newest first", "oldest first"], key=f"{key}_order")
    page_size = next(it).selectbox("Rows", PAGE_SIZES, index=1, key=f"{key}_size")
    created_from, created_to = _period(period, key)
    flt = JobFilter(
        queue=None if chosen_queue == ALL else chosen_queue,
        status=status,
        text=text.strip() or None,
        created_from=created_from,
        created_to=created_to,
        task=task.strip() or None,
    )
    return flt, order == "oldest first", int(page_size)


def _period(period: str, key: str) -> tuple[datetime | None, datetime | None]:
    seconds = PERIODS[period]
    if seconds is None:
        return None, None
    if seconds > 0:
        # Whole minutes, so the filter (and the page shown) stays put between clicks.
        now = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        return now - timedelta(seconds=seconds), None
    left, right = st.columns(2)
    default_from = datetime.now(UTC).replace(tzinfo=None, microsecond=0) - timedelta(hours=1)
    start = left.datetime_input("From (UTC)", value=default_from, key=f"{key}_from")
    end = right.datetime_input("To (UTC)", value=None, key=f"{key}_to")
    return (
        None if start is None else start.replace(tzinfo=UTC),
        None if end is None else end.replace(tzinfo=UTC),
    )


def describe(flt: JobFilter) -> str:
    parts = [
        f"queue `{flt.queue}`" if flt.queue else "every queue",
        f"state {flt.status}" if flt.status else "every state",
    ]
    if flt.task:
        parts.append(f"task `{common.clip(flt.task, 40)}`")
    if flt.text:
        parts.append(f"text “{common.clip(flt.text, 40)}”")
    if flt.created_from or flt.created_to:
        start = common.when(flt.created_from) or "…"
        parts.append(f"enqueued {start} to {common.when(flt.created_to) or 'now'} UTC")
    return ", ".join(parts)


# -- the table ------------------------------------------------------------------------------


def job_table(
    q: Queue,
    report: dict[str, Any],
    flt: JobFilter,
    oldest_first: bool,
    page_size: int,
    key: str,
    *,
    verbs: tuple[str, str] = ("Resubmit", "Cancel"),
    live: bool = False,
) -> list[Job]:
    """The paginated table with row selection and actions on the selection; returns the
    selected jobs. ``live``: read again on every run, except while rows are selected."""
    budget_key = f"{key}_budget"
    page_key = f"{key}_page"
    base = (flt, oldest_first, page_size)
    if st.session_state.get(f"{key}_base") != base:  # a new filter starts on page 1
        st.session_state[f"{key}_base"] = base
        st.session_state[page_key] = 1
        st.session_state[budget_key] = SCAN_BUDGET
    top = st.columns([1, 1, 6], vertical_alignment="bottom")
    page = int(top[0].number_input("Page", min_value=1, step=1, key=page_key))
    if top[1].button("Refresh", key=f"{key}_refresh", help="Read the jobs again"):
        invalidate(key)
    if live and not _selected_rows(key):
        invalidate(key)
    view = View(flt, oldest_first, page_size, page, int(st.session_state[budget_key]))
    result = _page(q, report, view, key)
    top[2].caption(_caption(result, view))
    deeper = not result.complete and flt.needs_scan
    if deeper and st.button("Search deeper", key=f"{key}_deeper", help="Read 4x more jobs"):
        st.session_state[budget_key] = view.budget * 4
        st.rerun()
    table_key = f"{key}_table_{st.session_state[f'{key}_generation']}"
    rows = common.job_rows(result.jobs)
    shown = common.table(
        rows,
        "no jobs",
        data=common.state_styled(rows) if rows else None,
        key=table_key,
        on_select="rerun",
        selection_mode="multi-row",
        width="stretch",
        column_config={"id": st.column_config.NumberColumn("id", format="%d")},
    )
    picked = [] if shown is None else shown.selection.rows
    selected = [result.jobs[i] for i in picked if i < len(result.jobs)]
    _selection_actions(q, selected, key, verbs)
    return selected


def _selected_rows(key: str) -> list[int]:
    """The rows selected in the table of ``key`` as last shown."""
    shown = st.session_state.get(f"{key}_table_{st.session_state.get(f'{key}_generation')}")
    try:
        return list(shown["selection"]["rows"]) if shown is not None else []
    except (KeyError, TypeError):
        return []


def queue_summary(report: dict[str, Any], queue_name: str | None) -> None:
    """Jobs per state of one queue (or all), with their badges, beside the table."""
    if queue_name is None:
        counts = common.state_totals(report)
    else:
        row = report["queues"].get(queue_name, {})
        counts = {str(s): row.get(str(s), 0) for s in State}
    st.markdown(f"**{queue_name or 'All queues'}**")
    st.markdown("\n\n".join(f"{common.badge(s)} **{common.count(counts[str(s)])}**" for s in State))


def _page(q: Queue, report: dict[str, Any], view: View, key: str) -> JobPage:
    """The jobs of ``view``, read once and kept until the view changes or is invalidated."""
    shown = st.session_state.get(f"{key}_shown")
    if shown is not None and shown[0] == view:
        page: JobPage = shown[1]
        return page
    page = search.find_jobs(
        q,
        view.flt,
        limit=view.page_size,
        offset=(view.page - 1) * view.page_size,
        oldest_first=view.oldest_first,
        max_scan=view.budget,
        stats_report=report,
    )
    before = st.session_state.get(f"{key}_last_jobs")
    st.session_state[f"{key}_shown"] = (view, page)
    st.session_state[f"{key}_last_jobs"] = page.jobs
    if before != page.jobs or f"{key}_generation" not in st.session_state:
        # A new table widget: the old selection pointed at rows that are no longer shown.
        # (A live reread that found the same rows keeps the widget, so it does not blink.)
        st.session_state[f"{key}_generation"] = st.session_state.get(f"{key}_generation", 0) + 1
    return page


def _caption(result: JobPage, view: View) -> str:
    first = (view.page - 1) * view.page_size + 1
    last = first + len(result.jobs) - 1
    count = common.count
    rows = f"rows {count(first)}–{count(last)}" if result.jobs else "no rows on this page"
    if result.total is not None and result.complete and not view.flt.needs_scan:
        pages = max(1, math.ceil(result.total / view.page_size))
        return (
            f"{rows} of {count(result.total)} jobs · {count(pages)} page(s) · "
            "click a row to select it"
        )
    if result.complete:
        return (
            f"{rows} of {count(result.total or 0)} matching jobs (searched {count(result.scanned)})"
        )
    return (
        f"{rows} · searched {count(result.scanned)} jobs so far; more may match further back "
        "(narrow by queue, state or time, or search deeper)"
    )


def _selection_actions(q: Queue, selected: list[Job], key: str, verbs: tuple[str, str]) -> None:
    resubmit, cancel = verbs
    left, middle, right = st.columns([2, 2, 5], vertical_alignment="center")
    n = len(selected)
    if left.button(f"{resubmit} selected ({n})", key=f"{key}_resubmit_sel", disabled=not n):
        _report(apply(q.resubmit, q, [j.id for j in selected]), resubmit)
        _after_action(key)
    if middle.button(f"{cancel} selected ({n})", key=f"{key}_cancel_sel", disabled=not n):
        _report(apply(q.cancel, q, [j.id for j in selected]), cancel)
        _after_action(key)
    right.caption("Select rows with the checkboxes at their left; one selected row opens below.")


def _report(outcome: Outcome, verb: str) -> None:
    text = outcome.summary(DONE[verb])
    flash("success" if outcome.done and not outcome.refused else "warning", text)


def _after_action(key: str) -> None:
    invalidate(key)
    st.rerun()


# -- every job that matches -----------------------------------------------------------------


def bulk_box(
    q: Queue, report: dict[str, Any], flt: JobFilter, key: str, *, verbs: tuple[str, str]
) -> None:
    """Count every job matching the filter, then act on exactly those, after confirmation."""
    resubmit, cancel = verbs
    snap_key = f"{key}_snapshot"
    snapshot = st.session_state.get(snap_key)
    if snapshot is not None and snapshot["filter"] != flt:
        snapshot = None
        st.session_state.pop(snap_key, None)
    with st.expander("Act on all jobs that match this filter", expanded=snapshot is not None):
        st.caption(f"Filter: {describe(flt)}.")
        if st.button("Count matching jobs", key=f"{key}_count"):
            bar = st.progress(0.0, text="counting…")
            candidates = search.candidate_count(report, flt)

            def progress(read: int, matched: int) -> None:
                share = min(1.0, read / candidates) if candidates else 1.0
                bar.progress(
                    share, text=f"read {common.count(read)} jobs, {common.count(matched)} match"
                )

            found = search.matching_jobs(q, flt, on_progress=progress, stats_report=report)
            bar.empty()
            snapshot = {"filter": flt, "found": found, "at": datetime.now(UTC)}
            st.session_state[snap_key] = snapshot
        if snapshot is None:
            st.caption("Counting reads the matching jobs once; nothing changes until you confirm.")
            return
        found = snapshot["found"]
        n = len(found)
        # Each button counts, and acts on, only the jobs whose state allows its action.
        to_resubmit = [i for i, state in found if state in RESUBMITTABLE]
        to_cancel = [i for i, state in found if state in CANCELLABLE]
        st.markdown(
            f"**{common.count(n)}** job(s) match (counted at {common.when(snapshot['at'])} UTC). "
            "Only these are acted on, and each only if it still matches then."
        )
        sure = st.checkbox(f"Yes, act on these {common.count(n)} jobs", key=f"{key}_sure")
        left, right = st.columns(2)
        go_resubmit = left.button(
            f"{resubmit} all {common.count(len(to_resubmit))}",
            key=f"{key}_resubmit_all",
            disabled=not (sure and to_resubmit),
            type="primary",
        )
        go_cancel = right.button(
            f"{cancel} all {common.count(len(to_cancel))}",
            key=f"{key}_cancel_all",
            disabled=not (sure and to_cancel),
        )
        if go_resubmit or go_cancel:
            action = q.resubmit if go_resubmit else q.cancel
            ids = to_resubmit if go_resubmit else to_cancel
            bar = st.progress(0.0, text="working…")

            def advance(done: int) -> None:
                bar.progress(
                    done / len(ids), text=f"{common.count(done)} of {common.count(len(ids))}"
                )

            outcome = apply(action, q, ids, flt, advance)
            st.session_state.pop(snap_key, None)
            st.session_state.pop(f"{key}_sure", None)
            _report(outcome, resubmit if go_resubmit else cancel)
            _after_action(key)


# -- one job --------------------------------------------------------------------------------


def job_detail(q: Queue, job_id: int, key: str) -> None:
    """Everything about one job: fields, payload, result, last error, events; its actions."""
    try:
        job = q.get(job_id)
        events = q.events(job_id)
    except JobNotFound:
        st.warning(f"There is no job {job_id}.")
        return
    st.subheader(f"Job {job.id}")
    call = task_call(job.payload)
    if call is not None:
        st.markdown(f"**Task** {common.plain(call[0])}")
        st.code(f"{call[0]}({common.task_arguments(job.payload)})", language="python")
    cells = st.columns(5)
    cells[0].metric("Status", str(job.status))
    cells[1].metric("Queue", job.queue)
    cells[2].metric("Attempts", f"{job.attempts}/{job.max_attempts}")
    cells[3].metric("Priority", job.priority)
    with cells[4]:
        go_resubmit = st.button(
            "Resubmit",
            key=f"{key}_detail_resubmit",
            disabled=job.status not in RESUBMITTABLE,
            type="primary",
            help="Back to PENDING with attempts reset",
        )
        go_cancel = st.button(
            "Cancel", key=f"{key}_detail_cancel", disabled=job.status not in CANCELLABLE
        )
    if go_resubmit or go_cancel:
        try:
            changed = q.resubmit(job.id) if go_resubmit else q.cancel(job.id)
        except QueueError as exc:
            flash("error", str(exc))
        else:
            note = " (cancel requested: it ends when its worker lets go)"
            extra = note if changed.cancel_requested and changed.status == State.PROCESSING else ""
            flash("success", f"Job {job.id} is now {changed.status}{extra}.")
        _after_action(key)
    st.dataframe(
        [
            {"field": name, "value": value}
            for name, value in (
                ("key", job.key or ""),
                ("worker", job.worker or ""),
                ("run at (UTC)", common.when(job.run_at)),
                ("created (UTC)", common.when(job.created_at)),
                ("started (UTC)", common.when(job.started_at)),
                ("finished (UTC)", common.when(job.finished_at)),
                ("lease expires (UTC)", common.when(job.lease_expires_at)),
                ("cancel requested", "yes" if job.cancel_requested else "no"),
            )
        ],
        hide_index=True,
        key=f"{key}_detail_fields",
    )
    left, right = st.columns(2)
    with left:
        st.markdown("**Payload**")
        _json(job.payload)
    with right:
        st.markdown("**Result**")
        if job.result is None:
            st.caption("none")
        else:
            _json(job.result)
    st.markdown("**Last error**")
    if job.last_error:
        st.code(job.last_error, language=None, wrap_lines=True)
    else:
        st.caption("none")
    runs = timeline.attempts(events)
    st.markdown(f"**Attempts** ({common.count(len(runs))})")
    common.table(
        [
            {
                "#": run.number,
                "worker": run.worker or "",
                "started (UTC)": common.when(run.started),
                "ended (UTC)": common.when(run.ended),
                "took": common.duration(
                    None if run.ended is None else (run.ended - run.started).total_seconds()
                ),
                "outcome": run.outcome,
                "error": common.last_line(run.error),
            }
            for run in runs
        ],
        "not claimed yet",
        key=f"{key}_detail_attempts",
    )
    with st.expander(f"Every event ({common.count(len(events))})"):
        st.dataframe(
            [
                {
                    "at (UTC)": common.when(e.at),
                    "event": str(e.kind),
                    "worker": e.worker or "",
                    "detail": common.last_line(e.detail),
                }
                for e in events
            ],
            hide_index=True,
            key=f"{key}_detail_events",
        )


def _json(value: Any) -> None:
    if isinstance(value, dict | list):
        st.json(value, expanded=2)
    else:
        st.code(encode_json(value, what="value"), language="json", wrap_lines=True)
