"""Every command resolves one home: PERSISTQ_HOME (or --home), else the current directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_in(cwd: Path, *args: str, home: Path | None) -> subprocess.CompletedProcess[str]:
    """``python -m persistq ARGS`` started in ``cwd``, with no PERSISTQ_* but the home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSISTQ_")}
    if home is not None:
        env["PERSISTQ_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "persistq", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_data_commands_use_the_home_database_wherever_they_start(tmp_path: Path) -> None:
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    database = home / "data" / "queue.db"

    missing = run_in(elsewhere, "stats", home=home)
    assert missing.returncode == 1, missing
    assert missing.stderr.strip() == f"error: no database at {database}; run `persistq init`"
    assert not database.exists()

    assert run_in(elsewhere, "init", home=home).returncode == 0
    assert database.exists()
    enqueued = run_in(elsewhere, "enqueue", '{"n": 1}', "--queue", "files", home=home)
    assert enqueued.returncode == 0, enqueued.stderr
    job_id = enqueued.stdout.strip()
    stats = run_in(elsewhere, "stats", home=home)
    assert stats.returncode == 0 and "files" in stats.stdout, stats
    jobs = run_in(elsewhere, "jobs", "--queue", "files", home=home)
    assert jobs.returncode == 0 and job_id in jobs.stdout, jobs
    # --home says the same as PERSISTQ_HOME, from a third directory.
    given = run_in(tmp_path, "--home", str(home), "show", job_id, home=None)
    assert given.returncode == 0 and '"n": 1' in given.stdout, given
    assert list(elsewhere.iterdir()) == []


def test_without_a_home_the_current_directory_is_the_home(tmp_path: Path) -> None:
    assert run_in(tmp_path, "init", home=None).returncode == 0
    assert (tmp_path / "data" / "queue.db").exists()
    assert run_in(tmp_path, "stats", home=None).returncode == 0


def test_the_stop_command_is_the_checkouts_script_after_scripts_up(tmp_path: Path) -> None:
    from persistq.cli.system import stop_command

    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "scripts" / "down").write_text("#!/bin/sh\n")
    python = str(repo / ".venv" / "bin" / "python")
    package = str(repo / "src" / "persistq" / "__init__.py")
    script = str(repo / "scripts" / "down")
    assert stop_command(repo, executable=python, package=package) == script
    other = tmp_path / "other home"
    assert stop_command(other, executable=python, package=package) == (f"{script} --home '{other}'")
    # A persistq installed elsewhere in that venv is not the checkout's: its own -m command.
    assert stop_command(repo, executable=python, package="/site/persistq/__init__.py") == (
        f"{python} -m persistq down --home {repo}"
    )
