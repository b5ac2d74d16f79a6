"""Module-level routers: jobs (produce, consume, manage), queues, system (stats, metrics)."""

from __future__ import annotations

from typing import Any

from fastapi import Depends

from persistq.api.auth import documented_bearer
from persistq.api.schemas import ErrorOut

#: Every protected route: the auth scheme for the docs, and the errors any route may give.
PROTECTED: dict[str, Any] = {
    "dependencies": [Depends(documented_bearer)],
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
