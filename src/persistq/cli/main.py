"""Root of the ``persistq`` command: global ``--url``, the error boundary, output helpers.

Every command reaches the queue through :func:`open_queue`; a ``QueueError`` anywhere
becomes one line on stderr and exit code 1 (usage errors exit 2, as Click does).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer._click.exceptions import NoArgsIsHelpError
from typer.core import TyperGroup

import persistq
from persistq.config import HOME_ENV, home_dir
from persistq.errors import QueueError
from persistq.queue import Queue

# Piped output is read by people too (logs, `| less`): do not squeeze tables into 80 columns.
stdout = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


class ErrorBoundary(TyperGroup):
    """Turns library errors into one stderr line and exit 1, and usage errors (a bad option,
    an unknown command) into one line and exit 2, for every subcommand."""

    def make_context(self, info_name: str | None, args: list[str], *rest: Any, **extra: Any) -> Any:
        # This group's own options and its subcommand's name are parsed here.
        try:
            return super().make_context(info_name, args, *rest, **extra)
        except typer.TyperException as exc:
            fail_usage(exc)

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click Context
        try:
            return super().invoke(ctx)
        except QueueError as exc:
            fail(str(exc))
        except OSError as exc:  # files the CLI itself reads or writes
            fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
        except typer.TyperException as exc:  # a subcommand's options, parsed in invoke
            fail_usage(exc)


def fail_usage(exc: typer.TyperException) -> NoReturn:
    """Click's usage error (its message, where to get help) as one line, exit 2; a command
    given no arguments shows its help, as Click does."""
    if isinstance(exc, NoArgsIsHelpError):
        raise exc
    context = getattr(exc, "ctx", None)
    where = f" (see `{context.command_path} --help`)" if context is not None else ""
    fail(f"{exc.format_message()}{where}", code=int(getattr(exc, "exit_code", 2)))


def fail(message: str, *, code: int = 1) -> NoReturn:
    """Print one error line and exit ``code`` (2: a usage error); never a traceback."""
    line = message.splitlines()[0] if message else "failed"
    stderr.print(f"error: {line}", markup=False, emoji=False)
    raise typer.Exit(code)


def new_app(help_text: str) -> typer.Typer:
    return typer.Typer(
        cls=ErrorBoundary,
        help=help_text,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )


app = new_app("persistq: a persistent job queue. Global options come before the command.")


@dataclass
class CliState:
    url: str | None
    _queue: Queue | None = None

    def queue(self, *, create: bool = False) -> Queue:
        # Only `init` creates a missing database: any other command making an empty one
        # where one is expected would hide that the real one is gone (and reuse its ids).
        if self._queue is None:
            self._queue = persistq.connect(self.url, create=create)
        return self._queue


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            envvar="PERSISTQ_URL",
            show_envvar=True,
            help="Database URL [default: sqlite:///data/queue.db, under the home].",
        ),
    ] = None,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            envvar=HOME_ENV,
            show_envvar=True,
            help="Directory holding data/ and logs/; relative SQLite URLs and files are under "
            "it [default: the current directory].",
        ),
    ] = None,
) -> None:
    if home is not None:
        # Set for this process and every program it starts (workers' pool children, the UIs'
        # Streamlit, Supervisor's programs): all read the one rule in persistq.config.
        os.environ[HOME_ENV] = str(home_dir(home))
    state = CliState(url)
    ctx.obj = state
    ctx.call_on_close(lambda: state._queue.close() if state._queue else None)


def open_queue(ctx: typer.Context, *, create: bool = False) -> Queue:
    """The queue of ``--url``; a missing database is an error unless ``create``."""
    state: CliState = ctx.find_root().obj
    return state.queue(create=create)


def print_json(data: Any) -> None:
    """JSON on stdout, one document (an object or a list)."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def print_table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        # Text, not str: cells hold user data, which must not be read as markup or emoji codes.
        table.add_row(*(Text("" if cell is None else str(cell)) for cell in row))
    stdout.print(table)


@contextmanager
def progress(description: str, total: int | None) -> Iterator[Any]:
    """A progress bar on stderr (stdout stays clean for --json); none unless a terminal."""
    if not stderr.is_terminal:  # a log or a pipe gets no bar (rich would still write a newline)
        yield lambda done: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=stderr,
        transient=True,
        # stdout stays stdout: `persistq ... > out` must not land in the bar's terminal.
        redirect_stdout=False,
        redirect_stderr=False,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.update(task, completed=done)


def run() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        stderr.print("error: interrupted")
        sys.exit(130)
