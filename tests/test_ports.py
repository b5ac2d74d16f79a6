"""The twins `Queue` and `RemoteQueue` are held to one declaration, `ports.QueueAPI`.

A method added to one queue and not the other, or with another signature, fails here; so
does a public method both offer that the Protocol does not declare.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Protocol

import pytest

import persistq
from persistq.ports import QueueAPI, ReadQueue, WorkQueue
from persistq.queue import Queue
from persistq.remote import RemoteQueue

TWINS = [Queue, RemoteQueue]


def declared(protocol: type) -> set[str]:
    """The members a Protocol declares, its bases' included."""
    names: set[str] = set()
    for klass in protocol.__mro__:
        if klass in (Protocol, object) or not getattr(klass, "_is_protocol", False):
            continue
        names |= {n for n in vars(klass) if not n.startswith("_")}
    return names


def public(klass: type) -> set[str]:
    return {n for n in vars(klass) if not n.startswith("_")}


def shape(member: object) -> str:
    """What a caller relies on: a method's signature without ``self``, or 'property'."""
    if isinstance(member, property):
        return "property"
    parameters = list(inspect.signature(member).parameters.values())[1:]  # type: ignore[arg-type]
    return str(
        inspect.Signature(parameters, return_annotation=inspect.signature(member).return_annotation)
    )  # type: ignore[arg-type]


def test_work_and_read_queues_are_parts_of_the_queue_api() -> None:
    assert declared(WorkQueue) < declared(QueueAPI)
    assert declared(ReadQueue) < declared(QueueAPI)


@pytest.fixture
def instances(sqlite_url: str) -> Iterator[dict[type, object]]:
    """One of each twin: attributes set in ``__init__`` (``settings``) exist only there."""
    local = persistq.connect(sqlite_url)
    remote = RemoteQueue("http://127.0.0.1:9", token="t" * 32)  # connects at first call
    yield {Queue: local, RemoteQueue: remote}
    local.close()
    remote.close()


@pytest.mark.parametrize("twin", TWINS, ids=lambda k: k.__name__)
def test_each_queue_has_every_call_of_the_api_with_its_signature(
    twin: type, instances: dict[type, object]
) -> None:
    for name in sorted(declared(QueueAPI)):
        expected = inspect.getattr_static(QueueAPI, name)
        assert hasattr(instances[twin], name), f"{twin.__name__} lacks {name}"
        if not isinstance(expected, property):  # a property may be a plain attribute
            actual = inspect.getattr_static(twin, name)
            assert shape(actual) == shape(expected), f"{twin.__name__}.{name}"


def test_every_call_both_queues_offer_is_declared() -> None:
    shared = public(Queue) & public(RemoteQueue)
    assert shared - declared(QueueAPI) == set(), "declare these in ports.QueueAPI"
