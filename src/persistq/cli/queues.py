"""``persistq queues list|create|delete|pause|resume|limit``."""

from __future__ import annotations

from typing import Annotated

import typer

from persistq.cli.common import JsonFlag, echo, format_time
from persistq.cli.main import app, new_app, open_queue, print_json, print_table
from persistq.model import QueueInfo

queues_app = new_app("List, create, delete, pause and resume queues.")
app.add_typer(queues_app, name="queues")

Name = Annotated[str, typer.Argument(metavar="NAME", help="Queue name.", show_default=False)]


def _said(info: QueueInfo, as_json: bool, text: str) -> None:
    if as_json:
        print_json(info.to_dict())
    else:
        echo(text)


@queues_app.command("list")
def list_queues(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List the queues (a queue is created by its first enqueue, or by hand)."""
    found = open_queue(ctx).queues()
    if as_json:
        print_json([info.to_dict() for info in found])
        return
    if not found:
        echo("No queues.")
        return
    rows = [
        [
            q.name,
            "paused" if q.paused else "active",
            "-" if q.concurrency is None else q.concurrency,
            q.rate or "-",
            format_time(q.created_at),
        ]
        for q in found
    ]
    print_table(None, ["queue", "state", "concurrency", "rate", "created_at"], rows)


@queues_app.command()
def create(ctx: typer.Context, name: Name, as_json: JsonFlag = False) -> None:
    """Create a queue (nothing happens when it exists)."""
    info = open_queue(ctx).create_queue(name)
    _said(info, as_json, f"queue {info.name!r} exists")


@queues_app.command()
def delete(
    ctx: typer.Context,
    name: Name,
    force: Annotated[
        bool, typer.Option("--force", help="Also delete its PENDING and PROCESSING jobs.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Delete a queue with its jobs and their events; refused while jobs are unfinished."""
    deleted = open_queue(ctx).delete_queue(name, force=force)
    if as_json:
        print_json({"queue": name, "deleted_jobs": deleted})
    else:
        echo(f"deleted queue {name!r} and {deleted} job(s)")


@queues_app.command()
def pause(ctx: typer.Context, name: Name, as_json: JsonFlag = False) -> None:
    """Pause a queue: enqueues are accepted, claims return nothing until it is resumed."""
    info = open_queue(ctx).pause(name)
    _said(info, as_json, f"queue {info.name!r} paused")


@queues_app.command()
def limit(
    ctx: typer.Context,
    name: Name,
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", min=0, help="Most jobs of the queue running at once."),
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option("--rate", metavar="N/s|N/m|N/h", help="Most claims per second/minute/hour."),
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Lift both limits.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Set the queue's global limits, across every worker and machine (a limit not given
    is lifted; --clear lifts both)."""
    if clear and (concurrency is not None or rate is not None):
        raise typer.BadParameter("--clear lifts every limit: give it alone")
    if not clear and concurrency is None and rate is None:
        raise typer.BadParameter("give --concurrency, --rate or --clear")
    info = open_queue(ctx).set_limits(name, concurrency=concurrency, rate=rate)
    shown = ", ".join(
        part
        for part in (
            None if info.concurrency is None else f"concurrency {info.concurrency}",
            None if info.rate is None else f"rate {info.rate}",
        )
        if part
    )
    _said(info, as_json, f"queue {info.name!r}: {shown or 'no limits'}")


@queues_app.command()
def resume(ctx: typer.Context, name: Name, as_json: JsonFlag = False) -> None:
    """Resume a paused queue."""
    info = open_queue(ctx).resume(name)
    _said(info, as_json, f"queue {info.name!r} resumed")
