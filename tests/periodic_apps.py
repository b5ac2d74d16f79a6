"""An app with a periodic task, for worker processes (``--app periodic_apps:app``).

Its scheduler reads a fast clock shared by every process through the environment:
``PERIODIC_TEST_CLOCK="EPOCH START SPEED"`` makes the time EPOCH + (now - START) * SPEED,
so a per-minute cron ticks every 60/SPEED real seconds in every worker alike.
"""

from __future__ import annotations

import os
import time

import persistq


class FastClock:
    def __init__(self, epoch: float, start: float, speed: float) -> None:
        self.epoch, self.start, self.speed = epoch, start, speed

    def now(self) -> float:
        return self.epoch + (time.time() - self.start) * self.speed


app = persistq.App()  # the URL comes from the worker's --url


@app.periodic("* * * * *", "tick", queue="ticks")
def tick() -> str:
    return "tocked"


if "PERIODIC_TEST_CLOCK" in os.environ:
    epoch, start, speed = (float(part) for part in os.environ["PERIODIC_TEST_CLOCK"].split())
    app.periodic_clock = FastClock(epoch, start, speed)
    app.periodic_poll_seconds = 0.02
