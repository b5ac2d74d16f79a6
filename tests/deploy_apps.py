"""Two versions of one application, for the rolling-deploy tests (``--app deploy_apps:old``
and ``--app deploy_apps:new``): the new one has a task the old one lacks.

Task names are given explicitly, as both versions would spell them in their own module.
"""

from __future__ import annotations

import asyncio
import os

import persistq

old = persistq.App()  # the URL comes from the worker's --url


@old.task("deploy.ping")
def old_ping() -> str:
    return "pong"


new = persistq.App()


@new.task("deploy.ping")
def new_ping() -> str:
    return "pong"


@new.task("deploy.greet", max_attempts=2)
async def greet(who: str, *, punctuation: str = "!") -> dict[str, object]:
    await asyncio.sleep(0)
    return {"greeting": f"hello {who}{punctuation}", "pid": os.getpid()}
