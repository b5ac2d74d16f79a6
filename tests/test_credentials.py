"""The web UIs' admin password (environment, or generated and stored hashed) and the throttle."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from persistq.credentials import (
    HASH_FILE,
    SESSIONS_FILE,
    THROTTLE_FILE,
    CredentialsError,
    LoginThrottle,
    Sessions,
    admin_password,
    data_dir,
    session_limits,
)


def test_the_environment_password_is_used_and_nothing_is_written(tmp_path: Path) -> None:
    password = admin_password(tmp_path, {"PERSISTQ_ADMIN_PASSWORD": "s3cret"})
    assert password.source == "environment"
    assert password.verify("s3cret")
    assert not password.verify("s3cret ") and not password.verify("")
    assert list(tmp_path.iterdir()) == []


def test_a_generated_password_is_announced_once_and_stored_only_hashed(tmp_path: Path) -> None:
    said: list[str] = []
    first = admin_password(tmp_path, {}, announce=said.append)
    assert len(said) == 1
    generated = said[0].split("web UIs: ")[1].split()[0]
    assert len(generated) >= 20
    path = tmp_path / HASH_FILE
    stored = path.read_text()
    assert stored.startswith("$argon2id$") and generated not in stored
    assert path.stat().st_mode & 0o777 == 0o600
    assert first.verify(generated) and not first.verify(generated.upper())
    again = admin_password(tmp_path, {}, announce=said.append)
    assert len(said) == 1  # never shown again
    assert again.verify(generated)
    assert [p.name for p in tmp_path.iterdir()] == [HASH_FILE]  # no temporary file left


def test_an_empty_environment_password_is_not_a_password(tmp_path: Path) -> None:
    password = admin_password(tmp_path, {"PERSISTQ_ADMIN_PASSWORD": ""})
    assert password.source == "file"
    assert not password.verify("")


def test_two_uis_starting_at_once_agree_on_one_password(tmp_path: Path) -> None:
    said: list[str] = []
    start = threading.Barrier(4)
    results = []

    def start_ui() -> None:
        start.wait()
        results.append(admin_password(tmp_path, {}, announce=said.append))

    threads = [threading.Thread(target=start_ui) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(said) == 1
    generated = said[0].split("web UIs: ")[1].split()[0]
    assert all(r.verify(generated) for r in results)


def test_a_damaged_hash_file_is_refused_with_what_to_do(tmp_path: Path) -> None:
    (tmp_path / HASH_FILE).write_text("password123\n")
    with pytest.raises(CredentialsError, match="delete it and restart"):
        admin_password(tmp_path, {})


def test_a_loosened_hash_file_is_made_private_again(tmp_path: Path) -> None:
    admin_password(tmp_path, {})
    path = tmp_path / HASH_FILE
    path.chmod(0o644)
    admin_password(tmp_path, {})
    assert path.stat().st_mode & 0o777 == 0o600


def test_the_hash_lives_beside_the_sqlite_file_or_in_home_data(tmp_path: Path) -> None:
    assert data_dir(f"sqlite:///{tmp_path}/db/q.db?synchronous=normal", {}) == tmp_path / "db"
    relative = data_dir("sqlite:///data/queue.db", {})
    assert relative == Path.cwd() / "data"
    home = {"PERSISTQ_HOME": str(tmp_path)}
    assert data_dir("postgresql://u@h/db", home) == tmp_path / "data"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wrong() -> bool:
    return False


def test_throttle_doubles_the_wait_after_each_failure_up_to_the_cap(tmp_path: Path) -> None:
    clock = FakeClock()
    throttle = LoginThrottle(tmp_path, base=1, cap=10, clock=clock)
    assert throttle.wait_seconds() == 0
    waits = []
    for _ in range(6):
        attempt = throttle.attempt(wrong)
        assert attempt.checked and not attempt.ok
        waits.append(attempt.wait)
        clock.now += attempt.wait  # each try once its wait is over
    assert waits == [1, 2, 4, 8, 10, 10]
    assert throttle.failures() == 6
    assert throttle.attempt(lambda: True).ok  # the right password, once the wait is over
    assert throttle.failures() == 0 and throttle.wait_seconds() == 0
    assert throttle.attempt(wrong).wait == 1


def test_inside_the_wait_the_password_is_not_checked_at_all(tmp_path: Path) -> None:
    clock = FakeClock()
    throttle = LoginThrottle(tmp_path, clock=clock)
    throttle.attempt(wrong)
    clock.now += 0.5
    checked: list[str] = []
    refused = throttle.attempt(lambda: checked.append("checked") or True)
    assert (refused.ok, refused.checked, refused.wait) == (False, False, 0.5)
    assert checked == [] and throttle.failures() == 1  # a refusal is not another failure
    clock.now += 0.5
    assert throttle.attempt(lambda: True).ok


def test_throttle_forgets_an_account_that_stayed_quiet(tmp_path: Path) -> None:
    clock = FakeClock()
    throttle = LoginThrottle(tmp_path, base=1, cap=300, forget_after=3600, clock=clock)
    for _ in range(5):
        clock.now += throttle.attempt(wrong).wait
    clock.now += 3600
    assert throttle.attempt(wrong).wait == 1


def test_a_clock_set_back_does_not_lengthen_the_wait(tmp_path: Path) -> None:
    clock = FakeClock()
    throttle = LoginThrottle(tmp_path, clock=clock)
    throttle.attempt(wrong)
    clock.now -= 86400
    assert throttle.wait_seconds() == 1  # never more than the backoff itself


def test_the_throttle_keeps_its_state_owner_only_beside_the_hash(tmp_path: Path) -> None:
    LoginThrottle(tmp_path).attempt(wrong)
    state = tmp_path / THROTTLE_FILE
    assert state.stat().st_mode & 0o777 == 0o600
    assert LoginThrottle(tmp_path).failures() == 1  # a new object (a restarted UI) knows
    names = sorted(p.name for p in tmp_path.iterdir())  # no temporary file left
    assert names == ["ui-login-throttle.json", "ui-login-throttle.lock"]


def test_a_damaged_throttle_file_counts_as_a_failure_not_as_a_fresh_start(tmp_path: Path) -> None:
    (tmp_path / THROTTLE_FILE).write_text("{not json")
    throttle = LoginThrottle(tmp_path)
    assert throttle.failures() == 1 and throttle.wait_seconds() > 0
    (tmp_path / THROTTLE_FILE).write_text('{"admin": {"failures": "x"}}')
    assert throttle.failures() == 1


def test_an_unwritable_throttle_refuses_logins_rather_than_check_unthrottled(
    tmp_path: Path,
) -> None:
    (tmp_path / "file").write_text("")
    throttle = LoginThrottle(tmp_path / "file" / "data")
    checked: list[str] = []
    with pytest.raises(CredentialsError, match="cannot record login attempts"):
        throttle.attempt(lambda: checked.append("checked") or True)
    assert checked == []


# -- across processes: the throttle holds for the account, not for one UI process --------

ATTEMPT = """
import json, sys, time
from pathlib import Path
from persistq.credentials import LoginThrottle

directory, answer, go = Path(sys.argv[1]), sys.argv[2] == "right", Path(sys.argv[3])
while not go.exists():  # start together: every process is ready before the first try
    time.sleep(0.005)
checked = []

def check() -> bool:
    checked.append(True)
    time.sleep(0.3)  # as slow as argon2 on a busy machine: the others arrive meanwhile
    return answer

attempt = LoginThrottle(directory, base=30).attempt(check)
print(json.dumps({"ok": attempt.ok, "checked": attempt.checked, "ran": bool(checked),
                  "wait": attempt.wait}))
"""


def _attempts(tmp_path: Path, answers: list[str]) -> list[dict[str, object]]:
    """One process per answer, all trying at once; their results."""
    go = tmp_path / "go"
    go.unlink(missing_ok=True)
    data = tmp_path / "data"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ATTEMPT, str(data), answer, str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for answer in answers
    ]
    time.sleep(0.5)  # interpreters up and polling
    go.touch()
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        results.append(json.loads(out))
    return results


def test_one_process_failing_makes_another_wait_without_checking(tmp_path: Path) -> None:
    (first,) = _attempts(tmp_path, ["wrong"])
    assert first == {"ok": False, "checked": True, "ran": True, "wait": 30}
    (second,) = _attempts(tmp_path, ["right"])  # the right password, inside the wait
    assert second["checked"] is False and second["ran"] is False and second["ok"] is False
    assert 0 < float(second["wait"]) <= 30  # type: ignore[arg-type]
    assert LoginThrottle(tmp_path / "data").failures() == 1


def test_processes_trying_at_once_get_one_check_between_them(tmp_path: Path) -> None:
    results = _attempts(tmp_path, ["wrong"] * 6)
    assert sum(bool(r["ran"]) for r in results) == 1, results
    assert sum(bool(r["checked"]) for r in results) == 1
    assert not any(r["ok"] for r in results)


# -- sign-ins --------------------------------------------------------------------------------


def test_a_sign_in_lasts_its_lifetime_and_only_its_digest_is_stored(tmp_path: Path) -> None:
    clock = FakeClock()
    sessions = Sessions(tmp_path, lifetime=100, clock=clock)
    token = sessions.start()
    assert len(token) >= 40
    stored = (tmp_path / SESSIONS_FILE).read_text()
    assert token not in stored
    assert (tmp_path / SESSIONS_FILE).stat().st_mode & 0o777 == 0o600
    clock.now += 100
    assert sessions.since(token) == 1000.0
    assert Sessions(tmp_path, lifetime=100, clock=clock).since(token) == 1000.0  # another UI
    clock.now += 0.5
    assert sessions.since(token) is None
    assert sessions.since("a token never issued") is None


def test_the_idle_limit_counts_from_the_last_touch(tmp_path: Path) -> None:
    clock = FakeClock()
    sessions = Sessions(tmp_path, lifetime=1000, clock=clock)
    token = sessions.start()
    clock.now += 30
    assert sessions.since(token, idle=30, touch=True) == 1000.0  # a click: seen now
    clock.now += Sessions.TOUCH_EVERY - 1
    sessions.since(token, idle=30, touch=True)  # too soon after the last write: not written
    clock.now = 1060.0
    assert sessions.since(token, idle=30) == 1000.0  # 30 s after the touch at 1030
    assert sessions.since(token, idle=29.9) is None
    assert sessions.since(token) == 1000.0  # no idle limit (the Ops UI): still signed in


def test_signing_in_again_renews_a_listed_token_and_replaces_an_ended_one(tmp_path: Path) -> None:
    clock = FakeClock()
    sessions = Sessions(tmp_path, lifetime=100, clock=clock)
    token = sessions.start()
    clock.now += 50
    assert sessions.start(token) == token  # idle in the Manager: the same sign-in, afresh
    clock.now += 99
    assert sessions.since(token) == 1050.0
    sessions.end(token)
    assert sessions.since(token) is None
    assert sessions.start(token) != token  # logged out: a token is never revived
    clock.now += 1000
    other = sessions.start()
    records = json.loads((tmp_path / SESSIONS_FILE).read_text())
    assert list(records) and len(records) == 1  # the expired ones are dropped
    assert sessions.since(other) == clock.now


def test_a_damaged_sign_in_file_signs_no_one_in(tmp_path: Path) -> None:
    sessions = Sessions(tmp_path)
    token = sessions.start()
    (tmp_path / SESSIONS_FILE).write_text("{not json")
    assert sessions.since(token) is None
    (tmp_path / SESSIONS_FILE).write_text(json.dumps({"x": {"since": "soon"}}))
    assert sessions.since(token) is None
    assert sessions.since(sessions.start()) is not None  # and a login still works


def test_session_limits_come_from_the_environment_or_the_defaults() -> None:
    assert session_limits({}) == (8 * 3600, 30 * 60)
    env = {"PERSISTQ_UI_SESSION_SECONDS": "60", "PERSISTQ_UI_IDLE_SECONDS": "2.5"}
    assert session_limits(env) == (60, 2.5)
    for bad in ("0", "-1", "soon", "inf", "nan"):
        with pytest.raises(CredentialsError, match="PERSISTQ_UI_SESSION_SECONDS"):
            session_limits({"PERSISTQ_UI_SESSION_SECONDS": bad})
