"""Text no backend can store is refused as InvalidJob, in every field, and changes nothing.

A lone surrogate (what Python makes of bytes that are not UTF-8 in argv or a file read
with ``surrogateescape``, or of a ``"\\ud800"`` escape in JSON) has no UTF-8 encoding; NUL
is refused by PostgreSQL's text type. Both used to escape the library as
UnicodeEncodeError or a driver error from the middle of a write.
"""

from __future__ import annotations

import pytest

from persistq import InvalidJob, Queue, State
from persistq.model import MAX_ERROR_CHARS, error_text

SURROGATES = ["\ud800", "a\udcffb", "\udfff"]
#: Unstorable in a plain text field (key, worker id, error text).
BAD_TEXT = [*SURROGATES, "a\x00b"]


@pytest.mark.parametrize("payload", ["\ud800", {"k": "x\udcff"}, {"\ud800": 1}, ["ok", ["\udfff"]]])
def test_a_payload_with_a_lone_surrogate_is_refused(queue: Queue, payload: object) -> None:
    with pytest.raises(InvalidJob, match=r"payload is not valid Unicode: lone surrogate '\\ud"):
        queue.enqueue(payload)
    with pytest.raises(InvalidJob, match=r"payload 1 is not valid Unicode"):
        queue.enqueue_many(["fine", payload, "fine"])
    assert queue.jobs() == []


def test_a_payload_with_nul_is_stored_escaped_by_json(queue: Queue) -> None:
    job = queue.enqueue({"nul": "a\x00b", "text": "héllo ✓"})
    assert queue.get(job.id).payload == {"nul": "a\x00b", "text": "héllo ✓"}


@pytest.mark.parametrize("key", BAD_TEXT)
def test_a_key_that_cannot_be_stored_is_refused(queue: Queue, key: str) -> None:
    with pytest.raises(InvalidJob, match="key cannot be stored"):
        queue.enqueue("x", key=key)
    with pytest.raises(InvalidJob, match="key cannot be stored"):
        queue.enqueue_many(["x", "y"], keys=["fine", key])
    assert queue.jobs() == []


@pytest.mark.parametrize("name", ["\ud800", "q\udcff", "default\n", "a\x00"])
def test_a_queue_name_that_cannot_be_stored_is_refused(queue: Queue, name: str) -> None:
    with pytest.raises(InvalidJob, match="invalid queue name"):
        queue.enqueue("x", queue=name)
    with pytest.raises(InvalidJob, match="invalid queue name"):
        queue.create_queue(name)
    with pytest.raises(InvalidJob, match="invalid queue name"):
        queue.claim(worker="w", queue=name)
    assert queue.jobs() == [] and queue.queues() == []


@pytest.mark.parametrize("worker", BAD_TEXT)
def test_a_worker_id_that_cannot_be_stored_is_refused(queue: Queue, worker: str) -> None:
    job = queue.enqueue("x")
    with pytest.raises(InvalidJob, match="worker cannot be stored"):
        queue.claim(worker=worker)
    with pytest.raises(InvalidJob, match="worker cannot be stored"):
        queue.worker_seen(worker, ["default"])
    with pytest.raises(InvalidJob, match="worker cannot be stored"):
        queue.worker_gone(worker)
    assert queue.get(job.id).status == State.PENDING
    assert queue.workers() == []


@pytest.mark.parametrize("error", BAD_TEXT)
def test_an_error_text_that_cannot_be_stored_is_refused(queue: Queue, error: str) -> None:
    waiting = queue.enqueue("by hand")
    held = queue.enqueue("held")
    claimed = queue.claim(worker="w")
    assert claimed is not None and claimed.id == waiting.id
    with pytest.raises(InvalidJob, match="error cannot be stored"):
        queue.fail(held.id, error)
    with pytest.raises(InvalidJob, match="error cannot be stored"):
        queue.fail(claimed, error)
    assert queue.get(held.id).status == State.PENDING
    assert queue.get(claimed.id).status == State.PROCESSING
    assert queue.get(claimed.id).last_error is None


def test_an_exception_whose_text_cannot_be_stored_still_fails_the_job_escaped(
    queue: Queue,
) -> None:
    """A handler's exception is the worker's to record: refusing it would leave the job
    stuck until its lease expired, so the unstorable characters are escaped instead."""
    queue.enqueue("x")
    claimed = queue.claim(worker="w")
    assert claimed is not None
    failed = queue.fail(claimed, ValueError("bad \udcff byte and \x00 nul"), retry=False)
    assert failed.status == State.FAILED
    assert failed.last_error is not None
    assert failed.last_error.endswith("ValueError: bad \\udcff byte and \\x00 nul")
    assert queue.events(failed.id)[-1].detail == failed.last_error


@pytest.mark.parametrize("result", ["\ud800", {"r": ["\udcff"]}])
def test_a_result_with_a_lone_surrogate_is_refused_and_the_lease_is_kept(
    queue: Queue, result: object
) -> None:
    queue.enqueue("x")
    claimed = queue.claim(worker="w")
    assert claimed is not None
    with pytest.raises(InvalidJob, match="result is not valid Unicode"):
        queue.complete(claimed, result)
    assert queue.get(claimed.id).status == State.PROCESSING
    assert queue.complete(claimed, "fine").status == State.COMPLETED


def test_error_text_keeps_the_end_of_a_long_traceback_within_the_limit() -> None:
    text = error_text("x" * MAX_ERROR_CHARS + "the cause")
    assert len(text) == MAX_ERROR_CHARS
    assert text.startswith("…") and text.endswith("the cause")
