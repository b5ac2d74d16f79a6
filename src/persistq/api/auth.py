"""Bearer tokens: ``Authorization: Bearer <token>`` on every route but /healthz and the docs.

The check runs as ASGI middleware, before routing and before the body is read, so an
unauthenticated caller gets the same 401 for every path and method: it cannot learn which
routes or jobs exist, nor make the server parse a body. Several tokens may be valid at once
(``PERSISTQ_API_TOKEN=new,old``) so one can be rotated without downtime.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Sequence
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

#: Paths anyone may read: the health probe, and the API's description (no data in it).
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
MIN_TOKEN_LENGTH = 16


class Tokens:
    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens = [t.encode() for t in tokens]
        if not self._tokens:
            raise ValueError("no API token configured")

    def accepts(self, header: bytes | None) -> bool:
        """Constant time in the token's content; every token is compared, match or not."""
        if header is None or header[:7].lower() != b"bearer ":
            return False
        given = header[7:].strip()
        matched = False
        for token in self._tokens:
            matched |= hmac.compare_digest(given, token)
        return matched


_UNAUTHORIZED = json.dumps(
    {"detail": "missing or invalid bearer token", "code": "unauthorized"}
).encode()


class BearerAuth:
    """ASGI middleware answering 401 to any non-public request without a valid token."""

    def __init__(self, app: ASGIApp, tokens: Tokens) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        header = _header(scope["headers"], b"authorization")
        if self.tokens.accepts(header):
            await self.app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(_UNAUTHORIZED)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": _UNAUTHORIZED})


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def document_bearer(schema: dict[str, Any]) -> dict[str, Any]:
    """Declare the scheme in the OpenAPI document (the "Authorize" button of /docs) and on
    every operation that needs it. Documentation only: the middleware enforces it, without
    the cost of a FastAPI dependency on every request."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "One of the tokens in PERSISTQ_API_TOKEN.",
    }
    for path, operations in schema.get("paths", {}).items():
        if path not in PUBLIC_PATHS:
            for operation in operations.values():
                operation["security"] = [{"bearer": []}]
    return schema
