"""Functions as jobs: ``persistq.App`` and ``@app.task``.

An :class:`App` holds the task registry (``app.tasks``, name -> :class:`Task`) and the queue
underneath (``app.queue``, opened at first use). ``task.delay(...)`` enqueues the payload
``{"task": name, "args": [...], "kwargs": {...}}``; ``persistq worker --app pkg.module:app``
(or :meth:`App.drain`, in this thread) runs them through the worker's own claim -> run ->
settle code; :meth:`App.wait` blocks on the backend's change signal for the result.

The worker gets everything it needs from :meth:`App.worker`, which reads the registry: the
dispatcher, and the scheduler of the app's periodic tasks (``@app.periodic``) as a service
it runs beside its slots.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, cast, overload

import persistq
from persistq.clock import Clock
from persistq.dispatch import (
    Dispatcher,
    bind_arguments,
    check_arguments,
    task_payload,
    validate_task_name,
)
from persistq.errors import InvalidJob, TaskFailed
from persistq.model import (
    TERMINAL,
    Job,
    State,
    validate_queue_name,
    validate_seconds,
    validate_timeout,
)
from persistq.periodic import DEFAULT_POLL_SECONDS, Schedule, Scheduler
from persistq.ports import WorkQueue
from persistq.queue import Queue
from persistq.worker import HandlerNotFound, Worker, import_object

if TYPE_CHECKING:
    from persistq.remote import RemoteQueue

P = ParamSpec("P")
R = TypeVar("R")
#: An async wait blocks a thread for at most this long at a time, so cancelling it leaves
#: no thread behind for longer.
ASYNC_WAIT_SLICE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Options:
    """What an enqueue of a task uses; None leaves the queue's default."""

    queue: str = "default"
    priority: int = 0
    max_attempts: int = 3
    delay: float = 0
    run_at: datetime | None = None
    key: str | None = None
    timeout: float | None = None


class Task(Generic[P, R]):
    """A function registered with an :class:`App`. Calling it runs it here; ``delay``
    enqueues a job that runs it on a worker."""

    def __init__(
        self,
        app: App,
        function: Callable[P, R],
        name: str,
        options: Options,
        retry_on: tuple[type[BaseException], ...],
        backoff_base: float | None,
        backoff_max: float | None,
    ) -> None:
        self.app = app
        self.function = function
        self.name = name
        self.defaults = options
        self.retry_on = retry_on
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.signature = inspect.signature(function)
        functools.update_wrapper(self, function)

    @property
    def queue(self) -> str:
        return self.defaults.queue

    @property
    def timeout(self) -> float | None:
        """Seconds an attempt may run (Job.timeout of its jobs; the worker stops it then)."""
        return self.defaults.timeout

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.function(*args, **kwargs)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Enqueue a job that runs this task with these (JSON) arguments."""
        return self.app._enqueue(self, self.defaults, args, kwargs)

    async def delay_async(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """``delay`` from async code: the enqueue runs in a thread, off the event loop."""
        return await asyncio.to_thread(self.app._enqueue, self, self.defaults, args, kwargs)

    def options(
        self,
        *,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        delay: float | None = None,
        run_at: datetime | None = None,
        key: str | None = None,
        timeout: float | None = None,
    ) -> BoundTask[P, R]:
        """This task with other enqueue options: ``task.options(delay=10).delay(...)``."""
        given: dict[str, Any] = {
            "queue": queue,
            "priority": priority,
            "max_attempts": max_attempts,
            "delay": delay,
            "run_at": run_at,
            "key": key,
            "timeout": timeout,
        }
        chosen = replace(self.defaults, **{k: v for k, v in given.items() if v is not None})
        return BoundTask(self, chosen)

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.queue}>"


@dataclass(frozen=True, slots=True)
class BoundTask(Generic[P, R]):
    """A task with chosen enqueue options (from :meth:`Task.options`)."""

    task: Task[P, R]
    chosen: Options

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        return self.task.app._enqueue(self.task, self.chosen, args, kwargs)

    async def delay_async(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        return await asyncio.to_thread(self.task.app._enqueue, self.task, self.chosen, args, kwargs)


class App:
    """A registry of tasks over one queue. ``url`` None: ``PERSISTQ_URL`` (then the
    default), read when the queue is first used; ``connect_kwargs`` go to
    :func:`persistq.connect`. Thread-safe."""

    def __init__(self, url: str | None = None, **connect_kwargs: Any) -> None:
        self.url = url
        self.connect_kwargs = connect_kwargs
        #: name -> task, in registration order; a worker dispatches from it.
        self.tasks: dict[str, Task[Any, Any]] = {}
        #: name -> periodic schedule (each also a task in ``tasks``).
        self.schedules: dict[str, Schedule] = {}
        #: Where the scheduler reads the time (None: the system clock); tests inject a
        #: fast one, with a short ``periodic_poll_seconds``.
        self.periodic_clock: Clock | None = None
        self.periodic_poll_seconds = DEFAULT_POLL_SECONDS
        self._queue: Queue | RemoteQueue | None = None
        self._lock = threading.Lock()

    # -- the queue ---------------------------------------------------------------------

    @property
    def queue(self) -> Queue | RemoteQueue:
        """The queue underneath, opened (and migrated) at first use."""
        with self._lock:
            if self._queue is None:
                opened = persistq.connect(self.url, **self.connect_kwargs)
                self._queue = cast("Queue | RemoteQueue", opened)
            return self._queue

    def close(self) -> None:
        """Close the queue; the next use opens it again (reading ``PERSISTQ_URL`` anew)."""
        with self._lock:
            queue, self._queue = self._queue, None
        if queue is not None:
            queue.close()

    def reconnect(self, url: str | None) -> None:
        """Use ``url`` from now on (a worker's ``--url``); an open queue is closed first."""
        self.close()
        self.url = url

    def __enter__(self) -> App:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- registering ---------------------------------------------------------------------

    @overload
    def task(self, name: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        name: str | None = None,
        /,
        *,
        queue: str = "default",
        priority: int = 0,
        max_attempts: int = 3,
        retry_on: Sequence[type[BaseException]] | type[BaseException] = (Exception,),
        backoff_base: float | None = None,
        backoff_max: float | None = None,
        timeout: float | None = None,
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(
        self,
        name: str | Callable[P, R] | None = None,
        /,
        *,
        queue: str = "default",
        priority: int = 0,
        max_attempts: int = 3,
        retry_on: Sequence[type[BaseException]] | type[BaseException] = (Exception,),
        backoff_base: float | None = None,
        backoff_max: float | None = None,
        timeout: float | None = None,
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Register a function (sync or ``async def``) as a task; ``@app.task`` or
        ``@app.task(name, queue=..., ...)``. The name defaults to ``module.qualname``.

        ``retry_on``: the exceptions that are retried (others, and Unrecoverable, fail the
        job at once); ``backoff_base``/``backoff_max``: this task's retry backoff (None: the
        queue's settings); ``timeout``: seconds an attempt may run, stored on its jobs (the worker
        stops the attempt at the deadline: a ``timed_out`` handler error).
        Priority and max_attempts are checked at each enqueue, as the queue checks them.
        """
        if isinstance(name, str):
            validate_task_name(name)
        options = Options(
            queue=validate_queue_name(queue),
            priority=priority,
            max_attempts=max_attempts,
            timeout=validate_timeout(timeout),
        )
        errors = _exception_types(retry_on)
        base = None if backoff_base is None else validate_seconds(backoff_base, what="backoff_base")
        cap = None if backoff_max is None else validate_seconds(backoff_max, what="backoff_max")

        def register(function: Callable[P, R]) -> Task[P, R]:
            task_name = validate_task_name(
                name if isinstance(name, str) else default_name(function)
            )
            with self._lock:
                if task_name in self.tasks:
                    raise ValueError(f"a task named {task_name!r} is already registered")
                made = Task(self, function, task_name, options, errors, base, cap)
                self.tasks[task_name] = made
            return made

        if callable(name):
            return register(name)
        return register

    def periodic(
        self, cron: str, name: str | None = None, *, queue: str = "default", tz: str = "UTC"
    ) -> Callable[[Callable[[], R]], Task[[], R]]:
        """Register a function taking no arguments as a task that runs at the ticks of
        ``cron`` (standard 5 fields, in time zone ``tz``, DST as cronsim defines it): every
        worker running this app enqueues each tick, exactly once between them."""

        def register(function: Callable[[], R]) -> Task[[], R]:
            task_name = name if name is not None else default_name(function)
            schedule = Schedule(task_name, cron, queue=queue, tz=tz)  # InvalidJob when bad
            made: Task[[], R] = self.task(task_name, queue=queue)(function)
            with self._lock:
                self.schedules[task_name] = schedule
            return made

        return register

    def scheduler(self, queue: Any = None) -> Scheduler:
        """The scheduler of this app's periodic tasks, on ``queue`` (default: the app's)."""
        return Scheduler(
            self.queue if queue is None else queue,
            list(self.schedules.values()),
            clock=self.periodic_clock,
            poll_seconds=self.periodic_poll_seconds,
        )

    def queue_names(self) -> list[str]:
        """The queues the tasks use, in registration order (``default`` when there are none)."""
        return list(dict.fromkeys(t.queue for t in self.tasks.values())) or ["default"]

    # -- producing ---------------------------------------------------------------------

    def _enqueue(
        self, task: Task[Any, Any], chosen: Options, args: Sequence[Any], kwargs: dict[str, Any]
    ) -> Job:
        # A call the function cannot take would fail on every attempt: refuse it here.
        bound = bind_arguments(task.name, task.signature, args, kwargs)
        payload = task_payload(task.name, args, kwargs)
        queue = self.queue
        try:
            return queue.enqueue(
                payload,
                queue=chosen.queue,
                priority=chosen.priority,
                delay=chosen.delay,
                run_at=chosen.run_at,
                max_attempts=chosen.max_attempts,
                key=chosen.key,
                timeout=chosen.timeout,
            )
        except InvalidJob:
            # Name the argument at fault, when one is; else the queue's reason stands.
            check_arguments(task.name, bound)
            raise

    # -- results -----------------------------------------------------------------------

    def wait(self, job: Job | int, timeout: float | None = None) -> Any:
        """The task's return value once its job is COMPLETED. ``TaskFailed`` (with
        ``status`` and ``last_error``) when it ends FAILED, UNPROCESSABLE or CANCELLED;
        ``TimeoutError`` when it has not finished within ``timeout`` seconds."""
        job_id = job.id if isinstance(job, Job) else job
        return _outcome(self.queue.wait(job_id, timeout=timeout), timeout)

    async def wait_async(self, job: Job | int, timeout: float | None = None) -> Any:
        """``wait`` from async code, blocking a thread (never the event loop) in slices."""
        job_id = job.id if isinstance(job, Job) else job
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            slice_ = ASYNC_WAIT_SLICE_SECONDS
            if deadline is not None:
                slice_ = max(0.0, min(slice_, deadline - loop.time()))
            found = await asyncio.to_thread(self.queue.wait, job_id, timeout=slice_)
            if found.status in TERMINAL or (deadline is not None and loop.time() >= deadline):
                return _outcome(found, timeout)

    # -- running -----------------------------------------------------------------------

    def worker(
        self,
        *,
        queues: Sequence[str] | None = None,
        queue: WorkQueue | None = None,
        **options: Any,
    ) -> Worker:
        """A worker that runs this app's tasks from ``queues`` (default: those the tasks
        use), on ``queue`` (default: the app's; a ``RemoteQueue`` works too). ``options``
        are :class:`~persistq.worker.Worker`'s (concurrency, lease_seconds, ...)."""
        work_queue = self.queue if queue is None else queue
        dispatcher = Dispatcher(
            self.tasks, unknown_task_seconds=work_queue.settings.unknown_task_seconds
        )
        services = [self.scheduler(work_queue).run] if self.schedules else []
        return Worker(
            queue=work_queue,
            handler=dispatcher,
            queues=list(queues) if queues else self.queue_names(),
            retry_policy=dispatcher.retry_policy,
            services=services,
            **options,
        )

    def drain(self, queue: str | None = None, max_jobs: int | None = None) -> int:
        """Run due jobs of ``queue`` (default: every queue the tasks use) in this thread,
        through the worker's own claim, run and settle code; returns how many ran. For
        tests: a temp SQLite file and ``drain()`` exercise the real thing."""
        worker_id = f"drain:{socket.gethostname()}:{os.getpid()}"
        queues = None if queue is None else [queue]
        return self.worker(queues=queues, worker_id=worker_id).drain(max_jobs)


@dataclass(frozen=True)
class AppHandler:
    """The handler of a process-pool child for an app: the app imported again in the
    child, by its ``module:app`` spec, and a dispatcher of its tasks (a Task cannot be
    pickled to the child: its module attribute is the Task, not the function)."""

    spec: str
    unknown_task_seconds: float

    def __call__(self) -> Dispatcher:
        found = resolve_app(self.spec)
        return Dispatcher(found.tasks, unknown_task_seconds=self.unknown_task_seconds)


def resolve_app(spec: str) -> App:
    """``package.module:app`` -> the App (HandlerNotFound saying why not)."""
    found = import_object(spec, "app")
    if not isinstance(found, App):
        raise HandlerNotFound(f"app {spec!r} is a {type(found).__name__}, not a persistq.App")
    return found


def default_name(function: Callable[..., Any]) -> str:
    """``module.qualname``; a script's ``__main__`` is named as its module would be, so a
    worker importing that module finds the same names."""
    module = getattr(function, "__module__", None) or "__main__"
    if module == "__main__":
        main = sys.modules.get("__main__")
        spec = getattr(main, "__spec__", None)
        file = getattr(main, "__file__", None)
        if spec is not None and spec.name:
            module = spec.name
        elif file:
            module = Path(str(file)).stem
    return f"{module}.{function.__qualname__}"


def _outcome(job: Job, timeout: float | None) -> Any:
    if job.status == State.COMPLETED:
        return job.result
    if job.status in TERMINAL:
        raise TaskFailed(job.id, str(job.status), job.last_error)
    raise TimeoutError(f"job {job.id} is still {job.status} after {timeout} s")


def _exception_types(
    retry_on: Sequence[type[BaseException]] | type[BaseException],
) -> tuple[type[BaseException], ...]:
    found = (retry_on,) if isinstance(retry_on, type) else tuple(retry_on)
    for kind in found:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise InvalidJob(f"retry_on must hold exception classes, got {kind!r}")
    return found
