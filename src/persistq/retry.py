"""Retry backoff: min(cap, base * 2**(attempts-1)), with jitter so failed jobs spread out."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How one failure is settled: retried at all, and with which backoff (None: the
    queue's ``PERSISTQ_BACKOFF_*`` settings)."""

    retry: bool = True
    backoff_base: float | None = None
    backoff_max: float | None = None


def backoff_seconds(
    attempts: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Delay before retrying a job that has failed ``attempts`` times.

    Equal jitter: half the delay is fixed, half random, so a burst of failures does not
    come back as a burst while the delay still grows.
    """
    if base <= 0 or cap <= 0:
        return 0.0
    delay = min(cap, base * 2.0 ** max(0, attempts - 1))
    return delay / 2 + (rng or random).uniform(0, delay / 2)
