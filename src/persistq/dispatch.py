"""Tasks as jobs: the payload format, and the handler that runs a task by its name.

A task's job has the payload ``{"task": NAME, "args": [...], "kwargs": {...}}`` (``args``
and ``kwargs`` may be left out), so any producer that can write JSON (the REST API, the CLI,
another language) can enqueue one. :class:`Dispatcher` is a worker handler: it looks the
name up in a registry (an :class:`~persistq.app.App`'s tasks), calls the function, runs an
``async def`` one on an event loop of the worker thread, and gives the worker the task's
retry policy. A name it does not know is released for later, not failed, until
``unknown_task_seconds`` after the job's enqueue (a rolling deploy may bring it).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from persistq.errors import InvalidJob, ReleaseJob, Unrecoverable
from persistq.model import JSON, TASK_PAYLOAD_KEYS, Job, encode_json, validate_text
from persistq.retry import RetryPolicy

MAX_TASK_NAME_LENGTH = 255
#: An unknown task's job comes back after a tenth of its age, between these bounds: soon
#: while a deploy is likely under way, rarely once it has waited long.
UNKNOWN_TASK_MIN_DELAY_SECONDS = 1.0
UNKNOWN_TASK_MAX_DELAY_SECONDS = 60.0
#: Each thread's event loop for async tasks, made once and shared by every Dispatcher (so
#: repeated drains in one thread do not pile up loops).
_LOOPS = threading.local()
#: The job whose task is running in this context (each worker thread, and the tasks an
#: async task spawns, see their own).
_CURRENT_JOB: contextvars.ContextVar[Job | None] = contextvars.ContextVar(
    "persistq_current_job", default=None
)


def current_job() -> Job:
    """The job whose task is running here: its ``id``, ``fence``, ``attempts``, ``key``...
    Set by the worker's dispatcher (``worker --app``, ``app.drain``) around each task call;
    ``LookupError`` outside one (a plain call of the function runs no job)."""
    job = _CURRENT_JOB.get()
    if job is None:
        raise LookupError("current_job() is called outside a task run by a worker")
    return job


def validate_task_name(name: object) -> str:
    value = validate_text(name, what="task name", max_length=MAX_TASK_NAME_LENGTH, optional=False)
    assert value is not None
    return value


def task_payload(
    name: str, args: Sequence[JSON] = (), kwargs: Mapping[str, JSON] | None = None
) -> dict[str, Any]:
    """The payload of a job that runs task ``name`` with these arguments."""
    return {"task": validate_task_name(name), "args": list(args), "kwargs": dict(kwargs or {})}


def parse_task_payload(payload: JSON) -> tuple[str, list[JSON], dict[str, JSON]]:
    """``(name, args, kwargs)`` of a task payload; InvalidJob saying what is wrong."""
    if not isinstance(payload, dict) or "task" not in payload:
        raise InvalidJob(
            'not a task payload: expected {"task": NAME, "args": [...], "kwargs": {...}}'
        )
    unknown = set(payload) - TASK_PAYLOAD_KEYS
    if unknown:
        raise InvalidJob(f"task payload has unknown field(s): {', '.join(sorted(unknown))}")
    args = payload.get("args", [])
    kwargs = payload.get("kwargs", {})
    if not isinstance(args, list):
        raise InvalidJob(f"task payload: args must be a list, got {type(args).__name__}")
    if not isinstance(kwargs, dict):
        raise InvalidJob(f"task payload: kwargs must be an object, got {type(kwargs).__name__}")
    return validate_task_name(payload["task"]), args, kwargs


def bind_arguments(
    task: str, signature: inspect.Signature, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> inspect.BoundArguments:
    """The call as the function will see it; InvalidJob when it cannot be made."""
    try:
        return signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise InvalidJob(f"task {task}: {exc}") from None


def check_arguments(task: str, bound: inspect.BoundArguments) -> None:
    """InvalidJob naming the first argument JSON cannot hold."""
    for name, value in bound.arguments.items():
        kind = bound.signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            named = [(f"{name}[{i}]", item) for i, item in enumerate(value)]
        elif kind is inspect.Parameter.VAR_KEYWORD:
            named = list(value.items())
        else:
            named = [(name, value)]
        for label, item in named:
            encode_json(item, what=f"argument {label!r} of task {task}")


class TaskSpec(Protocol):
    """What the dispatcher needs of a registered task (``persistq.app.Task`` has it)."""

    @property
    def name(self) -> str: ...
    @property
    def function(self) -> Callable[..., Any]: ...
    @property
    def retry_on(self) -> tuple[type[BaseException], ...]: ...
    @property
    def backoff_base(self) -> float | None: ...
    @property
    def backoff_max(self) -> float | None: ...


class UnknownTask(Unrecoverable):
    """No worker knew the job's task for the whole grace period after its enqueue."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown task {name}")

    def __reduce__(self) -> tuple[type[UnknownTask], tuple[str]]:
        return (type(self), (self.name,))


class Dispatcher:
    """A worker handler that runs the task a job names, from ``tasks`` (read live)."""

    def __init__(self, tasks: Mapping[str, TaskSpec], *, unknown_task_seconds: float) -> None:
        self.tasks = tasks
        self.unknown_task_seconds = unknown_task_seconds

    def __call__(self, job: Job) -> Any:
        try:
            name, args, kwargs = parse_task_payload(job.payload)
        except InvalidJob as exc:
            raise Unrecoverable(str(exc)) from None  # the same payload fails every time
        task = self.tasks.get(name)
        if task is None:
            raise self._unknown(job, name)
        token = _CURRENT_JOB.set(job)
        try:
            result = task.function(*args, **kwargs)
            if inspect.isawaitable(result):
                result = self._loop().run_until_complete(_awaited(result))
        finally:
            _CURRENT_JOB.reset(token)
        encode_json(result, what=f"result of task {name}")  # InvalidJob: fails the attempt
        return result

    def retry_policy(self, job: Job, error: BaseException) -> RetryPolicy:
        """The task's own: errors outside ``retry_on`` (and Unrecoverable) fail at once."""
        name = job.payload.get("task") if isinstance(job.payload, dict) else None
        task = self.tasks.get(name) if isinstance(name, str) else None
        if task is None:
            return RetryPolicy(retry=not isinstance(error, Unrecoverable))
        retry = isinstance(error, task.retry_on) and not isinstance(error, Unrecoverable)
        return RetryPolicy(retry, task.backoff_base, task.backoff_max)

    def _unknown(self, job: Job, name: str) -> Exception:
        age = (datetime.now(UTC) - job.created_at).total_seconds()
        left = self.unknown_task_seconds - age
        if left <= 0:
            return UnknownTask(name)
        delay = min(UNKNOWN_TASK_MAX_DELAY_SECONDS, max(UNKNOWN_TASK_MIN_DELAY_SECONDS, age / 10))
        delay = min(delay, left + 0.01)  # back no later than the end of the grace
        return ReleaseJob(f"unknown task {name} (not failed before {left:.0f} s more)", delay)

    def _loop(self) -> asyncio.AbstractEventLoop:
        """This thread's event loop, made once: async tasks of one worker thread share it,
        and no other thread (the heartbeat's) ever runs on it."""
        loop: asyncio.AbstractEventLoop | None = getattr(_LOOPS, "loop", None)
        if loop is None or loop.is_closed():
            loop = asyncio.new_event_loop()
            _LOOPS.loop = loop
        return loop


async def _awaited(value: Any) -> Any:
    return await value
