"""The layers import-linter cannot see: no module above the queue reaches its backend.

import-linter checks imports, but ``queue.backend.count_finished(...)`` imports nothing: a
read model could walk around the queue API and still pass it. So the source is read here:
outside ``persistq/queue.py`` (which owns the backend) and ``persistq/backends/``, no code
may touch an attribute named ``backend``, nor name one to ``getattr``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import persistq

PACKAGE = Path(persistq.__file__).resolve().parent
OWNERS = (PACKAGE / "queue.py", PACKAGE / "backends")


def _names_a_backend(node: ast.AST) -> bool:
    if isinstance(node, ast.Attribute):
        return node.attr == "backend"
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("getattr", "hasattr", "setattr")
        and len(node.args) > 1
        and isinstance(node.args[1], ast.Constant)
        and node.args[1].value == "backend"
    )


def reaches_into_a_backend(source: str) -> list[int]:
    """Line numbers where ``source`` reads ``<anything>.backend`` or getattr(..., "backend")."""
    return sorted(node.lineno for node in ast.walk(ast.parse(source)) if _names_a_backend(node))


def test_the_check_finds_a_walk_around_the_queue() -> None:
    source = (
        "def f(q):\n    x = q.backend.count_finished(0, 60)\n    return getattr(q, 'backend')\n"
    )
    assert reaches_into_a_backend(source) == [2, 3]
    assert reaches_into_a_backend("backend = open_backend(s)\nbackend.migrate()\n") == []


def test_no_module_above_the_queue_touches_its_backend() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if any(path == owner or owner in path.parents for owner in OWNERS):
            continue
        for line in reaches_into_a_backend(path.read_text()):
            found.append(f"{path.relative_to(PACKAGE.parent)}:{line}")
    assert found == [], "use the Queue API, not queue.backend: " + ", ".join(found)
