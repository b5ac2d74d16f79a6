"""The FastAPI application: ``create_app(settings, tokens=...)``.

One ``Queue`` per process, opened by the lifespan (or handed in by tests). Short library
calls run inline on SQLite and in the thread pool on PostgreSQL (see ``deps.Library``);
calls that can take long (stats, listing, metrics, health, deleting a queue) always run in
FastAPI's thread pool (anyio's default limiter, 40 threads).

A claim with ``wait`` blocks a thread for up to :data:`MAX_WAIT_SECONDS`. Those long polls
run under their own limiter of ``max_waiting_claims`` threads (default 32), never the
shared pool: however many workers long-poll, other requests still get threads. Polls
beyond that bound wait for a free slot without holding a thread, and give up waiting at
their own deadline. Uvicorn's ``limit_concurrency`` (``persistq api --limit-concurrency``)
bounds the connections themselves, answering 503 past it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import persistq
from persistq.api import errors
from persistq.api.auth import BearerAuth, Tokens, document_bearer
from persistq.api.deps import Library
from persistq.api.metrics import Cached, registry_for
from persistq.api.routes import jobs, queues, system
from persistq.api.schemas import MAX_WAIT_SECONDS
from persistq.config import Settings
from persistq.queue import Queue

#: Default body limit: a 1 MiB payload with room for JSON escaping, or a batch of small jobs.
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_WAITING_CLAIMS = 32
#: /healthz runs the database's quick check at most this often (it reads every page).
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
        app.state.library = Library(q, inline=q.url.startswith("sqlite"))
        app.state.waiting_claims = anyio.CapacityLimiter(max_waiting_claims)
        app.state.metrics = registry_for(q)
        app.state.health = Cached(q.check, health_check_seconds)
        try:
            yield
        finally:
            if owned:
                q.close()

    app = FastAPI(
        title="persistq",
        version=persistq.__dict__.get("__version__", "0.1.0"),
        description="A persistent job queue over HTTP. Every route but /healthz needs "
        '`Authorization: Bearer <token>`. Errors are `{"detail", "code"}`.',
        lifespan=lifespan,
    )
    errors.install(app)
    for module in (jobs, queues, system):
        app.include_router(module.router)
    app.include_router(system.public)
    build_openapi = app.openapi
    app.openapi = lambda: app.openapi_schema or document_bearer(build_openapi())  # type: ignore[method-assign]
    # Added last = outermost: auth first, then the size limit, then FastAPI.
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(BearerAuth, tokens=Tokens(tokens))
    return app


class BodyTooLarge(HTTPException):
    """Raised while the body streams in; FastAPI re-raises HTTPExceptions from body reading."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body over {max_bytes} bytes")


class BodyLimit:
    """413 for a request body over ``max_bytes``, by Content-Length or as it streams in."""

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

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {"detail": f"request body over {self.max_bytes} bytes", "code": "too_large"}
        ).encode()
        headers: list[Any] = [(b"content-type", b"application/json")]
        headers.append((b"content-length", str(len(body)).encode()))
        headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
