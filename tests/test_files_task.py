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
from persistq import Job, ManualClock, Queue, QueueError, State, Unrecoverable
from persistq.tasks import files
from persistq.tasks.files import make_random_file, stamp_file, stamps
from persistq.worker import Worker

STAMP = re.compile(r"^processed (\S+) job (\d+) fence (\d+)$")
ORIGINAL = "first line of the file\nsecond line\n"


@pytest.fixture(autouse=True)
def _no_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSISTQ_TASK_DELAY", "0")


@pytest.fixture(autouse=True)
def files_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The directory stamp_file is confined to (PERSISTQ_FILES_DIR)."""
    directory = tmp_path / "files"
    directory.mkdir()
    monkeypatch.setenv("PERSISTQ_FILES_DIR", str(directory))
    return directory


@pytest.fixture
def text_file(files_dir: Path) -> Path:
    path = files_dir / "a.txt"
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
    assert int(match.group(3)) == job.fence == 1
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


def test_a_stale_holders_stamp_is_refused_after_a_later_claim_stamped(
    queue: Queue, clock: ManualClock, text_file: Path, claim: Callable[[Path], Job]
) -> None:
    """The holder stalls past its lease; the job is claimed again (a larger fence) and
    stamped; the stale holder wakes and tries: refused, the file keeps the newer stamp."""
    stale = claim(text_file)
    clock.advance(31)
    assert queue.recover_stalled() == 1
    worker = Worker(queue=queue, handler=stamp_file, queues=["files"], worker_id="w-2")
    settled = worker.run_once()
    assert settled is not None and settled.status == State.COMPLETED
    assert (stale.fence, settled.fence) == (1, 2)
    stamped = text_file.read_text(encoding="utf-8")
    assert stamped.startswith("processed ") and stamped.split("\n", 1)[0].endswith(" fence 2")

    with pytest.raises(Unrecoverable, match=r"stale claim of job \d+ \(fence 1\).*fence 2"):
        stamp_file(stale)

    assert text_file.read_text(encoding="utf-8") == stamped
    assert stamps(text_file) == [stale.id]


def test_a_resubmitted_job_does_not_stamp_again_and_its_fence_still_grows(
    queue: Queue, text_file: Path, claim: Callable[[Path], Job]
) -> None:
    """Exactly once per job: a later claim (larger fence) finding the job's own older stamp,
    or one written before stamps carried a fence, writes nothing."""
    first = claim(text_file)
    stamp_file(first)
    queue.complete(first)
    queue.resubmit(first.id)
    worker = Worker(queue=queue, handler=stamp_file, queues=["files"], worker_id="w-2")
    settled = worker.run_once()
    assert settled is not None and settled.status == State.COMPLETED
    assert settled.fence == 2 and settled.result["stamped"] is False
    assert stamps(text_file) == [first.id]

    text_file.write_text(f"processed 2020-01-01T00:00:00+00:00 job {first.id}\n{ORIGINAL}")
    assert stamp_file(settled)["stamped"] is False


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


# -- confinement to the files directory ----------------------------------------------------------
# Each case runs the real task through a real worker on a real queue, as a consumer does: the job
# must end FAILED after one attempt (Unrecoverable: no retries), and nothing outside is touched.

OUTSIDE = "a file the task must never touch\n"


def run_stamp_job(queue: Queue, path: str) -> Job:
    """Enqueue ``{"path": path}`` on queue files and let a real worker settle it."""
    job = queue.enqueue({"path": path}, queue="files", max_attempts=3)
    worker = Worker(queue=queue, handler=stamp_file, queues=["files"], worker_id="w-1")
    settled = worker.run_once()
    assert settled is not None and settled.id == job.id
    return queue.get(job.id)


def assert_refused(job: Job, reason: str) -> None:
    assert (job.status, job.attempts) == (State.FAILED, 1), (job.status, job.last_error)
    assert job.last_error is not None
    assert "Unrecoverable" in job.last_error and reason in job.last_error, job.last_error


@pytest.fixture
def outside_file(tmp_path: Path) -> Path:
    """A file beside (not inside) the files directory, like /etc/... owned by root."""
    path = tmp_path / "outside.txt"
    path.write_text(OUTSIDE, encoding="utf-8")
    return path


def test_an_absolute_path_outside_the_files_directory_is_refused(
    queue: Queue, outside_file: Path
) -> None:
    job = run_stamp_job(queue, str(outside_file))
    assert_refused(job, "outside the files directory")
    assert outside_file.read_text(encoding="utf-8") == OUTSIDE


@pytest.mark.parametrize("escape", ["{files}/../outside.txt", "{files}/sub/../../outside.txt"])
def test_a_dot_dot_escape_from_the_files_directory_is_refused(
    queue: Queue, files_dir: Path, outside_file: Path, escape: str
) -> None:
    (files_dir / "sub").mkdir()
    job = run_stamp_job(queue, escape.format(files=files_dir))
    assert_refused(job, "..")
    assert outside_file.read_text(encoding="utf-8") == OUTSIDE


def test_a_symlink_to_a_file_outside_is_refused_and_stays_a_symlink(
    queue: Queue, files_dir: Path, outside_file: Path
) -> None:
    link = files_dir / "link.txt"
    link.symlink_to(outside_file)
    job = run_stamp_job(queue, str(link))
    assert_refused(job, "symlink")
    assert link.is_symlink() and link.readlink() == outside_file
    assert outside_file.read_text(encoding="utf-8") == OUTSIDE


@pytest.mark.parametrize("target", ["outside", "inside"])
def test_a_symlinked_directory_component_is_refused_wherever_it_points(
    queue: Queue, files_dir: Path, tmp_path: Path, target: str
) -> None:
    real = tmp_path / "elsewhere" if target == "outside" else files_dir / "real"
    real.mkdir()
    (real / "a.txt").write_text(OUTSIDE, encoding="utf-8")
    (files_dir / "sub").symlink_to(real, target_is_directory=True)
    job = run_stamp_job(queue, str(files_dir / "sub" / "a.txt"))
    assert_refused(job, "symlink")
    assert (real / "a.txt").read_text(encoding="utf-8") == OUTSIDE


@pytest.mark.parametrize("mode", [0o755, 0o600, 0o664], ids=oct)
def test_a_stamped_file_keeps_its_mode_and_owner(
    queue: Queue, text_file: Path, mode: int, open_umask: None
) -> None:
    text_file.chmod(mode)
    before = text_file.stat()
    job = run_stamp_job(queue, str(text_file))
    assert job.status == State.COMPLETED, job.last_error
    after = text_file.stat()
    assert oct(stat.S_IMODE(after.st_mode)) == oct(mode)
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    assert stamps(text_file) == [job.id]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root may give a file to another owner")
def test_as_root_a_stamped_file_keeps_another_users_owner_and_group(
    queue: Queue, text_file: Path
) -> None:
    os.chown(text_file, 12345, 23456)
    text_file.chmod(0o4750)  # set-uid survives too: chown (which clears it) runs first
    job = run_stamp_job(queue, str(text_file))
    assert job.status == State.COMPLETED, job.last_error
    after = text_file.stat()
    assert (after.st_uid, after.st_gid, oct(stat.S_IMODE(after.st_mode))) == (
        12345,
        23456,
        oct(0o4750),
    )


def test_a_missing_file_fails_the_job_at_once(queue: Queue, files_dir: Path) -> None:
    job = run_stamp_job(queue, str(files_dir / "gone.txt"))
    assert_refused(job, "no such file")
    assert list(files_dir.iterdir()) == []


def test_a_directory_or_a_fifo_is_not_a_file_to_stamp(queue: Queue, files_dir: Path) -> None:
    """A FIFO would block the consumer forever on open; a directory cannot be stamped."""
    (files_dir / "dir").mkdir()
    os.mkfifo(files_dir / "pipe")
    for name in ("dir", "pipe"):
        assert_refused(run_stamp_job(queue, str(files_dir / name)), "not a regular file")
    assert_refused(run_stamp_job(queue, str(files_dir)), "not a regular file")


def test_a_file_that_is_not_utf_8_text_fails_the_job_at_once(queue: Queue, files_dir: Path) -> None:
    (files_dir / "binary.txt").write_bytes(b"\xff\xfe not text\n")
    assert_refused(run_stamp_job(queue, str(files_dir / "binary.txt")), "not UTF-8 text")
    assert (files_dir / "binary.txt").read_bytes() == b"\xff\xfe not text\n"


def test_a_file_with_a_second_hard_link_is_refused(
    queue: Queue, files_dir: Path, outside_file: Path
) -> None:
    """A hard link would let the task copy a file it may read (as root) into the directory."""
    os.link(outside_file, files_dir / "hard.txt")
    job = run_stamp_job(queue, str(files_dir / "hard.txt"))
    assert_refused(job, "hard link")
    assert (files_dir / "hard.txt").read_text(encoding="utf-8") == OUTSIDE


def test_a_relative_path_and_the_default_directory_resolve_against_the_current_directory(
    queue: Queue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No PERSISTQ_FILES_DIR: data/files under the current directory (the home under `up`)."""
    monkeypatch.delenv("PERSISTQ_FILES_DIR")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "files").mkdir(parents=True)
    (tmp_path / "data" / "files" / "r.txt").write_text(ORIGINAL, encoding="utf-8")
    job = run_stamp_job(queue, "data/files/r.txt")
    assert job.status == State.COMPLETED, job.last_error
    assert stamps(tmp_path / "data" / "files" / "r.txt") == [job.id]
    assert_refused(run_stamp_job(queue, "files/a.txt"), "outside the files directory")


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


def test_make_random_file_never_repeats_a_name(files_dir: Path) -> None:
    paths = {make_random_file(files_dir) for _ in range(50)}
    assert len(paths) == 50
    assert sorted(files_dir.iterdir()) == sorted(paths)


def test_a_stamped_file_keeps_no_world_permissions(
    files_dir: Path, claim: Callable[[Path], Job], open_umask: None
) -> None:
    path = make_random_file(files_dir)
    stamp_file(claim(path))
    assert stat.S_IMODE(path.stat().st_mode) & 0o007 == 0


def test_make_random_file_leaves_nothing_when_the_write_fails(
    files_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Atomic: the file appears whole (by rename) or not at all, and no temp file stays."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", refuse)
    with pytest.raises(OSError, match="No space"):
        make_random_file(files_dir)
    assert list(files_dir.iterdir()) == []


def test_stamp_file_leaves_the_file_whole_when_the_write_fails(
    text_file: Path, claim: Callable[[Path], Job], monkeypatch: pytest.MonkeyPatch
) -> None:
    job = claim(text_file)

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", refuse)
    with pytest.raises(OSError, match="No space"):
        stamp_file(job)
    assert text_file.read_text(encoding="utf-8") == ORIGINAL
    assert list(text_file.parent.iterdir()) == [text_file]


# -- the producer command -------------------------------------------------------------------------


def test_produce_count_3_enqueues_three_jobs_whose_files_exist_and_stamp_once(
    backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "produced"
    monkeypatch.setenv("PERSISTQ_FILES_DIR", str(directory))  # the in-process worker below
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
        assert all(set(job.payload) == {"task", "args", "kwargs"} for job in jobs)
        assert {job.payload["task"] for job in jobs} == {"stamp_file"}
        paths = {Path(job.payload["args"][0]) for job in jobs}
        assert len(paths) == 3
        assert all(p.parent == directory and p.is_file() and p.stat().st_size > 0 for p in paths)
        assert sorted(directory.iterdir()) == sorted(paths)

        files.app.reconnect(backend_url)  # what `worker --app persistq.tasks.files:app` runs
        try:
            assert files.app.drain() == 3
        finally:
            files.app.reconnect(None)
        for job in jobs:
            done = q.get(job.id)
            assert done.status == State.COMPLETED and done.result["fence"] == 1
            assert stamps(Path(job.payload["args"][0])) == [job.id]


# -- the task (worker --app persistq.tasks.files:app) ---------------------------------------------


def test_the_stamp_file_task_reads_its_job_id_and_fence_from_current_job(
    backend_url: str, text_file: Path
) -> None:
    seen: list[tuple[int, int]] = []
    with persistq.App(backend_url) as app:

        @app.task("spy", queue="files")
        def spy(path: str) -> dict[str, object]:
            job = persistq.current_job()
            seen.append((job.id, job.fence))
            return files.stamp(job, path)

        first = app.queue.enqueue(files.stamp_payload(text_file), queue="files")
        assert first.payload == {"task": "stamp_file", "args": [str(text_file)], "kwargs": {}}
        files.app.reconnect(backend_url)
        try:
            assert files.app.drain() == 1
        finally:
            files.app.reconnect(None)
        second = spy.delay(str(text_file))
        assert app.drain() == 1
    assert seen == [(second.id, 1)]
    assert stamps(text_file) == [second.id, first.id]
    assert STAMP.match(text_file.read_text().splitlines()[1])


def test_current_job_outside_a_task_is_a_lookup_error() -> None:
    with pytest.raises(LookupError, match="outside a task"):
        persistq.current_job()


def test_the_plain_handler_also_stamps_a_stamp_file_task_payload(
    queue: Queue, text_file: Path
) -> None:
    job = queue.enqueue(files.stamp_payload(text_file), queue="files")
    worker = Worker(queue=queue, handler="persistq.tasks.files:stamp_file", queues=["files"])
    settled = worker.run_once()
    assert settled is not None and settled.status == State.COMPLETED
    assert stamps(text_file) == [job.id]
    bad = queue.enqueue({"task": "stamp_file", "args": []}, queue="files")
    assert worker.run_once().status == State.FAILED  # type: ignore[union-attr]
    assert "takes one path" in (queue.get(bad.id).last_error or "")
