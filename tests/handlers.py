"""Job handlers for the worker tests, importable as ``handlers:<name>`` (tests/ on the path).

``act`` reads what to do from the job's payload, so one worker process (or one ``Worker``)
can run every case of a test:

- ``{"log": FILE}``: append ``started <id> <attempt> <pid>`` to FILE first, and
  ``finished <id> <attempt> <pid>`` when about to return (one line each, flushed at once, so
  a line in the file means the step happened before any later kill);
- ``{"wait_for": FILE}``: block until FILE exists (after the ``started`` line);
- ``{"sleep": S}``: sleep S seconds; ``{"sleep_on_first": S}``: only on the first attempt;
- ``{"raise": TEXT}``: raise ``RuntimeError(TEXT)``;
- ``{"poison": true}``: SIGKILL the process running the handler (a consumer crash);
- ``{"exit": CODE}``: ``os._exit(CODE)``; ``{"segfault": true}``: read address 0;
- ``{"pid_file": FILE}``: write the pid of the process running the handler to FILE first;
- otherwise return ``{"job": id, "attempt": n, "pid": pid}``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from pathlib import Path
from typing import Any

from persistq import Job


def _note(payload: dict[str, Any], word: str, job: Job) -> None:
    if "log" in payload:
        with Path(payload["log"]).open("a", encoding="utf-8") as out:
            out.write(f"{word} {job.id} {job.attempts} {os.getpid()}\n")
            out.flush()
            os.fsync(out.fileno())


def act(job: Job) -> dict[str, Any]:
    payload: dict[str, Any] = job.payload if isinstance(job.payload, dict) else {}
    _note(payload, "started", job)
    if "pid_file" in payload:
        Path(payload["pid_file"]).write_text(str(os.getpid()), encoding="utf-8")
    if payload.get("poison"):
        os.kill(os.getpid(), signal.SIGKILL)
    if "exit" in payload:
        os._exit(int(payload["exit"]))
    if payload.get("segfault"):
        ctypes.string_at(0)
    if "wait_for" in payload:
        while not Path(payload["wait_for"]).exists():
            time.sleep(0.005)
    if "sleep" in payload:
        time.sleep(float(payload["sleep"]))
    if "sleep_on_first" in payload and job.attempts == 1:
        time.sleep(float(payload["sleep_on_first"]))
    if "raise" in payload:
        raise RuntimeError(payload["raise"])
    _note(payload, "finished", job)
    return {"job": job.id, "attempt": job.attempts, "pid": os.getpid()}


def log_lines(path: Path, word: str) -> list[list[int]]:
    """The ``word`` lines ``act`` wrote to ``path``, as ``[job id, attempt, pid]``."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    complete = text[: text.rfind("\n") + 1]
    return [
        [int(n) for n in line.split()[1:]]
        for line in complete.splitlines()
        if line.split()[:1] == [word]
    ]
