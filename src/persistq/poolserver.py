"""Imported once, by the process pool's fork server only (its preload list), never by the
worker: it moves the fork server, and so every child it forks, into a process group of its
own. Supervisor's ``stopasgroup`` (or a terminal's Ctrl-C) signals the worker's group; the
worker then lets its children finish within ``--grace``. Without this the fork server
would die of that SIGTERM and every running child would look crashed. A SIGKILLed worker
still takes its children along: each watches its lifeline pipe (see persistq.pool)."""

from __future__ import annotations

import os

os.setpgrp()
