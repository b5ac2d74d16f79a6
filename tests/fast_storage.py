"""Test databases on a RAM file system: conftest calls :func:`install` before any test."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

#: The machine's own temporary dir, on its disk: for tests of the disk file system's faults
#: (immutable files, read-only mounts), which a RAM file system does not have alike. Kept in
#: the environment by install(): pytest-xdist's workers inherit the TMPDIR it changed.
DISK_TMPDIR = os.environ.setdefault("PERSISTQ_TEST_DISK_TMPDIR", tempfile.gettempdir())


def install() -> None:
    """SQLite test databases that do not wait for the disk: every commit of a test
    (thousands in a run) otherwise waits for an fsync, 1.7 ms here. No test can cut the
    power, so none can see what an fsync buys; a killed process (the crash tests) loses
    nothing either way. So temporary dirs (pytest's tmp_path, tempfile, children's TMPDIR)
    are on a RAM file system when the machine has one; PERSISTQ_TEST_SLOW_STORAGE=1 keeps
    them on the disk. (PostgreSQL's server keeps its own settings: the queue's sessions
    set their own options, so PGOPTIONS would not reach them.)"""
    if os.environ.get("PERSISTQ_TEST_SLOW_STORAGE", "") not in ("", "0"):
        return
    shm = Path("/dev/shm")
    try:
        usable = os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 1 << 30
    except OSError:
        usable = False
    if usable:
        # Set before pytest's tmp_path_factory picks its base dir (on first use).
        tempfile.tempdir = str(shm)
        os.environ["TMPDIR"] = str(shm)
