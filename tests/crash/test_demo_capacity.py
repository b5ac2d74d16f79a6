"""The demo keeps up with itself: an hour of its producer and consumers, 200x faster, ends
with a small backlog. The programs' command lines are read from the packaged
supervisord.conf, so the test follows the configuration `persistq up` runs."""

from __future__ import annotations

import configparser
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import persistq
from persistq.cli.system import config_path
from persistq.model import State

# Alone: its producer's rate is the machine's; a parallel test slowed it below the demo's.
pytestmark = [pytest.mark.slow, pytest.mark.alone]

#: 200x faster: the demo's hour in 18 s, 7-15 s tasks in 0.035-0.075 s, a file every 0.025 s.
SCALE = 200.0
DEMO_SECONDS = 3600.0
#: The real delay (persistq.config.Settings.task_delay), scaled.
TASK_DELAY = "0.035-0.075"


def _program(name: str) -> tuple[list[str], int]:
    """The program's command (the interpreter substituted) and how many run."""
    config = configparser.RawConfigParser(inline_comment_prefixes=(";",))
    config.read(config_path())
    section = config[f"program:{name}"]
    command = section["command"].replace("%(ENV_PERSISTQ_PYTHON)s", sys.executable)
    return shlex.split(command), int(section.get("numprocs", "1"))


def _scaled(command: list[str], option: str) -> list[str]:
    """``command`` with ``option``'s number of seconds divided by SCALE."""
    at = command.index(option) + 1
    seconds = float(re.sub(r"s$", "", command[at]))
    return [*command[:at], f"{seconds / SCALE:g}", *command[at + 1 :]]


def test_an_hour_of_the_demo_ends_with_a_bounded_backlog(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'data' / 'queue.db'}"
    persistq.connect(url).close()  # what `up` does at a first start
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSISTQ_")}
    env.update(
        PERSISTQ_URL=url,
        PERSISTQ_HOME=str(tmp_path),
        PERSISTQ_FILES_DIR=str(tmp_path / "data" / "files"),
        PERSISTQ_TASK_DELAY=TASK_DELAY,
        PERSISTQ_LOG_LEVEL="WARNING",
    )
    consumer, consumers = _program("consumer")
    producer, _ = _program("producer")
    producer = _scaled(_scaled(producer, "--every"), "--timeout")
    assert consumers == 2 and "--concurrency" in consumer  # the seeds' two programs
    procs: list[subprocess.Popen[bytes]] = []
    log = (tmp_path / "programs.log").open("wb")
    try:
        for _ in range(consumers):
            procs.append(subprocess.Popen(consumer, cwd=tmp_path, env=env, stdout=log, stderr=log))
        time.sleep(2.0)  # the consumers' start (imports, pool) is not part of the demo's hour
        start = time.monotonic()
        procs.append(subprocess.Popen(producer, cwd=tmp_path, env=env, stdout=log, stderr=log))
        peak, samples = 0, []
        with persistq.connect(url, create=False) as q:
            while (elapsed := time.monotonic() - start) < DEMO_SECONDS / SCALE:
                time.sleep(1.0)
                pending = q.stats()["queues"].get("files", {}).get("PENDING", 0)
                peak = max(peak, pending)
                samples.append((round(elapsed), pending))
            files = q.stats()["queues"]["files"]
        assert all(p.poll() is None for p in procs), log.name  # nothing crashed meanwhile
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
    made = sum(files[str(state)] for state in State)
    print(
        f"demo hour at {SCALE:g}x: {made} jobs made, {files['COMPLETED']} completed, "
        f"{files['PENDING']} pending and {files['PROCESSING']} processing at the end, "
        f"peak pending {peak}; oldest pending {files['oldest_pending_age']} s "
        f"(= {(files['oldest_pending_age'] or 0) * SCALE:.0f} demo s); samples {samples[::6]}"
    )
    # The producer really ran at (about: a loaded machine slows it) the demo's rate.
    assert made >= 0.9 * DEMO_SECONDS / 5
    assert files["FAILED"] == 0 and files["UNPROCESSABLE"] == 0
    # Overloaded (one slot per consumer, run at 100x) it ended 155 pending and growing by 4
    # a second, the oldest 7.7 s (= 13 demo minutes, past the Ops banner's 5).
    assert files["PENDING"] <= 5 and peak <= 10
