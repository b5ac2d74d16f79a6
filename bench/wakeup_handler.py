"""Handler for bench_wakeup.py: reports when it started, so latency = start - enqueue."""

from __future__ import annotations

import time
from typing import Any

from persistq import Job


def record_start(job: Job) -> dict[str, Any]:
    return {"started": time.time()}
