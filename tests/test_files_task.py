"""The demo file task: ``stamp_file`` (idempotent by job id), ``make_random_file``, ``produce``.

Jobs are real: enqueued and claimed on a real database file, so the stamp names a real id.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import persistq
from persistq import Job, ManualClock, Queue, QueueError, State
from persistq.tasks import files
from persistq.tasks.files import make_random_file, stamp_file, stamps
from persistq.worker import Worker

STAMP = re.compile(r"^processed (\S+) job (\d+)$")
ORIGINAL = "first line of the file\nsecond line\n"


@pytest.fixture(autouse=True)
def _no_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSISTQ_TASK_DELAY", "0")


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "files" / "a.txt"
    path.parent.mkdir()
    path.write_text(ORIGINAL, encoding="utf-8")
    return path


@pytest.fixture
def claim(queue: Queue) -> Callable[[Path], Job]:
    """Enqueue ``{"path": file}`` and claim it: a job as a worker's handler receives it."""

    def make(path: Path) -> Job:
        queue.enqueue({"path": str(path)}, queue="files")
        job = queue.claim(queue="files", worker="w")
        assert job is not None
        return job

    return make


# -- stamp_file -----------------------------------------------------------------------------------


def test_stamp_file_prepends_one_utc_iso_8601_line_naming_the_job(
    text_file: Path, claim: Callable[[Path], Job]
) -> None:
    job = claim(text_file)
    before = datetime.now(UTC)

    result = stamp_file(job)

    after = datetime.now(UTC)
    first, rest = text_file.read_text(encoding="utf-8").split("\n", 1)
    assert rest == ORIGINAL
    match = STAMP.match(first)
    assert match is not None, first
    at = datetime.fromisoformat(match.group(1))
    assert at.utcoffset() is not None and at.utcoffset().total_seconds() == 0
    assert before <= at <= after
    assert int(match.group(2)) == job.id
    assert stamps(text_file) == [job.id]
    assert result["stamped"] is True and result["path"] == str(text_file)


def test_the_same_job_run_twice_stamps_the_file_once(
    text_file: Path, claim: Callable[[Path], Job]
) -> None:
    job = claim(text_file)
    stamp_file(job)
    stamped_once = text_file.read_text(encoding="utf-8")

    again = stamp_file(job)

    assert again["stamped"] is False
    assert text_file.read_text(encoding="utf-8") == stamped_once
    assert stamps(text_file) == [job.id]


def test_a_job_whose_worker_crashed_after_stamping_is_completed_without_a_second_stamp(
    queue: Queue, clock: ManualClock, text_file: Path, claim: Callable[[Path], Job]
) -> None:
    """The crash lands after the write and before ``complete``: the retry must not stamp again."""
    job = claim(text_file)
    stamp_file(job)  # ... and the worker dies here
    clock.advance(31)
    assert queue.recover_stalled() == 1

    worker = Worker(queue=queue, handler=stamp_file, queues=["files"], worker_id="w-2")
    settled = worker.run_once()

    assert settled is not None and settled.status == State.COMPLETED
    assert settled.attempts == 2
    assert settled.result["stamped"] is False
    assert stamps(text_file) == [job.id]
    assert text_file.read_text(encoding="utf-8").split("\n", 1)[1] == ORIGINAL


def test_two_jobs_on_the_same_file_stamp_it_once_each(
    queue: Queue, text_file: Path, claim: Callable[[Path], Job]
) -> None:
    first = claim(text_file)
    stamp_file(first)
    queue.complete(first)
    second = claim(text_file)
    stamp_file(second)
    stamp_file(second)
    stamp_file(first)  # an old job run again, with a newer stamp above its own

    assert stamps(text_file) == [second.id, first.id]
    lines = text_file.read_text(encoding="utf-8").splitlines()
    assert [STAMP.match(line) is not None for line in lines] == [True, True, False, False]


def test_a_file_whose_text_contains_stamp_like_lines_is_still_stamped(
    text_file: Path, claim: Callable[[Path], Job]
) -> None:
    """Only the stamps at the top count: the file's own text cannot fake one."""
    job = claim(text_file)
    text_file.write_text(f"hello\nprocessed 2020-01-01T00:00:00+00:00 job {job.id}\n")
    assert stamp_file(job)["stamped"] is True
    assert stamps(text_file) == [job.id]


def test_the_task_delay_is_honoured(
    monkeypatch: pytest.MonkeyPatch, text_file: Path, claim: Callable[[Path], Job]
) -> None:
    monkeypatch.setenv("PERSISTQ_TASK_DELAY", "0.2-0.3")
    job = claim(text_file)
    started = time.monotonic()
    stamp_file(job)
    took = time.monotonic() - started
    assert 0.2 <= took < 2, took
    assert stamps(text_file) == [job.id]


@pytest.mark.parametrize("delay", ["abc", "5-3", "-1", "1-x", "1--2", "nan", "inf", "1-inf"])
def test_a_bad_task_delay_is_a_clear_error_and_touches_nothing(
    monkeypatch: pytest.MonkeyPatch, text_file: Path, claim: Callable[[Path], Job], delay: str
) -> None:
    monkeypatch.setenv("PERSISTQ_TASK_DELAY", delay)
    job = claim(text_file)
    started = time.monotonic()
    with pytest.raises(QueueError, match="PERSISTQ_TASK_DELAY"):
        stamp_file(job)
    assert time.monotonic() - started < 1
    assert text_file.read_text(encoding="utf-8") == ORIGINAL


# -- make_random_file -----------------------------------------------------------------------------


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Umask 0, so the file's own mode shows, not the one the umask leaves of it."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_make_random_file_writes_a_non_empty_text_file_for_owner_and_group_only(
    tmp_path: Path, open_umask: None
) -> None:
    directory = tmp_path / "new" / "files"
    path = make_random_file(directory)

    assert path.parent == directory
    assert path.is_file()
    text = path.read_text(encoding="utf-8")
    assert text.strip() and text.endswith("\n")
    assert not text.startswith("processed ")
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode & 0o007 == 0, oct(mode)
    assert mode & 0o600 == 0o600, oct(mode)
    assert list(directory.iterdir()) == [path]  # no temp file left behind


def test_make_random_file_never_repeats_a_name(tmp_path: Path) -> None:
    paths = {make_random_file(tmp_path) for _ in range(50)}
    assert len(paths) == 50
    assert sorted(tmp_path.iterdir()) == sorted(paths)


def test_a_stamped_file_keeps_no_world_permissions(
    tmp_path: Path, claim: Callable[[Path], Job], open_umask: None
) -> None:
    path = make_random_file(tmp_path)
    stamp_file(claim(path))
    assert stat.S_IMODE(path.stat().st_mode) & 0o007 == 0


def test_make_random_file_leaves_nothing_when_the_write_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Atomic: the file appears whole (by rename) or not at all, and no temp file stays."""

    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", refuse)
    with pytest.raises(OSError, match="No space"):
        make_random_file(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_stamp_file_leaves_the_file_whole_when_the_write_fails(
    text_file: Path, claim: Callable[[Path], Job], monkeypatch: pytest.MonkeyPatch
) -> None:
    job = claim(text_file)

    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", refuse)
    with pytest.raises(OSError, match="No space"):
        stamp_file(job)
    assert text_file.read_text(encoding="utf-8") == ORIGINAL
    assert list(text_file.parent.iterdir()) == [text_file]


# -- the producer command -------------------------------------------------------------------------


def test_produce_count_3_enqueues_three_jobs_whose_files_exist_and_stamp_once(
    backend_url: str, tmp_path: Path
) -> None:
    directory = tmp_path / "produced"
    persistq.connect(backend_url).close()  # `persistq init`: produce needs a database
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSISTQ_")}
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "persistq", "--url", backend_url, "produce"),
            *("--count", "3", "--every", "0", "--dir", str(directory)),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout

    with persistq.connect(backend_url, lease=30) as q:
        jobs = q.jobs(queue="files")
        assert len(jobs) == 3
        paths = {Path(job.payload["path"]) for job in jobs}
        assert len(paths) == 3
        assert all(p.parent == directory and p.is_file() and p.stat().st_size > 0 for p in paths)
        assert sorted(directory.iterdir()) == sorted(paths)

        worker = Worker(queue=q, handler="persistq.tasks.files:stamp_file", queues=["files"])
        for _ in range(3):
            settled = worker.run_once()
            assert settled is not None and settled.status == State.COMPLETED
        for job in jobs:
            assert stamps(Path(job.payload["path"])) == [job.id]
