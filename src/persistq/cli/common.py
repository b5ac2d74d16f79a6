"""Helpers the command modules share: durations, times, job tables, acting on many ids."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import typer

from persistq.cli.main import print_json, print_table, progress, stderr
from persistq.errors import QueueError, StorageError
from persistq.model import MAX_SECONDS, Job, State

#: Acting on at least this many ids shows a progress bar.
PROGRESS_FROM = 20

# Options several commands share. Every option is declared this way, ``Annotated`` with its
# ``typer.Option``, the default being the parameter's own.
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
HostOption = Annotated[str, typer.Option("--host", help="Address to listen on.")]
PortOption = Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")]
LogLevelOption = Annotated[
    str, typer.Option("--log-level", envvar="PERSISTQ_LOG_LEVEL", show_envvar=True)
]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)


def parse_duration(text: str, *, what: str) -> float:
    """``"30s"``, ``"15m"``, ``"12h"``, ``"7d"``, ``"2w"`` (a bare number is seconds) -> seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise QueueError(
            f"{what} {text!r} is not a duration: use a number and a unit s, m, h, d or w, "
            "e.g. 30s, 15m, 12h, 7d, 2w"
        )
    seconds = float(match.group(1)) * _UNITS[match.group(2).lower() or "s"]
    if seconds > MAX_SECONDS:
        raise QueueError(f"{what} {text!r} is longer than ten years")
    return seconds


def format_age(seconds: float | None) -> str:
    """A short human duration: ``45s``, ``4m 10s``, ``2h``, ``3d 4h``; ``-`` for none."""
    if seconds is None:
        return "-"
    total = int(seconds)
    for big, big_size, small, small_size in (
        ("d", 86400, "h", 3600),
        ("h", 3600, "m", 60),
        ("m", 60, "s", 1),
    ):
        if total >= big_size:
            major, rest = divmod(total, big_size)
            minor = rest // small_size
            return f"{major}{big}" + (f" {minor}{small}" if minor else "")
    return f"{max(total, 0)}s"


def format_time(value: datetime | None) -> str:
    """UTC time to the second, e.g. ``2025-05-01 12:00:03``; empty for none."""
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def first_line(text: str | None, width: int = 60) -> str:
    """The first non-empty line of ``text`` (a traceback's last line is its cause)."""
    if not text:
        return ""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    line = lines[-1] if lines and lines[0].startswith("Traceback") else lines[0]
    return line if len(line) <= width else line[: width - 1] + "…"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def redact_url(url: str) -> str:
    """The URL without its password, fit to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def echo(text: str) -> None:
    """One plain line on stdout (no markup or emoji codes interpreted)."""
    typer.echo(text)


def warn(text: str) -> None:
    typer.echo(text, err=True)


def print_jobs(title: str | None, jobs: Sequence[Job]) -> None:
    if not jobs:
        echo("No jobs.")
        return
    rows = [
        [
            job.id,
            job.queue,
            str(job.status) + (" (cancel requested)" if job.cancel_requested else ""),
            job.priority,
            f"{job.attempts}/{job.max_attempts}",
            format_time(job.run_at if job.status == State.PENDING else job.updated_at),
            job.worker,
            first_line(job.last_error),
        ]
        for job in jobs
    ]
    columns = ["id", "queue", "status", "prio", "tries", "run_at/updated", "worker", "last error"]
    print_table(title, columns, rows)


@contextmanager
def maybe_progress(description: str, total: int) -> Iterator[Callable[[int], Any]]:
    """A progress bar when there is enough work to watch, else a no-op update."""
    if total >= PROGRESS_FROM:
        with progress(description, total) as update:
            yield update
    else:
        with nullcontext():
            yield lambda done: None


def apply_each(
    ids: Sequence[int],
    action: Callable[[int], Job],
    *,
    description: str,
    describe: Callable[[Job], str] | None,
    summary: Callable[[list[Job]], str] | None = None,
    as_json: bool = False,
) -> list[Job]:
    """Run ``action`` on every id; one stdout line per success, one stderr line per failure.

    ``describe`` gives a success's line (None: no line per job); ``summary`` a last line.
    With ``as_json`` stdout gets the list of changed jobs instead.

    A failing id does not stop the rest; exit 1 afterwards if any failed. A storage error
    stops at once (every further id would fail the same way), after printing what was done.
    """
    done: list[Job] = []
    failures: list[str] = []
    try:
        with maybe_progress(description, len(ids)) as update:
            for count, job_id in enumerate(ids, 1):
                try:
                    done.append(action(job_id))
                except StorageError:
                    raise
                except QueueError as exc:
                    failures.append(str(exc))
                update(count)
    finally:
        if as_json:
            print_json([job.to_dict() for job in done])
        else:
            if describe is not None:
                for job in done:
                    echo(describe(job))
            if summary is not None:
                echo(summary(done))
        for failure in failures:
            stderr.print(f"error: {failure}", markup=False, emoji=False)
    if failures:
        raise typer.Exit(1)
    return done
