"""A real ``persistq api`` (uvicorn) in a subprocess on a free port, for the HTTP tests.

The server gets its own SQLite file (created first, as ``persistq init`` would: the API
opens only a database that exists) and a token; :meth:`ApiServer.start` returns once
``/healthz`` answers, and :meth:`stop` SIGTERMs it (SIGKILL if it lingers). Its output goes
to a file, read back when a test wants to show why it failed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

import persistq

TOKEN = "test-token-0123456789abcdef"
STARTUP_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ApiServer:
    def __init__(
        self,
        directory: Path,
        *,
        token: str = TOKEN,
        args: tuple[str, ...] = (),
        access_log: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.directory = directory
        self.db_url = f"sqlite:///{directory / 'queue.db'}"
        self.token = token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = directory / "api.log"
        self.args = args
        self.access_log = access_log
        self.env = env or {}  # PERSISTQ_* settings for the server (the caller's are dropped)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ApiServer:
        persistq.connect(self.db_url).close()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PERSISTQ_")}
        env["PERSISTQ_API_TOKEN"] = self.token
        env.update(self.env)
        command = [sys.executable, "-m", "persistq", "--url", self.db_url, "api"]
        command += ["--port", str(self.port), *self.args]
        command.append("--access-log" if self.access_log else "--no-access-log")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.directory
            )
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"persistq api exited {self.proc.returncode}:\n{self.output()}"
                )
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"persistq api did not answer /healthz:\n{self.output()}")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers(), timeout=60)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(15)

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
