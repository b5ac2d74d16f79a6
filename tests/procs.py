"""Real processes for the crash and multi-process tests: the child roles, and their parent side.

A child is this file run as a script by the test's own interpreter (the venv's python)::

    python tests/procs.py ROLE URL [ARG ...]

Each role opens the queue with ``persistq.connect`` (the real clock: leases expire in real
time across processes), writes one line per acknowledged step on stdout, flushed at once so
a line on stdout means the step returned before any later SIGKILL, and lets any exception
escape, so Python prints its traceback on stderr and exits 1. The parent reads those files;
nothing is shared in memory, nothing of the database is faked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import persistq

SCRIPT = Path(__file__).resolve()
#: How long a parent waits for a child's next sign of life before failing the test.
TIMEOUT_SECONDS = 60.0


def say(*words: object) -> None:
    """One line on stdout, written to the file before this returns (so before any later kill)."""
    sys.stdout.write(" ".join(str(w) for w in words) + "\n")
    sys.stdout.flush()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT_SECONDS) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def wait_for_file(path: Path) -> None:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.002)


# -- child roles -------------------------------------------------------------------------------


def open_after(url: str, go_file: str) -> None:
    """Say ready, wait for the go file, then open the (fresh) database and enqueue once."""
    say("ready", os.getpid())
    wait_for_file(Path(go_file))
    with persistq.connect(url) as q:
        say("enqueued", q.enqueue({"pid": os.getpid()}).id)


def produce(url: str, count: str, tag: str) -> None:
    with persistq.connect(url) as q:
        for n in range(int(count)):
            say("enqueued", q.enqueue({"tag": tag, "n": n}).id)


def consume(url: str, done_file: str) -> None:
    """Claim and complete until the producers are done and nothing is left to claim."""
    done = Path(done_file)
    worker = f"consumer-{os.getpid()}"
    with persistq.connect(url, lease=60) as q:
        while True:
            producers_done = done.exists()  # looked at before the claim: no job can follow
            job = q.claim(worker=worker, wait=0.2)
            if job is None:
                if producers_done:
                    return
                continue
            q.complete(job, {"by": worker})
            say("completed", job.id)


def enqueue_forever(url: str, batch: str, round_: str) -> None:
    """Enqueue (``batch`` 1) or enqueue_many (``batch`` > 1) until killed; say each acked id."""
    size = int(batch)
    with persistq.connect(url) as q:
        for b in range(sys.maxsize):
            payloads = [{"round": int(round_), "batch": b, "n": n} for n in range(size)]
            jobs = [q.enqueue(payloads[0])] if size == 1 else q.enqueue_many(payloads)
            say("enqueued", *(job.id for job in jobs))


def hold(url: str, lease: str) -> None:
    """Claim one job, say so with its lease token, then hold it without heartbeats forever."""
    with persistq.connect(url) as q:
        job = q.claim(worker=f"holder-{os.getpid()}", lease=float(lease), wait=TIMEOUT_SECONDS)
        assert job is not None, "nothing to claim"
        assert job.lease_expires_at is not None
        say("claimed", job.id, job.lease_token, job.lease_expires_at.timestamp())
        time.sleep(3600)


def sweep_and_complete(url: str) -> None:
    """Sweep stalled jobs, as a worker does, until one can be claimed; complete that one."""
    worker = f"sweeper-{os.getpid()}"
    deadline = time.monotonic() + TIMEOUT_SECONDS
    with persistq.connect(url, lease=60) as q:
        while time.monotonic() < deadline:
            recovered = q.recover_stalled()
            if recovered:
                say("recovered", recovered, time.time())
            job = q.claim(worker=worker, wait=0.05)
            if job is not None:
                q.complete(job, {"by": worker})
                say("completed", job.id, job.attempts)
                return
    raise TimeoutError("no job became claimable")


def consume_or_die(url: str, lease: str) -> None:
    """A consumer that SIGKILLs itself when it claims a poison job; exits once all is done."""
    worker = f"consumer-{os.getpid()}"
    with persistq.connect(url) as q:
        while True:
            q.recover_stalled()
            job = q.claim(worker=worker, lease=float(lease), wait=0.1)
            if job is not None:
                if isinstance(job.payload, dict) and job.payload.get("poison"):
                    say("dying", job.id, job.attempts)
                    os.kill(os.getpid(), signal.SIGKILL)
                q.complete(job, {"by": worker})
                say("completed", job.id)
                continue
            counts = q.stats()["queues"].get("default", {})
            if not counts.get("PENDING") and not counts.get("PROCESSING"):
                return


def enqueue_through_outages(
    url: str, stop_file: str, log_file: str, pause: str, busy_timeout: str = ""
) -> None:
    """Enqueue until the stop file appears, through database outages: say each acknowledged
    id, or ``refused <persistq error class> <message>``; anything else escapes (a traceback).
    ``busy_timeout``: how long a call retries an unreachable server (default 60 s)."""
    if busy_timeout:
        os.environ["PERSISTQ_BUSY_TIMEOUT_SECONDS"] = busy_timeout
    stop = Path(stop_file)
    with persistq.connect(url) as q:
        n = 0
        while not stop.exists():
            try:
                job = q.enqueue({"log": log_file, "n": n, "pid": os.getpid()})
            except persistq.QueueError as exc:
                say("refused", type(exc).__name__, " ".join(str(exc).split()))
            else:
                say("enqueued", job.id)
            n += 1
            time.sleep(float(pause))


def claim_wait(url: str, wait: str) -> None:
    """Say ``waiting`` right before a blocking claim, then ``claimed ID UNIX_TIME`` (or
    ``nothing UNIX_TIME``) the moment it returns; repeat until killed."""
    with persistq.connect(url) as q:
        while True:
            say("waiting", time.time())
            job = q.claim(worker=f"waiter-{os.getpid()}", wait=float(wait))
            if job is None:
                say("nothing", time.time())
            else:
                say("claimed", job.id, time.time())
                q.complete(job)


def complete_each(url: str, count: str, pause: str) -> None:
    """Claim ``count`` jobs one by one; hold each ``pause`` seconds, then complete it and say
    ``completed ID UNIX_TIME`` the moment the complete returned (the commit is done)."""
    with persistq.connect(url) as q:
        for _ in range(int(count)):
            job = q.claim(worker=f"completer-{os.getpid()}", wait=TIMEOUT_SECONDS)
            assert job is not None, "nothing to claim"
            time.sleep(float(pause))
            q.complete(job, {"done": job.id})
            say("completed", job.id, time.time())


ROLES: dict[str, Callable[..., None]] = {
    "open-after": open_after,
    "produce": produce,
    "consume": consume,
    "enqueue-forever": enqueue_forever,
    "hold": hold,
    "sweep-and-complete": sweep_and_complete,
    "consume-or-die": consume_or_die,
    "enqueue-through-outages": enqueue_through_outages,
    "claim-wait": claim_wait,
    "complete-each": complete_each,
}


# -- parent side ---------------------------------------------------------------------------------


def every_job(q: persistq.Queue) -> dict[int, persistq.Job]:
    """Every job the database holds, by id, page after page: a producer killed late on a
    loaded machine may have stored more than any one page holds."""
    jobs: dict[int, persistq.Job] = {}
    while True:
        page = q.jobs(limit=10_000, offset=len(jobs))
        jobs.update((job.id, job) for job in page)
        if len(page) < 10_000:
            return jobs


class Child:
    """A running role; its stdout and stderr go to files, read whenever the parent likes."""

    def __init__(self, directory: Path, name: str, role: str, *args: object) -> None:
        self.name = name
        self.stdout = directory / f"{name}.out"
        self.stderr = directory / f"{name}.err"
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(SCRIPT), role, *(str(a) for a in args)],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                cwd=directory,
            )

    def lines(self) -> list[list[str]]:
        """Every complete line written so far, split into words (a torn last line is left out)."""
        text = self.stdout.read_text()
        complete = text[: text.rfind("\n") + 1]
        return [line.split() for line in complete.splitlines()]

    def said(self, word: str) -> list[list[str]]:
        return [line[1:] for line in self.lines() if line and line[0] == word]

    def errors(self) -> str:
        return self.stderr.read_text()

    def wait_for(self, word: str, count: int = 1) -> list[list[str]]:
        """Block until the child has said ``word`` ``count`` times; fail if it dies first."""
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while len(found := self.said(word)) < count:
            if self.proc.poll() is not None:
                found = self.said(word)
                if len(found) >= count:
                    break
                raise AssertionError(
                    f"{self.name} exited {self.proc.returncode} before saying {word!r}"
                    f" {count} times:\n{self.errors()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not say {word!r} in time:\n{self.errors()}")
            time.sleep(0.005)
        return found

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(TIMEOUT_SECONDS)

    def finish(self) -> int:
        """Wait for a normal exit; the exit code (negative: killed by that signal)."""
        try:
            return self.proc.wait(TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not finish:\n{self.errors()}") from None

    def assert_clean_exit(self) -> None:
        """Exit code 0 and nothing on stderr: no exception, no traceback, no warning."""
        code = self.finish()
        errors = self.errors()
        assert "database is locked" not in errors, f"{self.name}:\n{errors}"
        assert "Traceback" not in errors, f"{self.name}:\n{errors}"
        assert code == 0 and errors == "", f"{self.name} exited {code}:\n{errors}"


class WorkerProcess:
    """A real ``python -m persistq --url URL worker ...`` process (handler ``handlers:act``
    unless ``--handler`` is given), optionally under a ``prefix`` command (``ip netns exec
    NS``); stdout and stderr go to one log file."""

    def __init__(
        self,
        directory: Path,
        name: str,
        url: str,
        *args: str,
        env: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self.name = name
        self.timeout = timeout
        self.output = directory / f"{name}.log"
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("PERSISTQ_")}
        child_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(SCRIPT.parent), os.environ.get("PYTHONPATH", "")) if p
        )
        child_env.update(env or {})
        command = [*prefix, sys.executable, "-m", "persistq", "--url", url, "worker"]
        if "--handler" not in args and "--app" not in args:
            command += ["--handler", "handlers:act"]
        command += ["--worker-id", name, *args]
        with self.output.open("wb") as out:
            self.proc = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=directory,
                env=child_env,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(self.timeout)

    def wait(self, timeout: float | None = None) -> int:
        try:
            return self.proc.wait(self.timeout if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not exit:\n{self.log()}") from None

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float | None = None) -> float:
        """Signal it, wait for exit 0 and a clean log; the seconds it took to exit."""
        sent = time.monotonic()
        if self.alive():
            self.proc.send_signal(sig)
        code = self.wait(timeout)
        took = time.monotonic() - sent
        assert code == 0, f"{self.name} exited {code}:\n{self.log()}"
        self.assert_did_not_crash()
        assert "event=stopped" in self.log(), self.log()
        return took

    def assert_did_not_crash(self) -> None:
        """Job errors are logged as one ``error='Type: text'`` field; never a traceback."""
        text = self.log()
        for sign in ("Traceback", "Fatal Python error", "Exception in thread", "Error in sys."):
            assert sign not in text, f"{self.name}:\n{text}"


class Children:
    """Spawns children into one directory and SIGKILLs whichever still run at exit."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[Child | WorkerProcess] = []

    def spawn(self, name: str, role: str, *args: object) -> Child:
        child = Child(self.directory, name, role, *args)
        self.started.append(child)
        return child

    def worker(
        self,
        name: str,
        url: str,
        *args: str,
        prefix: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> WorkerProcess:
        child = WorkerProcess(self.directory, name, url, *args, prefix=prefix, env=env)
        self.started.append(child)
        return child

    def __enter__(self) -> Children:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for child in self.started:
            if child.proc.poll() is None:
                child.kill()


if __name__ == "__main__":
    ROLES[sys.argv[1]](*sys.argv[2:])
