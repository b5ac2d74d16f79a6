"""Group commit, the machinery both backends share: concurrent write calls of one process,
run by one leader as one group.

The first caller becomes the leader; the calls queued while the previous group ran (at most
``max_size``, the setting ``group_commit_max``) are handed to the backend's ``commit``,
which runs them together (SQLite: one transaction, a savepoint each; PostgreSQL: one
statement) and sets each call's answer. Each caller is answered after that commit; the lead
then passes to the first call queued meanwhile. There is no fixed delay: a lone caller runs
at once. ``?group_commit=off`` in a URL (:func:`parse_group_commit`) makes every call a
group of one.
"""

from __future__ import annotations

import copy
import os
import threading
import time
import weakref
from _thread import LockType
from collections import Counter, deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from persistq.errors import StorageBusy, StorageCorrupt, StorageFull, StorageUnavailable

W = TypeVar("W")
T = TypeVar("T")
#: Most write calls one group holds (Settings.group_commit_max): bounds how long a caller
#: waits behind a group, and (SQLite) a read of this process behind a transaction.
GROUP_COMMIT_MAX = 64
#: Storage errors that end a whole group: every caller of it gets them (another error is the
#: one call's own, rolled back alone).
GROUP_ERRORS = (StorageBusy, StorageFull, StorageCorrupt, StorageUnavailable)


def parse_group_commit(value: str | None) -> bool:
    """A URL's ``group_commit=`` option: on (the default) or off."""
    group = (value or "on").lower()
    if group not in ("on", "off"):
        raise StorageUnavailable(f"group_commit={group!r}: use on (default) or off")
    return group == "on"


class Call(Generic[W]):
    """One write call waiting in a group: ``work`` is what the backend runs for it; the
    leader sets ``result`` or ``error``, its caller reads them."""

    __slots__ = ("done", "error", "ready", "result", "work")

    def __init__(self, work: W) -> None:
        self.work = work
        self.result: Any = None
        self.error: BaseException | None = None
        #: Answered (result or error); else, once ``ready`` is released, this caller leads.
        self.done = False
        #: Made only for a call that waits behind a leader, taken at once: its caller waits
        #: by taking it again, and ``wake`` releases it. A bare lock, not an Event: an
        #: Event is a Condition, which makes a lock of its own per wait, and at 16 threads
        #: the Events cost more than the commits.
        self.ready: LockType | None = None

    def wait(self) -> None:
        assert self.ready is not None, "a call queued behind a leader has its lock"
        self.ready.acquire()

    def wake(self) -> None:
        """Answered, or handed the lead: only a call queued behind a leader is woken, and
        once (a call is answered, or handed the lead, and then leads to its answer)."""
        assert self.ready is not None, "a call queued behind a leader has its lock"
        self.ready.release()

    def answer(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


#: Every Groups of this process, to reset in a forked child.
_ALL: weakref.WeakSet[Groups[Any]] = weakref.WeakSet()


class Groups(Generic[W]):
    """Leader/follower grouping of the calls of one kind.

    ``commit(group)`` runs a group and sets every call's answer; it raises only what is no
    Exception (KeyboardInterrupt, SystemExit), and the others then go again under the next
    leader, but for those it answered and marked ``done``. ``sizes`` counts the groups run,
    by size (the bench and tests read it).
    """

    def __init__(
        self,
        commit: Callable[[list[Call[W]]], None],
        max_size: int,
        *,
        sizes: Counter[int] | None = None,
    ) -> None:
        self._commit = commit
        #: 1: every call its own group (``?group_commit=off``).
        self.max_size = max(1, max_size)
        self.sizes: Counter[int] = Counter() if sizes is None else sizes
        self.reset()
        _ALL.add(self)

    def reset(self) -> None:
        """No calls queued, no leader: new, and in a forked child (the parent's leader
        thread is not there)."""
        self.queued: deque[Call[W]] = deque()
        self._queue_lock = threading.Lock()
        # A leader may hold this one at the fork, too: it counts its group as it starts.
        self._sizes_lock = threading.Lock()
        self.leading = False
        self._last_group = 1

    def run(self, call: Call[W]) -> Any:
        """Run ``call`` in a group; its answer (or its error, raised)."""
        if self.max_size == 1:
            self._run([call])
            return call.answer()
        with self._queue_lock:
            alone = not self.leading and self._last_group == 1
            if alone:
                self.leading = True
        if alone:
            # Alone (no one led, so nothing is queued) after a group of one: lead at once,
            # without queueing (the common case of a caller alone).
            self._lead(call, [call])
        else:
            self._join(call)
        return call.answer()

    def _run(self, group: list[Call[W]]) -> None:
        self._last_group = len(group)
        with self._sizes_lock:
            self.sizes[len(group)] += 1
        self._commit(group)

    def _join(self, call: Call[W]) -> None:
        """Queue ``call``; lead a group when no one leads, else wait to be answered (or to
        be handed the lead). Returns once ``call`` is answered."""
        with self._queue_lock:
            leads = not self.leading
            self.leading = True
            if not leads:
                call.ready = threading.Lock()
                call.ready.acquire()
            self.queued.append(call)
        if leads:
            # Not a delay: a yield, so that the threads the previous group just answered,
            # on their way back, queue behind this one first. A caller alone (the last
            # group was its own) does not pay for this syscall.
            time.sleep(0)
        else:
            try:
                call.wait()
            except BaseException:
                self._give_up(call)
                raise
            if call.done:
                return
        # Leading: the group is what queued while the previous one ran (call first).
        with self._queue_lock:
            size = min(len(self.queued), self.max_size)
            group = [self.queued.popleft() for _ in range(size)]
        self._lead(call, group)

    def _lead(self, call: Call[W], group: list[Call[W]]) -> None:
        """Run ``group`` (``call``'s, the leader's, first), answer it, pass the lead on."""
        try:
            self._run(group)
        except BaseException:
            # Interrupted: the others go again under the next leader, but for those
            # ``commit`` marked done (answered: what it sent may have been written).
            others = [c for c in group if c is not call]
            with self._queue_lock:
                self.queued.extendleft(reversed([c for c in others if not c.done]))
            for other in others:
                if other.done:
                    other.wake()
            self._hand_over()
            raise
        for other in group:
            other.done = True
            if other is not call:
                other.wake()
        self._hand_over()

    def _give_up(self, call: Call[W]) -> None:
        """``call``'s caller was interrupted (KeyboardInterrupt in a main thread) while it
        waited. Still queued: it leaves the queue. Handed the lead: it passes the lead on,
        or the calls queued behind it would wait for a leader forever. Taken into a group
        that is running: that group answers it, unheard (its write may commit)."""
        assert call.ready is not None
        with self._queue_lock:
            woken = call.ready.acquire(blocking=False)
            if woken and call.done:
                return
            if call in self.queued:
                self.queued.remove(call)
            if woken:  # handed the lead: on to the next queued call, or no one leads
                if self.queued:
                    self.queued[0].wake()
                else:
                    self.leading = False

    def _hand_over(self) -> None:
        """The lead to the first call queued meanwhile, if any."""
        with self._queue_lock:
            if self.queued:
                self.queued[0].wake()
            else:
                self.leading = False


def fail_all(group: list[Call[Any]], exc: Exception) -> None:
    """``exc`` as the answer of every call of ``group``, each raising its own copy."""
    for n, call in enumerate(group):
        call.result, call.error = None, exc if n == 0 else own_copy(exc)


def own_copy(exc: Exception) -> Exception:
    """The same error for another caller's thread to raise (one object raised in several
    threads would share, and garble, one traceback)."""
    try:
        return copy.copy(exc)
    except Exception:
        return exc


def _reset_after_fork() -> None:
    for groups in list(_ALL):
        groups.reset()


os.register_at_fork(after_in_child=_reset_after_fork)
