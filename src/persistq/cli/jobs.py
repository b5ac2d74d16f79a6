"""Job commands: enqueue, jobs, show, events, resubmit, cancel, fail."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from persistq.cli.common import (
    apply_each,
    echo,
    first_line,
    format_time,
    parse_duration,
    pretty_json,
    print_jobs,
)
from persistq.cli.main import app, fail, open_queue, print_json, print_table, progress
from persistq.dispatch import task_payload
from persistq.errors import QueueError, StorageError
from persistq.model import Job, State

#: Bulk enqueue writes this many jobs per transaction.
BATCH_SIZE = 1000

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
JobId = Annotated[int, typer.Argument(metavar="ID", help="Job id.", show_default=False)]
JobIds = Annotated[
    list[int], typer.Argument(metavar="ID", help="One or more job ids.", show_default=False)
]


def _parse_payload(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise QueueError(
            f"{where} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None


def _parse_time(text: str, where: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise QueueError(
            f"{where} {text!r} is not an ISO 8601 time, e.g. 2026-12-01T12:00:00Z"
        ) from None


def _task_payload(name: str, args_json: str | None, kwargs_json: str | None) -> Any:
    args = [] if args_json is None else _parse_payload(args_json, "--args")
    kwargs = {} if kwargs_json is None else _parse_payload(kwargs_json, "--kwargs")
    if not isinstance(args, list):
        raise typer.BadParameter("--args must be a JSON array, e.g. '[1, \"a\"]'")
    if not isinstance(kwargs, dict):
        raise typer.BadParameter('--kwargs must be a JSON object, e.g. \'{"to": "a"}\'')
    return task_payload(name, args, kwargs)


def _read_payloads(source: str) -> list[Any]:
    """One JSON payload per non-blank line of ``source`` (``-`` is stdin); all parsed first."""
    if source == "-":
        name, lines = "stdin", list(sys.stdin)
    else:
        name = source
        with Path(source).open(encoding="utf-8") as handle:
            lines = list(handle)
    return [
        _parse_payload(line, f"{name} line {number}")
        for number, line in enumerate(lines, 1)
        if line.strip()
    ]


def _batches(items: list[Any], size: int) -> Iterator[tuple[int, list[Any]]]:
    for start in range(0, len(items), size):
        yield start, items[start : start + size]


@app.command()
def enqueue(
    ctx: typer.Context,
    payload_json: Annotated[
        str | None,
        typer.Argument(
            metavar="PAYLOAD_JSON",
            help='The job\'s payload as JSON, e.g. \'{"path": "data/files/a.txt"}\'.',
            show_default=False,
        ),
    ] = None,
    queue: Annotated[
        str,
        typer.Option(
            "--queue", "-q", envvar="PERSISTQ_QUEUE", show_envvar=True, help="Queue to add to."
        ),
    ] = "default",
    priority: Annotated[int, typer.Option("--priority", "-p", help="Higher is claimed first.")] = 0,
    delay: Annotated[
        str, typer.Option("--delay", help="Not claimable before this: 30s, 15m, 2h, ...")
    ] = "0",
    run_at: Annotated[
        str | None,
        typer.Option(
            "--run-at",
            metavar="TIME",
            help="Not claimable before this ISO 8601 time with its UTC offset, e.g. "
            "2026-12-01T12:00:00Z (instead of --delay).",
        ),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            metavar="NAME",
            help='Enqueue a task: the payload becomes {"task": NAME, "args": ..., "kwargs": ...}.',
        ),
    ] = None,
    args_json: Annotated[
        str | None,
        typer.Option(
            "--args", metavar="JSON", help="The task's positional arguments, a JSON array."
        ),
    ] = None,
    kwargs_json: Annotated[
        str | None,
        typer.Option(
            "--kwargs", metavar="JSON", help="The task's keyword arguments, a JSON object."
        ),
    ] = None,
    max_attempts: Annotated[
        int,
        typer.Option(
            "--max-attempts",
            envvar="PERSISTQ_MAX_ATTEMPTS",
            show_envvar=True,
            help="Claims before the job is dead-lettered.",
        ),
    ] = 3,
    key: Annotated[
        str | None,
        typer.Option("--key", help="Idempotency key: a second enqueue returns the first job."),
    ] = None,
    file: Annotated[
        str | None,
        typer.Option(
            "--file",
            "-f",
            metavar="PATH",
            help="Enqueue one JSON payload per line of this file ('-' for stdin), "
            f"{BATCH_SIZE} per transaction.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Enqueue a job and print its id (or, with --file, many jobs and their count)."""
    sources = [payload_json is not None, file is not None, task is not None]
    if sum(sources) != 1:
        raise typer.BadParameter("give one of PAYLOAD_JSON, --file or --task")
    if task is None and (args_json is not None or kwargs_json is not None):
        raise typer.BadParameter("--args and --kwargs go with --task")
    if file is not None and key is not None:
        raise typer.BadParameter("--key applies to one job; it cannot be used with --file")
    if run_at is not None and delay != "0":
        raise typer.BadParameter("give --delay or --run-at, not both")
    delay_seconds = parse_duration(delay, what="--delay")
    options: dict[str, Any] = {
        "queue": queue,
        "priority": priority,
        "delay": delay_seconds,
        "run_at": None if run_at is None else _parse_time(run_at, "--run-at"),
        "max_attempts": max_attempts,
    }
    if file is None:
        if task is not None:
            payload = _task_payload(task, args_json, kwargs_json)
        else:
            assert payload_json is not None
            payload = _parse_payload(payload_json, "PAYLOAD_JSON")
        job = open_queue(ctx).enqueue(payload, key=key, **options)
        if as_json:
            print_json(job.to_dict())
        else:
            echo(str(job.id))
        return
    payloads = _read_payloads(file)
    q = open_queue(ctx)
    ids: list[int] = []
    with progress("enqueue", len(payloads)) as update:
        for start, batch in _batches(payloads, BATCH_SIZE):
            try:
                ids.extend(job.id for job in q.enqueue_many(batch, **options))
            except StorageError:
                raise
            except QueueError as exc:
                fail(
                    f"{exc} (in payloads {start + 1}-{start + len(batch)}; "
                    f"the {start} before them were enqueued)"
                )
            update(len(ids))
    if as_json:
        print_json(ids)
    else:
        echo(str(len(ids)))


@app.command("jobs")
def list_jobs(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option("--status", "-s", help="Only jobs in this state.")
    ] = None,
    queue: Annotated[str | None, typer.Option("--queue", "-q", help="Only this queue.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many jobs.")] = 50,
    offset: Annotated[int, typer.Option("--offset", help="Skip this many (newest first).")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """List jobs, newest first."""
    found = open_queue(ctx).jobs(status=status, queue=queue, limit=limit, offset=offset)
    if as_json:
        print_json([job.to_dict() for job in found])
    else:
        print_jobs(None, found)


def _job_rows(job: Job) -> list[list[Any]]:
    rows: list[list[Any]] = [
        ["id", job.id],
        ["queue", job.queue],
        ["status", str(job.status) + (" (cancel requested)" if job.cancel_requested else "")],
        ["priority", job.priority],
        ["attempts", f"{job.attempts} of {job.max_attempts}"],
        ["key", job.key],
        ["run_at", format_time(job.run_at)],
        ["worker", job.worker],
        ["lease_expires_at", format_time(job.lease_expires_at)],
        ["created_at", format_time(job.created_at)],
        ["updated_at", format_time(job.updated_at)],
        ["started_at", format_time(job.started_at)],
        ["finished_at", format_time(job.finished_at)],
        ["payload", pretty_json(job.payload)],
        ["result", None if job.result is None else pretty_json(job.result)],
        ["last_error", job.last_error],
    ]
    return rows


@app.command()
def show(ctx: typer.Context, job_id: JobId, as_json: JsonFlag = False) -> None:
    """Show one job's fields (times in UTC)."""
    job = open_queue(ctx).get(job_id)
    if as_json:
        print_json(job.to_dict())
    else:
        print_table(f"job {job.id}", ["field", "value"], _job_rows(job))


@app.command()
def events(ctx: typer.Context, job_id: JobId, as_json: JsonFlag = False) -> None:
    """Show the history of one job's state changes, oldest first."""
    found = open_queue(ctx).events(job_id)
    if as_json:
        print_json([event.to_dict() for event in found])
        return
    rows = [
        [e.id, format_time(e.at), str(e.kind), e.worker, first_line(e.detail, 80)] for e in found
    ]
    print_table(f"events of job {job_id}", ["id", "at", "kind", "worker", "detail"], rows)


def _new_state(job: Job) -> str:
    if job.cancel_requested and job.status == State.PROCESSING:
        return f"job {job.id}: PROCESSING, cancel requested (CANCELLED when its worker lets go)"
    return f"job {job.id}: {job.status}"


@app.command()
def resubmit(ctx: typer.Context, job_ids: JobIds, as_json: JsonFlag = False) -> None:
    """Put FAILED, UNPROCESSABLE, CANCELLED or COMPLETED jobs back to PENDING (attempts 0)."""
    q = open_queue(ctx)
    apply_each(job_ids, q.resubmit, description="resubmit", describe=_new_state, as_json=as_json)


@app.command()
def cancel(ctx: typer.Context, job_ids: JobIds, as_json: JsonFlag = False) -> None:
    """Cancel PENDING, FAILED or UNPROCESSABLE jobs; PROCESSING ones end CANCELLED when let go."""
    q = open_queue(ctx)
    apply_each(job_ids, q.cancel, description="cancel", describe=_new_state, as_json=as_json)


@app.command("fail")
def fail_job(
    ctx: typer.Context,
    job_id: JobId,
    error: Annotated[
        str, typer.Option("--error", "-e", help="Why: stored as the job's last error.")
    ],
    as_json: JsonFlag = False,
) -> None:
    """Fail a PENDING or PROCESSING job by hand, at once and without retries."""
    job = open_queue(ctx).fail(job_id, error)
    if as_json:
        print_json(job.to_dict())
    else:
        echo(_new_state(job))
