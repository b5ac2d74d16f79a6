"""``POST /queues/{queue}/jobs`` without FastAPI's per-request machinery, when it is plain.

Producers call this route more than any other, and under load the server's CPU per request
is what bounds its rate. FastAPI spends most of that CPU around the call, not in it:
routing through the included routers, solving the route's parameters, parsing the
content type, its own middleware. :class:`FastEnqueue` answers the plain request itself:
POST to ``/queues/{name}/jobs`` with a valid queue name, ``Content-Type:
application/json`` exactly, no ``Idempotency-Key`` header, and a body that parses and
validates as ``JobIn``. It does the route's own work (``routes.jobs.store_job``) and
renders the library's errors with the app's own exception handlers, so the answer is the
route's. Anything else (a bad body, another content type, the header, another path) goes
on to FastAPI with the request's messages replayed, so every error stays FastAPI's.

It sits inside ``BearerAuth`` and ``BodyLimit``: the token, the size limit and the UTF-8
check apply to it as to every route.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from persistq.api.routes.jobs import store_job
from persistq.api.schemas import JobIn
from persistq.model import QUEUE_NAME

_PREFIX = "/queues/"
_SUFFIX = "/jobs"


class FastEnqueue:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        queue = _plain_enqueue(scope)
        if queue is None:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        body = _valid_body(messages)
        if body is None:
            await self.app(scope, _replay(messages, receive), send)
            return
        application = scope["app"]
        try:
            response = await store_job(application.state.queue, queue, body, body.key)
        except Exception as exc:
            handled = await _handled(application, scope, exc)
            if handled is None:
                raise
            response = handled
        await response(scope, receive, send)


def _plain_enqueue(scope: Scope) -> str | None:
    """The queue name, if this is an enqueue the fast path may answer."""
    if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
        return None
    path: str = scope["path"]
    if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
        return None
    queue = path[len(_PREFIX) : -len(_SUFFIX)]
    if not QUEUE_NAME.fullmatch(queue):  # no "/" in it either
        return None
    content_type = None
    for key, value in scope["headers"]:
        if key == b"content-type":
            if content_type is not None:
                return None
            content_type = value
        elif key == b"idempotency-key":
            return None
    return queue if content_type == b"application/json" else None


def _valid_body(messages: list[Message]) -> JobIn | None:
    """The body as FastAPI would validate it (json.loads, then the model), or None."""
    if messages[-1]["type"] != "http.request":
        return None
    raw = b"".join(m.get("body", b"") for m in messages)
    if not raw:
        return None
    try:
        return JobIn.model_validate(json.loads(raw))
    except Exception:  # every refusal is FastAPI's to word
        return None


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


async def _handled(application: Any, scope: Scope, exc: Exception) -> Response | None:
    """The app's handler's response for ``exc``, as its ExceptionMiddleware would give it;
    None for what only ServerErrorMiddleware handles (a bug: it logs and answers 500)."""
    handlers = application.exception_handlers
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        handler = handlers.get(cls)
        if handler is not None:
            response = handler(Request(scope), exc)
            if inspect.isawaitable(response):
                response = await response
            assert isinstance(response, Response)
            return response
    return None
