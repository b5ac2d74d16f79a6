"""The OpenAPI document built once per distinct app in a test run, not once per test.

``create_app`` builds the document at startup (the access log reads it): about half a
second, most of the time of a test that starts an in-process API (the contract suite's
RemoteQueue twin, the API tests). FastAPI's ``get_openapi`` is a pure function of what the
app declares, so here it is remembered by all of that: every other argument, and each
route's path, methods, endpoint, models, responses and dependencies, with what the router
it was included through adds. The endpoint itself is part of the key, so an app whose
routes are closures of its own never shares a document; routes left out of the document
(/docs) count by path; a route of another kind (a mount) leaves the app unkeyed, built as
before. Each app gets a deep copy: one that edits its document edits only its own.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Hashable
from typing import Any

#: Per-route attributes the document is made of (fastapi.openapi.utils reads these).
ROUTE_FIELDS = (
    "path",
    "endpoint",
    "response_model",
    "status_code",
    "tags",
    "summary",
    "description",
    "response_description",
    "responses",
    "name",
    "operation_id",
    "include_in_schema",
    "deprecated",
    "openapi_extra",
    "response_class",
    "callbacks",
    "generate_unique_id_function",
)


def _frozen(value: Any) -> Hashable:
    """A hashable stand-in, equal exactly when the values are: containers by their items,
    anything else by itself (functions, classes: by identity)."""
    if isinstance(value, dict):
        return ("dict", tuple((_frozen(k), _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return (type(value).__name__, tuple(_frozen(v) for v in items))
    if hasattr(value, "__dict__") and not callable(value) and not isinstance(value, type):
        # An object such as Depends(...) or an Enum member: its class and its fields.
        return (type(value), _frozen(vars(value)))
    hash(value)  # TypeError: not keyable, the caller builds the document itself
    return value  # type: ignore[no-any-return]


def _routes_key(routes: Any) -> Hashable:
    """What the document takes from the routes: each route's declarations, and for a router
    included in the app (FastAPI's ``_IncludedRouter``) its routes and what including it
    adds (prefix, tags, ...). Anything else (a mount, a websocket) is not keyed."""
    import fastapi.routing
    from starlette.routing import Route

    included = getattr(fastapi.routing, "_IncludedRouter", None)
    keys: list[Hashable] = []
    for route in routes:
        if type(route) is Route:  # /openapi.json, /docs: not in the document
            keys.append((Route, route.path))
        elif isinstance(route, fastapi.routing.APIRoute):
            if not route.include_in_schema:
                keys.append((fastapi.routing.APIRoute, route.path, False))
                continue
            fields = {name: getattr(route, name) for name in ROUTE_FIELDS}
            fields["methods"] = sorted(route.methods or ())
            fields["dependencies"] = list(route.dependencies)
            keys.append((type(route), _frozen(fields)))
        elif included is not None and type(route) is included:
            context = {
                f.name: getattr(route.include_context, f.name)
                for f in dataclasses.fields(route.include_context)
                # The router is keyed by its routes; the app differs from app to app.
                if f.name not in ("included_router", "dependency_overrides_provider")
            }
            keys.append((included, _routes_key(route.original_router.routes), _frozen(context)))
        else:
            raise TypeError(f"not keyed: {route!r}")
    return tuple(keys)


def memoized(build: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    documents: dict[Hashable, dict[str, Any]] = {}

    def get_openapi(**kwargs: Any) -> dict[str, Any]:
        try:
            key = _frozen(
                {
                    name: _routes_key(value or []) if name in ("routes", "webhooks") else value
                    for name, value in sorted(kwargs.items())
                }
            )
        except (TypeError, AttributeError, RecursionError):  # not keyable: built as before
            return build(**kwargs)
        if key not in documents:
            documents[key] = build(**kwargs)
        return copy.deepcopy(documents[key])

    return get_openapi


def install() -> None:
    """Remember documents for the rest of this test process (FastAPI.openapi calls
    ``fastapi.applications.get_openapi`` with keyword arguments)."""
    import fastapi.applications

    if not getattr(fastapi.applications.get_openapi, "persistq_memoized", False):
        memo = memoized(fastapi.applications.get_openapi)
        memo.persistq_memoized = True  # type: ignore[attr-defined]
        fastapi.applications.get_openapi = memo
