"""``persistq ui manager|ops``: serve a web UI with Streamlit.

The command checks the database and the admin password first (under ``persistq up`` the
password exists already: ``up`` made it; a UI started on its own with none makes it and
prints it here, once, to its stderr), then replaces itself with
``python -m persistq.ui.server <page>`` (Streamlit's ``st.App`` with the routes of the
shared session cookie): the server gets the process's pid, so Supervisor's SIGTERM reaches
it directly and Streamlit shuts down cleanly.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import typer

import persistq
from persistq.cli.common import HostOption, PortOption
from persistq.cli.main import app, fail, new_app, stderr
from persistq.cli.system import resolve_url
from persistq.config import home_dir
from persistq.credentials import admin_password, data_dir, session_limits

ui_app = new_app("Serve a web UI: manager (jobs, queues, dead letters) or ops (read-only).")
app.add_typer(ui_app, name="ui")


def streamlit_command(page: str, host: str, port: int) -> list[str]:
    """The command line that serves ``page`` (``manager`` or ``ops``)."""
    spec = importlib.util.find_spec("persistq.ui")  # found, not imported: it imports Streamlit
    if spec is None or not spec.submodule_search_locations:
        fail("the web UIs are not installed (package persistq.ui is missing)")
        raise AssertionError("unreachable")
    return [
        sys.executable,
        "-m",
        "persistq.ui.server",
        page,
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        # A deployed UI does not reload on file changes; no watcher threads either.
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--client.toolbarMode",
        "viewer",
        "--global.developmentMode",
        "false",
    ]


def serve(ctx: typer.Context, page: str, host: str, port: int) -> None:
    url = resolve_url(home_dir(), ctx.find_root().obj.url)
    with persistq.connect(url, create=False):  # a bad URL or no database: one line, here
        pass
    password = admin_password(data_dir(url), announce=lambda text: stderr.print(text, markup=False))
    session_limits()  # a bad PERSISTQ_UI_*_SECONDS: one line, here, not on every login page
    where = "PERSISTQ_ADMIN_PASSWORD" if password.source == "environment" else password.path
    stderr.print(
        f"persistq ui {page}: http://{host}:{port}  database {url}  password {where}", markup=False
    )
    command = streamlit_command(page, host, port)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, {**os.environ, "PERSISTQ_URL": url})


@ui_app.command()
def manager(
    ctx: typer.Context,
    host: HostOption = "127.0.0.1",
    port: PortOption = 8501,
) -> None:
    """The Manager: jobs (filter, resubmit, cancel, bulk), enqueue, queues, dead letters."""
    serve(ctx, "manager", host, port)


@ui_app.command()
def ops(
    ctx: typer.Context,
    host: HostOption = "127.0.0.1",
    port: PortOption = 8502,
) -> None:
    """The read-only Ops dashboard: counts, throughput, latency, workers, failures, disk."""
    serve(ctx, "ops", host, port)
