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

import fcntl
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from persistq.config import DEFAULT_URL
from persistq.errors import QueueError

PASSWORD_ENV = "PERSISTQ_ADMIN_PASSWORD"
HASH_FILE = "ui-admin-password.argon2"
THROTTLE_FILE = "ui-login-throttle.json"
#: The one account of the UIs; the throttle counts its failures, whoever sends them.
ACCOUNT = "admin"
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
            # Digests of equal length: compare_digest would show a difference in length.
            digest = hashlib.sha256
            return hmac.compare_digest(
                digest(given.encode()).digest(), digest(self._secret.encode()).digest()
            )
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


@dataclass(frozen=True, slots=True)
class Attempt:
    """What became of one login try."""

    ok: bool  # the password was right
    checked: bool  # False: refused inside the wait; the password was not looked at
    wait: float  # seconds until the next try of this account will be checked


class LoginThrottle:
    """Exponential delay per account after failed logins, shared by every session and
    process that uses ``directory`` (both UIs: they share the password's data directory).

    After ``n`` failures in a row the account's next password check happens only
    ``min(cap, base * 2**(n-1))`` seconds after the last one: 1, 2, 4 ... 300 s with the
    defaults. The state is a small JSON file beside the password hash, read and replaced
    atomically under an exclusive ``flock`` of ``ui-login-throttle.lock`` next to it. A
    success clears the account's record; one quiet for ``forget_after`` seconds restarts at 0.
    """

    def __init__(
        self,
        directory: Path,
        *,
        base: float = 1.0,
        cap: float = 300.0,
        forget_after: float = 3600.0,
        clock: Callable[[], float] = time.time,  # wall clock: the file outlives processes
    ) -> None:
        self.path = directory / THROTTLE_FILE
        self.base, self.cap, self.forget_after = base, cap, forget_after
        self._clock = clock

    def attempt(self, check: Callable[[], bool], account: str = ACCOUNT) -> Attempt:
        """Run ``check`` (the password comparison) unless ``account`` is in its wait.

        The try is recorded as a failure *before* ``check`` runs, under the lock, so
        sessions trying at once get one check between them; a success then clears it.
        Raises :class:`CredentialsError` when the state cannot be written: a throttle
        that cannot count refuses rather than lets every guess through.
        """
        with self._locked() as records:
            count, last = self._record(records, account)
            wait = self._wait(count, last)
            if wait > 0:
                return Attempt(ok=False, checked=False, wait=wait)
            now = self._clock()
            count = 0 if now - last >= self.forget_after else count
            records[account] = {"failures": count + 1, "last": now}
            self._save(records)
        if check():
            with self._locked() as records:
                records.pop(account, None)
                self._save(records)
            return Attempt(ok=True, checked=True, wait=0.0)
        return Attempt(ok=False, checked=True, wait=self._delay(count + 1))

    def wait_seconds(self, account: str = ACCOUNT) -> float:
        """Seconds until ``account``'s next try will be checked; 0 when it may try now."""
        with self._locked() as records:
            return self._wait(*self._record(records, account))

    def failures(self, account: str = ACCOUNT) -> int:
        """Failed tries of ``account`` in a row (as the file has them)."""
        with self._locked() as records:
            return self._record(records, account)[0]

    def _delay(self, count: int) -> float:
        return 0.0 if count <= 0 else min(self.cap, self.base * 2 ** (count - 1))

    def _wait(self, count: int, last: float) -> float:
        delay = self._delay(count)
        # min(): a clock set back must not turn a 1 s wait into a day
        return max(0.0, min(delay, last + delay - self._clock()))

    def _record(self, records: dict[str, Any], account: str) -> tuple[int, float]:
        record = records.get(account)
        if record is None:
            return 0, 0.0
        try:
            count, last = int(record["failures"]), float(record["last"])
        except (TypeError, KeyError, ValueError):
            return self._damaged()
        return max(0, count), last

    def _damaged(self) -> tuple[int, float]:
        # Not our writing (we replace it atomically): count it as one failure at the
        # file's last change, so tampering buys no fresh start and locks no one out.
        try:
            return 1, self.path.stat().st_mtime
        except OSError:
            return 1, self._clock()

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """The file's records, under an exclusive lock held until the block ends."""
        lock = self.path.with_suffix(".lock")  # stays put: the state file is replaced
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise CredentialsError(f"{self.path}: cannot record login attempts ({exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd is closed, even on a crash
            yield self._load()
        finally:
            os.close(fd)

    def _load(self) -> dict[str, Any]:
        try:
            records = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError:  # not JSON, or not UTF-8
            records = None
        except OSError as exc:
            raise CredentialsError(f"{self.path}: cannot read login attempts ({exc})") from None
        if not isinstance(records, dict):
            count, last = self._damaged()
            return {ACCOUNT: {"failures": count, "last": last}}
        return records

    def _save(self, records: dict[str, Any]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(records, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)  # readers see the old state or the new, never half
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise CredentialsError(f"{self.path}: cannot record login attempts ({exc})") from None
