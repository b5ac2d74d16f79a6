"""The task model in-process: ``@app.task`` and its options, ``delay``, ``options``,
``delay_async``, plain calls, JSON errors, ``drain`` through the worker's code, each task's
retry policy, and ``wait`` for the result. Both backends, the real clock."""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import persistq
from persistq import App, InvalidJob, Job, State, TaskFailed, Unrecoverable
from persistq.dispatch import parse_task_payload, task_payload


@pytest.fixture
def app(backend_url: str) -> Iterator[App]:
    with App(backend_url, lease=30) as made:
        yield made


def count_jobs(app: App) -> int:
    return len(app.queue.jobs(limit=1000))


# -- registering and calling ---------------------------------------------------------------------


def test_a_task_is_named_module_qualname_and_a_plain_call_runs_it_here(app: App) -> None:
    @app.task
    def add(a: int, b: int = 1) -> int:
        return a + b

    test_name = "test_a_task_is_named_module_qualname_and_a_plain_call_runs_it_here"
    assert add.name == f"{__name__}.{test_name}.<locals>.add"
    assert app.tasks == {add.name: add}
    assert add(2, b=3) == 5
    assert add.__name__ == "add" and add.__wrapped__ is not None
    assert count_jobs(app) == 0  # a plain call enqueues nothing


def test_a_plain_call_of_an_async_task_returns_the_coroutine(app: App) -> None:
    @app.task("double")
    async def double(x: int) -> int:
        return x * 2

    coroutine = double(21)
    assert inspect.iscoroutine(coroutine)
    assert asyncio.run(coroutine) == 42
    assert count_jobs(app) == 0


def test_delay_stores_the_task_payload_with_the_decorators_options(app: App) -> None:
    @app.task("mail.send", queue="emails", priority=7, max_attempts=5)
    def send(to: str, body: str) -> None: ...

    job = send.delay("ada@example.com", body="hi")
    assert job.payload == {
        "task": "mail.send",
        "args": ["ada@example.com"],
        "kwargs": {"body": "hi"},
    }
    stored = app.queue.get(job.id)
    assert (stored.queue, stored.priority, stored.max_attempts, stored.status) == (
        "emails",
        7,
        5,
        State.PENDING,
    )
    assert parse_task_payload(stored.payload) == ("mail.send", ["ada@example.com"], {"body": "hi"})


def test_options_override_each_enqueue_option_for_one_delay(app: App) -> None:
    @app.task("t", queue="q1", priority=1, max_attempts=2)
    def t(n: int) -> int:
        return n

    now = app.queue.now()
    delayed = t.options(delay=60).delay(1)
    assert delayed.run_at.timestamp() == pytest.approx(now + 60, abs=2)
    when = datetime.now(UTC) + timedelta(hours=2)
    scheduled = t.options(run_at=when).delay(2)
    assert abs((scheduled.run_at - when).total_seconds()) < 1
    other = t.options(priority=9, queue="q2", max_attempts=4).delay(3)
    assert (other.queue, other.priority, other.max_attempts) == ("q2", 9, 4)
    keyed = t.options(key="k1").delay(4)
    again = t.options(key="k1").delay(5)  # the key exists: that job, nothing new
    assert again.id == keyed.id and again.payload["args"] == [4]
    plain = t.delay(6)  # the task's own defaults are untouched
    assert (plain.queue, plain.priority, plain.max_attempts) == ("q1", 1, 2)
    with pytest.raises(InvalidJob, match="not both"):
        t.options(delay=5, run_at=when).delay(7)
    assert count_jobs(app) == 5


def test_delay_async_enqueues_off_the_event_loop(app: App) -> None:
    @app.task("t")
    def t(n: int) -> int:
        return n

    loop_thread: list[int] = []

    async def produce() -> tuple[Job, Job]:
        loop_thread.append(threading.get_ident())
        return await t.delay_async(1), await t.options(priority=3).delay_async(n=2)

    first, second = asyncio.run(produce())
    assert first.payload == {"task": "t", "args": [1], "kwargs": {}}
    assert (second.payload["kwargs"], second.priority) == ({"n": 2}, 3)
    assert count_jobs(app) == 2


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("a",), {"body": {1, 2}}, "argument 'body' of task m.send is not JSON: .*set"),
        ((b"raw", "x"), {}, "argument 'to' of task m.send is not JSON: .*bytes"),
        (("a", "b", object()), {}, r"argument 'extra\[0\]' of task m.send is not JSON"),
        (("a", "b"), {"flag": float("nan")}, "argument 'flag' of task m.send is not JSON"),
        (("a",), {}, "task m.send: missing a required argument: 'body'"),
    ],
)
def test_arguments_json_cannot_hold_are_refused_by_name_and_store_nothing(
    app: App, args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    @app.task("m.send")
    def send(to: str, body: str, *extra: Any, **options: Any) -> None: ...

    with pytest.raises(InvalidJob, match=message):
        send.delay(*args, **kwargs)
    assert count_jobs(app) == 0


def test_bad_decorator_options_are_refused_when_the_task_is_defined(app: App) -> None:
    with pytest.raises(InvalidJob, match="queue name"):
        app.task("a", queue="no spaces")
    with pytest.raises(InvalidJob, match="retry_on"):
        app.task("a", retry_on=(ValueError, "oops"))  # type: ignore[arg-type]
    with pytest.raises(InvalidJob, match="backoff_base"):
        app.task("a", backoff_base=-1)
    with pytest.raises(InvalidJob, match="timeout"):
        app.task("a", timeout=0)
    with pytest.raises(InvalidJob, match="task name"):
        app.task("")

    @app.task("dup")
    def one() -> None: ...

    with pytest.raises(ValueError, match="already registered"):
        app.task("dup")(one.function)


def test_bad_priority_or_max_attempts_fail_at_delay_and_store_nothing(app: App) -> None:
    @app.task("p", priority=2**40)
    def p() -> None: ...

    @app.task("m", max_attempts=0)
    def m() -> None: ...

    with pytest.raises(InvalidJob, match="priority"):
        p.delay()
    with pytest.raises(InvalidJob, match="max_attempts"):
        m.delay()
    assert count_jobs(app) == 0


def test_timeout_is_kept_on_the_task_and_delay_works_without_queue_support(app: App) -> None:
    @app.task("slow", timeout=2.5)
    def slow() -> None: ...

    assert slow.timeout == 2.5
    assert slow.options(timeout=9).chosen.timeout == 9
    # Until the queue stores job timeouts (issue 12) it is not passed, and enqueue works.
    assert slow.delay().status == State.PENDING


# -- running: drain, the worker's code path -------------------------------------------------------


def test_drain_runs_sync_and_async_tasks_and_records_their_results(app: App) -> None:
    threads: list[str] = []

    @app.task("add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task("shout", queue="other")
    async def shout(word: str) -> dict[str, str]:
        await asyncio.sleep(0)
        threads.append(threading.current_thread().name)
        return {"word": word.upper()}

    jobs = [add.delay(1, 2), shout.delay("hi"), add.delay(a=5, b=5)]
    assert app.drain() == 3
    assert [app.wait(j, timeout=0) for j in jobs] == [3, {"word": "HI"}, 10]
    assert threads == [threading.current_thread().name]  # in the calling thread
    assert app.drain() == 0


def test_drain_takes_one_queue_and_a_limit(app: App) -> None:
    @app.task("a", queue="qa")
    def a() -> None: ...

    @app.task("b", queue="qb")
    def b() -> None: ...

    for _ in range(3):
        a.delay()
        b.delay()
    assert app.drain(queue="qb", max_jobs=2) == 2
    assert app.drain(queue="qb") == 1
    assert app.queue.stats()["queues"]["qa"]["PENDING"] == 3
    assert app.drain() == 3


def test_an_error_outside_retry_on_fails_at_once_and_one_inside_is_retried(app: App) -> None:
    @app.task("flaky", retry_on=(KeyError,), max_attempts=3, backoff_base=0)
    def flaky(kind: str) -> None:
        raise KeyError(kind) if kind == "key" else ValueError(kind)

    retried, failed = flaky.delay("key"), flaky.delay("value")
    assert app.drain() == 4  # three attempts of the first, one of the second
    ended = app.queue.get(retried.id)
    assert (ended.status, ended.attempts) == (State.FAILED, 3)
    once = app.queue.get(failed.id)
    assert (once.status, once.attempts) == (State.FAILED, 1)
    assert once.last_error is not None and "ValueError: value" in once.last_error


def test_unrecoverable_fails_at_once_even_when_retry_on_covers_it(app: App) -> None:
    @app.task("bad", retry_on=(Exception,), max_attempts=5, backoff_base=0)
    def bad() -> None:
        raise Unrecoverable("never works")

    job = bad.delay()
    assert app.drain() == 1
    assert (app.queue.get(job.id).status, app.queue.get(job.id).attempts) == (State.FAILED, 1)


def test_a_tasks_backoff_base_and_cap_apply_to_its_retries(app: App) -> None:
    @app.task("slow_retry", backoff_base=100, max_attempts=3)
    def slow_retry() -> None:
        raise RuntimeError("again")

    @app.task("capped", backoff_base=100, backoff_max=4, max_attempts=3)
    def capped() -> None:
        raise RuntimeError("again")

    slow, cap = slow_retry.delay(), capped.delay()
    assert app.drain() == 2
    for job, low, high in ((slow, 50, 100), (cap, 2, 4)):
        retried = app.queue.get(job.id)
        assert retried.status == State.PENDING
        wait = (retried.run_at - retried.updated_at).total_seconds()
        assert low - 0.01 <= wait <= high + 0.01, (job.payload, wait)


def test_a_result_json_cannot_hold_fails_the_attempt_with_a_clear_error(app: App) -> None:
    @app.task("sets", max_attempts=1)
    def sets() -> set[int]:
        return {1}

    job = sets.delay()
    assert app.drain() == 1
    with pytest.raises(TaskFailed) as failed:
        app.wait(job, timeout=0)
    assert failed.value.last_error is not None
    assert "result of task sets is not JSON" in failed.value.last_error


def test_a_job_that_is_not_a_task_payload_fails_without_retries(app: App) -> None:
    @app.task("t")
    def t() -> None: ...

    job = app.queue.enqueue({"path": "a.txt"}, max_attempts=3)
    assert app.drain() == 1
    failed = app.queue.get(job.id)
    assert (failed.status, failed.attempts) == (State.FAILED, 1)
    assert failed.last_error is not None and "not a task payload" in failed.last_error


def test_a_task_payload_from_another_producer_runs(app: App) -> None:
    """Another language writes the documented JSON; args and kwargs may be left out."""

    @app.task("greet")
    def greet(who: str = "world") -> str:
        return f"hello {who}"

    by_hand = app.queue.enqueue({"task": "greet", "kwargs": {"who": "ada"}})
    bare = app.queue.enqueue({"task": "greet"})
    built = app.queue.enqueue(task_payload("greet", ["bob"]))
    assert app.drain() == 3
    assert [app.wait(j, timeout=0) for j in (by_hand, bare, built)] == [
        "hello ada",
        "hello world",
        "hello bob",
    ]


def test_an_unknown_task_is_released_with_a_delay_and_an_event_not_failed(app: App) -> None:
    job = app.queue.enqueue(task_payload("nobody.knows", [1]))
    assert app.drain() == 1
    released = app.queue.get(job.id)
    assert (released.status, released.attempts) == (State.PENDING, 0)
    assert released.run_at > released.updated_at  # not due again at once
    last = app.queue.events(job.id)[-1]
    assert last.kind == "released"
    assert last.detail is not None and "unknown task nobody.knows" in last.detail
    assert app.drain() == 0


def test_an_unknown_task_fails_once_the_grace_after_its_enqueue_is_over(
    backend_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERSISTQ_UNKNOWN_TASK_SECONDS", "0.5")
    with App(backend_url) as app:
        job = app.queue.enqueue(task_payload("gone.task"))
        assert app.drain() == 1
        assert app.queue.get(job.id).status == State.PENDING
        time.sleep(0.6)
        assert app.drain() == 1
        with pytest.raises(TaskFailed, match=r"unknown task gone\.task") as failed:
            app.wait(job, timeout=0)
        assert failed.value.status == "FAILED"
        assert app.queue.get(job.id).attempts == 1


# -- wait -----------------------------------------------------------------------------------------


def test_wait_raises_task_failed_for_each_dead_end(app: App) -> None:
    @app.task("boom", max_attempts=1)
    def boom() -> None:
        raise RuntimeError("kaput")

    failed = boom.delay()
    app.drain()
    with pytest.raises(TaskFailed) as info:
        app.wait(failed)
    assert (info.value.status, info.value.job_id) == ("FAILED", failed.id)
    assert info.value.last_error is not None and "RuntimeError: kaput" in info.value.last_error
    assert "kaput" in str(info.value)

    cancelled = boom.delay()
    app.queue.cancel(cancelled.id)
    with pytest.raises(TaskFailed) as info:
        app.wait(cancelled.id)
    assert info.value.status == "CANCELLED"

    # A holder that stops heartbeating on the last attempt: the lease expires.
    lost = boom.delay()
    held = app.queue.claim(worker="stalled", lease=0.05)
    assert held is not None and held.id == lost.id
    time.sleep(0.1)
    assert app.queue.recover_stalled() == 1
    with pytest.raises(TaskFailed) as info:
        app.wait(lost)
    assert (info.value.status, info.value.last_error) == ("UNPROCESSABLE", "lease expired")


def test_wait_raises_timeout_error_when_the_job_does_not_finish_in_time(app: App) -> None:
    @app.task("never")
    def never() -> None: ...

    job = never.delay()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="still PENDING"):
        app.wait(job, timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 2


def test_wait_async_returns_the_result_without_blocking_the_loop(app: App) -> None:
    @app.task("inc")
    def inc(n: int) -> int:
        return n + 1

    job = inc.delay(1)
    ticks = 0

    async def main() -> Any:
        nonlocal ticks

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticking = asyncio.create_task(ticker())
        with pytest.raises(TimeoutError):
            await app.wait_async(job, timeout=0.2)
        runner = threading.Thread(target=app.drain)
        runner.start()
        result = await app.wait_async(job, timeout=10)
        runner.join()
        ticking.cancel()
        return result

    assert asyncio.run(main()) == 2
    assert ticks >= 10  # the loop kept running while waiting


def test_wait_reads_the_database_only_when_something_changed(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second of waiting on an idle queue: no query per millisecond. SQLite looks at its
    shared-memory data version (PRAGMA data_version, no table read) every 5 ms; PostgreSQL
    sleeps on NOTIFY. Statements that read a table are counted apart."""

    @app.task("idle")
    def idle() -> None: ...

    job = idle.delay()
    q = app.queue
    assert isinstance(q, persistq.Queue)
    statements: list[str] = []
    backend: Any = q.backend
    if q.url.startswith("sqlite"):
        conn: sqlite3.Connection = backend._connection()
        conn.set_trace_callback(statements.append)
    else:
        for name in ("_read", "_write", "_statement"):
            original: Callable[..., Any] = getattr(backend, name)

            def counted(*args: Any, _original: Callable[..., Any] = original, **kw: Any) -> Any:
                statements.append("call")
                return _original(*args, **kw)

            monkeypatch.setattr(backend, name, counted)
    with pytest.raises(TimeoutError):
        app.wait(job, timeout=1.0)
    if q.url.startswith("sqlite"):
        conn.set_trace_callback(None)
    table_reads = [s for s in statements if "data_version" not in s]
    dialect = q.url.split(":")[0]
    print(f"\n{dialect}: {len(statements)} statements in 1 s of waiting, {len(table_reads)} reads")
    assert len(table_reads) <= 2, table_reads
    assert len(statements) <= 250  # at most one every 4 ms, never one per millisecond


def test_current_job_is_the_running_job_in_sync_and_async_tasks_and_unset_after(
    app: App,
) -> None:
    @app.task("whoami")
    def whoami() -> list[int]:
        job = persistq.current_job()
        return [job.id, job.fence, job.attempts]

    @app.task("whoami_async")
    async def whoami_async() -> list[int]:
        await asyncio.sleep(0)
        job = persistq.current_job()
        return [job.id, job.fence, job.attempts]

    first, second = whoami.delay(), whoami_async.delay()
    assert app.drain() == 2
    assert app.wait(first, timeout=0) == [first.id, 1, 1]
    assert app.wait(second, timeout=0) == [second.id, 1, 1]
    with pytest.raises(LookupError):
        persistq.current_job()  # reset once the task returned
    with pytest.raises(LookupError):
        whoami()  # a plain call runs no job
