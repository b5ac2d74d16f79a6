"""Storage faults: full disk, damaged files, unwritable files, unusable paths (SPEC guarantee 1).

Every test here is SQLite-specific: it breaks the database *file* (fills its file system,
overwrites its pages, makes it or its directory unwritable), which has no counterpart for
a PostgreSQL URL. Faults are real: a tmpfs mounted small, bytes written over the file,
``chattr +i`` (root ignores permission bits, not the immutable flag), a read-only bind
mount. Whatever cannot be set up on this machine is skipped with the reason.
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import persistq
from fast_storage import DISK_TMPDIR
from persistq import (
    Job,
    JobNotFound,
    Queue,
    QueueError,
    State,
    StorageCorrupt,
    StorageError,
    StorageFull,
    StorageUnavailable,
)

PAD = "x" * 1000  # a payload of about 1 KiB, so the disk fills in a few dozen jobs


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:  # the tool itself is missing
        return subprocess.CompletedProcess(command, 127, "", str(exc))


def _mount(*args: str) -> None:
    """Run ``mount``, or skip the test with mount's own reason (not root, no CAP_SYS_ADMIN)."""
    done = _run("mount", *args)
    if done.returncode != 0:
        pytest.skip(f"cannot run `mount {' '.join(args)}`: {done.stderr.strip()}")


def _unmount(path: Path) -> None:
    if _run("umount", str(path)).returncode != 0:
        _run("umount", "--lazy", str(path))


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


def _job_ids(queue: Queue) -> set[int]:
    return {job.id for job in queue.jobs(limit=10_000)}


def _count_rows(queue: Queue, table: str) -> int:
    """Rows of a table, read with a separate read-only connection (orphans have no API)."""
    path = queue.url.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        (count,) = db.execute(f"SELECT count(*) FROM {table}").fetchone()
    db.close()
    return int(count)


# -- a full disk ----------------------------------------------------------------------------------


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """On the disk, not on the RAM file system of the other tests (fast_storage): there an
    immutable file still takes writes through a descriptor opened before."""
    with tempfile.TemporaryDirectory(dir=DISK_TMPDIR, prefix="persistq-faults-") as path:
        yield Path(path)


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs of our own, so the disk can really fill up (ENOSPC)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    _mount("-t", "tmpfs", "-o", "size=1024k,mode=0755", "tmpfs", str(mount_point))
    yield mount_point
    _unmount(mount_point)


@pytest.fixture
def full_queue(tiny_fs: Path) -> Iterator[tuple[Queue, list[int], Path]]:
    """A queue on ``tiny_fs`` enqueued into until the disk is full.

    Yields the queue, the ids of every acknowledged enqueue, and the filler file whose
    deletion frees space. Filled first by ``enqueue_many`` batches, then by single enqueues,
    so both calls meet the full disk.
    """
    queue = persistq.connect(_url(tiny_fs / "queue.db"))
    stats = os.statvfs(tiny_fs)
    filler = tiny_fs / "filler"
    filler.write_bytes(b"\0" * (stats.f_bavail * stats.f_frsize - 512 * 1024))
    in_batches, batch_error = _enqueue_until_full(lambda: queue.enqueue_many([{"pad": PAD}] * 5))
    one_by_one, single_error = _enqueue_until_full(lambda: [queue.enqueue(PAD)])
    for error in (batch_error, single_error):
        _assert_names_cause(error, tiny_fs / "queue.db", "full")
    acknowledged = in_batches + one_by_one
    assert len(acknowledged) >= 10, "the disk filled before the test could enqueue anything"
    yield queue, acknowledged, filler
    queue.close()


def _enqueue_until_full(enqueue: Callable[[], list[Job]]) -> tuple[list[int], StorageFull]:
    """Call ``enqueue`` until the disk is full: the ids it acknowledged, and the error."""
    acknowledged: list[int] = []
    for _ in range(1000):
        try:
            acknowledged += [job.id for job in enqueue()]
        except StorageFull as exc:
            return acknowledged, exc
    raise AssertionError("the disk never filled up")


def _assert_names_cause(error: QueueError, path: Path, *words: str) -> None:
    message = str(error)
    assert str(path) in message, message
    for word in words:
        assert word in message.lower(), message


def test_enqueue_on_a_full_disk_raises_storage_full_and_keeps_every_acknowledged_job(
    full_queue: tuple[Queue, list[int], Path],
) -> None:
    queue, acknowledged, _ = full_queue
    assert _job_ids(queue) == set(acknowledged)
    for job_id in acknowledged:
        assert queue.get(job_id).status == State.PENDING
        assert [event.kind for event in queue.events(job_id)] == ["enqueued"]
    with pytest.raises(JobNotFound):
        queue.get(max(acknowledged) + 1)  # nothing of the refused calls was written

    with pytest.raises(StorageFull):
        queue.enqueue_many([{"pad": PAD}] * 100)
    assert _job_ids(queue) == set(acknowledged), "a refused batch was stored in part"
    assert queue.stats()["queues"]["default"]["PENDING"] == len(acknowledged)
    # An enqueue stores no event (its `enqueued` is derived from the row): any is a leftover.
    assert _count_rows(queue, "events") == 0, "events of refused jobs were kept"
    report = queue.check(full=True)
    assert report["ok"], report


def test_a_full_disk_queue_works_again_once_space_is_freed(
    full_queue: tuple[Queue, list[int], Path],
) -> None:
    queue, acknowledged, filler = full_queue
    filler.unlink()
    more = [queue.enqueue(PAD).id] + [job.id for job in queue.enqueue_many([PAD] * 50)]
    job = queue.claim(worker="w")
    assert job is not None
    queue.complete(job, "done")
    with persistq.connect(queue.url) as reopened:
        assert _job_ids(reopened) == set(acknowledged) | set(more)
        assert reopened.get(job.id).status == State.COMPLETED
        report = reopened.check(full=True)
        assert report["ok"], report


# -- a damaged file -------------------------------------------------------------------------------


def _damaged_database(tmp_path: Path) -> Path:
    """A real queue of 2000 jobs, closed (so the WAL is checkpointed into the file), then 16 KiB
    of random bytes written from offset 8192: pages 3-6, with today's schema the roots of the
    jobs table and of its first indexes. Page 1 (header and schema) is intact: it still opens."""
    path = tmp_path / "queue.db"
    with persistq.connect(_url(path)) as queue:
        queue.enqueue_many([{"n": n, "pad": PAD[:200]} for n in range(2000)])
        for _ in range(100):
            job = queue.claim(worker="w")
            assert job is not None
            queue.complete(job, "done")
    assert not Path(f"{path}-wal").exists(), "close did not checkpoint the WAL"
    with path.open("r+b") as file:
        file.seek(8192)
        file.write(random.Random(8192).randbytes(16 * 1024))
    return path


def test_damaged_pages_make_queue_operations_raise_storage_corrupt(tmp_path: Path) -> None:
    path = _damaged_database(tmp_path)
    with persistq.connect(_url(path)) as queue:
        operations: dict[str, Callable[[], object]] = {
            "jobs": lambda: queue.jobs(limit=10_000),
            "get": lambda: [queue.get(n) for n in range(1, 2001)],
            "enqueue": lambda: queue.enqueue("new"),
            "claim": lambda: queue.claim(worker="w"),
            "recover_stalled": queue.recover_stalled,
        }
        for name, operation in operations.items():
            try:
                operation()
            except StorageCorrupt as exc:
                _assert_names_cause(exc, path, "damaged")
            else:
                pytest.fail(f"{name} read damaged pages without raising StorageCorrupt")


def test_check_reports_damaged_pages_of_a_database_that_still_opens(tmp_path: Path) -> None:
    path = _damaged_database(tmp_path)
    with persistq.connect(_url(path)) as queue:
        report = queue.check(full=True)
    assert report["ok"] is False
    assert report["integrity"] != "ok"
    assert "page" in report["integrity"].lower(), report["integrity"]


@pytest.mark.parametrize(
    "content",
    [random.Random(0).randbytes(64 * 1024), b"id,payload\n1,hello\n" * 300],
    ids=["random-bytes", "a-text-file"],
)
def test_connect_to_a_file_that_is_not_a_database_raises_storage_corrupt(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "queue.db"
    path.write_bytes(content)
    with pytest.raises(StorageCorrupt) as raised:
        persistq.connect(_url(path))
    _assert_names_cause(raised.value, path, "not a database")
    assert path.read_bytes() == content, "connect wrote into a file that is not its own"


@pytest.mark.parametrize("table", ["users", "jobs"], ids=["other-tables", "a-clashing-jobs-table"])
def test_a_sqlite_database_of_another_application_is_refused_and_left_untouched(
    tmp_path: Path, table: str
) -> None:
    """``StorageCorrupt`` is documented as "damaged or not a persistq database": a database
    that holds tables but no persistq schema is someone else's, not an empty one to migrate."""
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.executescript(f"CREATE TABLE {table} (name TEXT); INSERT INTO {table} VALUES ('ada');")
    db.close()
    with pytest.raises(StorageCorrupt) as raised:
        persistq.connect(_url(path)).close()
    _assert_names_cause(raised.value, path)
    with sqlite3.connect(path) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    db.close()
    assert tables == {table}, f"persistq changed another application's database: {tables}"


def test_a_database_of_a_newer_schema_version_is_refused_at_connect(tmp_path: Path) -> None:
    """A file migrated by a newer persistq: this version must not run on a schema it does not
    know, and must say so when opening, not fail later with "no such table"."""
    path = tmp_path / "queue.db"
    with persistq.connect(_url(path)) as queue:
        latest = queue.check()["latest_schema_version"]
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {latest + 1}")
    db.close()
    with pytest.raises(StorageError, match=str(latest + 1)):
        persistq.connect(_url(path)).close()


# -- an unwritable file ---------------------------------------------------------------------------


@pytest.fixture
def make_immutable(tmp_path: Path) -> Iterator[Callable[..., None]]:
    """``chattr +i`` paths (which binds root too); undone at teardown so pytest can clean up."""
    changed: list[Path] = []

    def make(*paths: Path) -> None:
        done = _run("chattr", "+i", *map(str, paths))
        if done.returncode != 0:
            pytest.skip(f"cannot make files immutable here (chattr +i): {done.stderr.strip()}")
        changed.extend(paths)

    yield make
    if changed:
        _run("chattr", "-i", *map(str, changed))


def test_enqueue_on_a_read_only_database_file_raises_storage_unavailable(
    tmp_path: Path, make_immutable: Callable[..., None]
) -> None:
    path = tmp_path / "queue.db"
    with persistq.connect(_url(path)) as queue:
        before = [queue.enqueue({"n": n}).id for n in range(5)]
    make_immutable(path)
    with persistq.connect(_url(path)) as queue:
        for call in (lambda: queue.enqueue("new"), lambda: queue.enqueue_many(["a", "b"])):
            with pytest.raises(StorageUnavailable) as raised:
                call()
            _assert_names_cause(raised.value, path, "readonly")
        assert _job_ids(queue) == set(before)
        assert {queue.get(n).status for n in before} == {State.PENDING}


def test_a_database_that_becomes_unwritable_while_open_raises_storage_unavailable_then_recovers(
    tmp_path: Path, make_immutable: Callable[..., None]
) -> None:
    """The file and its WAL turn immutable under an open queue (not the -shm: writing to an
    immutable shared-memory mapping is a SIGBUS, which no library can turn into an error)."""
    path = tmp_path / "queue.db"
    with persistq.connect(_url(path)) as queue:
        before = [queue.enqueue({"n": n}).id for n in range(5)]
        wal = Path(f"{path}-wal")
        assert wal.exists()
        make_immutable(path, wal)
        for call in (
            lambda: queue.enqueue("new"),
            lambda: queue.enqueue_many(["a", "b"]),
            lambda: queue.claim(worker="w"),
        ):
            with pytest.raises(StorageUnavailable) as raised:
                call()
            _assert_names_cause(raised.value, path)
        assert _job_ids(queue) == set(before)
        _run("chattr", "-i", str(path), str(wal))
        after = queue.enqueue("again").id
        assert _job_ids(queue) == {*before, after}
        report = queue.check(full=True)
        assert report["ok"], report


@pytest.fixture
def read_only_view(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A directory and a read-only bind mount of it: (writable, read_only)."""
    writable, read_only = tmp_path / "data", tmp_path / "read-only"
    writable.mkdir()
    read_only.mkdir()
    _mount("--bind", str(writable), str(read_only))
    try:
        _mount("-o", "remount,bind,ro", str(read_only))
        yield writable, read_only
    finally:
        _unmount(read_only)


def test_connect_on_a_read_only_file_system_raises_storage_unavailable(
    read_only_view: tuple[Path, Path],
) -> None:
    writable, read_only = read_only_view
    with persistq.connect(_url(writable / "queue.db")) as queue:
        before = [queue.enqueue({"n": n}).id for n in range(5)]

    def open_and_enqueue() -> None:
        with persistq.connect(_url(read_only / "queue.db")) as queue:
            queue.enqueue("new")

    with pytest.raises(StorageUnavailable) as raised:
        open_and_enqueue()
    _assert_names_cause(raised.value, read_only / "queue.db")
    with persistq.connect(_url(writable / "queue.db")) as queue:
        assert _job_ids(queue) == set(before)


# -- an unusable path -----------------------------------------------------------------------------


def test_a_url_whose_directory_cannot_be_created_raises_storage_unavailable(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    path = blocker / "sub" / "queue.db"
    with pytest.raises(StorageUnavailable) as raised:
        persistq.connect(_url(path))
    _assert_names_cause(raised.value, path.parent, "cannot create directory")
    assert blocker.read_text() == "in the way"


def test_a_url_naming_a_directory_raises_storage_unavailable(tmp_path: Path) -> None:
    directory = tmp_path / "queue.db"
    directory.mkdir()
    with pytest.raises(StorageUnavailable) as raised:
        persistq.connect(_url(directory))
    _assert_names_cause(raised.value, directory)
    assert not any(directory.iterdir())


def test_storage_errors_are_queue_errors() -> None:
    for error in (StorageFull, StorageCorrupt, StorageUnavailable):
        assert issubclass(error, StorageError)
        assert issubclass(error, QueueError)
