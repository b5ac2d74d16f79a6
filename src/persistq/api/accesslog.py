"""Access log lines without secrets: uvicorn writes each request's path and query string.

A client that puts its token in the URL (``?token=...``, or as a path segment) is refused,
but its line would still carry the secret into log files and their shippers. So, before
uvicorn's access logger formats a line:

- a query parameter this API does not declare keeps neither name nor value (``[redacted]``):
  the API ignores it anyway, and its name may be the secret itself;
- a declared parameter keeps its value, unless that value holds a configured token;
- any configured token left in the path is replaced too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote_plus

ACCESS_LOGGER = "uvicorn.access"
REDACTED = "[redacted]"


class RedactSecrets(logging.Filter):
    """A filter for uvicorn's access logger (its record args: client, method, path, version,
    status)."""

    def __init__(self, tokens: Iterable[str], known_parameters: Iterable[str]) -> None:
        super().__init__()
        secrets = {t for token in tokens for t in (token, quote(token, safe=""), quote(token))}
        # Longest first: a token that contains another is replaced whole.
        self.secrets = sorted(secrets, key=len, reverse=True)
        self.known = frozenset(known_parameters)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (*args[:2], self.redact(args[2]), *args[3:])
        return True

    def redact(self, target: str) -> str:
        path, has_query, query = target.partition("?")
        path = self._without_secrets(path)
        if not has_query:
            return path
        return f"{path}?{'&'.join(self._parameter(part) for part in query.split('&'))}"

    def _parameter(self, part: str) -> str:
        name, _, value = part.partition("=")
        if unquote_plus(name) not in self.known:
            return REDACTED
        if self._without_secrets(unquote_plus(value)) != unquote_plus(value):
            return f"{name}={REDACTED}"
        return part

    def _without_secrets(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text


def query_parameters(openapi: dict[str, Any]) -> set[str]:
    """The names of every query parameter the API declares (from its OpenAPI document)."""
    return {
        parameter["name"]
        for operations in openapi.get("paths", {}).values()
        for operation in operations.values()
        for parameter in operation.get("parameters", [])
        if parameter.get("in") == "query"
    }


def install(tokens: Iterable[str], openapi: dict[str, Any]) -> RedactSecrets:
    """Add the filter to uvicorn's access logger; returns it, for :func:`uninstall`."""
    redact = RedactSecrets(tokens, query_parameters(openapi))
    logging.getLogger(ACCESS_LOGGER).addFilter(redact)
    return redact


def uninstall(redact: RedactSecrets) -> None:
    logging.getLogger(ACCESS_LOGGER).removeFilter(redact)
