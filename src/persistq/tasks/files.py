"""The demo file task: a producer writes random text files, consumers stamp them.

``stamp_file`` is idempotent by job id: the stamp line names the job, and a run that finds
its own stamp already there writes nothing. So a job run twice (its consumer crashed after
writing but before completing) stamps the file exactly once.
"""

from __future__ import annotations

import fcntl
import math
import os
import random
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from persistq.config import Settings
from persistq.errors import QueueError, Unrecoverable
from persistq.model import Job

STAMP_PREFIX = "processed "
WORDS = [
    "queue",
    "lease",
    "worker",
    "job",
    "retry",
    "durable",
    "commit",
    "crash",
    "sweep",
    "heartbeat",
    "payload",
    "producer",
    "consumer",
    "ledger",
    "batch",
    "signal",
    "token",
    "event",
    "backoff",
]


def parse_delay(text: str) -> tuple[float, float]:
    """``"7-15"`` -> (7, 15); ``"0"`` -> (0, 0)."""
    low, _, high = text.partition("-")
    try:
        bounds = (float(low), float(high or low))
    except ValueError:
        raise QueueError(
            f"PERSISTQ_TASK_DELAY={text!r}: use min-max seconds, e.g. 7-15, or 0"
        ) from None
    if not 0 <= bounds[0] <= bounds[1] < math.inf:
        raise QueueError(f"PERSISTQ_TASK_DELAY={text!r}: need 0 <= min <= max")
    return bounds


def stamp_file(job: Job) -> dict[str, Any]:
    """Wait the task delay, then prepend ``processed <ISO-8601 UTC> job <id>`` once per job."""
    path = _payload_path(job)
    low, high = parse_delay(Settings.from_env().task_delay)
    time.sleep(random.uniform(low, high))
    with _locked(path.parent):
        text = path.read_text(encoding="utf-8")
        if already_stamped(text, job.id):
            return {"path": str(path), "stamped": False, "reason": "already stamped by this job"}
        at = datetime.now(UTC).isoformat()
        _replace(path, f"{STAMP_PREFIX}{at} job {job.id}\n{text}")
    return {"path": str(path), "stamped": True, "at": at}


def already_stamped(text: str, job_id: int) -> bool:
    suffix = f" job {job_id}"
    for line in text.splitlines():
        if not line.startswith(STAMP_PREFIX):
            return False  # stamps sit at the top; the original text starts here
        if line.endswith(suffix):
            return True
    return False


def stamps(path: Path) -> list[int]:
    """The job ids stamped on a file, newest first."""
    ids = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith(STAMP_PREFIX):
            break
        ids.append(int(line.rsplit(" ", 1)[1]))
    return ids


def make_random_file(directory: Path) -> Path:
    """Write a small random text file atomically (a consumer never sees half of it)."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = directory / f"{stamp}-{secrets.token_hex(4)}.txt"
    lines = [" ".join(random.choices(WORDS, k=8)) for _ in range(random.randint(3, 8))]
    _replace(path, "\n".join(lines) + "\n")
    return path


def _payload_path(job: Job) -> Path:
    payload = job.payload
    if not isinstance(payload, dict) or not isinstance(payload.get("path"), str):
        raise Unrecoverable(f'payload must be {{"path": "<file>"}}, got {payload!r}')
    path = Path(payload["path"])
    if not path.is_file():
        raise Unrecoverable(f"{path}: no such file")
    return path


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One stamper at a time per directory, across processes (flock on the directory)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically and durably (temp file, fsync, rename)."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
