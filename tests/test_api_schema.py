"""schemathesis over the API's own OpenAPI schema, against a real ``persistq api`` process.

Every operation gets generated requests, valid (positive) and invalid (negative): none may
answer 5xx, every answer must match the schema (status code documented, body shape, content
type), and valid requests must be accepted. The cases are counted, so a change that
silently skips operations fails.

schemathesis's pytest plugin does not run under this pytest (9.x), so the test drives its
Python API directly: one Hypothesis run per operation and generation mode.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import InvalidArgument, Unsatisfiable

from apiserver import ApiServer
from persistq.model import INT64_MAX

#: Generated cases per operation and mode; with ~24 operations, several hundred in all.
EXAMPLES = {schemathesis.GenerationMode.POSITIVE: 15, schemathesis.GenerationMode.NEGATIVE: 10}


#: Unknown query parameters are ignored, as most HTTP APIs do, and the token is sent with every
#: request; so "schema-violating request accepted" is not checked (an invalid body, path or
#: value still has to get a 4xx from the other checks: no 5xx, documented status codes).
EXCLUDED_CHECKS = [schemathesis.checks.negative_data_rejection]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with ApiServer(tmp_path_factory.mktemp("schema")) as running:
        yield running


def short_long_polls(case: Any) -> None:
    for where in (case.body, case.query):
        wait = where.get("wait") if isinstance(where, dict) else None
        if isinstance(wait, int | float) and not isinstance(wait, bool) and 0 < wait <= 30:
            where["wait"] = min(wait, 0.05)  # still a valid long poll, kept short for the run


def near_run_at(case: Any) -> None:
    """A schema cannot bound a time relative to now: keep a generated run_at's instant
    within the ten years the queue accepts (its offset and format as generated)."""
    body = case.body
    run_at = body.get("run_at") if isinstance(body, dict) else None
    if isinstance(run_at, str) and len(run_at) >= 4 and run_at[:4].isdigit():
        body["run_at"] = f"{min(int(run_at[:4]), 2028):04d}" + run_at[4:]  # a leap year


def integers_as_integers(value: Any) -> Any:
    """JSON Schema counts 19.0 as an integer, so a valid case may carry one; the API takes
    JSON integers only (by choice: api/schemas.py), so send 19.0 as 19 (float fields take
    19 too). The refusal of 19.0 is tested in test_api_app.py. A "valid" integer above
    ``maximum: 9223372036854775807`` is the generator's rounding of that bound through a
    float (seen: 9223372036854775999 for a job id), so it is sent as the bound itself."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value > INT64_MAX:
        return INT64_MAX
    if isinstance(value, dict):
        return {k: integers_as_integers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [integers_as_integers(v) for v in value]
    return value


def fuzz(
    operation: Any,
    mode: schemathesis.GenerationMode,
    examples: int,
    counts: dict[str, int],
    label: str,
    headers: dict[str, str],
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def run(case: Any) -> None:
        if mode == schemathesis.GenerationMode.POSITIVE and isinstance(case.body, dict):
            case.body = integers_as_integers(case.body)
        short_long_polls(case)
        if mode == schemathesis.GenerationMode.POSITIVE:
            near_run_at(case)
        counts[label] += 1
        case.call_and_validate(headers=headers, excluded_checks=EXCLUDED_CHECKS)

    try:
        run()
    except Unsatisfiable:  # no invalid request exists for an operation without input
        assert mode == schemathesis.GenerationMode.NEGATIVE, label
    except InvalidArgument as exc:
        # A negative case past a 64 KiB maxLength asks Hypothesis for a longer string than
        # it can make: the generator's limit, not the API's (test_api_app sends such texts).
        if mode != schemathesis.GenerationMode.NEGATIVE or "min_size is larger" not in str(exc):
            raise


#: Least cases each mode sends in all (seen: 586 and 390 over 40 operations; those with no
#: input have few to vary).
LEAST_CASES = {schemathesis.GenerationMode.POSITIVE: 450, schemathesis.GenerationMode.NEGATIVE: 250}


# One test per mode, so the two halves can run on two xdist workers at once (each has its
# own server): together they were the suite's longest test.
@pytest.mark.parametrize("mode", list(EXAMPLES), ids=lambda mode: mode.value)
def test_every_operation_conforms_and_never_answers_5xx(
    server: ApiServer, mode: schemathesis.GenerationMode
) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    counts: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.label} ({mode.value})"
        counts[label] = 0
        fuzz(operation, mode, EXAMPLES[mode], counts, label, server.headers())
    operations = {label.rsplit(" (", 1)[0] for label in counts}
    total = sum(counts.values())
    print(f"schemathesis {mode.value}: {total} cases over {len(operations)} operations")
    assert len(operations) >= 24
    assert total >= LEAST_CASES[mode]
    assert "Traceback" not in server.output()
