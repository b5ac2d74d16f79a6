"""``persistq periodic list``: an app's schedules, with their last and next tick."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from persistq.app import resolve_app
from persistq.cli.common import echo
from persistq.cli.main import app, fail, new_app, open_queue, print_json, print_table
from persistq.clock import SystemClock
from persistq.queue import Queue

periodic_app = new_app("Periodic tasks (@app.periodic) and their ticks.")
app.add_typer(periodic_app, name="periodic")


@periodic_app.command("list")
def list_periodic(
    ctx: typer.Context,
    app_spec: Annotated[
        str,
        typer.Option(
            "--app",
            envvar="PERSISTQ_APP",
            show_envvar=True,
            metavar="MODULE:APP",
            help="The persistq.App whose schedules to show, as package.module:app.",
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Each schedule with its last tick (the newest job of its key, from the database) and
    its next tick."""
    tasks = resolve_app(app_spec)
    q = open_queue(ctx)  # the global --url (or PERSISTQ_URL), as every command
    if not isinstance(q, Queue):  # the REST API has no read of a key prefix
        fail("periodic list reads the last ticks from the database: give its URL", code=2)
    now = (tasks.periodic_clock or SystemClock()).now()
    rows: list[dict[str, Any]] = []
    for schedule in tasks.schedules.values():
        last = schedule.last_tick(q)
        rows.append(
            {
                "name": schedule.name,
                "cron": schedule.cron,
                "tz": schedule.tz,
                "queue": schedule.queue,
                "last_tick": None if last is None else last.isoformat(),
                "next_tick": schedule.next(now).isoformat(),
            }
        )
    if as_json:
        print_json(rows)
        return
    if not rows:
        echo(f"No periodic tasks in {app_spec}.")
        return
    print_table(
        None,
        ["name", "cron", "tz", "queue", "last tick", "next tick"],
        [
            [r["name"], r["cron"], r["tz"], r["queue"], r["last_tick"] or "never", r["next_tick"]]
            for r in rows
        ],
    )
