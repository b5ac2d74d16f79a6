"""The demo file task: a producer writes random text files, consumers stamp them.

``stamp_file`` is idempotent by job id: the stamp line names the job, and a run that finds
its own stamp already there writes nothing. So a job run twice (its consumer crashed after
writing but before completing) stamps the file exactly once. The line also carries the
claim's fence, so a stale holder (a claim older than the one that stamped) is refused.

Two ways to run it: as the task ``stamp_file`` of :data:`app` (``persistq worker --app
persistq.tasks.files:app``; payload ``{"task": "stamp_file", "args": [path]}``, what the demo
producer enqueues; the task reads its job id and fence from ``persistq.current_job()``), or
as the plain handler :func:`stamp_file` (``--handler persistq.tasks.files:stamp_file``;
payload ``{"path": path}``). Both stamp the same way.

It is confined to the files directory (``PERSISTQ_FILES_DIR``, default ``data/files`` under
the current directory): a payload naming anything else, a ``..``, a symlink (the file or any
directory below the files directory), a hard-linked file or anything but a regular file fails
the job as ``Unrecoverable``. Directories are opened one at a time relative to their parent
with ``O_NOFOLLOW``, so a symlink swapped in while the task runs is refused too. The new file
keeps the old one's mode and, where the process may set it, its owner and group.
"""

from __future__ import annotations

import errno
import fcntl
import math
import os
import random
import re
import secrets
import stat
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import Any

from persistq.app import App
from persistq.config import Settings
from persistq.dispatch import current_job, task_payload
from persistq.errors import QueueError, Unrecoverable
from persistq.model import JSON, Job

#: The demo's task, on the demo's queue.
STAMP_TASK = "stamp_file"
FILES_QUEUE = "files"
STAMP_PREFIX = "processed "
#: ``processed <ISO-8601 UTC> job <id> fence <n>``; stamps written before fences have none.
STAMP_LINE = re.compile(r"^processed (\S+) job (\d+)(?: fence (\d+))?$")
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO someone put there must not hang the consumer.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
WORDS = [
    "queue",
    "lease",
    "worker",
    "job",
    "retry",
    "durable",
    "commit",
    "crash",
    "sweep",
    "heartbeat",
    "payload",
    "producer",
    "consumer",
    "ledger",
    "batch",
    "signal",
    "token",
    "event",
    "backoff",
]


def parse_delay(text: str) -> tuple[float, float]:
    """``"7-15"`` -> (7, 15); ``"0"`` -> (0, 0)."""
    low, _, high = text.partition("-")
    try:
        bounds = (float(low), float(high or low))
    except ValueError:
        raise QueueError(
            f"PERSISTQ_TASK_DELAY={text!r}: use min-max seconds, e.g. 7-15, or 0"
        ) from None
    if not 0 <= bounds[0] <= bounds[1] < math.inf:
        raise QueueError(f"PERSISTQ_TASK_DELAY={text!r}: need 0 <= min <= max")
    return bounds


#: The demo's app: ``persistq worker --app persistq.tasks.files:app`` (queue ``files``).
app = App()


@app.task(STAMP_TASK, queue=FILES_QUEUE)
def stamp_file_task(path: str) -> dict[str, Any]:
    """The task ``stamp_file``: stamp ``path`` for the job running it."""
    if not isinstance(path, str):
        raise Unrecoverable(f"stamp_file takes a path (a string), got {path!r}")
    return stamp(current_job(), path)


def stamp_payload(path: Path | str) -> dict[str, Any]:
    """What the demo producer enqueues for one file: the ``stamp_file`` task's payload."""
    return task_payload(STAMP_TASK, [str(path)])


def stamp_file(job: Job) -> dict[str, Any]:
    """The plain handler: stamp the file of a ``{"path": ...}`` payload (or of a
    ``stamp_file`` task payload)."""
    return stamp(job, payload_path(job.payload))


def stamp(job: Job, path_text: str) -> dict[str, Any]:
    """Wait the task delay, then prepend ``processed <ISO-8601 UTC> job <id> fence <n>`` once
    per job, to a regular file inside the files directory only."""
    settings = Settings.from_env()
    root = files_directory(settings.files_dir)
    parts = confined_parts(checked_path(path_text), root, settings.files_dir)
    low, high = parse_delay(settings.task_delay)
    time.sleep(random.uniform(low, high))
    path = root.joinpath(*parts)
    with ExitStack() as stack:
        directory = stack.enter_context(_open_directory(root, parts[:-1]))
        fcntl.flock(directory, fcntl.LOCK_EX)  # one stamper per directory; dropped on close
        fd = _open_file(directory, parts[-1], path)
        handle = stack.enter_context(os.fdopen(fd, "r", encoding="utf-8"))
        info = os.fstat(fd)
        try:
            text = handle.read()
        except UnicodeDecodeError as exc:  # rerunning cannot make it text
            raise Unrecoverable(f"{path}: not UTF-8 text ({exc.reason})") from None
        fences = [s.fence for s in parse_stamps(text) if s.job_id == job.id]
        if fences:
            newest = max((f for f in fences if f is not None), default=None)
            if newest is not None and newest > job.fence:
                raise Unrecoverable(
                    f"{path}: stale claim of job {job.id} (fence {job.fence}): a later claim "
                    f"(fence {newest}) already stamped it"
                )
            return {"path": str(path), "stamped": False, "reason": "already stamped by this job"}
        at = datetime.now(UTC).isoformat()
        line = f"{STAMP_PREFIX}{at} job {job.id} fence {job.fence}\n"
        _replace(directory, parts[-1], line + text, keep=info)
    return {"path": str(path), "stamped": True, "at": at, "fence": job.fence}


@dataclass(frozen=True, slots=True)
class Stamp:
    job_id: int
    fence: int | None  # None: written before stamps carried a fence


def parse_stamps(text: str) -> list[Stamp]:
    """The stamps at the top of ``text``, newest first (the file's own text starts after)."""
    found = []
    for line in text.splitlines():
        match = STAMP_LINE.match(line)
        if match is None:
            break
        found.append(Stamp(int(match[2]), None if match[3] is None else int(match[3])))
    return found


def already_stamped(text: str, job_id: int) -> bool:
    return any(s.job_id == job_id for s in parse_stamps(text))


def stamps(path: Path) -> list[int]:
    """The job ids stamped on a file, newest first."""
    return [s.job_id for s in parse_stamps(path.read_text(encoding="utf-8"))]


def files_directory(configured: str) -> Path:
    """The files directory, resolved (the operator's own symlinks up to it are followed)."""
    return Path(configured).resolve()


def names_file(payload: JSON) -> bool:
    """Whether a payload is a demo file job: ``{"path": ...}`` or a ``stamp_file`` task."""
    return isinstance(payload, dict) and ("path" in payload or payload.get("task") == STAMP_TASK)


def payload_path(payload: JSON) -> str:
    """The file a demo job names: the ``"path"`` of a plain payload, or the argument of a
    ``stamp_file`` task payload; Unrecoverable when it cannot name a file at all."""
    if isinstance(payload, dict) and payload.get("task") == STAMP_TASK:
        args = payload.get("args")
        if isinstance(args, list) and len(args) == 1 and isinstance(args[0], str):
            return checked_path(args[0])
        raise Unrecoverable(f"a stamp_file task takes one path, got args {args!r}")
    if not isinstance(payload, dict) or not isinstance(payload.get("path"), str):
        raise Unrecoverable(f'payload must be {{"path": "<file>"}}, got {payload!r}')
    return checked_path(payload["path"])


def checked_path(text: str) -> str:
    """``text`` when it can name a file (not empty, no NUL byte); else Unrecoverable."""
    if not text or "\0" in text:
        raise Unrecoverable(f"path {text!r} is not a usable path (empty or a NUL byte)")
    return text


def confined_parts(text: str, root: Path, configured: str) -> tuple[str, ...]:
    """The names leading from ``root`` to the file ``text`` names (relative to the current
    directory when not absolute); Unrecoverable for ``..`` or anything outside ``root``."""
    given = PurePath(text)
    if ".." in given.parts:
        raise Unrecoverable(f"{text}: '..' is not allowed in a file task's path")
    absolute = Path(os.path.abspath(given))
    # The payload may name the directory as configured or as resolved (e.g. via /tmp -> ...).
    for base in (root, Path(os.path.abspath(configured))):
        if absolute.is_relative_to(base):
            parts = absolute.relative_to(base).parts
            if not parts:
                raise Unrecoverable(f"{text}: not a regular file (it is the files directory)")
            return parts
    raise Unrecoverable(f"{text}: outside the files directory {root}")


@contextmanager
def _open_directory(root: Path, names: tuple[str, ...]) -> Iterator[int]:
    """A descriptor of ``root/names...``, each step opened without following a symlink."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise Unrecoverable(f"the files directory {root} does not exist") from None
    try:
        for depth, name in enumerate(names):
            try:
                child = os.open(name, _DIRECTORY_FLAGS, dir_fd=fd)
            except OSError as exc:
                where = root.joinpath(*names[: depth + 1])
                raise _refusal(fd, name, where, exc, want="a directory") from None
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _open_file(directory: int, name: str, path: Path) -> int:
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=directory)
    except OSError as exc:
        raise _refusal(directory, name, path, exc, want="a regular file") from None
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = "not a regular file"
    elif info.st_nlink > 1:  # its other name may be outside: never copy what that one holds
        problem = f"has {info.st_nlink} hard links; a file task stamps only singly linked files"
    if problem:
        os.close(fd)
        raise Unrecoverable(f"{path}: {problem}")
    os.set_blocking(fd, True)
    return fd


def _refusal(directory: int, name: str, path: Path, exc: OSError, *, want: str) -> Unrecoverable:
    """Say why ``name`` could not be opened: a symlink, missing, or not ``want``."""
    try:
        mode = os.lstat(name, dir_fd=directory).st_mode
    except FileNotFoundError:
        return Unrecoverable(f"{path}: no such file")
    except OSError:
        mode = None
    if mode is not None and stat.S_ISLNK(mode):
        return Unrecoverable(f"{path}: is a symlink; a file task follows none")
    if exc.errno in (errno.ENOTDIR, errno.ELOOP):
        return Unrecoverable(f"{path}: not {want}")
    return Unrecoverable(f"{path}: cannot open ({exc.strerror})")


def make_random_file(directory: Path) -> Path:
    """Write a small random text file atomically (a consumer never sees half of it)."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = directory / f"{stamp}-{secrets.token_hex(4)}.txt"
    lines = [" ".join(random.choices(WORDS, k=8)) for _ in range(random.randint(3, 8))]
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _replace(fd, path.name, "\n".join(lines) + "\n")
    finally:
        os.close(fd)
    return path


def _replace(directory: int, name: str, text: str, *, keep: os.stat_result | None = None) -> None:
    """Write ``text`` to ``name`` in ``directory`` atomically and durably (temp file, fsync,
    rename). ``keep``: the replaced file's status, whose mode (and owner, where this process
    may set it) the new file takes; else the new file is created 0640 less the umask."""
    temp = f".{name}.{secrets.token_hex(4)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temp, flags, 0o600 if keep is not None else 0o640, dir_fd=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            if keep is not None:
                _take_owner_and_mode(handle.fileno(), keep)
            os.fsync(handle.fileno())
        os.replace(temp, name, src_dir_fd=directory, dst_dir_fd=directory)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=directory)
        raise
    os.fsync(directory)


def _take_owner_and_mode(fd: int, keep: os.stat_result) -> None:
    # Owner first: chown clears set-id bits, the chmod after it restores them.
    for uid in (keep.st_uid, -1):  # as root both; else the group, when we are in it
        try:
            os.fchown(fd, uid, keep.st_gid)
            break
        except PermissionError:
            continue
    os.fchmod(fd, stat.S_IMODE(keep.st_mode))
