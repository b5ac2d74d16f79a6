"""``persistq dlq list|redrive``: the dead-letter queue (FAILED and UNPROCESSABLE jobs)."""

from __future__ import annotations

from typing import Annotated

import typer

from persistq.cli.common import apply_each, print_jobs
from persistq.cli.main import app, new_app, open_queue, print_json
from persistq.errors import InvalidJob, InvalidTransition
from persistq.model import DEAD_LETTER, Job, State, validate_state
from persistq.queue import Queue

dlq_app = new_app("The dead-letter queue: FAILED and UNPROCESSABLE jobs.")
app.add_typer(dlq_app, name="dlq")

#: Page size when collecting every matching dead-letter job.
PAGE = 1000

QueueFilter = Annotated[str | None, typer.Option("--queue", "-q", help="Only this queue.")]
StatusFilter = Annotated[
    str | None, typer.Option("--status", "-s", help="FAILED or UNPROCESSABLE (default both).")
]


def _dead_states(status: str | None) -> list[State]:
    if status is None:
        return sorted(DEAD_LETTER)
    state = validate_state(status)
    if state not in DEAD_LETTER:
        raise InvalidJob(f"{state} is not a dead-letter state; use FAILED or UNPROCESSABLE")
    return [state]


def dead_letters(
    q: Queue, *, queue: str | None, status: str | None, limit: int | None
) -> list[Job]:
    """Dead-letter jobs, newest first, at most ``limit`` (all when None)."""
    found: list[Job] = []
    for state in _dead_states(status):
        offset = 0
        while limit is None or offset < limit:
            size = PAGE if limit is None else min(PAGE, limit - offset)
            page = q.jobs(status=state, queue=queue, limit=size, offset=offset)
            found.extend(page)
            offset += len(page)
            if len(page) < size:
                break
    unique = {job.id: job for job in found}  # a job may move between pages
    newest = sorted(unique.values(), key=lambda job: job.id, reverse=True)
    return newest if limit is None else newest[:limit]


@dlq_app.command("list")
def list_dead(
    ctx: typer.Context,
    queue: QueueFilter = None,
    status: StatusFilter = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many jobs.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """List dead-letter jobs, newest first."""
    if limit < 1:
        raise typer.BadParameter("--limit must be at least 1")
    found = dead_letters(open_queue(ctx), queue=queue, status=status, limit=limit)
    if as_json:
        print_json([job.to_dict() for job in found])
    else:
        print_jobs("dead letters", found)


@dlq_app.command()
def redrive(
    ctx: typer.Context,
    job_ids: Annotated[
        list[int] | None,
        typer.Argument(
            metavar="ID",
            help="Only these jobs (default: every matching one).",
            show_default=False,
        ),
    ] = None,
    queue: QueueFilter = None,
    status: StatusFilter = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", help="At most this many (newest first).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Resubmit dead-letter jobs: back to PENDING with their attempts reset."""
    q = open_queue(ctx)
    if job_ids:
        if queue is not None or status is not None or limit is not None:
            raise typer.BadParameter("give job ids or --queue/--status/--limit, not both")
        ids = list(job_ids)
    else:
        if limit is not None and limit < 1:
            raise typer.BadParameter("--limit must be at least 1")
        ids = [job.id for job in dead_letters(q, queue=queue, status=status, limit=limit)]

    def redrive_one(job_id: int) -> Job:
        job = q.get(job_id)
        if job.status not in DEAD_LETTER:
            raise InvalidTransition(job.id, str(job.status), "redrive")
        return q.resubmit(job_id)

    apply_each(
        ids,
        redrive_one,
        description="redrive",
        describe=None,
        summary=lambda done: f"redrove {len(done)} job(s)",
        as_json=as_json,
    )
