"""The web UIs' admin password (environment, or generated and stored hashed) and the throttle."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from persistq.credentials import (
    HASH_FILE,
    CredentialsError,
    LoginThrottle,
    admin_password,
    data_dir,
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


def test_throttle_doubles_the_wait_after_each_failure_up_to_the_cap() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(base=1, cap=10, clock=clock)
    assert throttle.wait_seconds("ip:a") == 0
    assert [throttle.failed("ip:a") for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    assert throttle.wait_seconds("ip:a") == 10
    assert throttle.wait_seconds("ip:b") == 0  # per client
    clock.now += 10
    assert throttle.wait_seconds("ip:a") == 0
    throttle.succeeded("ip:a")
    assert throttle.failed("ip:a") == 1


def test_throttle_forgets_a_client_that_stayed_quiet() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(base=1, cap=300, forget_after=3600, clock=clock)
    for _ in range(5):
        throttle.failed("ip:a")
    clock.now += 3600
    assert throttle.failed("ip:a") == 1
