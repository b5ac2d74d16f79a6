"""Periodic tasks: cron ticks, once per tick across schedulers, one catch-up after downtime."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

import persistq
from persistq import App, InvalidJob
from persistq.cli.main import app as cli
from persistq.clock import ManualClock
from persistq.periodic import TICK_FORMAT, Schedule, Scheduler
from procs import Children, WorkerProcess

#: 2026-01-01T12:00:00Z, a minute boundary.
NOON = datetime(2026, 1, 1, 12, tzinfo=UTC).timestamp()


def keys(q: persistq.Queue, queue: str = "default") -> list[str]:
    return sorted(j.key or "" for j in q.jobs(queue=queue, limit=10_000))


@pytest.fixture
def app(backend_url: str) -> Iterator[App]:
    with App(backend_url, create=True) as made:
        yield made


def test_schedule_ticks_follow_cron_in_its_time_zone_with_cronsims_dst_rules() -> None:
    every5 = Schedule("cleanup", "*/5 * * * *")
    assert every5.latest(NOON + 299) == datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert every5.latest(NOON) == datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert every5.next(NOON) == datetime(2026, 1, 1, 12, 5, tzinfo=UTC)
    assert every5.key(every5.latest(NOON)) == "periodic:cleanup:2026-01-01T12:00:00Z"
    berlin = ZoneInfo("Europe/Berlin")
    nightly = Schedule("nightly", "30 2 * * *", tz="Europe/Berlin")
    # Spring forward: 02:30 does not exist on 29 March; Debian cron (and cronsim) run at 03:00.
    spring = nightly.next(datetime(2026, 3, 28, 12, tzinfo=berlin).timestamp())
    assert spring == datetime(2026, 3, 29, 3, tzinfo=berlin)
    # Fall back: 02:30 happens twice on 25 October; it runs once.
    fall = nightly.next(datetime(2026, 10, 24, 12, tzinfo=berlin).timestamp())
    after = nightly.next(fall.timestamp())
    assert (fall.day, after.day) == (25, 26)
    assert nightly.key(after) == "periodic:nightly:2026-10-26T01:30:00Z"


@pytest.mark.parametrize(
    ("cron", "tz", "message"),
    [
        ("* * * *", "UTC", "must have 5 fields"),
        ("* * * * * *", "UTC", "must have 5 fields"),
        ("61 * * * *", "UTC", "Bad minute"),
        ("* * * * *", "Mars/Olympus", "unknown time zone"),
    ],
)
def test_a_bad_schedule_is_refused_when_it_is_declared(cron: str, tz: str, message: str) -> None:
    app = App("sqlite:///unused.db")
    with pytest.raises(InvalidJob, match=message):
        app.periodic(cron, "bad", tz=tz)(lambda: None)
    assert app.schedules == {} and app.tasks == {}


def test_schedulers_enqueue_each_tick_once_and_a_new_schedule_skips_its_stale_tick(
    app: App,
) -> None:
    @app.periodic("* * * * *", "minutely")
    def minutely() -> None: ...

    clock = ManualClock(NOON + 30)
    schedulers = [Scheduler(app.queue, list(app.schedules.values()), clock=clock) for _ in "ab"]
    assert [s.run_once() for s in schedulers] == [[], []]  # 12:00 was before it existed
    for _ in range(3):
        clock.advance(60)
        for s in schedulers:
            s.run_once()
    assert keys(app.queue) == [f"periodic:minutely:2026-01-01T12:0{m}:00Z" for m in (1, 2, 3)]
    assert app.drain() == 3
    # A time when no scheduler ran: 12:04 .. 12:09 pass; a new scheduler catches up once.
    clock.advance(6 * 60)
    late = Scheduler(app.queue, list(app.schedules.values()), clock=clock)
    assert [j.key for j in late.run_once()] == ["periodic:minutely:2026-01-01T12:09:00Z"]
    assert late.run_once() == []
    assert len(keys(app.queue)) == 4
    assert app.queue.last_keyed_job("periodic:minutely:").key.endswith("12:09:00Z")  # type: ignore[union-attr]
    assert app.queue.last_keyed_job("periodic:minutely:", queue="other") is None
    assert app.queue.last_keyed_job("periodic:minute_") is None  # no LIKE wildcards


def worker_ticks(q: persistq.Queue) -> list[str]:
    found = keys(q, "ticks")
    assert len(found) == len(set(found))
    return found


def minutes(ticks: list[str]) -> list[int]:
    """Each tick of ``periodic:tick:TICK`` as minutes since the epoch."""
    prefix = "periodic:tick:"
    return [
        int(datetime.strptime(t.removeprefix(prefix), TICK_FORMAT).replace(tzinfo=UTC).timestamp())
        // 60
        for t in ticks
    ]


def stop_all(workers: list[WorkerProcess]) -> None:
    deadline = time.monotonic() + 60
    for worker in workers:  # a SIGTERM before its handler is installed would kill it
        while "event=scheduler_started" not in worker.log():
            assert worker.alive() and time.monotonic() < deadline, worker.log()
            time.sleep(0.05)
    for worker in workers:  # all signalled first: they drain at the same time
        worker.proc.send_signal(signal.SIGTERM)
    for worker in workers:  # no second signal: one landing as it exits would kill it
        assert worker.wait() == 0, worker.log()
        worker.assert_did_not_crash()
        assert "event=stopped" in worker.log()


@pytest.mark.slow
def test_four_workers_enqueue_every_tick_exactly_once_and_one_catch_up_after_a_gap(
    backend_url: str, tmp_path: Path
) -> None:
    speed = 120.0  # a minute of the app's clock every half second
    env = {"PERIODIC_TEST_CLOCK": f"{NOON} {time.time()} {speed}"}
    with persistq.connect(backend_url, create=True) as q, Children(tmp_path) as children:
        workers = [
            children.worker(f"w{n}", backend_url, "--app", "periodic_apps:app", env=env)
            for n in range(4)
        ]
        deadline = time.monotonic() + 60
        while not all("event=scheduler_started" in w.log() for w in workers):
            assert time.monotonic() < deadline, [w.log() for w in workers]
            time.sleep(0.05)
        # Ten ticks with all four schedulers racing for each (counted from when the last one
        # started, not from the first worker's start: the race is the point, not the count).
        raced = len(worker_ticks(q)) + 10
        while len(worker_ticks(q)) < raced:
            assert time.monotonic() < deadline, workers[0].log()
            time.sleep(0.1)
        stop_all(workers)
        ticks = worker_ticks(q)
        got = minutes(ticks)
        assert got == list(range(got[0], got[0] + len(got))), ticks  # none missed, none twice
        assert all(j.payload == {"task": "tick", "args": [], "kwargs": {}} for j in q.jobs())

        time.sleep(5 * 60 / speed)  # five ticks pass with no scheduler running
        restarted = [
            children.worker(f"r{n}", backend_url, "--app", "periodic_apps:app", env=env)
            for n in range(2)
        ]
        while len(worker_ticks(q)) < len(ticks) + 2:
            assert time.monotonic() < deadline, restarted[0].log()
            time.sleep(0.05)
        stop_all(restarted)
        after = minutes(worker_ticks(q))[len(ticks) :]
        # One catch-up (the latest missed tick), then every tick again; the four others
        # missed during the gap are not run.
        assert after[0] - got[-1] >= 5, after
        assert after == list(range(after[0], after[0] + len(after))), after


def test_periodic_list_shows_last_and_next_tick(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    runner = CliRunner()
    with persistq.connect(url, create=True) as q:
        shown = runner.invoke(
            cli, ["--url", url, "periodic", "list", "--app", "periodic_apps:app", "--json"]
        )
        assert shown.exit_code == 0, shown.output
        (row,) = json.loads(shown.stdout)
        assert (row["name"], row["cron"], row["queue"], row["last_tick"]) == (
            "tick",
            "* * * * *",
            "ticks",
            None,
        )
        q.enqueue({"task": "tick"}, queue="ticks", key="periodic:tick:2026-01-01T12:07:00Z")
        table = runner.invoke(cli, ["--url", url, "periodic", "list", "--app", "periodic_apps:app"])
        assert table.exit_code == 0, table.output
        assert "2026-01-01T12:07:00+00:00" in table.stdout
        bad = runner.invoke(cli, ["--url", url, "periodic", "list", "--app", "nowhere:app"])
        assert bad.exit_code == 1 and "cannot load app" in bad.stderr
    api = ["--url", "http://127.0.0.1:1", "periodic", "list", "--app", "periodic_apps:app"]
    remote = runner.invoke(cli, api, env={"PERSISTQ_API_TOKEN": "t"})
    assert remote.exit_code == 2 and "give its URL" in remote.stderr
