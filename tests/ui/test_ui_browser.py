"""Both web UIs in a real browser: Debian's chromium, driven by Playwright for Python,
against ``persistq ui manager`` and ``persistq ui ops`` started as real processes.

Playwright's own browser download is not used (nor reachable here): the test launches
``/usr/bin/chromium``, installing it with apt-get when it is missing and we are root.
Without a browser the tests skip, saying why, unless PERSISTQ_REQUIRE_BROWSER is set (CI
sets it), in which case they fail. Screenshots go to test-artifacts/ (git-ignored).

Streamlit draws the page over a websocket after the HTML has loaded, so every step waits
for a real widget with Playwright's retrying ``expect``, never for the page load.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ui_support import PASSWORD, failed_job

import persistq
from persistq import State

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
# Read at import: the autouse fixture of conftest.py strips PERSISTQ_* before each test.
REQUIRED = bool(os.environ.get("PERSISTQ_REQUIRE_BROWSER"))
pytestmark = [
    pytest.mark.timeout(600),  # the first test may install chromium
    # Under pytest-xdist, on the worker of the other apt-get user (test_api_metrics.py):
    # two apt-gets at once, one fails on dpkg's lock. And one browser, one pair of UIs.
    pytest.mark.xdist_group("apt"),
]


def unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason} (PERSISTQ_REQUIRE_BROWSER is set)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, installed with apt-get if missing (as root)."""
    if not CHROMIUM.exists():
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            unavailable(f"{CHROMIUM} is missing; install it with: apt-get install -y chromium")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                unavailable(f"{' '.join(command)} failed: {done.stderr.strip()[-300:]}")
    if not CHROMIUM.exists():
        unavailable(f"apt-get ran but {CHROMIUM} is still missing")
    return CHROMIUM


@dataclass
class Served:
    url: str
    database: str
    failed_id: int
    data: Path  # where the password's hash and the login throttle live


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{url} exited {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.25)
    raise AssertionError(f"{url} not healthy within 60 s: {log.read_text()[-2000:]}")


@contextmanager
def serve_both(home: Path, **extra_env: str) -> Iterator[dict[str, Served]]:
    """Both UIs as real ``persistq ui`` processes on the database of ``home``."""
    database = f"sqlite:///{home / 'data' / 'queue.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSISTQ_")}
    env.update(PERSISTQ_URL=database, PERSISTQ_ADMIN_PASSWORD=PASSWORD, **extra_env)
    processes: list[subprocess.Popen[bytes]] = []
    servers: dict[str, Served] = {}
    try:
        for page in ("manager", "ops"):
            port = free_port()
            log = home / f"ui-{page}.log"
            with log.open("wb") as out:
                command = [sys.executable, "-m", "persistq", "ui", page, "--port", str(port)]
                process = subprocess.Popen(
                    command, cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT
                )
            processes.append(process)
            url = f"http://127.0.0.1:{port}"
            servers[page] = Served(url, database, 0, home / "data")
        for (page, server), process in zip(servers.items(), processes, strict=True):
            wait_healthy(server.url, process, home / f"ui-{page}.log")
        yield servers
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)  # as Supervisor stops them
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                raise AssertionError("a UI did not stop within 20 s of SIGTERM") from None
        assert [p.returncode for p in processes] == [0, 0]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Served]]:
    """Both UIs on one seeded database."""
    home = tmp_path_factory.mktemp("ui-home")
    with persistq.connect(f"sqlite:///{home / 'data' / 'queue.db'}") as queue:
        queue.enqueue_many([{"path": f"data/files/{i:03}.txt"} for i in range(30)], queue="files")
        for _ in range(18):  # finished in the last minutes: the Ops charts have data
            job = queue.claim(queue="files", worker="host:4242")
            assert job is not None
            queue.complete(job, {"stamped": True})
        queue.worker_seen("host:4242", ["files"])
        failed_id = failed_job(
            queue,
            queue_name="mail",
            error='Traceback (most recent call last):\n  File "send.py", line 9, in send\n'
            "SMTPError: 554 relay access denied",
        ).id
    with serve_both(home) as servers:
        for server in servers.values():
            server.failed_id = failed_id
        yield servers


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    # Tall: Streamlit scrolls inside its own container, so a screenshot shows the viewport.
    context = browser.new_context(viewport={"width": 1400, "height": 2400})
    context.set_default_timeout(30_000)
    yield context.new_page()
    context.close()


def log_in(page: Any, url: str) -> None:
    from playwright.sync_api import expect

    page.goto(url)
    password = page.get_by_label("Password", exact=True)
    expect(password).to_be_visible()  # drawn over the websocket, after the page load
    password.fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def test_manager_logs_in_and_resubmits_a_failed_job(page: Any, served: dict[str, Served]) -> None:
    from playwright.sync_api import expect

    server = served["manager"]
    log_in(page, server.url)
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    expect(page.get_by_text("rows 1–31 of 31 jobs")).to_be_visible()
    job_id = page.get_by_label("Open job by id")
    job_id.fill(str(server.failed_id))
    job_id.press("Enter")
    status = page.get_by_test_id("stMetric").filter(has_text="Status")
    expect(status).to_contain_text("FAILED")
    codes = page.get_by_test_id("stCode")  # the task call ({"task": "fails"}), the error
    expect(codes.first).to_contain_text("fails()")
    expect(codes.filter(has_text="SMTPError")).to_contain_text("SMTPError: 554 relay access denied")
    page.get_by_role("button", name="Resubmit", exact=True).click()
    expect(page.get_by_text(f"Job {server.failed_id} is now PENDING.")).to_be_visible()
    expect(status).to_contain_text("PENDING")
    with persistq.connect(server.database) as queue:
        assert queue.get(server.failed_id).status == State.PENDING
        assert queue.events(server.failed_id)[-1].kind == "resubmitted"
        queue.enqueue({"late": 1}, queue="files")
    # No click: the live table reads the jobs again by itself (issue 15).
    expect(page.get_by_text("rows 1–32 of 32 jobs")).to_be_visible(timeout=15_000)
    # The summary beside the table (the table's own cells are drawn on a canvas).
    summary = page.get_by_test_id("stMarkdown").filter(has_text="PENDING")
    expect(summary.first).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "manager.png"), full_page=True)


def test_ops_draws_its_charts_and_refreshes_itself(page: Any, served: dict[str, Served]) -> None:
    from playwright.sync_api import expect

    server = served["ops"]
    log_in(page, server.url)
    charts = page.get_by_test_id("stVegaLiteChart")
    # The context's 30 s, not expect's own 5 s: beside another worker's crash tests, the
    # dashboard's first draw took longer (twice in full runs, never alone).
    expect(charts).to_have_count(2, timeout=30_000)
    for i in range(2):  # vega-embed has drawn each one: a sized canvas or svg inside
        expect(charts.nth(i).locator("canvas, svg").first).to_be_visible()
    completed = page.get_by_test_id("stMetric").filter(has_text=re.compile("^COMPLETED"))
    expect(completed).to_have_text(re.compile("^COMPLETED18$"))
    pending = page.get_by_test_id("stMetric").filter(has_text=re.compile("^PENDING"))
    with persistq.connect(server.database) as queue:
        before = sum(row["PENDING"] for row in queue.stats()["queues"].values())
        expect(pending).to_have_text(re.compile(f"^PENDING{before}$"))
        queue.enqueue_many([{"late": i} for i in range(5)], queue="files")
    # No reload: the dashboard fragment reruns by itself every few seconds.
    expect(pending).to_have_text(re.compile(f"^PENDING{before + 5}$"), timeout=15_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ops.png"), full_page=True)


def _fresh_login_page(browser: Any, url: str, opened: list[Any]) -> Any:
    """The login form in a new browser context: a session (websocket) of its own."""
    from playwright.sync_api import expect

    context = browser.new_context()
    context.set_default_timeout(30_000)
    opened.append(context)
    page = context.new_page()
    page.goto(url)
    expect(page.get_by_label("Password", exact=True)).to_be_visible()
    return page


def _try(page: Any, password: str) -> str:
    """Submit ``password`` on a fresh login page; the answer: the error, or "logged in"."""
    from playwright.sync_api import expect

    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()
    error = page.get_by_text(re.compile("^(Wrong password|Too many failed attempts)"))
    logged_in = page.get_by_role("button", name="Log out")
    expect(error.or_(logged_in)).to_be_visible()
    return "logged in" if logged_in.is_visible() else str(error.inner_text())


def test_failed_logins_slow_down_every_new_session_of_both_uis(
    browser: Any, served: dict[str, Served]
) -> None:
    """The throttle counts for the admin account, not per browser session or UI process:
    on 127.0.0.1 Streamlit knows no client address, and a new session must not get a new
    allowance of tries."""
    from persistq.credentials import THROTTLE_FILE, LoginThrottle

    manager, ops = served["manager"].url, served["ops"].url
    state = served["manager"].data / THROTTLE_FILE
    state.unlink(missing_ok=True)
    opened: list[Any] = []
    try:
        # Opened now, tried after the third failure: well inside its 4 s wait.
        waiting = [_fresh_login_page(browser, url, opened) for url in (manager, manager, ops)]
        # A wrong password from a new session each time, once the last wait is over: the
        # wait still doubles, because every session and process counts for the account.
        for wait in (1, 2, 4):
            answer = _try(_fresh_login_page(browser, manager, opened), "wrong")
            assert answer == f"Wrong password. You may try again in {wait} s.", answer
            if wait < 4:
                time.sleep(wait + 0.1)
        refused_at = time.monotonic()
        # Inside the wait, new sessions of the Manager and of the Ops UI (another process)
        # are refused even with the right password: it is not checked at all.
        answers = [_try(page, PASSWORD) for page in waiting]
        assert time.monotonic() - refused_at < 4, "too slow to land inside the wait"
        assert all(a.startswith("Too many failed attempts. Try again in") for a in answers), answers
        assert LoginThrottle(served["manager"].data).failures() == 3  # refusals are not tries
        time.sleep(max(0.0, refused_at + 4.1 - time.monotonic()))
        ops_again = _fresh_login_page(browser, ops, opened)
        assert _try(ops_again, PASSWORD) == "logged in"  # once the wait is over
        assert LoginThrottle(served["manager"].data).failures() == 0
    finally:
        for context in opened:
            context.close()
        state.unlink(missing_ok=True)  # the module's other tests log in without waiting


#: The sign-in's lifetime in the test below: long enough for its first steps on a busy
#: machine (9 s at a load average of 6 to 16 on two cores), short enough to wait out.
SHORT_SESSION = 20


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Served]]:
    """Both UIs on an empty database, with sign-ins that last SHORT_SESSION seconds."""
    home = tmp_path_factory.mktemp("ui-short")
    with persistq.connect(f"sqlite:///{home / 'data' / 'queue.db'}"):
        pass
    with serve_both(home, PERSISTQ_UI_SESSION_SECONDS=str(SHORT_SESSION)) as servers:
        yield servers


def test_one_sign_in_survives_a_reload_reaches_the_ops_ui_and_ends_for_both(
    browser: Any, short_lived: dict[str, Served]
) -> None:
    """Issue 15: the password once, for both UIs and for reloads, until the sign-in expires
    or someone logs out; the cookie that carries it is out of reach of the page's scripts."""
    from playwright.sync_api import expect

    from persistq.credentials import SESSIONS_FILE

    manager_url, ops_url = short_lived["manager"].url, short_lived["ops"].url
    context = browser.new_context()
    context.set_default_timeout(30_000)
    try:
        manager = context.new_page()
        password = manager.get_by_label("Password", exact=True)
        log_out = manager.get_by_role("button", name="Log out")
        log_in(manager, manager_url)
        signed_in_at = time.time()
        # The redirect that sets the cookie comes back to a signed-in page.
        expect(log_out).to_be_visible()
        expect(manager.get_by_role("heading", name="Jobs")).to_be_visible()
        cookies = [c for c in context.cookies() if c["name"].startswith("persistq_session_")]
        assert len(cookies) == 1, context.cookies()
        cookie = cookies[0]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]
        assert cookie["path"] == "/" and cookie["domain"] == "127.0.0.1"
        assert 0 < cookie["expires"] - signed_in_at <= SHORT_SESSION + 1
        assert "persistq_session_" not in manager.evaluate("document.cookie")  # HttpOnly
        stored = (short_lived["manager"].data / SESSIONS_FILE).read_text()
        assert cookie["value"] not in stored  # the server keeps only its digest

        manager.reload()
        expect(log_out).to_be_visible()
        expect(password).to_have_count(0)

        # The Ops UI, another process on another port: the same cookie signs it in.
        ops = context.new_page()
        ops.goto(ops_url)
        expect(ops.get_by_role("button", name="Log out")).to_be_visible()
        expect(ops.get_by_label("Password", exact=True)).to_have_count(0)
        expect(ops.get_by_test_id("stMetric").first).to_be_visible()

        # Past the lifetime: a reload asks again, and the open Ops tab asks at its next
        # refresh, without a reload.
        time.sleep(max(0.0, signed_in_at + SHORT_SESSION + 1 - time.time()))
        expect(ops.get_by_label("Password", exact=True)).to_be_visible(timeout=15_000)
        manager.reload()
        expect(password).to_be_visible()

        # Signed in again; a log-out in the Manager ends it in the open Ops tab too, and
        # the browser no longer has the cookie.
        password.fill(PASSWORD)
        manager.get_by_role("button", name="Log in").click()
        expect(log_out).to_be_visible()
        ops.reload()
        expect(ops.get_by_role("button", name="Log out")).to_be_visible()
        log_out.click()
        expect(password).to_be_visible()
        expect(ops.get_by_label("Password", exact=True)).to_be_visible(timeout=15_000)
        names = [c["name"] for c in context.cookies()]
        assert not [n for n in names if n.startswith("persistq_session_")], names
        manager.reload()
        expect(password).to_be_visible()
        expect(manager.get_by_text("Your session expired. Log in again.")).to_have_count(0)
        fresh = context.new_page()
        fresh.goto(ops_url)
        expect(fresh.get_by_label("Password", exact=True)).to_be_visible()
    finally:
        context.close()
