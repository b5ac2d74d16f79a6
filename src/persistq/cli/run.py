"""Long-running commands: ``worker`` and ``produce``."""

from __future__ import annotations

import functools
import logging
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

import persistq
from persistq.app import AppHandler, resolve_app
from persistq.cli.common import LogLevelOption, parse_duration
from persistq.cli.main import app, fail, open_queue
from persistq.config import DEFAULT_FILES_DIR, under_home
from persistq.errors import InvalidJob, QueueError
from persistq.model import validate_queue_name, validate_timeout
from persistq.ports import WorkQueue
from persistq.signals import StopSignals
from persistq.sweeper import default_sweep_seconds
from persistq.tasks.files import FILES_QUEUE, make_random_file, stamp_payload
from persistq.worker import (
    HandlerNotFound,
    Worker,
    check_options,
    default_worker_id,
    resolve_handler,
)

log = logging.getLogger("persistq.cli")


class LineFormatter(logging.Formatter):
    """The standard ``asctime``, its date and time formatted once per second: a worker
    writes a line per job, and strftime was a tenth of that line's cost."""

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        #: (second, its text), replaced whole: threads that race recompute, never mix.
        self._cached = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        second = int(record.created)
        cached = self._cached
        if cached[0] != second:
            cached = (second, time.strftime(self.default_time_format, self.converter(second)))
            self._cached = cached
        return f"{cached[1]},{int(record.msecs):03d}"


def setup_logging(level: str) -> None:
    # The lines name no thread or process, so records need not look them up (the logging
    # docs' "Optimization"): a worker's line per job costs 12 % less.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.setFormatter(LineFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


@app.command()
def worker(
    ctx: typer.Context,
    queue: Annotated[
        list[str] | None,
        typer.Option(
            "--queue",
            "-q",
            help="Queue to claim from; repeat for several, in order [default: default; with "
            "--app, the queues its tasks use].",
            show_default=False,
        ),
    ] = None,
    handler: Annotated[
        str | None,
        typer.Option(
            "--handler",
            envvar="PERSISTQ_HANDLER",
            show_envvar=True,
            help="The function that processes a job, as package.module:function.",
        ),
    ] = None,
    app_spec: Annotated[
        str | None,
        typer.Option(
            "--app",
            envvar="PERSISTQ_APP",
            show_envvar=True,
            metavar="MODULE:APP",
            help="Run the tasks of this persistq.App, as package.module:app (instead of "
            "--handler).",
        ),
    ] = None,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            "-c",
            min=1,
            max=256,
            envvar="PERSISTQ_CONCURRENCY",
            show_envvar=True,
            help="Jobs processed at once, each in its own thread (with --pool process, each "
            "thread's handlers in a child process of its own).",
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
    pool: Annotated[
        str,
        typer.Option(
            "--pool",
            envvar="PERSISTQ_WORKER_POOL",
            show_envvar=True,
            help="thread: handlers run in the worker's threads; process: each slot runs its "
            "handlers in a child process (killed at a job's timeout; a crash is seen at once).",
        ),
    ] = "thread",
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
    """Claim jobs, run the handler (or the app's tasks) under a heartbeat, complete or fail
    them. SIGTERM drains."""
    if (handler is None) == (app_spec is None):
        fail("give --handler or --app (one of them)", code=2)
    worker_id = worker_id or default_worker_id()
    # Bad options stop the worker here, before it touches the database: each would fail
    # every claim (or every job) while the worker looked alive. A handler that cannot be
    # loaded is one of them: it is the worker's configuration, not a job's data, and
    # running on would dead-letter the whole queue; Supervisor retries the start and then
    # shows the program FATAL with this line in its log.
    resolved = None
    try:
        check_options(
            queue or ["default"],  # with --app, its tasks' queues are checked as it builds
            worker_id=worker_id,
            concurrency=concurrency,
            lease_seconds=lease,
            grace_seconds=grace,
            sweep_seconds=sweep_every,
            pool=pool,
        )
        if handler is not None:
            resolved = resolve_handler(handler)
    except (InvalidJob, HandlerNotFound) as exc:
        fail(str(exc), code=2)
    setup_logging(log_level)
    if app_spec is None:
        tasks, q = None, open_work_queue(ctx, url)
    else:
        tasks = resolve_app(app_spec)  # cannot be imported: one error line, exit 1
        given = url or ctx.find_root().obj.url
        if given is not None:  # the command line's URL (or PERSISTQ_URL) wins
            tasks.reconnect(given)
        ctx.call_on_close(tasks.close)
        q = tasks.queue
    lease_seconds = lease or q.settings.lease_seconds
    options: dict[str, Any] = {
        "worker_id": worker_id,
        "concurrency": concurrency,
        "lease_seconds": lease_seconds,
        "sweep_seconds": sweep_every or default_sweep_seconds(lease_seconds),
        "grace_seconds": grace,
        "pool": pool,
    }
    if tasks is not None:
        if pool == "process":
            assert app_spec is not None
            unknown = q.settings.unknown_task_seconds
            options["child_handler"] = AppHandler(app_spec, unknown)
        runner = tasks.worker(queue=q, queues=queue, **options)
        log.info("event=tasks app=%s tasks=%s", app_spec, ",".join(tasks.tasks) or "-")
        raise typer.Exit(runner.run())
    assert resolved is not None
    assert handler is not None
    # A process-pool child imports the handler by its spec (it may not pickle).
    child = functools.partial(resolve_handler, handler)
    runner = Worker(
        queue=q, handler=resolved, queues=queue or ["default"], child_handler=child, **options
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
    queue: Annotated[str, typer.Option("--queue", "-q", help="Queue to enqueue into.")] = (
        FILES_QUEUE
    ),
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
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout",
            metavar="DURATION",
            help="Each job's timeout (e.g. 60s): the worker stops an attempt that runs longer.",
        ),
    ] = None,
    log_level: LogLevelOption = "INFO",
) -> None:
    """Write a random text file every few seconds and enqueue the stamp_file task for it
    ({"task": "stamp_file", "args": [file]}; run by worker --app persistq.tasks.files:app)."""
    try:
        validate_queue_name(queue)  # else every enqueue would fail, logged forever
    except InvalidJob as exc:
        fail(str(exc), code=2)
    try:
        seconds = (
            None if timeout is None else validate_timeout(parse_duration(timeout, what="--timeout"))
        )
    except QueueError as exc:
        fail(str(exc), code=2)
    setup_logging(log_level)
    q = open_queue(ctx)
    signals = StopSignals(threading.Event())
    signals.install()
    produced = 0
    directory = under_home(directory)
    log.info("event=producer_started queue=%s every=%.1f dir=%s", queue, every, directory)
    next_at = time.monotonic()
    while not signals.stop.is_set() and (count is None or produced < count):
        path = make_random_file(directory)
        try:
            job = q.enqueue(stamp_payload(path), queue=queue, timeout=seconds)
        except QueueError as exc:  # the database may come back; keep producing
            log.warning("event=enqueue_failed path=%s error=%r", path, str(exc))
        else:
            produced += 1
            log.info("event=enqueued job=%d queue=%s path=%s", job.id, queue, path)
        if count is None or produced < count:
            # A steady cadence: the time writing and enqueueing took is part of the period,
            # so "--every 5" makes 720 jobs an hour, not fewer.
            # After a stall (a busy database) it goes on from now rather than catching up.
            next_at = max(next_at + every, time.monotonic())
            signals.wait(next_at - time.monotonic())
    log.info("event=producer_stopped produced=%d", produced)
