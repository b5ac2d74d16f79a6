"""``persistq worker`` with its slots completing their own jobs (``settle_together=False``),
for bench_worker.py's comparison with the settler: the same CLI, one option changed."""

from __future__ import annotations

import functools

import persistq.cli.run
from persistq.cli.main import run
from persistq.worker import Worker

if __name__ == "__main__":
    persistq.cli.run.Worker = functools.partial(Worker, settle_together=False)  # type: ignore[misc]
    run()
