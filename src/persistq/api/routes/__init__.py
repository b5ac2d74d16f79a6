"""Module-level routers: jobs (produce, consume, manage), queues, system (stats, metrics,
health, the database), activity (finished jobs, throughput, failures)."""

from __future__ import annotations

from typing import Any

from persistq.api.schemas import ErrorOut

#: Every protected route: the errors any route may give (app.py documents the auth scheme).
PROTECTED: dict[str, Any] = {
    "responses": {
        401: {"model": ErrorOut, "description": "No valid bearer token."},
        422: {"model": ErrorOut, "description": "Invalid input; `detail` says which and why."},
        503: {"model": ErrorOut, "description": "The database is unavailable or busy."},
    },
}
Responses = dict[int | str, dict[str, Any]]
NOT_FOUND: Responses = {404: {"model": ErrorOut, "description": "No such job."}}
CONFLICT: Responses = {
    409: {"model": ErrorOut, "description": "Lease lost, or the job's state forbids this."}
}
TOO_LARGE: Responses = {413: {"model": ErrorOut, "description": "The request body is too large."}}
