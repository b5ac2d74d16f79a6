"""The Manager's job views: filter bar, paged table, bulk actions and a job's detail.

Everything is read and changed through the Queue API: ``Queue.search`` (keyset pages),
``Queue.count`` and ``Queue.resubmit_matching`` / ``cancel_matching`` (batched
transactions in the database), never by reading jobs here to filter them.

A rendered page of jobs is kept in session state until the filter, the page or the data
changes on purpose (Refresh, an action). So a rerun caused by a click never reshuffles the
rows under the user's selection: the selected row positions always mean the jobs shown.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import streamlit as st

from persistq.errors import InvalidTransition, JobNotFound, QueueError
from persistq.model import (
    CANCELLABLE,
    MAX_PAGE,
    RESUBMITTABLE,
    Job,
    JobFilter,
    JobPage,
    State,
    encode_json,
    task_call,
)
from persistq.queue import Queue
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
#: Jobs one call of a bulk action changes, between two moves of its progress bar.
BULK_STEP = 5000
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


@dataclass(slots=True)
class Outcome:
    """What an action did to the jobs it was given."""

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
    action: Action, ids: Sequence[int], on_progress: Callable[[int], None] | None = None
) -> Outcome:
    """Run ``action`` on each job of a selection."""
    outcome = Outcome()
    for done, job_id in enumerate(ids, 1):
        try:
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
        states=() if status is None else (status,),
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
        f"state {', '.join(flt.states)}" if flt.states else "every state",
    ]
    if flt.task:
        parts.append(f"task `{common.clip(flt.task, 40)}`")
    if flt.text:
        parts.append(f"text “{common.clip(flt.text, 40)}”")
    if flt.created_from or flt.created_to:
        start = common.when(flt.created_from) or "…"
        parts.append(f"enqueued {start} to {common.when(flt.created_to) or 'now'} UTC")
    return ", ".join(parts)


def _scans(flt: JobFilter) -> bool:
    """Whether the filter tests more than queue and state, so the statistics' counts per
    queue and state do not give its total."""
    return bool(flt.text or flt.task or flt.created_from or flt.created_to)


def plain_total(report: dict[str, Any], flt: JobFilter) -> int:
    """Jobs of the filter's queue and states, from the counts of ``Queue.stats``."""
    total = 0
    for name, row in report["queues"].items():
        if flt.queue is None or name == flt.queue:
            total += sum(int(row.get(str(state), 0)) for state in flt.states or State)
    return total


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
    """The paged table with row selection and actions on the selection; returns the
    selected jobs. ``live``: read again on every run, except while rows are selected."""
    page_key = f"{key}_page"
    base = (flt, oldest_first, page_size)
    if st.session_state.get(f"{key}_base") != base:  # a new filter starts on page 1
        st.session_state[f"{key}_base"] = base
        st.session_state[page_key] = 1
        st.session_state[f"{key}_cursors"] = {1: None}
    top = st.columns([1, 1, 6], vertical_alignment="bottom")
    page = int(top[0].number_input("Page", min_value=1, step=1, key=page_key))
    if top[1].button("Refresh", key=f"{key}_refresh", help="Read the jobs again"):
        invalidate(key)
    if live and not _selected_rows(key):
        invalidate(key)
    view = View(flt, oldest_first, page_size, page)
    result = _page(q, view, key)
    top[2].caption(_caption(report, result, view))
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


def _cursor(q: Queue, view: View, key: str) -> tuple[int | None, bool]:
    """The ``after`` of the view's page, and whether that page exists. Cursors of pages
    seen are kept per filter; a page further on is reached from the nearest one before it,
    reading up to MAX_PAGE jobs per step (a jump of many pages costs a few queries)."""
    cursors: dict[int, int | None] = st.session_state.setdefault(f"{key}_cursors", {1: None})
    known = max(p for p in cursors if p <= view.page)
    while known < view.page:
        pages = min(view.page - known, MAX_PAGE // view.page_size)
        step = q.search(
            view.flt,
            after=cursors[known],
            limit=pages * view.page_size,
            oldest_first=view.oldest_first,
        )
        for n in range(1, pages + 1):
            end = n * view.page_size
            if end < len(step.jobs):
                cursors[known + n] = step.jobs[end - 1].id
            elif end == len(step.jobs) and step.next is not None:
                cursors[known + n] = step.next
        if known + pages not in cursors:
            return None, False
        known += pages
    return cursors[view.page], True


def _page(q: Queue, view: View, key: str) -> JobPage:
    """The jobs of ``view``, read once and kept until the view changes or is invalidated."""
    shown = st.session_state.get(f"{key}_shown")
    if shown is not None and shown[0] == view:
        page: JobPage = shown[1]
        return page
    after, exists = _cursor(q, view, key)
    page = JobPage([], None)
    if exists:
        page = q.search(view.flt, after=after, limit=view.page_size, oldest_first=view.oldest_first)
        if page.next is not None:
            st.session_state[f"{key}_cursors"][view.page + 1] = page.next
    before = st.session_state.get(f"{key}_last_jobs")
    st.session_state[f"{key}_shown"] = (view, page)
    st.session_state[f"{key}_last_jobs"] = page.jobs
    if before != page.jobs or f"{key}_generation" not in st.session_state:
        # A new table widget: the old selection pointed at rows that are no longer shown.
        # (A live reread that found the same rows keeps the widget, so it does not blink.)
        st.session_state[f"{key}_generation"] = st.session_state.get(f"{key}_generation", 0) + 1
    return page


def _caption(report: dict[str, Any], result: JobPage, view: View) -> str:
    first = (view.page - 1) * view.page_size + 1
    last = first + len(result.jobs) - 1
    count = common.count
    rows = f"rows {count(first)}–{count(last)}" if result.jobs else "no rows on this page"
    if not _scans(view.flt):
        total = plain_total(report, view.flt)
        pages = max(1, math.ceil(total / view.page_size))
        return f"{rows} of {count(total)} jobs · {count(pages)} page(s) · click a row to select it"
    more = "more on the next page" if result.next is not None else "the last page"
    return f"{rows} of the matching jobs · {more} · “Count matching jobs” below counts them all"


def _selection_actions(q: Queue, selected: list[Job], key: str, verbs: tuple[str, str]) -> None:
    resubmit, cancel = verbs
    left, middle, right = st.columns([2, 2, 5], vertical_alignment="center")
    n = len(selected)
    if left.button(f"{resubmit} selected ({n})", key=f"{key}_resubmit_sel", disabled=not n):
        _report(apply(q.resubmit, [j.id for j in selected]), resubmit)
        _after_action(key)
    if middle.button(f"{cancel} selected ({n})", key=f"{key}_cancel_sel", disabled=not n):
        _report(apply(q.cancel, [j.id for j in selected]), cancel)
        _after_action(key)
    right.caption("Select rows with the checkboxes at their left; one selected row opens below.")


def _report(outcome: Outcome, verb: str) -> None:
    text = outcome.summary(DONE[verb])
    flash("success" if outcome.done and not outcome.refused else "warning", text)


def _after_action(key: str) -> None:
    invalidate(key)
    st.rerun()


# -- every job that matches -----------------------------------------------------------------


def count_by_state(q: Queue, flt: JobFilter) -> dict[State, int]:
    """Matching jobs per state: one count each, so a text over the many COMPLETED jobs
    and one over the few FAILED are each read the cheapest way (see ``Queue.count``)."""
    return {state: q.count(replace(flt, states=(state,))) for state in flt.states or State}


def bulk_box(
    q: Queue, report: dict[str, Any], flt: JobFilter, key: str, *, verbs: tuple[str, str]
) -> None:
    """Count every job matching the filter, then act on those, after confirmation: in the
    database, a batch per transaction, on jobs that still match then and are no newer than
    the count."""
    resubmit, cancel = verbs
    snap_key = f"{key}_snapshot"
    snapshot = st.session_state.get(snap_key)
    if snapshot is not None and snapshot["filter"] != flt:
        snapshot = None
        st.session_state.pop(snap_key, None)
    with st.expander("Act on all jobs that match this filter", expanded=snapshot is not None):
        st.caption(f"Filter: {describe(flt)}.")
        if st.button("Count matching jobs", key=f"{key}_count"):
            newest = q.search(JobFilter(), limit=1).jobs
            bounded = replace(flt, max_id=newest[0].id if newest else 0)
            snapshot = {
                "filter": flt,
                "bounded": bounded,
                "counts": count_by_state(q, bounded),
                "at": datetime.now(UTC),
            }
            st.session_state[snap_key] = snapshot
        if snapshot is None:
            st.caption("Counting changes nothing; nothing changes until you confirm.")
            return
        counts: dict[State, int] = snapshot["counts"]
        n = sum(counts.values())
        # Each button counts, and acts on, only the jobs whose state allows its action.
        to_resubmit = sum(c for s, c in counts.items() if s in RESUBMITTABLE)
        to_cancel = sum(c for s, c in counts.items() if s in CANCELLABLE)
        st.markdown(
            f"**{common.count(n)}** job(s) match (counted at {common.when(snapshot['at'])} UTC). "
            "Jobs enqueued since are left out, and each job is acted on only if it still "
            "matches then."
        )
        sure = st.checkbox(f"Yes, act on these {common.count(n)} jobs", key=f"{key}_sure")
        left, right = st.columns(2)
        go_resubmit = left.button(
            f"{resubmit} all {common.count(to_resubmit)}",
            key=f"{key}_resubmit_all",
            disabled=not (sure and to_resubmit),
            type="primary",
        )
        go_cancel = right.button(
            f"{cancel} all {common.count(to_cancel)}",
            key=f"{key}_cancel_all",
            disabled=not (sure and to_cancel),
        )
        if go_resubmit or go_cancel:
            act = q.resubmit_matching if go_resubmit else q.cancel_matching
            expected = to_resubmit if go_resubmit else to_cancel
            bar = st.progress(0.0, text="working…")
            done, after = 0, None
            while True:
                step = act(snapshot["bounded"], after=after, limit=BULK_STEP)
                done += step.done
                after = step.next
                share = min(1.0, done / expected) if expected else 1.0
                bar.progress(share, text=f"{common.count(done)} of {common.count(expected)}")
                if after is None:
                    break
            st.session_state.pop(snap_key, None)
            st.session_state.pop(f"{key}_sure", None)
            _report(
                Outcome(done=done, changed=max(0, expected - done)),
                resubmit if go_resubmit else cancel,
            )
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
