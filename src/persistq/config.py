"""Settings: the only place ``PERSISTQ_*`` environment variables are read."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from persistq.errors import QueueError

DEFAULT_URL = "sqlite:///data/queue.db"
SQLITE_PREFIX = "sqlite:///"
#: The REST API's bearer tokens, comma-separated: several are valid at once, for rotation.
API_TOKEN_ENV = "PERSISTQ_API_TOKEN"
#: The demo files' directory: `produce` writes there, `stamp_file` touches nothing outside it,
#: `purge --delete-files` deletes nothing outside it. Relative to the current directory (the
#: home under `persistq up`, which also sets PERSISTQ_FILES_DIR for every program it starts).
DEFAULT_FILES_DIR = "data/files"
#: The directory holding data/ and logs/: relative paths (the default database
#: ``data/queue.db``, the files directory) are under it. Unset: the current directory.
HOME_ENV = "PERSISTQ_HOME"
#: /metrics' histogram bounds (seconds): fine from 50 ms to an hour, and every 2.5 s around
#: the demo's 7-15 s jobs, so an interpolated p95 lands within a bucket's width of the truth.
DEFAULT_METRICS_BUCKETS = (
    0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 12.5, 15, 20, 30, 45, 60, 90, 120, 300, 600,
    900, 1800, 3600,
)  # fmt: skip


def buckets(text: str) -> tuple[float, ...]:
    """``"0.1, 1, 10"`` -> ``(0.1, 1.0, 10.0)``: positive, finite, increasing seconds."""
    bounds = tuple(float(part) for part in text.split(","))
    if not all(0 < b < float("inf") for b in bounds) or list(bounds) != sorted(set(bounds)):
        raise ValueError("bounds must be positive, finite and increasing")
    return bounds


@dataclass(frozen=True, slots=True)
class Settings:
    url: str = DEFAULT_URL
    lease_seconds: float = 300.0
    backoff_base_seconds: float = 2.0
    backoff_max_seconds: float = 300.0
    max_payload_bytes: int = 1024 * 1024
    #: How long a write waits for a busy SQLite file before giving up with StorageBusy.
    busy_timeout_seconds: float = 60.0
    #: Most write calls of one process committed together (group commit, backends/group.py:
    #: SQLite's transaction, PostgreSQL's enqueue or completion statement; 1: each call on its
    #: own, as ``?group_commit=off`` in the URL).
    group_commit_max: int = 64
    #: Most connections one process opens to PostgreSQL.
    pg_pool_size: int = 10
    #: The demo file task's simulated work, "min-max" seconds or one number.
    task_delay: str = "7-15"
    #: How long after its enqueue a job naming a task no worker knows is still released
    #: (a rolling deploy may bring the task); then it fails with "unknown task NAME".
    unknown_task_seconds: float = 3600.0
    #: The only directory the demo file task may stamp files in (see DEFAULT_FILES_DIR).
    files_dir: str = DEFAULT_FILES_DIR
    #: Workers not seen for this long are forgotten by the sweeper (a day: long past any
    #: heartbeat, still long enough to look into yesterday's crash).
    worker_retention_seconds: float = 86400.0
    #: Histogram bucket bounds of /metrics, seconds (PERSISTQ_METRICS_BUCKETS="0.1,1,10").
    metrics_buckets: tuple[float, ...] = DEFAULT_METRICS_BUCKETS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name, var, kind in _ENV:
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            try:
                values[name] = kind(raw)
            except ValueError:
                what = getattr(kind, "__name__", "value")
                raise QueueError(f"{var}={raw!r} is not a valid {what}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = replace(cls(), **values)
        home = env.get(HOME_ENV)
        if not home:  # relative paths stay relative to the current directory
            return settings
        # Every command and program of one home opens one database and one files directory,
        # wherever it is started from.
        base = home_dir(home)
        return replace(
            settings,
            url=url_under(base, settings.url),
            files_dir=str(under_home(settings.files_dir, env)),
        )


_ENV: tuple[tuple[str, str, Callable[[str], Any]], ...] = (
    ("url", "PERSISTQ_URL", str),
    ("lease_seconds", "PERSISTQ_LEASE_SECONDS", float),
    ("backoff_base_seconds", "PERSISTQ_BACKOFF_BASE_SECONDS", float),
    ("backoff_max_seconds", "PERSISTQ_BACKOFF_MAX_SECONDS", float),
    ("max_payload_bytes", "PERSISTQ_MAX_PAYLOAD_BYTES", int),
    ("busy_timeout_seconds", "PERSISTQ_BUSY_TIMEOUT_SECONDS", float),
    ("task_delay", "PERSISTQ_TASK_DELAY", str),
    ("files_dir", "PERSISTQ_FILES_DIR", str),
    ("pg_pool_size", "PERSISTQ_PG_POOL_SIZE", int),
    ("group_commit_max", "PERSISTQ_GROUP_COMMIT_MAX", int),
    ("worker_retention_seconds", "PERSISTQ_WORKER_RETENTION_SECONDS", float),
    ("unknown_task_seconds", "PERSISTQ_UNKNOWN_TASK_SECONDS", float),
    ("metrics_buckets", "PERSISTQ_METRICS_BUCKETS", buckets),
)


def split_sqlite_url(url: str) -> tuple[str, str] | None:
    """``sqlite:///path?options`` -> ``(path, options)`` (a path starting with ``/`` is
    absolute, else relative to the working directory); None for a URL of another kind."""
    if not url.startswith(SQLITE_PREFIX):
        return None
    path, _, options = url[len(SQLITE_PREFIX) :].partition("?")
    return path, options


def home_dir(home: str | Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The home, absolute: ``home`` if given, else PERSISTQ_HOME, else the current directory."""
    env = os.environ if env is None else env
    return Path(home or env.get(HOME_ENV) or Path.cwd()).resolve()


def under_home(path: str | Path, env: Mapping[str, str] | None = None) -> Path:
    """A relative path under PERSISTQ_HOME when it is set (else as it is); absolute stays."""
    env = os.environ if env is None else env
    home = env.get(HOME_ENV)
    return home_dir(home) / path if home else Path(path)


def url_under(home: Path, url: str) -> str:
    """A relative SQLite URL made absolute under ``home`` (any other URL as it is)."""
    sqlite = split_sqlite_url(url)
    if sqlite is None or sqlite[0].startswith("/"):
        return url
    path, options = sqlite
    return f"{SQLITE_PREFIX}{home / path}" + (f"?{options}" if options else "")


def api_tokens(value: str | None = None) -> list[str]:
    """The tokens in ``value`` (None: ``PERSISTQ_API_TOKEN``), ``"a, b"`` -> ``["a", "b"]``;
    blanks and surrounding spaces dropped."""
    text = os.environ.get(API_TOKEN_ENV) if value is None else value
    return [t.strip() for t in (text or "").split(",") if t.strip()]
