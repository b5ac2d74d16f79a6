"""No-op work for bench_tasks.py: the same nothing as a plain handler and as a task."""

from __future__ import annotations

from typing import Any

import persistq
from persistq import Job

app = persistq.App()  # the URL comes from the worker's --url


def noop(job: Job) -> None:
    return None


@app.task("noop", queue="tasks")
def noop_task(*args: Any, **kwargs: Any) -> None:
    return None
