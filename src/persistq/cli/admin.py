"""Database and housekeeping commands: init, check, stats, recover, purge."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from persistq.cli.common import JsonFlag, echo, format_age, parse_duration, redact_url, warn
from persistq.cli.main import app, fail, open_queue, print_json, print_table, progress
from persistq.config import DEFAULT_FILES_DIR, under_home
from persistq.errors import JobNotFound, Unrecoverable
from persistq.model import Job, State, validate_state
from persistq.queue import Queue
from persistq.tasks.files import names_file, payload_path

#: How far past the purge cutoff --delete-files looks for jobs the purge may reach: the
#: purge computes its own cutoff a moment later. Only jobs confirmed gone lose their file.
CUTOFF_SLACK_SECONDS = 60.0
PAGE = 10_000


def _where(q: Queue, report: dict[str, Any]) -> str:
    return str(report.get("path") or redact_url(q.url))


@app.command()
def init(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Create the database, or migrate it to the latest schema."""
    q = open_queue(ctx, create=True)  # opening creates and migrates
    report = q.check()
    if as_json:
        print_json(report)
    elif report["ok"]:
        echo(f"database ready: {_where(q, report)} (schema version {report['schema_version']})")
    if not report["ok"]:
        fail(f"database check failed: integrity {report['integrity']}")


@app.command()
def check(
    ctx: typer.Context,
    full: Annotated[
        bool, typer.Option("--full", help="Read every page (slower) instead of a quick check.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Check the database: integrity, schema version, sizes. Exit 1 when not ok."""
    q = open_queue(ctx)
    report = q.check(full=full)
    if as_json:
        print_json(report)
    else:
        rows = [[name, value] for name, value in report.items()]
        print_table(f"database {_where(q, report)}", ["check", "value"], rows)
    if not report["ok"]:
        schema = f"schema {report.get('schema_version')} of {report.get('latest_schema_version')}"
        fail(f"database check failed: integrity {report.get('integrity')}, {schema}")


@app.command()
def stats(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Jobs per state and queue, whether it is paused, and its oldest pending job's age."""
    data = open_queue(ctx).stats()
    if as_json:
        print_json(data)
        return
    queues: dict[str, dict[str, Any]] = data["queues"]
    if not queues:
        echo("No queues.")
        return
    columns = ["queue", *(str(s) for s in State), "paused", "oldest pending"]
    rows = [
        [
            name,
            *(row[str(s)] for s in State),
            "yes" if row["paused"] else "no",
            format_age(row["oldest_pending_age"]),
        ]
        for name, row in queues.items()
    ]
    print_table(None, columns, rows)


@app.command()
def recover(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Recover PROCESSING jobs whose lease expired (the sweep workers run on their own)."""
    count = open_queue(ctx).recover_stalled()
    if as_json:
        print_json({"recovered": count})
    else:
        echo(f"recovered {count} stalled job(s)")


def _candidates(q: Queue, state: State, older_than: float) -> list[Job]:
    """Jobs of ``state`` the purge may delete: finished before (about) the cutoff."""
    cutoff = q.now() - older_than + CUTOFF_SLACK_SECONDS
    found: list[Job] = []
    offset = 0
    while True:
        page = q.jobs(status=state, limit=PAGE, offset=offset)
        found.extend(
            job for job in page if job.finished_at and job.finished_at.timestamp() < cutoff
        )
        offset += len(page)
        if len(page) < PAGE:
            return found


def _payload_file(job: Job, root: Path) -> Path | str | None:
    """The file the payload names ("path", or a stamp_file task's argument) when it lies
    under ``root``; else "outside" or "invalid" (no usable path: empty, a NUL byte, not
    text, or a directory such as ``root`` itself or ``/``), or None when the payload names
    no file at all."""
    payload = job.payload
    if not names_file(payload):
        return None
    try:
        path = Path(payload_path(payload)).resolve()
    except (Unrecoverable, OSError, RuntimeError, ValueError):
        return "invalid"
    if path == root or path.is_dir():
        return "invalid"
    return path if path.is_relative_to(root) else "outside"


def _delete_files(q: Queue, candidates: list[Job], root: Path) -> dict[str, int]:
    """Delete the files of purged jobs under ``root``; count those kept outside it and the
    payloads whose "path" names no file at all."""
    counts = {"files_deleted": 0, "files_outside_dir": 0, "files_invalid_path": 0}
    for job in candidates:
        try:
            q.get(job.id)
            continue  # not purged (resubmitted meanwhile, or within the slack): keep its file
        except JobNotFound:
            pass
        match _payload_file(job, root):
            case None:
                pass
            case "outside":
                counts["files_outside_dir"] += 1
            case "invalid":
                counts["files_invalid_path"] += 1
            case Path() as path if path.is_file():
                path.unlink(missing_ok=True)
                counts["files_deleted"] += 1
    return counts


@app.command()
def purge(
    ctx: typer.Context,
    status: Annotated[
        str,
        typer.Option(
            "--status",
            "-s",
            help="COMPLETED, FAILED, UNPROCESSABLE or CANCELLED.",
            show_default=False,
        ),
    ],
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            metavar="DURATION",
            help="Finished longer ago than this: 30s, 15m, 12h, 7d, 2w.",
            show_default=False,
        ),
    ],
    delete_files: Annotated[
        bool,
        typer.Option(
            "--delete-files",
            help='Also delete the file named by each purged job\'s payload "path", '
            "when it lies under --files-dir.",
        ),
    ] = False,
    files_dir: Annotated[
        Path,
        typer.Option(
            "--files-dir",
            envvar="PERSISTQ_FILES_DIR",
            show_envvar=True,
            help="The demo files' directory; --delete-files never deletes outside it.",
        ),
    ] = Path(DEFAULT_FILES_DIR),
    as_json: JsonFlag = False,
) -> None:
    """Delete finished jobs (and their events) that finished more than --older-than ago."""
    seconds = parse_duration(older_than, what="--older-than")
    state = validate_state(status)
    q = open_queue(ctx)
    candidates = _candidates(q, state, seconds) if delete_files else []
    with progress(f"purge {state}", len(candidates) or None) as update:
        purged = q.purge(status=state, older_than=seconds, on_progress=update)
    files_dir = under_home(files_dir)
    counts = _delete_files(q, candidates, files_dir.resolve()) if delete_files else {}
    if as_json:
        print_json({"purged": purged, "status": str(state), **counts})
    else:
        files = f", deleted {counts['files_deleted']} file(s)" if delete_files else ""
        echo(f"purged {purged} {state} job(s) finished more than {older_than} ago{files}")
    if outside := counts.get("files_outside_dir"):
        warn(f"warning: kept {outside} file(s) outside {files_dir.resolve()}")
    if invalid := counts.get("files_invalid_path"):
        warn(
            f"warning: skipped {invalid} invalid path(s) (empty, NUL byte, not text, "
            "or a directory)"
        )
