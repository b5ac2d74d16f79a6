"""What both web UIs share: the queue, the login gate, and how values are shown.

One :class:`~persistq.queue.Queue` per process and database URL (``st.cache_resource``),
shared by every browser session; it is thread-safe. The login checks the admin password
of :mod:`persistq.credentials` through its throttle, which counts failures for the account
across sessions and both UI processes. A login starts a sign-in
(:class:`~persistq.credentials.Sessions`) whose token the browser keeps in an HttpOnly
cookie shared by both UIs (:mod:`persistq.ui.signin`), so a reload, a new tab and the
other UI are signed in too, until the sign-in expires or someone logs out.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import streamlit as st

import persistq
from persistq.config import Settings
from persistq.credentials import (
    LoginThrottle,
    Sessions,
    admin_password,
    data_dir,
    session_limits,
)
from persistq.errors import QueueError
from persistq.model import Job, QueueInfo, State, encode_json, task_call
from persistq.queue import Queue
from persistq.ui import signin

#: This tab's sign-in: {"token": ..., "since": login time}.
_AUTH = "_persistq_auth"
#: The sign-in this tab had until it expired: a login renews it if it may be.
_STALE = "_persistq_stale"
#: The browser is still to be sent to this URL (to set or clear the cookie).
_REDIRECT = "_persistq_redirect"


def database_url() -> str:
    return Settings.from_env().url


@st.cache_resource(show_spinner=False)
def _open_queue(url: str) -> Queue:
    return persistq.connect(url, create=False)


def queue() -> Queue:
    """This process's queue for ``PERSISTQ_URL`` (opened once, shared by all sessions)."""
    return _open_queue(database_url())


def setup_page(app: str) -> None:
    st.set_page_config(page_title=f"persistq · {app}", page_icon="📬", layout="wide")


def _announce(text: str) -> None:
    print(text, file=sys.stderr, flush=True)  # the UI's log, under Supervisor


def _sessions() -> Sessions:
    return Sessions(data_dir(database_url()), lifetime=session_limits()[0])


def _cookie() -> str | None:
    """The token in the browser's cookie (as it was when this tab's websocket opened)."""
    value = st.context.cookies.get(signin.cookie_name(data_dir(database_url())))
    return value if isinstance(value, str) and value else None  # AppTest has no real ones


def session_expired(*, idle: bool = False) -> bool:
    """Whether this tab has no live sign-in: its own (from its login), else the cookie's.

    Asked of the shared sign-ins on every run, so a log-out in any tab of either UI ends
    this one at its next run. ``idle``: this run is a person's click in the Manager, which
    also ends a sign-in idle there too long (a timer's rerun is neither)."""
    auth = st.session_state.get(_AUTH)
    token = auth["token"] if auth else _cookie()
    if token is None:
        return True
    limit = session_limits()[1] if idle else None
    since = _sessions().since(token, limit, touch=idle)
    if since is None:
        return True
    st.session_state[_AUTH] = {"token": token, "since": since}
    return False


def require_login(app: str, *, idle: bool = True) -> None:
    """Stop the script with a login form unless this tab is signed in and not expired
    (nor, with ``idle``, idle too long: the Ops page, never clicked, passes False)."""
    try:
        expired = session_expired(idle=idle)
    except QueueError as exc:
        st.error(f"The sign-in cannot be checked: {exc}")
        st.stop()
    _redirect()
    if not expired:
        return
    # The sign-in this tab had, or the browser's cookie brought, and that ended here: only
    # idle in the Manager, it is signed in afresh, for the other UI's tabs that share it.
    auth = st.session_state.pop(_AUTH, None)
    if auth:
        st.session_state[_STALE] = auth["token"]  # for the runs of the login form
    _login_form(app, st.session_state.get(_STALE) or _cookie())
    st.stop()


def _redirect() -> None:
    """Send the browser where the cookie is set or cleared (it comes back to this page).

    After a login nothing else is drawn: the page is drawn once, after the cookie."""
    url = st.session_state.pop(_REDIRECT, None)
    if url is None:
        return
    script = f"<script>window.location.replace({json.dumps(url)});</script>"
    st.html(script, unsafe_allow_javascript=True)
    if url.startswith(signin.SESSION_PATH):
        st.caption(f"Signing in… [continue]({url})")
        st.stop()


def _login_form(app: str, stale: str | None) -> None:
    directory = data_dir(database_url())
    try:
        password = admin_password(directory, announce=_announce)
    except (QueueError, OSError) as exc:
        st.error(f"The admin password cannot be used: {exc}")
        return
    st.title(f"persistq {app}")
    if stale is not None:
        st.info("Your session expired. Log in again.")
    with st.form("login", clear_on_submit=True, width=420):
        given = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Log in", type="primary")
    if password.source == "environment":
        st.caption("The password is the value of PERSISTQ_ADMIN_PASSWORD.")
    else:
        st.caption(
            "The password was generated once and printed by the command that made it: "
            "`persistq up` (on its output), or `persistq ui` started on its own (on its log). "
            f"Only its hash is kept, in `{password.path}`: delete that file and start again "
            "for a new one."
        )
    if not submitted:
        return
    # Counted for the account in a file shared by both UIs, never per session or address
    # (on 127.0.0.1 Streamlit knows no address): a new session gets no new allowance.
    try:
        attempt = LoginThrottle(directory).attempt(lambda: password.verify(given))
    except QueueError as exc:
        st.error(f"The login cannot be checked: {exc}")
        return
    if attempt.ok:
        try:
            token = _sessions().start(stale)
        except QueueError as exc:
            st.error(f"The sign-in cannot be recorded: {exc}")
            return
        st.session_state.pop(_STALE, None)
        st.session_state[_AUTH] = {"token": token, "since": time.time()}
        st.session_state[_REDIRECT] = signin.session_url(signin.TICKETS.issue(token))
        st.rerun()
    if not attempt.checked:
        st.error(f"Too many failed attempts. Try again in {math.ceil(attempt.wait)} s.")
    else:
        st.error(f"Wrong password. You may try again in {math.ceil(attempt.wait)} s.")


def account_box() -> None:
    """The sidebar's session line and log-out button."""
    auth = st.session_state.get(_AUTH) or {}
    left = session_limits()[0] - (time.time() - auth.get("since", time.time()))
    st.caption(f"Logged in as admin · session ends in {duration(left)}")
    if st.button("Log out", key="logout", help="Ends this sign-in in every tab of both UIs."):
        if auth:
            _sessions().end(auth["token"])  # every tab sharing it asks again at its next run
        st.session_state.pop(_AUTH, None)
        st.session_state[_REDIRECT] = signin.LOGOUT_PATH  # and the browser forgets it
        st.rerun()
    st.caption(f"Database: `{database_url()}`")


# -- how values are shown ----------------------------------------------------------------


def when(value: datetime | float | None) -> str:
    """A UTC time as ``2026-01-31 23:59:59`` ("" for none); sorts as text."""
    if value is None:
        return ""
    if not isinstance(value, datetime):
        value = datetime.fromtimestamp(value, UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    """``42 s``, ``3 min 5 s``, ``2 h 10 min``, ``3 d 4 h``; "" for none."""
    if seconds is None:
        return ""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def age(seconds: float | None) -> str:
    """A short :func:`duration` for a metric's cell: ``42s``, ``3m 5s``, ``2h 10m``, ``3d 4h``."""
    long = duration(seconds)
    for word, unit in ((" min", "m"), (" s", "s"), (" h", "h"), (" d", "d")):
        long = long.replace(word, unit)
    return long


def count(value: int) -> str:
    """Every count the UIs print, grouped the same way: ``200,009``."""
    return f"{value:,}"


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def size(value: int | None) -> str:
    if value is None:
        return "n/a"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def clip(text: str | None, length: int = 120) -> str:
    """One line of at most ``length`` characters."""
    if not text:
        return ""
    line = " ".join(text.split())
    return line if len(line) <= length else line[: length - 1] + "…"


def plain(text: str) -> str:
    """``text`` shown literally inside Markdown (worker ids and errors are anyone's text)."""
    return "".join("\\" + c if c in "\\`*_{}[]()<>#+-.!|~:$" else c for c in text)


def last_line(text: str | None) -> str:
    """The last non-empty line: for a traceback, the exception itself."""
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def queue_limits(queue: Queue) -> dict[str, QueueInfo]:
    """Each queue's limits (one read of the queues), for :func:`limit_cells`."""
    return {info.name: info for info in queue.queues()}


def limit_cells(processing: int, info: QueueInfo | None) -> dict[str, str]:
    """The columns every queue table shows for its global limits: running / limit, rate."""
    limit = "-" if info is None or info.concurrency is None else str(info.concurrency)
    rate = "-" if info is None or info.rate is None else info.rate
    return {"running / limit": f"{processing} / {limit}", "rate": rate}


def table(rows: list[dict[str, Any]], empty: str, data: Any = None, **options: Any) -> Any:
    """``st.dataframe`` of ``rows`` (or of ``data`` made from them, e.g. styled), or the
    caption ``empty`` when there are none (an empty list would draw a bare grid saying
    "empty"). Returns the dataframe's value, or None."""
    if not rows:
        st.caption(empty)
        return None
    return st.dataframe(rows if data is None else data, hide_index=True, **options)


def queue_rows(report: dict[str, Any], limits: dict[str, QueueInfo]) -> list[dict[str, Any]]:
    """The rows of the queues table both UIs show: every state, counts as :func:`count`."""
    return [
        {
            "queue": name,
            "paused": yes_no(row["paused"]),
            **limit_cells(row[State.PROCESSING], limits.get(name)),
            **{str(s): count(row[str(s)]) for s in State},
            "oldest pending": duration(row["oldest_pending_age"]),
        }
        for name, row in sorted(report["queues"].items())
    ]


def state_totals(report: dict[str, Any]) -> dict[str, int]:
    """Jobs per state over all queues, from one :func:`persistq.insights.stats` report."""
    return {str(s): sum(row[str(s)] for row in report["queues"].values()) for s in State}


#: One colour per state, wherever a state is shown: Streamlit's colour names (Markdown
#: badges) and the same colours for table text. Not emoji: without an emoji font (headless
#: Chromium, many Linux desktops) they draw as empty boxes.
COLOURS: dict[State, tuple[str, str]] = {
    State.PENDING: ("orange", "#d98c00"),
    State.PROCESSING: ("blue", "#1c6fd1"),
    State.COMPLETED: ("green", "#21a356"),
    State.FAILED: ("red", "#d6443a"),
    State.UNPROCESSABLE: ("violet", "#8a4fd3"),
    State.CANCELLED: ("gray", "#7d7d7d"),
}


def badge(state: State) -> str:
    """A state as a coloured Markdown badge."""
    return f":{COLOURS[state][0]}-badge[{state}]"


def state_styled(rows: list[dict[str, Any]], column: str = "status") -> Any:
    """``rows`` as a frame whose ``column`` is in its state's colour (for st.dataframe)."""
    # Streamlit's own dependency (no stubs installed); a Styler is how a cell gets a colour.
    import pandas as pd  # type: ignore[import-untyped]

    hexes = {str(state): hex_colour for state, (_, hex_colour) in COLOURS.items()}

    def colour(value: str) -> str:
        found = hexes.get(value)
        return f"color: {found}; font-weight: 600" if found else ""

    return pd.DataFrame(rows).style.map(colour, subset=[column])


def job_rows(jobs: Iterable[Job]) -> list[dict[str, Any]]:
    """Table rows for jobs: what fits on a line of each."""
    return [
        {
            "id": job.id,
            "queue": job.queue,
            "status": str(job.status),
            "priority": job.priority,
            "attempts": f"{job.attempts}/{job.max_attempts}",
            "created (UTC)": when(job.created_at),
            "updated (UTC)": when(job.updated_at),
            "task": task_name(job.payload),
            "arguments": clip(task_arguments(job.payload), 80),
            "payload": clip(encode_json(job.payload, what="payload")),
            "last error": clip(last_line(job.last_error), 100),
        }
        for job in jobs
    ]


def task_name(payload: Any) -> str:
    """The task a job runs (``{"task": NAME, ...}``), or "" for a plain payload."""
    call = task_call(payload)
    return "" if call is None else call[0]


def task_arguments(payload: Any) -> str:
    """A task job's arguments as a call would read them: ``"a.txt", retries=2``."""
    call = task_call(payload)
    if call is None:
        return ""
    _, args, kwargs = call
    parts = [encode_json(a, what="argument") for a in args]
    parts += [f"{k}={encode_json(v, what='argument')}" for k, v in kwargs.items()]
    return ", ".join(parts)
