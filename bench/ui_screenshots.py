"""Screenshots of both web UIs on a big database, as an operator sees them.

Starts ``persistq ui manager`` and ``persistq ui ops`` on ``--db`` (build one with
``bench_ui.py --db PATH``), signs in with Debian's chromium through Playwright, waits for
each page to settle and writes PNGs to ``--out``. It prints how long each page took to
draw: the time from the click to the page's table or charts being visible.

    .venv/bin/python bench/ui_screenshots.py --db /tmp/ui-1m.db --out /tmp/shots
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url} exited {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.25)
    raise SystemExit(f"{url} not healthy within 120 s")


def sign_in(page: Any, url: str, password: str) -> float:
    """Open ``url`` and sign in unless the shared sign-in cookie already did; the seconds
    from the click (or the page load) to the page being signed in."""
    from playwright.sync_api import expect

    started = time.perf_counter()
    page.goto(url)
    signed_in = page.get_by_role("button", name="Log out")
    field = page.get_by_label("Password", exact=True)
    expect(signed_in.or_(field)).to_be_visible()
    if not signed_in.is_visible():
        field.fill(password)
        started = time.perf_counter()
        page.get_by_role("button", name="Log in").click()
    expect(signed_in).to_be_visible()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="SQLite database file")
    parser.add_argument("--out", default="bench/results/screens", help="folder for the PNGs")
    parser.add_argument("--settle", type=float, default=8.0, help="seconds to let pages draw")
    parser.add_argument("--reload", action="store_true", help="reload each page once signed in")
    args = parser.parse_args()
    from playwright.sync_api import expect, sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="persistq-shots-"))
    password = secrets.token_urlsafe(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSISTQ_")}
    env.update(
        PERSISTQ_URL=f"sqlite:///{Path(args.db).resolve()}",
        PERSISTQ_ADMIN_PASSWORD=password,
        PERSISTQ_HOME=str(home),
    )
    processes: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    try:
        for name in ("manager", "ops"):
            port = free_port()
            log = (home / f"ui-{name}.log").open("wb")
            command = [sys.executable, "-m", "persistq", "ui", name, "--port", str(port)]
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            processes[name] = (process, f"http://127.0.0.1:{port}")
        for process, url in processes.values():
            wait_healthy(url, process)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1500, "height": 2200})
            context.set_default_timeout(120_000)
            for name, (_, url) in processes.items():
                page = context.new_page()
                took = sign_in(page, url, password)
                if name == "manager":
                    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
                time.sleep(args.settle)
                if args.reload:  # as an operator opening the page again, signed in
                    page.reload()
                    expect(page.get_by_role("button", name="Log out")).to_be_visible()
                    time.sleep(args.settle)
                path = out / f"{name}.png"
                page.screenshot(path=str(path), full_page=True)
                print(f"{name:8} signed in and drawn in {took:5.2f} s  -> {path}")
            browser.close()
    finally:
        for process, _ in processes.values():
            process.send_signal(signal.SIGTERM)
        for process, _ in processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    main()
