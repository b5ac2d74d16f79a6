"""``persistq ui manager|ops``: the command line it serves with, and its errors."""

from __future__ import annotations

from typer.testing import CliRunner
from ui_support import UI

from persistq.cli.main import app
from persistq.cli.ui import streamlit_command

runner = CliRunner()


def test_each_ui_is_a_packaged_script_served_headless_without_telemetry() -> None:
    for page in ("manager", "ops"):
        command = streamlit_command(page, "0.0.0.0", 9999)
        assert command[1:4] == ["-m", "persistq.ui.server", page]
        assert (UI / f"{page}.py").is_file()
        options = dict(zip(command[4::2], command[5::2], strict=True))
        assert options["--server.address"] == "0.0.0.0"
        assert options["--server.port"] == "9999"
        assert options["--server.headless"] == "true"
        assert options["--browser.gatherUsageStats"] == "false"


def test_a_bad_database_url_fails_in_one_line_before_serving() -> None:
    result = runner.invoke(app, ["--url", "mysql://nowhere/db", "ui", "ops"])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("error:")


def test_ui_help_names_both_pages_and_their_ports() -> None:
    result = runner.invoke(app, ["ui", "manager", "--help"])
    assert result.exit_code == 0 and "8501" in result.output
    result = runner.invoke(app, ["ui", "ops", "--help"])
    assert result.exit_code == 0 and "8502" in result.output
