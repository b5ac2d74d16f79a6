"""SIGKILLed producers and consumers (SPEC guarantees 1, 3 and 4, and 5's last sentence).

Real child processes on the database of ``backend_url``, killed with a real SIGKILL: no
exit handler, no rollback, no close runs in the child. Leases are real seconds here,
because the clock has to be shared across processes.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter, defaultdict
from dataclasses import replace

import pytest

from persistq import LeaseLost, Queue, State
from procs import Child, Children, every_job

pytestmark = pytest.mark.slow

#: Acknowledged ids to wait for before each kill, and how many kill/restart rounds.
IDS_BEFORE_KILL = 150
ROUNDS = 5


@pytest.mark.parametrize("batch", [1, 20], ids=["enqueue", "enqueue_many"])
def test_every_enqueue_acknowledged_before_a_sigkill_is_stored(
    backend_url: str, real_queue: Queue, children: Children, batch: int
) -> None:
    """Kill a producer mid-loop, five times over, each time reopening the crashed database.

    Every id a returned enqueue reported is stored and PENDING; the only extra jobs are the
    call in flight at the kill, and a batch is stored whole or not at all.
    """
    rng = random.Random(batch)
    reported: list[int] = []
    for round_ in range(ROUNDS):
        producer = children.spawn(
            f"producer-{round_}", "enqueue-forever", backend_url, batch, round_
        )
        producer.wait_for("enqueued", IDS_BEFORE_KILL // batch)
        time.sleep(rng.uniform(0, 0.02))  # land the kill anywhere in a call, not just after one
        producer.kill()
        assert producer.proc.returncode == -signal.SIGKILL, producer.errors()
        assert producer.errors() == ""
        reported += [int(job_id) for words in producer.said("enqueued") for job_id in words]

    stored = every_job(real_queue)  # the newest 10,000 missed the oldest when more
    missing = sorted(set(reported) - set(stored))
    assert not missing, f"acknowledged but lost: {missing[:10]}"
    for job_id in reported:
        job = stored[job_id]
        assert job.status == State.PENDING
        assert real_queue.get(job_id) == job
        assert [e.kind for e in real_queue.events(job_id)] == ["enqueued"]
    unreported = [stored[i] for i in sorted(set(stored) - set(reported))]
    assert len(unreported) <= ROUNDS * batch, "more than the in-flight call per kill was stored"
    batches: defaultdict[tuple[int, int], list[int]] = defaultdict(list)
    for job in stored.values():
        batches[(job.payload["round"], job.payload["batch"])].append(job.payload["n"])
    torn = {key: ns for key, ns in batches.items() if sorted(ns) != list(range(batch))}
    assert not torn, f"batches stored in part: {torn}"

    report = real_queue.check(full=True)
    assert report["ok"], report


def test_a_sigkilled_consumer_s_job_is_recovered_after_its_lease_and_completed_by_another(
    backend_url: str, real_queue: Queue, children: Children
) -> None:
    lease = 3.0
    job_id = real_queue.enqueue({"task": "survive a crash"}).id
    holder = children.spawn("holder", "hold", backend_url, lease)
    [[claimed_id, stale_token, expires_at]] = holder.wait_for("claimed")
    assert int(claimed_id) == job_id
    holder.kill()
    assert holder.errors() == ""

    # The dead holder's lease still stands until it expires: no one may steal it early.
    assert time.time() < float(expires_at), "the machine is too slow for this lease"
    assert real_queue.recover_stalled() == 0
    assert real_queue.get(job_id).status == State.PROCESSING

    sweeper = children.spawn("sweeper", "sweep-and-complete", backend_url)
    sweeper.assert_clean_exit()
    [[recovered, recovered_at]] = sweeper.said("recovered")
    assert int(recovered) == 1
    assert float(recovered_at) >= float(expires_at)
    assert sweeper.said("completed") == [[str(job_id), "2"]]

    job = real_queue.get(job_id)
    assert job.status == State.COMPLETED
    assert job.attempts == 2
    assert job.worker is not None and job.worker.startswith("sweeper-")
    kinds = [event.kind for event in real_queue.events(job_id)]
    assert kinds == ["enqueued", "claimed", "lease_expired", "claimed", "completed"]

    # The killed holder's token is stale for good (guarantee 3).
    with pytest.raises(LeaseLost):
        real_queue.complete(replace(job, lease_token=stale_token), {"by": "the dead"})
    assert real_queue.get(job_id) == job


def test_a_job_that_kills_every_consumer_ends_unprocessable_while_the_others_complete(
    backend_url: str, real_queue: Queue, children: Children
) -> None:
    """Consumers SIGKILL themselves on the poison job; the parent restarts them, as Supervisor
    would. Each restarted consumer sweeps before it claims (lease 1 s)."""
    poison = real_queue.enqueue({"poison": True}, priority=10, max_attempts=3).id
    normal = [job.id for job in real_queue.enqueue_many([{"n": n} for n in range(8)])]

    slots = 2
    running: list[Child] = []
    finished: list[Child] = []
    started = 0
    deadline = time.monotonic() + 30
    while len(finished) < slots:
        assert time.monotonic() < deadline, "consumers did not drain the queue in time"
        for child in list(running):
            if child.proc.poll() is None:
                continue
            running.remove(child)
            if child.proc.returncode == 0:
                child.assert_clean_exit()
                finished.append(child)
            else:
                assert child.proc.returncode == -signal.SIGKILL, child.errors()
                assert child.said("dying"), f"{child.name} died without claiming the poison"
        while len(running) + len(finished) < slots:
            running.append(children.spawn(f"consumer-{started}", "consume-or-die", backend_url, 1))
            started += 1
        time.sleep(0.02)

    everyone = children.started
    deaths = sorted(words for child in everyone for words in child.said("dying"))
    assert deaths == [[str(poison), str(attempt)] for attempt in (1, 2, 3)]
    completed = Counter(int(w[0]) for child in everyone for w in child.said("completed"))
    assert completed == dict.fromkeys(normal, 1)

    job = real_queue.get(poison)
    assert job.status == State.UNPROCESSABLE
    assert job.attempts == job.max_attempts == 3
    assert job.last_error is not None and "lease expired" in job.last_error
    kinds = [event.kind for event in real_queue.events(poison)]
    assert kinds == ["enqueued"] + ["claimed", "lease_expired"] * 3
    for job_id in normal:
        done = real_queue.get(job_id)
        assert (done.status, done.attempts) == (State.COMPLETED, 1)
