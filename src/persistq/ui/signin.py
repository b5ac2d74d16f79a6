"""The session cookie both UIs share, and the two HTTP routes that set and clear it.

A Streamlit script talks to the browser over a websocket, so it can read the request's
cookies (``st.context.cookies``) but never answer with a ``Set-Cookie``; JavaScript could
set one, but not an HttpOnly one. So the login form, after the password is checked and a
sign-in started (:class:`persistq.credentials.Sessions`), hands the browser a one-time
ticket and sends it to ``/persistq/session?ticket=…``: a route of this process
(``st.App(routes=...)``, Streamlit's public way to add routes) that swaps the ticket for the
cookie and redirects back. ``/persistq/logout`` clears the cookie the same way.

The cookie is HttpOnly, SameSite=Strict, Secure when the page came over https, and lives
as long as a sign-in may. Browsers send a host's cookies to all its ports, so the Manager
(8501) and the Ops UI (8502) on one host share it; its name carries a digest of the data
directory, so two persistq systems on one host do not overwrite each other's.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from persistq.config import Settings
from persistq.credentials import data_dir, session_limits

SESSION_PATH = "/persistq/session"
LOGOUT_PATH = "/persistq/logout"
#: A ticket is used by the redirect that follows the login at once; this is plenty.
TICKET_SECONDS = 60.0


def cookie_name(directory: Path) -> str:
    return f"persistq_session_{hashlib.sha256(str(directory).encode()).hexdigest()[:12]}"


class Tickets:
    """One-time tickets for a token, in this process (the script that issues one and the
    route that redeems it run in the same server). A ticket, unlike the token, may sit in
    a URL: it is good once, for a minute."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tickets: dict[str, tuple[str, float]] = {}

    def issue(self, token: str) -> str:
        ticket = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            for old, (_, until) in list(self._tickets.items()):
                if until < now:
                    del self._tickets[old]
            self._tickets[ticket] = (token, now + TICKET_SECONDS)
        return ticket

    def redeem(self, ticket: str) -> str | None:
        with self._lock:
            token, until = self._tickets.pop(ticket, ("", 0.0))
        return token if token and until >= time.monotonic() else None


TICKETS = Tickets()


def session_url(ticket: str) -> str:
    return f"{SESSION_PATH}?ticket={ticket}"


def _back() -> RedirectResponse:
    # The UIs are served at the root (``persistq ui`` sets no server.baseUrlPath).
    return RedirectResponse("/", status_code=303)


def _directory() -> Path:
    return data_dir(Settings.from_env().url)


def set_session(request: Request) -> Response:
    response = _back()
    token = TICKETS.redeem(request.query_params.get("ticket", ""))
    if token is not None:
        lifetime, _ = session_limits()
        response.set_cookie(
            cookie_name(_directory()),
            token,
            max_age=int(lifetime),
            path="/",  # both UIs, whatever their base path
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
    response.headers["Cache-Control"] = "no-store"
    return response


def clear_session(request: Request) -> Response:
    response = _back()
    response.delete_cookie(
        cookie_name(_directory()),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def routes() -> list[Route]:
    return [
        Route(SESSION_PATH, set_session, methods=["GET"]),
        Route(LOGOUT_PATH, clear_session, methods=["GET"]),
    ]
