"""The ``persistq`` command line (Typer).

Importing this package registers every command: each module below defines its commands on
``persistq.cli.main.app`` (or adds its sub-group to it). ``main`` imports no command
module, so there is no import cycle whichever module is imported first. A new command
module joins by being added here.
"""

from persistq.cli import admin, api, dlq, jobs, main, periodic, queues, run, system, ui

__all__ = ["admin", "api", "dlq", "jobs", "main", "periodic", "queues", "run", "system", "ui"]
