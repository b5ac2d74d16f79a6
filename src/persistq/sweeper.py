"""The sweeper: returns jobs whose lease expired (crashed or stalled consumers) to the queue,
and forgets workers long gone.

Any number of sweepers may run at once: recovery is one guarded statement, so two sweepers
never count the same expiry twice.
"""

from __future__ import annotations

import logging
import random
import threading
import time

from persistq.errors import QueueError
from persistq.ports import WorkQueue

log = logging.getLogger("persistq.sweeper")
#: Forgetting workers is not urgent: one sweep in this many seconds does it.
PRUNE_EVERY_SECONDS = 600.0


def default_sweep_seconds(lease_seconds: float) -> float:
    """A third of the lease, between 1 s and 30 s: expired jobs wait at most that long."""
    return min(30.0, max(1.0, lease_seconds / 3))


class Sweeper:
    def __init__(self, queue: WorkQueue, every_seconds: float) -> None:
        self.queue = queue
        self.every_seconds = every_seconds
        self._next_prune = 0.0  # monotonic; the first sweep prunes

    def run_once(self) -> int:
        """Recover every expired lease now; returns how many jobs moved. Every
        ``PRUNE_EVERY_SECONDS`` it also forgets workers not seen for
        ``settings.worker_retention_seconds``, so the workers table does not grow forever."""
        recovered = self.queue.recover_stalled()
        if recovered:
            log.info("event=recovered jobs=%d", recovered)
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + PRUNE_EVERY_SECONDS  # failed or not
            retention = self.queue.settings.worker_retention_seconds
            pruned = self.queue.prune_workers(unseen_for=retention)
            if pruned:
                log.info("event=workers_forgotten workers=%d unseen_for=%.0f", pruned, retention)
        return recovered

    def run(self, stop: threading.Event) -> None:
        """Sweep until ``stop`` is set; jitter keeps many sweepers from running in step."""
        while not stop.wait(self.every_seconds * random.uniform(0.8, 1.2)):
            try:
                self.run_once()
            except QueueError as exc:  # the database may come back; keep sweeping
                log.warning("event=sweep_failed error=%r", str(exc))
