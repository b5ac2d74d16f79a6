"""Job commands: enqueue, jobs, show, events, resubmit, cancel, fail."""

from __future__ import annotations

import codecs
import json
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from persistq.cli.common import (
    JsonFlag,
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
from persistq.errors import InvalidJob, QueueError, StorageError
from persistq.model import Job, State
from persistq.queue import Queue

#: Bulk enqueue writes this many jobs per transaction.
BATCH_SIZE = 1000

JobId = Annotated[int, typer.Argument(metavar="ID", help="Job id.", show_default=False)]
JobIds = Annotated[
    list[int], typer.Argument(metavar="ID", help="One or more job ids.", show_default=False)
]


def _parse_payload(text: str, where: str) -> Any:
    """``text`` as JSON, or one error line "<where> not valid JSON: <why>"."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        at = f"line {exc.lineno}, column {exc.colno}" if exc.lineno > 1 else f"column {exc.colno}"
        why = f"{exc.msg} ({at})"
    except RecursionError:
        why = "nested too deeply"
    raise QueueError(f"{where} not valid JSON: {why}")


def _parse_time(text: str, where: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise QueueError(
            f"{where} {text!r} is not an ISO 8601 time, e.g. 2026-12-01T12:00:00Z"
        ) from None


def _task_payload(name: str, args_json: str | None, kwargs_json: str | None) -> Any:
    args = [] if args_json is None else _parse_payload(args_json, "--args is")
    kwargs = {} if kwargs_json is None else _parse_payload(kwargs_json, "--kwargs is")
    if not isinstance(args, list):
        raise typer.BadParameter("--args must be a JSON array, e.g. '[1, \"a\"]'")
    if not isinstance(kwargs, dict):
        raise typer.BadParameter('--kwargs must be a JSON object, e.g. \'{"to": "a"}\'')
    return task_payload(name, args, kwargs)


@contextmanager
def _open_lines(source: str) -> Iterator[tuple[str, IO[bytes]]]:
    """``source``'s name for messages and its bytes (``-`` is stdin)."""
    if source == "-":
        yield "stdin", sys.stdin.buffer
        return
    with Path(source).open("rb") as handle:
        yield source, handle


def _payload_lines(name: str, lines: Iterable[bytes]) -> Iterator[tuple[int, bytes, Any]]:
    """(line number, line, payload) for every non-blank line; a bad one names its line."""
    for number, raw in enumerate(lines, 1):
        line = raw.removeprefix(codecs.BOM_UTF8) if number == 1 else raw
        line = line.rstrip(b"\r\n")
        try:
            text = line.decode()
        except UnicodeDecodeError as exc:
            byte = f"0x{line[exc.start]:02x}"
            raise QueueError(
                f"{name}:{number}: not UTF-8: byte {byte} at column {exc.start + 1}"
            ) from None
        if text.strip():
            yield number, line, _parse_payload(text, f"{name}:{number}:")


def _checked_copy(q: Queue, source: str, options: dict[str, Any]) -> tuple[IO[bytes], int]:
    """Check every line of ``source`` as ``enqueue`` would; a copy of the good lines, and
    how many.

    Nothing is stored until the whole file passed, so a bad line 1,500 leaves no jobs of
    lines 1-1,499 behind. Lines are checked one at a time and copied to a temporary file,
    so memory stays bounded, stdin can be read twice, and the file cannot change between
    the check and the enqueue.
    """
    q.validate(None, **options)  # bad options are the command's error, not line 1's
    copy = tempfile.TemporaryFile()  # noqa: SIM115 - returned open, closed by the caller
    count = 0
    try:
        with _open_lines(source) as (name, lines), progress("check", None) as update:
            for number, line, payload in _payload_lines(name, lines):
                try:
                    q.validate(payload, **options)
                except InvalidJob as exc:
                    raise QueueError(f"{name}:{number}: {exc}") from None
                copy.write(line + b"\n")
                count += 1
                if count % BATCH_SIZE == 0:
                    update(count)
    except BaseException:
        copy.close()
        raise
    copy.seek(0)
    return copy, count


def _batches(lines: IO[bytes], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for line in lines:
        batch.append(json.loads(line))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


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
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout",
            metavar="DURATION",
            help="Longest an attempt may run before the worker stops it, e.g. 30s, 5m.",
        ),
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
        "timeout": None if timeout is None else parse_duration(timeout, what="--timeout"),
    }
    if file is None:
        if task is not None:
            payload = _task_payload(task, args_json, kwargs_json)
        else:
            assert payload_json is not None
            payload = _parse_payload(payload_json, "PAYLOAD_JSON is")
        job = open_queue(ctx).enqueue(payload, key=key, **options)
        if as_json:
            print_json(job.to_dict())
        else:
            echo(str(job.id))
        return
    assert file is not None
    q = open_queue(ctx)
    copy, total = _checked_copy(q, file, options)
    ids: list[int] = []
    with copy, progress("enqueue", total) as update:
        for batch in _batches(copy, BATCH_SIZE):
            try:
                ids.extend(job.id for job in q.enqueue_many(batch, **options))
            except StorageError as exc:
                if not ids:
                    raise
                # Only a failing database gets here (every job was checked): the batches
                # before this one are committed, so say how many.
                fail(f"{exc} ({len(ids)} of the {total} jobs were enqueued before it)")
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
        ["timeout", "-" if job.timeout is None else f"{job.timeout:g} s"],
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
