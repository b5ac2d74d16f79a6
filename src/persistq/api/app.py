"""The FastAPI application: ``create_app(settings, tokens=...)``.

One ``Queue`` per process, opened by the lifespan (or handed in by tests). Every library
call runs on the API's thread pool (40 threads), never on the event loop: a call waiting
for a busy database then holds only its own request (see ``deps.in_thread``).

A claim with ``wait`` blocks a thread for up to :data:`MAX_WAIT_SECONDS`. Those long polls
run under their own limiter of ``max_waiting_claims`` threads (default 32), never the
shared pool: however many workers long-poll, other requests still get threads. Polls
beyond that bound wait for a free slot without holding a thread, and give up waiting at
their own deadline. Uvicorn's ``limit_concurrency`` (``persistq api --limit-concurrency``)
bounds the connections themselves, answering 503 past it.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import persistq
from persistq.api import accesslog, errors
from persistq.api.auth import BearerAuth, Tokens, document_bearer
from persistq.api.deps import HealthProbe
from persistq.api.fastpath import FastEnqueue
from persistq.api.metrics import registry_for
from persistq.api.routes import activity, jobs, queues, system
from persistq.api.schemas import MAX_WAIT_SECONDS
from persistq.config import Settings
from persistq.queue import Queue

#: Default body limit: a 1 MiB payload with room for JSON escaping, or a batch of small jobs.
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_WAITING_CLAIMS = 32
#: /healthz runs the database's quick check at most this often (it reads every page);
#: writability is looked at on every probe (see ``Queue.health``).
HEALTH_CHECK_SECONDS = 5.0

__all__ = ["MAX_WAIT_SECONDS", "create_app"]


def create_app(
    settings: Settings,
    *,
    tokens: list[str],
    queue: Queue | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_waiting_claims: int = DEFAULT_MAX_WAITING_CLAIMS,
    health_check_seconds: float = HEALTH_CHECK_SECONDS,
) -> FastAPI:
    """The API over the database of ``settings.url`` (or over ``queue``, left open)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = queue is None
        q = queue or persistq.connect(
            settings.url,
            create=False,  # a missing database is an error, not a fresh empty one
            lease=settings.lease_seconds,
            backoff_base=settings.backoff_base_seconds,
            backoff_max=settings.backoff_max_seconds,
            max_payload_bytes=settings.max_payload_bytes,
        )
        app.state.queue = q
        app.state.waiting_claims = anyio.CapacityLimiter(max_waiting_claims)
        app.state.metrics = registry_for(q, buckets=settings.metrics_buckets)
        app.state.health = HealthProbe(q, check_every=health_check_seconds)
        # Built once now, not by the first request on the event loop.
        redact = accesslog.install(tokens, app.openapi())
        try:
            yield
        finally:
            accesslog.uninstall(redact)
            app.state.health.close()
            if owned:
                q.close()

    app = FastAPI(
        title="persistq",
        version=persistq.__version__,
        description="A persistent job queue over HTTP. Every route but /healthz needs "
        '`Authorization: Bearer <token>`. Errors are `{"detail", "code"}`.',
        lifespan=lifespan,
    )
    errors.install(app)
    for module in (jobs, queues, system, activity):
        app.include_router(module.router)
    app.include_router(system.public)
    build_openapi = app.openapi
    app.openapi = lambda: app.openapi_schema or document_bearer(build_openapi())  # type: ignore[method-assign]
    # Added last = outermost: auth first, then the size limit, then a plain enqueue's fast
    # path (api/fastpath.py), then FastAPI.
    app.add_middleware(FastEnqueue)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(BearerAuth, tokens=Tokens(tokens))
    return app


class BodyTooLarge(HTTPException):
    """Raised while the body streams in; FastAPI re-raises HTTPExceptions from body reading."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body over {max_bytes} bytes")


class BodyNotUTF8(HTTPException):
    """Every body of this API is JSON, which RFC 8259 requires to be UTF-8 between systems;
    json.loads would otherwise guess UTF-16 or UTF-32 from the first bytes."""

    def __init__(self, error: UnicodeDecodeError, offset: int) -> None:
        at = offset + error.start
        super().__init__(422, f"the body is not valid JSON: it must be UTF-8 (byte {at} is not)")


class BodyLimit:
    """413 for a request body over ``max_bytes``, by Content-Length or as it streams in;
    422 for a body that is not UTF-8, checked as it streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope["headers"]:
            if key == b"content-length" and (not value.isdigit() or int(value) > self.max_bytes):
                await self._refuse(send)
                return
        received = 0
        started = False
        utf8 = codecs.getincrementaldecoder("utf-8-sig")()  # a leading BOM may be ignored

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            chunk = message.get("body", b"")
            if received + len(chunk) > self.max_bytes:
                raise BodyTooLarge(self.max_bytes)
            if message["type"] == "http.request":
                try:
                    utf8.decode(chunk, final=not message.get("more_body", False))
                except UnicodeDecodeError as exc:
                    raise BodyNotUTF8(exc, received) from None
            received += len(chunk)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except (BodyTooLarge, BodyNotUTF8) as exc:
            if not started:
                await self._refuse(send, exc)

    async def _refuse(self, send: Send, exc: HTTPException | None = None) -> None:
        exc = exc or BodyTooLarge(self.max_bytes)
        code = "too_large" if isinstance(exc, BodyTooLarge) else "invalid"
        body = json.dumps({"detail": exc.detail, "code": code}).encode()
        headers: list[Any] = [(b"content-type", b"application/json")]
        headers.append((b"content-length", str(len(body)).encode()))
        headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": body})
