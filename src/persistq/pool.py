"""The process pool of ``persistq worker --pool process``: handlers run in child processes.

Each worker slot owns one child, reused job after job. The parent keeps everything that
touches the queue (claim, lease, heartbeat, settle); a child only receives a job over its
pipe, runs the handler and sends back the result or the error. Because the parent waits on
the pipe *and* the child's sentinel, a child that dies (SIGKILL, segfault, ``os._exit``,
the OOM killer) is seen at once, and a child past the job's timeout can be killed.

Children start with the ``forkserver`` method: forking the worker itself is unsafe once it
runs threads (heartbeats, the sweeper, other slots: a lock held by one of them at the fork
stays locked forever in the child), while the fork server is a single-threaded process
started once, from which each child forks cheaply (``spawn`` would start a fresh
interpreter and import everything again for every replacement child).

A child dies with its worker, even one SIGKILLed mid-job: a thread of the child waits on a
"lifeline" pipe whose only write end the worker holds, and exits the child when it reads
end-of-file (the kernel closes the worker's end whatever killed it). ``PR_SET_PDEATHSIG``
would not do: a child's parent is the fork server, and the fork server lives on while any
child does (each holds its "alive" pipe).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from persistq.model import Job

#: After SIGTERM, how long a child may take to exit before it gets SIGKILL.
KILL_GRACE_SECONDS = 1.0
#: How long a child whose pipe closed may take to be reported gone: its exit code or signal
#: is what the crash detail says, and a loaded machine's fork server reports it late (1 s
#: was once too short in CI). Past it the child, alive with its pipe closed, is killed.
EXIT_WAIT_SECONDS = 10.0
#: ``forkserver``: safe with the worker's threads (see the module docstring).
START_METHOD = "forkserver"

Handler = Callable[[Job], Any]
HandlerFactory = Callable[[], Handler]


@dataclass
class Outcome:
    """How an attempt ended: a result, a handler error, a timeout or a crash (with what
    the kernel said of the process: exit code or signal)."""

    result: Any = None
    error: BaseException | None = None
    timed_out: str | None = None
    crashed: str | None = None


class RemoteTraceback(Exception):
    """The child's traceback, attached as the ``__cause__`` of the error it raised (an
    exception loses its traceback when pickled), so ``last_error`` still shows where."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


def _watch_lifeline(lifeline: Connection) -> None:
    with contextlib.suppress(EOFError, OSError):
        lifeline.recv()  # nothing is ever sent: this returns when the worker is gone
    os._exit(1)


def _child_main(conn: Connection, lifeline: Connection, make_handler: HandlerFactory) -> None:
    threading.Thread(target=_watch_lifeline, args=(lifeline,), daemon=True).start()
    # The fork server's process group (persistq.poolserver), not the worker's: a signal to
    # the worker's group is the worker's to handle.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    handler: Handler | None = None
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the worker is gone
        reply: tuple[Any, ...]
        try:
            if handler is None:
                handler = make_handler()
            reply = ("ok", handler(job))
        except (Exception, SystemExit) as exc:  # a handler error fails the job, not us
            reply = ("error", _sendable(exc), traceback.format_exc())
        try:
            conn.send(reply)
        except Exception as exc:  # the result or the error cannot be pickled
            text = f"{type(exc).__name__}: {exc}"
            kind = "result" if reply[0] == "ok" else "error"
            conn.send(("error", RuntimeError(f"the handler's {kind} cannot be sent: {text}"), ""))


def _sendable(error: BaseException) -> BaseException:
    """The error itself when it survives pickling (its type decides the retry policy),
    else a RuntimeError naming it: an exception whose __init__ does not take its args
    back cannot be rebuilt in the worker."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"{type(error).__qualname__}: {error}")
    return error


def describe_exit(code: int | None) -> str:
    if code is None:
        return "exited"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name} (signal {-code})"
    return f"exit code {code}"


class Child:
    """One child process and the pipe to it."""

    def __init__(self, make_handler: HandlerFactory, name: str) -> None:
        context: Any = multiprocessing.get_context(START_METHOD)
        # Read when the fork server starts (the first child): see persistq.poolserver.
        context.set_forkserver_preload(["persistq.poolserver"])
        self.conn, theirs = context.Pipe()
        lifeline, self._lifeline = context.Pipe(duplex=False)
        self.process: multiprocessing.process.BaseProcess = context.Process(
            target=_child_main, args=(theirs, lifeline, make_handler), name=name, daemon=True
        )
        self.process.start()
        theirs.close()
        lifeline.close()
        # kill() may come from the slot's thread and from a shutdown at once: closing a
        # pipe twice at the same moment is EBADF, so one of them does it.
        self._killing = threading.Lock()

    @property
    def pid(self) -> int:
        pid = self.process.pid
        assert pid is not None
        return pid

    def run(self, job: Job) -> Outcome:
        """Send the job, wait for its reply, its timeout or the child's death."""
        try:
            self.conn.send(job)
        except OSError:
            return self._crashed()
        deadline = None if job.timeout is None else time.monotonic() + job.timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = wait([self.conn, self.process.sentinel], timeout=remaining)
            if self.conn in ready:
                try:
                    reply = self.conn.recv()
                except (EOFError, OSError):
                    return self._crashed()
                except Exception as exc:  # a reply that cannot be rebuilt here
                    return Outcome(error=RuntimeError(f"the child's reply is unreadable: {exc!r}"))
                if reply[0] == "ok":
                    return Outcome(result=reply[1])
                error: BaseException = reply[1]
                if reply[2]:
                    error.__cause__ = RemoteTraceback(reply[2])
                return Outcome(error=error)
            if self.process.sentinel in ready:
                return self._crashed()
            if deadline is not None and time.monotonic() >= deadline:
                self.kill()
                return Outcome(
                    timed_out=f"timed out after {job.timeout:g} s: child {self.pid} killed"
                )

    def _crashed(self) -> Outcome:
        """The pipe to the child is gone (or the child is): how the child ended."""
        self.process.join(EXIT_WAIT_SECONDS)
        if self.process.is_alive():  # its pipe closed, yet it lives on: of no use any more
            self.kill()
            return Outcome(
                crashed=f"child {self.pid} lost its pipe and had not exited after "
                f"{EXIT_WAIT_SECONDS:g} s: killed"
            )
        return Outcome(crashed=f"child {self.pid} {describe_exit(self.process.exitcode)}")

    def kill(self) -> None:
        """SIGTERM, then SIGKILL after a short grace; returns once the child is gone."""
        with self._killing:
            if self.process.is_alive():
                self.process.terminate()
                self.process.join(KILL_GRACE_SECONDS)
                if self.process.is_alive():
                    self.process.kill()
            self.process.join()
            self.conn.close()  # a second close, once the first is done, does nothing
            self._lifeline.close()

    def alive(self) -> bool:
        return bool(self.process.is_alive())


class ProcessPool:
    """``size`` children, one per worker slot, each replaced after a crash or a timeout."""

    def __init__(self, size: int, make_handler: HandlerFactory, name: str = "persistq") -> None:
        self.make_handler = make_handler
        self.name = name
        self._lock = threading.Lock()
        self._children: list[Child | None] = [None] * size

    def start(self) -> None:
        for slot in range(len(self._children)):
            self._child(slot)

    def _child(self, slot: int) -> Child:
        with self._lock:
            child = self._children[slot]
            if child is None or not child.alive():
                child = Child(self.make_handler, f"{self.name}-child-{slot}")
                self._children[slot] = child
            return child

    def run(self, slot: int, job: Job) -> Outcome:
        child = self._child(slot)
        outcome = child.run(job)
        if outcome.crashed is not None or outcome.timed_out is not None:
            with self._lock:
                if self._children[slot] is child:
                    self._children[slot] = None
            child.kill()  # reaps it (a crashed child is gone already)
        return outcome

    def pids(self) -> list[int]:
        with self._lock:
            return [c.pid for c in self._children if c is not None and c.alive()]

    def close(self) -> None:
        """Kill every child (SIGTERM, then SIGKILL after the grace)."""
        with self._lock:
            children = [c for c in self._children if c is not None]
            self._children = [None] * len(self._children)
        for child in children:
            child.kill()
