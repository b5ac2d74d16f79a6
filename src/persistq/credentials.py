"""The admin password of the web UIs, and the brake on guessing it.

The password is ``PERSISTQ_ADMIN_PASSWORD`` when that is set. Otherwise one is generated the
first time a UI starts, printed once to that UI's log, and stored only as an argon2 hash in
the data directory (beside the SQLite file), readable by its owner alone. There is no
default password. To choose another, set the variable, or delete the hash file and restart
the UI to get a new one.

The variable is read here rather than in :class:`persistq.config.Settings` so that the
secret never sits in a settings object that someone prints.
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from persistq.config import DEFAULT_URL
from persistq.errors import QueueError

PASSWORD_ENV = "PERSISTQ_ADMIN_PASSWORD"
HASH_FILE = "ui-admin-password.argon2"
_HASHER = PasswordHasher()


class CredentialsError(QueueError):
    """The stored admin password cannot be used; the message says what to do."""


def data_dir(url: str | None = None, env: Mapping[str, str] | None = None) -> Path:
    """Where the hash lives: beside the SQLite file; else ``PERSISTQ_HOME/data`` (or ./data)."""
    env = os.environ if env is None else env
    url = url or env.get("PERSISTQ_URL") or DEFAULT_URL
    prefix = "sqlite:///"
    if url.startswith(prefix):
        return Path(url[len(prefix) :].partition("?")[0]).parent.resolve()
    return (Path(env.get("PERSISTQ_HOME") or ".") / "data").resolve()


@dataclass(frozen=True, slots=True)
class AdminPassword:
    """Checks a login. ``source`` says where the password came from, for the login page."""

    source: str  # "environment" or "file"
    path: Path | None
    _secret: str

    def verify(self, given: str) -> bool:
        if self.source == "environment":
            return hmac.compare_digest(given.encode(), self._secret.encode())
        try:
            return _HASHER.verify(self._secret, given)
        except VerificationError:
            return False
        except InvalidHashError:
            raise CredentialsError(_bad_file(self.path)) from None


def admin_password(
    directory: Path,
    env: Mapping[str, str] | None = None,
    announce: Callable[[str], None] | None = None,
) -> AdminPassword:
    """The admin password: from the environment, else the stored hash, else a new one.

    A new password is passed to ``announce`` once (its only appearance anywhere) and only
    its hash is written. Two UIs starting at once agree on one password: the file is
    created atomically and the loser reads the winner's.
    """
    env = os.environ if env is None else env
    plain = env.get(PASSWORD_ENV)
    if plain:
        return AdminPassword("environment", None, plain)
    path = directory / HASH_FILE
    stored = _read_hash(path)
    if stored is None:
        generated = secrets.token_urlsafe(16)
        hashed = _HASHER.hash(generated)
        if _create_hash_file(path, hashed):
            if announce is not None:
                announce(announcement(generated, path))
            return AdminPassword("file", path, hashed)
        stored = _read_hash(path)
        if stored is None:
            raise CredentialsError(_bad_file(path))
    return AdminPassword("file", path, stored)


def announcement(password: str, path: Path) -> str:
    return (
        f"persistq: generated the admin password of the web UIs: {password}\n"
        f"persistq: it is shown only this once; its argon2 hash is in {path} (mode 0600). "
        f"Set {PASSWORD_ENV}, or delete that file and restart the UI, to change it."
    )


def _read_hash(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialsError(f"{path}: cannot read the admin password hash ({exc})") from None
    if not text.startswith("$argon2"):
        raise CredentialsError(_bad_file(path))
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)  # someone loosened it: a hash is still worth keeping private
    return text


def _create_hash_file(path: Path, hashed: str) -> bool:
    """Write ``hashed`` to ``path`` unless it exists; False when another process won."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(hashed + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.link(tmp, path)  # atomic, and refuses to replace a file that appeared meanwhile
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def _bad_file(path: Path | None) -> str:
    return (
        f"{path} does not hold an argon2 hash: delete it and restart the UI to get a new password"
    )


class LoginThrottle:
    """Exponential delay per client after failed logins; thread-safe, one per process.

    After ``n`` failures in a row a client may try again only ``min(cap, base * 2**(n-1))``
    seconds later: 1, 2, 4 ... 300 s with the defaults. A success clears its record;
    records of clients quiet for ``forget_after`` seconds are dropped.
    """

    def __init__(
        self,
        *,
        base: float = 1.0,
        cap: float = 300.0,
        forget_after: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base, self.cap, self.forget_after = base, cap, forget_after
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, tuple[int, float]] = {}  # client -> (count, last failure)

    def _delay(self, count: int) -> float:
        return 0.0 if count <= 0 else min(self.cap, self.base * 2 ** (count - 1))

    def wait_seconds(self, client: str) -> float:
        """Seconds until ``client`` may try again; 0 when it may try now."""
        with self._lock:
            count, last = self._failures.get(client, (0, 0.0))
            return max(0.0, last + self._delay(count) - self._clock())

    def failed(self, client: str) -> float:
        """Record a failed login; returns the seconds until the next try is allowed."""
        now = self._clock()
        with self._lock:
            if len(self._failures) > 10_000:
                self._failures = {
                    c: v for c, v in self._failures.items() if now - v[1] < self.forget_after
                }
            count, last = self._failures.get(client, (0, 0.0))
            if now - last >= self.forget_after:
                count = 0
            self._failures[client] = (count + 1, now)
            return self._delay(count + 1)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)
