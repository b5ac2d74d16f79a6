"""rows.decode_json is json.loads, cheaper on what persistq writes: the same value for any
text, and the same error where json.loads has one. decode_payloads is one decode_json per
job. model.build_job is Job(...), cheaper: the same Job, as frozen."""

from __future__ import annotations

import dataclasses
import inspect
import json
import pickle
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from persistq.backends.base import NewJob
from persistq.backends.rows import decode_json, decode_payloads
from persistq.model import Job, State, build_job, encode_json

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
#: What a payload may be: JSON without the infinities json.dumps writes and persistq refuses.
PAYLOADS = JSON_VALUES.filter(lambda value: "Infinity" not in json.dumps(value))


@given(JSON_VALUES, st.sampled_from(["", " ", "\n", "\t "]), st.sampled_from(["", " ", "\n"]))
def test_the_value_of_any_json_text_with_or_without_whitespace(
    value: object, before: str, after: str
) -> None:
    text = before + json.dumps(value) + after
    assert decode_json(text) == json.loads(text)


@pytest.mark.parametrize("text", ["", " ", "{", '{"a": 1} x', "[1, 2]]", "nul", "1 2", "'a'"])
def test_text_that_is_not_json_raises_what_json_loads_raises(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as got:
        decode_json(text)
    assert str(got.value) == str(expected.value)


@given(st.lists(PAYLOADS, min_size=1, max_size=6))
def test_payloads_decoded_together_are_each_one_decoded_alone(values: list[object]) -> None:
    jobs = [NewJob("q", encode_json(v, what="payload"), 0, 0.0, 3, None) for v in values]
    assert decode_payloads(jobs) == [json.loads(job.payload) for job in jobs]


TIMES = st.datetimes(timezones=st.just(UTC))
JOB_FIELDS: dict[str, Any] = {
    "id": st.integers(min_value=1),
    "queue": st.text(min_size=1),
    "payload": JSON_VALUES,
    "status": st.sampled_from(State),
    "priority": st.integers(),
    "run_at": TIMES,
    "attempts": st.integers(min_value=0),
    "max_attempts": st.integers(min_value=1),
    "key": st.none() | st.text(),
    "worker": st.none() | st.text(),
    "lease_expires_at": st.none() | TIMES,
    "last_error": st.none() | st.text(),
    "result": JSON_VALUES,
    "created_at": TIMES,
    "updated_at": TIMES,
    "started_at": st.none() | TIMES,
    "finished_at": st.none() | TIMES,
    "lease_token": st.none() | st.text(),
    "cancel_requested": st.booleans(),
    "fence": st.integers(min_value=0),
    "timeout": st.none() | st.floats(min_value=0.001, max_value=1e6),
}


def test_build_job_takes_every_field_of_job_in_its_order() -> None:
    fields = [field.name for field in dataclasses.fields(Job)]
    assert list(inspect.signature(build_job).parameters) == fields == list(JOB_FIELDS)


@given(st.fixed_dictionaries(JOB_FIELDS))
def test_build_job_makes_the_job_that_job_makes(values: dict[str, Any]) -> None:
    built, made = build_job(*[values[name] for name in JOB_FIELDS]), Job(**values)
    assert type(built) is Job
    assert built == made and repr(built) == repr(made)
    assert dataclasses.asdict(built) == dataclasses.asdict(made)
    assert pickle.loads(pickle.dumps(built)) == made
    assert dataclasses.replace(built, fence=built.fence + 1).fence == made.fence + 1


def test_a_built_job_is_as_frozen_as_any_job() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    values: dict[str, Any] = (
        {name: None for name in JOB_FIELDS}
        | {"id": 1, "queue": "q", "status": State.PENDING, "priority": 0, "run_at": at}
        | {"attempts": 0, "max_attempts": 3, "created_at": at, "updated_at": at}
        | {"cancel_requested": False, "fence": 0}
    )
    job = build_job(*values.values())
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.fence = 2  # type: ignore[misc]
    # A name that is no field fails as it does on Job(...) (on 3.11, a TypeError: CPython's
    # frozen-with-slots __setattr__ names the class before slots were added).
    with pytest.raises((AttributeError, TypeError)) as made:
        dataclasses.replace(job).extra = 1  # type: ignore[attr-defined]
    with pytest.raises(made.type):
        job.extra = 1  # type: ignore[attr-defined]
