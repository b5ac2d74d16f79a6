"""Long-running commands: ``worker`` and ``produce``."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

import persistq
from persistq.cli.common import LogLevelOption
from persistq.cli.main import app, fail, open_queue
from persistq.config import DEFAULT_FILES_DIR
from persistq.errors import InvalidJob, QueueError
from persistq.model import validate_queue_name
from persistq.ports import WorkQueue
from persistq.sweeper import default_sweep_seconds
from persistq.tasks.files import make_random_file
from persistq.worker import (
    HandlerNotFound,
    Worker,
    check_options,
    default_worker_id,
    resolve_handler,
)

log = logging.getLogger("persistq.cli")


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        force=True,
    )


@app.command()
def worker(
    ctx: typer.Context,
    handler: Annotated[
        str,
        typer.Option(
            "--handler",
            envvar="PERSISTQ_HANDLER",
            show_envvar=True,
            help="The function that processes a job, as package.module:function.",
        ),
    ],
    queue: Annotated[
        list[str],
        typer.Option("--queue", "-q", help="Queue to claim from; repeat for several, in order."),
    ] = ["default"],  # noqa: B006 - Typer copies it; never mutated
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            "-c",
            min=1,
            max=256,
            envvar="PERSISTQ_CONCURRENCY",
            show_envvar=True,
            help="Jobs processed at once, each in its own thread.",
        ),
    ] = 1,
    lease: Annotated[
        float | None,
        typer.Option(
            "--lease",
            min=1,
            envvar="PERSISTQ_LEASE_SECONDS",
            show_envvar=True,
            help="Lease length in seconds (heartbeat every third) [default: 300].",
        ),
    ] = None,
    worker_id: Annotated[
        str | None,
        typer.Option(
            "--worker-id",
            envvar="PERSISTQ_WORKER_ID",
            show_envvar=True,
            help="Name recorded on the jobs this worker holds [default: host:pid].",
        ),
    ] = None,
    grace: Annotated[
        float,
        typer.Option(
            "--grace",
            min=0,
            envvar="PERSISTQ_WORKER_GRACE_SECONDS",
            show_envvar=True,
            help="On SIGTERM, seconds a running job may take before it is released.",
        ),
    ] = 30.0,
    sweep_every: Annotated[
        float | None,
        typer.Option(
            "--sweep-every",
            min=0.1,
            envvar="PERSISTQ_SWEEP_SECONDS",
            show_envvar=True,
            help="Seconds between stalled-job sweeps [default: lease/3, at most 30].",
        ),
    ] = None,
    log_level: LogLevelOption = "INFO",
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Database URL, or the REST API's http(s)://host:port for a worker that "
            "reaches only the API (token from PERSISTQ_API_TOKEN) [default: the global --url].",
        ),
    ] = None,
) -> None:
    """Claim jobs, run the handler under a heartbeat, complete or fail them. SIGTERM drains."""
    worker_id = worker_id or default_worker_id()
    # Bad options stop the worker here, before it touches the database: each would fail
    # every claim (or every job) while the worker looked alive. A handler that cannot be
    # loaded is one of them: it is the worker's configuration, not a job's data, and
    # running on would dead-letter the whole queue; Supervisor retries the start and then
    # shows the program FATAL with this line in its log.
    try:
        check_options(
            queue,
            worker_id=worker_id,
            concurrency=concurrency,
            lease_seconds=lease,
            grace_seconds=grace,
            sweep_seconds=sweep_every,
        )
        resolved = resolve_handler(handler)
    except (InvalidJob, HandlerNotFound) as exc:
        fail(str(exc), code=2)
    setup_logging(log_level)
    q = open_work_queue(ctx, url)
    lease_seconds = lease or q.settings.lease_seconds
    runner = Worker(
        queue=q,
        handler=resolved,
        queues=queue,
        worker_id=worker_id,
        concurrency=concurrency,
        lease_seconds=lease_seconds,
        sweep_seconds=sweep_every or default_sweep_seconds(lease_seconds),
        grace_seconds=grace,
    )
    raise typer.Exit(runner.run())


def open_work_queue(ctx: typer.Context, url: str | None) -> WorkQueue:
    """The local queue, or the REST API's when the URL is http(s) (checked now: a bad token
    or an unreachable server is one error line, not a worker logging failures forever)."""
    state = ctx.find_root().obj
    state.url = url or state.url
    if not (state.url or "").startswith(("http://", "https://")):
        return open_queue(ctx)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    remote = persistq.connect(state.url, token=None)
    ctx.call_on_close(remote.close)
    remote.queues()
    return remote


@app.command()
def produce(
    ctx: typer.Context,
    queue: Annotated[str, typer.Option("--queue", "-q", help="Queue to enqueue into.")] = "files",
    every: Annotated[float, typer.Option("--every", min=0, help="Seconds between files.")] = 5.0,
    directory: Annotated[
        Path,
        typer.Option(
            "--dir",
            envvar="PERSISTQ_FILES_DIR",
            show_envvar=True,
            help="Where the random text files are written.",
        ),
    ] = Path(DEFAULT_FILES_DIR),
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="Stop after this many jobs.")
    ] = None,
    log_level: LogLevelOption = "INFO",
) -> None:
    """Write a random text file every few seconds and enqueue {"path": file}."""
    try:
        validate_queue_name(queue)  # else every enqueue would fail, logged forever
    except InvalidJob as exc:
        fail(str(exc), code=2)
    setup_logging(log_level)
    q = open_queue(ctx)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    produced = 0
    log.info("event=producer_started queue=%s every=%.1f dir=%s", queue, every, directory)
    while not stop.is_set() and (count is None or produced < count):
        path = make_random_file(directory)
        try:
            job = q.enqueue({"path": str(path)}, queue=queue)
        except QueueError as exc:  # the database may come back; keep producing
            log.warning("event=enqueue_failed path=%s error=%r", path, str(exc))
        else:
            produced += 1
            log.info("event=enqueued job=%d queue=%s path=%s", job.id, queue, path)
        if count is None or produced < count:
            stop.wait(every)
    log.info("event=producer_stopped produced=%d", produced)
