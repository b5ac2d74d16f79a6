"""Errors as JSON: ``{"detail": sentence, "code": stable name, ...the exception's data}``.

Library errors keep their meaning (``LeaseLost`` is 409 ``lease_lost``), so the remote
client raises the same exception the local library would. Bad input is always a 4xx: the
handlers below also catch what pydantic and JSON decoding cannot (nesting too deep for the
encoder, text that is not valid Unicode). Anything else is a bug, logged with its traceback
and answered 500 without details.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from persistq.errors import QueueError

log = logging.getLogger("persistq.api")


def error_response(status: int, code: str, detail: str, **data: Any) -> JSONResponse:
    return _response(status, _body(code, detail, data))


def error_body(exc: QueueError) -> dict[str, Any]:
    """The error JSON of ``exc`` (read back by remote.py), as a response or as one item's
    answer in a batch."""
    return _body(exc.code, str(exc), {name: getattr(exc, name, None) for name in exc.data_fields})


def _body(code: str, detail: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"detail": detail, "code": code, **{k: v for k, v in data.items() if v is not None}}


def _response(status: int, body: dict[str, Any]) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def queue_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, QueueError)
    status = exc.http_status  # the class says, with its code (read back by remote.py)
    headers = {"Retry-After": "1"} if status == 503 else None
    response = _response(status, error_body(exc))
    if headers:
        response.headers.update(headers)
    return response


def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for error in exc.errors()[:10]:
        if error.get("type") == "json_invalid":
            cause = (error.get("ctx") or {}).get("error", "")
            parts.append(f"the body is not valid JSON: {cause}".rstrip(": "))
            continue
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return error_response(422, "invalid", "; ".join(parts) or "invalid request")


def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400:  # FastAPI could not decode the body: bad input like any other
        cause = exc.__cause__
        reason = f": {type(cause).__name__}: {str(cause)[:200]}" if cause else ""
        return error_response(422, "invalid", f"the body is not valid JSON{reason}")
    code = {
        400: "bad_request",
        404: "not_found",
        405: "method_not_allowed",
        413: "too_large",
        422: "invalid",
    }.get(exc.status_code, "http_error")
    response = error_response(exc.status_code, code, str(exc.detail))
    response.headers.update(exc.headers or {})
    return response


def too_deep(request: Request, exc: Exception) -> JSONResponse:
    return error_response(422, "invalid", "JSON nested too deeply")


def bad_text(request: Request, exc: Exception) -> JSONResponse:
    return error_response(422, "invalid", f"text is not valid Unicode: {exc}")


def internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("event=internal_error path=%s", request.url.path, exc_info=exc)
    return error_response(500, "internal", "internal error; the server log has the details")


def install(app: FastAPI) -> None:
    app.add_exception_handler(QueueError, queue_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RecursionError, too_deep)
    app.add_exception_handler(UnicodeError, bad_text)
    app.add_exception_handler(Exception, internal_error)
