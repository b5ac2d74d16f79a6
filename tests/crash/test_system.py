"""The whole system under a real supervisord, in a temporary home: up, status, a consumer
SIGKILLed and restarted, simulate-crash, down leaving no process behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow


_PORTS: dict[Path, dict[str, str]] = {}


def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSISTQ_")}
    # Short lease and task so a crash is recovered in seconds, not the demo's 40 s.
    env.update(PERSISTQ_HOME=str(home), PERSISTQ_LEASE_SECONDS="3", PERSISTQ_TASK_DELAY="0.3-0.6")
    # Ports of this test's own, so another run on this machine (or a user's system on the
    # default ports) cannot make the API or a UI fail to start.
    ports = _PORTS.setdefault(
        home,
        {
            var: _free_port()
            for var in ("PERSISTQ_API_PORT", "PERSISTQ_MANAGER_PORT", "PERSISTQ_OPS_PORT")
        },
    )
    env.update(ports)
    return env


def persistq(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "persistq", *args],
        cwd=home,
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _pids(home: Path) -> dict[str, int]:
    """program name -> pid, read from supervisord over its socket."""
    from persistq.cli.system import processes

    return {i["name"]: i["pid"] for i in processes(home) if i["pid"]}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def _wait(check: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    pidfile = tmp_path / "data" / "supervisord.pid"
    if pidfile.exists():  # a failed test must not leave supervisord running
        persistq(tmp_path, "down", "--timeout", "30")
        if pidfile.exists() and _alive(pid := int(pidfile.read_text())):
            os.killpg(os.getpgid(pid), signal.SIGKILL)


def test_up_runs_everything_and_down_leaves_no_process(home: Path) -> None:
    started = persistq(home, "up")
    assert started.returncode == 0, started.stderr
    assert "consumer-0" in started.stdout and "RUNNING" in started.stdout
    status = persistq(home, "status")
    assert status.returncode == 0
    for program in ("producer", "consumer-0", "consumer-1"):
        assert any(program in line and "RUNNING" in line for line in status.stdout.splitlines())
    # nothing world-readable or world-writable under data/ and logs/
    for path in [*home.glob("data/**/*"), *home.glob("logs/*")]:
        assert path.stat().st_mode & 0o007 == 0, f"{path} is open to everyone"
    assert (home / "data" / "supervisor.sock").stat().st_mode & 0o077 == 0
    # the API runs with the token made at this first start, printed once, kept owner-only
    token = (home / "data" / "api-token").read_text().strip()
    assert (home / "data" / "api-token").stat().st_mode & 0o077 == 0
    assert token in started.stdout
    api = f"http://127.0.0.1:{_env(home)['PERSISTQ_API_PORT']}/stats"

    def api_answers() -> bool:
        try:
            return httpx.get(api, headers={"Authorization": f"Bearer {token}"}).status_code == 200
        except httpx.TransportError:
            return False

    assert _wait(api_answers, 20)
    assert httpx.get(api).status_code == 401

    # within a short while, files carry stamps and stats shows completed jobs
    def completed() -> bool:
        stats = json.loads(persistq(home, "stats", "--json").stdout)
        return bool(stats["queues"].get("files", {}).get("COMPLETED", 0) >= 2)

    assert _wait(completed, 30)
    stamped = [
        p for p in (home / "data" / "files").glob("*.txt") if p.read_text().startswith("processed ")
    ]
    assert stamped

    pids = _pids(home)
    supervisord = int((home / "data" / "supervisord.pid").read_text())
    stopped = persistq(home, "down")
    assert stopped.returncode == 0, stopped.stderr
    assert "no persistq process left" in stopped.stdout
    assert not [pid for pid in [supervisord, *pids.values()] if _alive(pid)]
    assert persistq(home, "status").returncode == 1


def test_a_sigkilled_consumer_is_restarted_and_simulate_crash_passes(home: Path) -> None:
    assert persistq(home, "up").returncode == 0
    old = _pids(home)["consumer-0"]
    os.kill(old, signal.SIGKILL)
    assert _wait(lambda: _pids(home).get("consumer-0") not in (None, old), 20)

    verdict = persistq(home, "simulate-crash", "--timeout", "60")
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    assert "PASS" in verdict.stdout
    assert "lost: 0; stamped twice: 0" in verdict.stdout
    assert "-> crashed -> claimed" in verdict.stdout  # the child, not the lease
    # The lease path, as before the process pool: the whole consumer killed.
    verdict = persistq(home, "simulate-crash", "--lease-expiry", "--timeout", "60")
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    assert "-> lease_expired -> claimed" in verdict.stdout
    assert "lost: 0; stamped twice: 0" in verdict.stdout
    assert persistq(home, "down").returncode == 0


def test_status_down_and_simulate_crash_say_when_nothing_runs(home: Path) -> None:
    for command in ("status", "simulate-crash"):
        result = persistq(home, command)
        assert result.returncode == 1
        assert result.stderr.startswith("error: persistq is not running")
        assert "Traceback" not in result.stderr
    result = persistq(home, "down")
    assert result.returncode == 0 and "not running" in result.stdout


GENERATED = "persistq: generated the admin password of the web UIs: "


def test_up_makes_the_ui_password_before_the_uis_start_and_prints_it_once(home: Path) -> None:
    from argon2 import PasswordHasher

    started = persistq(home, "up")
    assert started.returncode == 0, started.stderr
    hash_file = home / "data" / "ui-admin-password.argon2"
    said = [line for line in started.stdout.splitlines() if line.startswith(GENERATED)]
    assert len(said) == 1, started.stdout
    password = said[0].removeprefix(GENERATED)
    assert PasswordHasher().verify(hash_file.read_text().strip(), password)
    assert password not in hash_file.read_text()
    assert f"its argon2 hash is in {hash_file}" in started.stdout  # where it is kept
    assert "ui-manager.log" not in started.stdout and "ui-ops.log" not in started.stdout
    # Both UIs found the hash when they started: neither generated one nor shows it.
    logs = [home / "logs" / f"ui-{page}.log" for page in ("manager", "ops")]
    assert _wait(lambda: all(f"password {hash_file}" in p.read_text() for p in logs), 20)
    for log in logs:
        assert "generated" not in log.read_text() and password not in log.read_text()
    assert persistq(home, "down").returncode == 0

    again = persistq(home, "up")  # a second start shows no password, only where its hash is
    assert again.returncode == 0, again.stderr
    assert GENERATED not in again.stdout and password not in again.stdout
    assert f"printed by the first `persistq up`; only its hash is kept, in {hash_file}" in (
        again.stdout
    )
    assert PasswordHasher().verify(hash_file.read_text().strip(), password)
    assert persistq(home, "down").returncode == 0


def test_a_later_up_whose_database_is_gone_refuses_instead_of_starting_an_empty_one(
    home: Path,
) -> None:
    """Only the first `up` of a home creates its database: after that, a missing one was
    lost, and an empty one in its place would hide it (and reuse its job ids)."""
    (home / "data").mkdir()  # a home that ran before; its queue.db* were deleted
    result = persistq(home, "up")
    assert result.returncode == 1, result.stdout + result.stderr
    db = home / "data" / "queue.db"
    assert result.stderr.splitlines() == [f"error: no database at {db}; run `persistq init`"]
    assert not db.exists()
    assert not (home / "data" / "supervisord.pid").exists()


def test_status_shows_the_running_ports_and_up_prints_a_stop_command_that_works(
    home: Path,
) -> None:
    started = persistq(home, "up")
    assert started.returncode == 0, started.stderr
    ports = _env(home)
    # A shell with none of the port variables (nor PERSISTQ_HOME), somewhere else.
    bare = {k: v for k, v in os.environ.items() if not k.startswith("PERSISTQ_")}
    status = subprocess.run(
        [sys.executable, "-m", "persistq", "status", "--home", str(home)],
        cwd="/",
        env=bare,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    for program, var, path in (
        ("api", "PERSISTQ_API_PORT", "/docs"),
        ("ui-manager", "PERSISTQ_MANAGER_PORT", ""),
        ("ui-ops", "PERSISTQ_OPS_PORT", ""),
    ):
        url = f"http://127.0.0.1:{ports[var]}{path}"
        assert any(program in line and url in line for line in lines), (url, status.stdout)
    assert ":8000" not in status.stdout and ":8501" not in status.stdout
    assert (home / "data" / "urls.json").stat().st_mode & 0o077 == 0

    [line] = [line for line in started.stdout.splitlines() if "stop: " in line]
    stop = line.split("stop: ", 1)[1].strip()
    print(f"up printed: {line.strip()}")
    supervisord = int((home / "data" / "supervisord.pid").read_text())
    pids = [supervisord, *_pids(home).values()]
    # Run exactly as printed, by a shell elsewhere without the test's PERSISTQ_* variables.
    stopped = subprocess.run(
        stop, shell=True, cwd="/", env=bare, capture_output=True, text=True, timeout=120
    )
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped; no persistq process left" in stopped.stdout
    assert not any(_alive(pid) for pid in pids)
