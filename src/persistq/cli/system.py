"""The whole system under Supervisor: ``up``, ``down``, ``status``, ``simulate-crash``."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Callable
from contextlib import suppress
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from supervisor.xmlrpc import SupervisorTransport

import persistq
from persistq.cli.api import ensure_api_token
from persistq.cli.main import app, fail, print_table, stderr, stdout
from persistq.config import DEFAULT_URL, HOME_ENV, Settings, home_dir, url_under
from persistq.credentials import PASSWORD_ENV, CredentialsError, admin_password, data_dir
from persistq.model import Job, State
from persistq.queue import Queue
from persistq.tasks.files import FILES_QUEUE, make_random_file, stamp_payload, stamps

#: program -> (environment variable naming its port, default port, path shown)
PORTS = {
    "api": ("PERSISTQ_API_PORT", "8000", "/docs"),
    "ui-manager": ("PERSISTQ_MANAGER_PORT", "8501", ""),
    "ui-ops": ("PERSISTQ_OPS_PORT", "8502", ""),
}


#: Where ``up`` records the URLs it started the programs on, so ``status`` shows those (not
#: the ports of whatever shell it is run from). Owner-only, beside the database.
URLS_FILE = Path("data") / "urls.json"


def urls_from_env(env: dict[str, str]) -> dict[str, str]:
    """program -> the URL it serves on, from the ports in ``env`` (defaults when unset)."""
    return {
        program: f"http://127.0.0.1:{env.get(var) or default}{path}"
        for program, (var, default, path) in PORTS.items()
    }


def record_urls(home: Path, urls: dict[str, str]) -> None:
    path = home / URLS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when an older, wider file was there
    with os.fdopen(fd, "w") as out:
        json.dump(urls, out)


def recorded_urls(home: Path) -> dict[str, str]:
    """The URLs the running system was started on; none known: empty (no guess shown)."""
    try:
        data = json.loads((home / URLS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def own_command(home: Path, command: str, *, executable: str | None = None) -> str:
    """A command line that runs this persistq on ``home`` from any shell: ``persistq`` when
    that name on the PATH is this installation's, else this interpreter's ``-m persistq``."""
    exe = Path(executable or sys.executable).absolute()
    found = shutil.which("persistq")
    if executable is None and found and Path(found).absolute().parent == exe.parent:
        prefix = "persistq"
    else:
        prefix = f"{shlex.quote(str(exe))} -m persistq"
    return f"{prefix} {command} --home {shlex.quote(str(home))}"


def stop_command(home: Path, *, executable: str | None = None, package: str | None = None) -> str:
    """How to stop ``home``'s system, as ``up`` prints it: ``REPO/scripts/down`` when this is
    the ``.venv`` of a checkout that ``scripts/up`` made (its persistq is the checkout's),
    else :func:`own_command`'s ``down``."""
    exe = Path(executable or sys.executable).absolute()
    source = Path(package or persistq.__file__).absolute()
    repo = exe.parent.parent.parent
    script = repo / "scripts" / "down"
    if exe.parent.parent.name == ".venv" and script.is_file() and repo in source.parents:
        return str(script) + ("" if home == repo else f" --home {shlex.quote(str(home))}")
    return own_command(home, "down", executable=executable)


HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        envvar=HOME_ENV,
        show_envvar=True,
        help="Directory holding data/ and logs/ [default: the current directory].",
    ),
]


def config_path() -> Path:
    return Path(str(resources.files("persistq.deploy").joinpath("supervisord.conf")))


def resolve_home(home: Path | None) -> Path:
    return home_dir(home)


def resolve_url(home: Path, url: str | None) -> str:
    """Make a relative SQLite URL absolute under ``home``, so every program opens one file."""
    return url_under(home, url or os.environ.get("PERSISTQ_URL") or DEFAULT_URL)


def ensure_ui_password(url: str, env: dict[str, str]) -> str:
    """Make the UIs' admin password before they start, so they find its hash and make none.

    A new one is printed here, once, on ``up``'s own output (as the API token is), and only
    its hash is stored: no copy of it in any file or log. Returns the "UI login" line.
    """
    if env.get(PASSWORD_ENV):
        return f"UI login: the password is the value of {PASSWORD_ENV}"
    shown: list[str] = []
    try:
        password = admin_password(data_dir(url, env), env, announce=shown.append)
    except (CredentialsError, OSError) as exc:
        fail(f"the UIs' admin password: {exc}")
        raise AssertionError("unreachable") from None
    for text in shown:
        stdout.print(text, markup=False)
    if shown:
        return "UI login: the password printed above (shown only this once)"
    return (
        f"UI login: the password printed by the first `persistq up`; only its hash is kept, "
        f"in {password.path} (for a new one: persistq down, delete that file, persistq up)"
    )


def resolve_files_dir(home: Path) -> Path:
    """The demo files' directory under ``home`` (PERSISTQ_FILES_DIR, default data/files): the
    one the producer writes to and the only one the consumers' stamp_file may touch."""
    return home / Settings.from_env({**os.environ, HOME_ENV: str(home)}).files_dir


def supervisor(home: Path) -> Any:
    """An XML-RPC proxy to the supervisord of ``home`` (over its owner-only unix socket)."""
    sock = home / "data" / "supervisor.sock"
    transport = SupervisorTransport(None, None, f"unix://{sock}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor


def is_running(home: Path) -> bool:
    try:
        return bool(supervisor(home).getState()["statename"] == "RUNNING")
    except (OSError, xmlrpc.client.Error):
        return False


def processes(home: Path) -> list[dict[str, Any]]:
    infos: list[dict[str, Any]] = supervisor(home).getAllProcessInfo()
    return infos


def wait_for(check: Callable[[], bool], timeout: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return check()


def _full_name(info: dict[str, Any]) -> str:
    return info["name"] if info["group"] == info["name"] else f"{info['group']}:{info['name']}"


def print_status(home: Path) -> list[dict[str, Any]]:
    infos = processes(home)
    urls = recorded_urls(home)
    rows = [[i["name"], i["statename"], i["pid"] or "", urls.get(i["group"], "")] for i in infos]
    print_table(None, ["program", "state", "pid", "url"], rows)
    return infos


@app.command()
def up(
    ctx: typer.Context,
    home: HomeOption = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds to wait for RUNNING.")
    ] = 30.0,
) -> None:
    """Start producer, consumers, API and UIs under Supervisor, in the background."""
    home = resolve_home(home)
    os.umask(0o027)  # database, logs and files: owner and group only, never world
    files_dir = resolve_files_dir(home)
    # The first start of a home creates its database; a later one needs it there: a fresh
    # empty database in place of a lost one would hide the loss and reuse its job ids.
    first_start = not (home / "data").exists()
    for folder in (home / "data", files_dir, home / "logs"):
        folder.mkdir(mode=0o750, parents=True, exist_ok=True)
    if is_running(home):
        stdout.print(f"persistq is already running in {home}")
        print_status(home)
        return
    url = resolve_url(home, ctx.find_root().obj.url)
    with persistq.connect(url, create=first_start) as q:  # so a bad URL fails here
        q.check()
    env = {**os.environ, "PERSISTQ_HOME": str(home), "PERSISTQ_PYTHON": sys.executable}
    env["PERSISTQ_URL"] = url
    # The producer writes there and the consumers' stamp_file is confined to it: one value.
    env["PERSISTQ_FILES_DIR"] = str(files_dir)
    # The demo's consumers recover a crashed job in about 40 s rather than 300 s.
    env.setdefault("PERSISTQ_LEASE_SECONDS", "30")
    for var, default, _ in PORTS.values():  # the config reads them; set, they move a port
        os.environ[var] = env[var] = env.get(var) or default
    record_urls(home, urls_from_env(env))
    # `persistq api` refuses to start without a token: made at the first start, kept in data/.
    env["PERSISTQ_API_TOKEN"] = ensure_api_token(home)
    ui_login = ensure_ui_password(url, env)
    started = subprocess.run(
        [sys.executable, "-m", "supervisor.supervisord", "-c", str(config_path())],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        check=False,
    )
    if started.returncode != 0 or not wait_for(lambda: is_running(home), 10):
        fail(f"supervisord did not start: {(started.stderr or started.stdout).strip()[:300]}")

    def settled() -> bool:
        return {i["statename"] for i in processes(home)} <= {"RUNNING", "FATAL"}

    wait_for(settled, timeout)
    infos = print_status(home)
    broken = [_full_name(i) for i in infos if i["statename"] != "RUNNING"]
    stdout.print(f"data:     {home / 'data'}  (database {url})")
    stdout.print(f"logs:     {home / 'logs'}  (e.g. tail -f {home / 'logs' / 'consumer-0.log'})")
    status_line = own_command(home, "status")
    stdout.print(f"status:   {status_line}    stop: {stop_command(home)}", markup=False)
    stdout.print(ui_login, markup=False)
    if broken:
        fail(f"not running: {', '.join(broken)}; see {home / 'logs'}")


@app.command()
def down(
    home: HomeOption = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds to wait for exit.")
    ] = 120.0,
) -> None:
    """Stop everything: consumers drain, then supervisord exits; no process is left."""
    home = resolve_home(home)
    if not is_running(home):
        stdout.print(f"persistq is not running in {home}")
        return
    rpc = supervisor(home)
    pids = [int(rpc.getPID())] + [i["pid"] for i in processes(home) if i["pid"]]
    stderr.print("stopping (running jobs get up to their grace period) ...")
    rpc.shutdown()
    if not wait_for(lambda: not any(_alive(pid) for pid in pids), timeout):
        left = [pid for pid in pids if _alive(pid)]
        fail(f"processes still alive after {timeout:.0f}s: {left}")
    stdout.print(f"stopped; no persistq process left ({len(pids)} exited)")


@app.command()
def status(home: HomeOption = None) -> None:
    """Show every program and its state; exit 1 when the system is not running."""
    home = resolve_home(home)
    if not is_running(home):
        fail(f"persistq is not running in {home} (start it with: persistq up)")
    print_status(home)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes; /proc tells (Linux).
    with suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return True


@app.command("simulate-crash")
def simulate_crash(
    home: HomeOption = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=10, help="Seconds to wait in all.")
    ] = 180.0,
    lease_expiry: Annotated[
        bool,
        typer.Option(
            "--lease-expiry",
            help="SIGKILL the whole consumer instead of its handler's child process: the job "
            "comes back only when its lease expires.",
        ),
    ] = False,
) -> None:
    """SIGKILL the child process running a consumer's job (or, with --lease-expiry, the
    consumer itself); check the job comes back, completes once, and none is lost."""
    home = resolve_home(home)
    if not is_running(home):
        fail(f"persistq is not running in {home} (start it with: persistq up)")
    rpc = supervisor(home)
    url = resolve_url(home, os.environ.get("PERSISTQ_URL"))
    with persistq.connect(url, create=False) as q:
        before = _all_ids(q)
        victim, job = _consumer_holding_a_job(home, q, timeout / 3)
        say = stdout.print
        pid = victim["pid"]
        say(f"before: {len(before)} jobs; {_full_name(victim)} (pid {pid}) holds job {job.id}")
        if not lease_expiry:
            _kill_handler_child(q, home, job, before, pid, timeout, say)
            return
        killed = time.monotonic()
        os.kill(victim["pid"], signal.SIGKILL)
        say(f"SIGKILL sent to pid {victim['pid']}")
        name = _full_name(victim)

        def restarted() -> bool:
            info = rpc.getProcessInfo(name)
            return bool(info["statename"] == "RUNNING" and info["pid"] not in (0, victim["pid"]))

        if not wait_for(restarted, 30):
            fail(f"{name} was not restarted by Supervisor within 30 s")
        say(f"Supervisor restarted {name} as pid {rpc.getProcessInfo(name)['pid']}")
        say(f"waiting for the lease to expire and job {job.id} to be done again ...")
        back = _wait_back(q, job, killed, timeout, say, "lease_expired")
        _verdict(q, home, job, before, "lease_expired", say)
        say(
            f"PASS: the consumer came back; its job was recovered in {back:.1f} s (lease "
            "expiry) and completed once; none lost"
        )


def _wait_back(
    q: Queue, job: Job, killed: float, timeout: float, say: Callable[[str], None], kind: str
) -> float:
    """Seconds from the kill until the job was PENDING again (its ``kind`` event: crashed
    or lease_expired); then wait for it to complete."""
    deadline = killed + timeout
    seen = len(q.events(job.id))

    def came_back() -> bool:
        return any(e.kind == kind for e in q.events(job.id)[seen:])

    if not wait_for(came_back, timeout, every=0.05):
        fail(f"job {job.id} not back ({kind}) {timeout:.0f}s after the kill")
    back = time.monotonic() - killed
    say(f"job {job.id} back for another attempt {back:.1f} s after the kill")
    left = max(1.0, deadline - time.monotonic())
    if not wait_for(lambda: q.get(job.id).status == State.COMPLETED, left, every=0.2):
        fail(f"job {job.id} is {q.get(job.id).status} after {timeout:.0f}s, not COMPLETED")
    say(f"job {job.id} COMPLETED {time.monotonic() - killed:.1f} s after the kill")
    return back


def _verdict(
    q: Queue, home: Path, job: Job, before: set[int], expected: str, say: Callable[[str], None]
) -> None:
    after = _all_ids(q)
    done = q.get(job.id)
    kinds = [e.kind for e in q.events(job.id)]
    lost = sorted(before - after)
    twice = _stamped_twice(resolve_files_dir(home))
    say(f"job {job.id}: {' -> '.join(kinds)} (attempts {done.attempts}, by {done.worker})")
    say(f"after: {len(after)} jobs; lost: {len(lost)}; stamped twice: {len(twice)}")
    if lost or twice or expected not in kinds:
        fail(f"FAIL: lost {lost[:10]}, stamped twice {twice[:10]}, events {kinds}")


def _kill_handler_child(
    q: Queue,
    home: Path,
    job: Job,
    before: set[int],
    worker_pid: int,
    timeout: float,
    say: Callable[[str], None],
) -> None:
    """SIGKILL the process-pool children of the consumer (one per slot: the demo runs two)
    and check the consumer itself lives on while its job comes back at once."""
    children = _pool_children(worker_pid)
    if not children:
        fail(
            f"consumer pid {worker_pid} runs no handler child process (not --pool process); "
            "use --lease-expiry to kill the whole consumer"
        )
    killed = time.monotonic()
    for child in children:
        os.kill(child, signal.SIGKILL)
    say(f"SIGKILL sent to the handler child process(es) {children} of pid {worker_pid}")
    back = _wait_back(q, job, killed, timeout, say, "crashed")
    _verdict(q, home, job, before, "crashed", say)
    if not _alive(worker_pid):
        fail(f"FAIL: the consumer pid {worker_pid} died with its child")
    say(
        f"PASS: the consumer (pid {worker_pid}) kept running; its job was back in {back:.1f} s "
        "(crashed) and completed once; none lost"
    )


def _pool_children(worker_pid: int) -> list[int]:
    """The worker's handler processes: the children of its multiprocessing fork server."""
    parents: dict[int, int] = {}
    commands: dict[int, bytes] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError, IndexError):
            parents[int(entry.name)] = int(
                (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            )
            commands[int(entry.name)] = (entry / "cmdline").read_bytes()
    servers = {
        p
        for p, parent in parents.items()
        if parent == worker_pid and b"multiprocessing.forkserver" in commands.get(p, b"")
    }
    return sorted(p for p, parent in parents.items() if parent in servers)


def _all_ids(q: Queue) -> set[int]:
    ids: set[int] = set()
    offset = 0
    while page := q.jobs(limit=1000, offset=offset):
        ids.update(j.id for j in page)
        offset += len(page)
    return ids


def _consumer_holding_a_job(home: Path, q: Queue, timeout: float) -> tuple[dict[str, Any], Job]:
    """Wait until a consumer holds a job; enqueue a file job if none is flowing."""
    host = socket.gethostname()
    nudged = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        consumers = {
            f"{host}:{i['pid']}": i
            for i in processes(home)
            if i["group"] == "consumer" and i["statename"] == "RUNNING"
        }
        for job in q.jobs(status=State.PROCESSING, limit=100):
            if job.worker in consumers:
                return consumers[job.worker], job
        if not nudged and not q.jobs(status=State.PENDING, limit=1):
            path = make_random_file(resolve_files_dir(home))
            q.enqueue(stamp_payload(path), queue=FILES_QUEUE)
            nudged = True
        time.sleep(0.2)
    fail(f"no consumer picked up a job within {timeout:.0f}s")
    raise AssertionError("unreachable")


def _stamped_twice(directory: Path) -> list[str]:
    """Files carrying the same job's stamp more than once."""
    twice = []
    for path in sorted(directory.glob("*.txt")):
        with suppress(OSError, ValueError):
            ids = stamps(path)
            if len(ids) != len(set(ids)):
                twice.append(path.name)
    return twice
