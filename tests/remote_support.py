"""A `RemoteQueue` over the REST API served in this process, on a given local `Queue`.

The app runs on Starlette's test transport (no socket, no thread pool of uvicorn), so the
contract suite's manual clock drives the server's queue too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient

from persistq.api import create_app
from persistq.queue import Queue
from persistq.remote import RemoteQueue

TOKEN = "contract-suite-token-0123456789"


@contextmanager
def in_process_remote(local: Queue) -> Iterator[RemoteQueue]:
    app = create_app(local.settings, tokens=[TOKEN], queue=local)
    with TestClient(app, base_url="http://persistq.test") as client:
        remote = RemoteQueue(
            "http://persistq.test",
            token=TOKEN,
            settings=local.settings,
            transport=client._transport,
        )
        try:
            yield remote
        finally:
            remote.close()
