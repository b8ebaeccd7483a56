"""Schemathesis against the running API and its OpenAPI document: generated inputs to every operation,
valid ones and invalid ones, get no 5xx, only documented status codes and content types, and bodies
that match the document's schemas. (The stream is left out: it never ends.)"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from app.web.testing import UiStack
from tests.integration.web.conftest import Api, unique, wait_for_status

#: generated requests per operation and mode (the failures Hypothesis finds are shrunk and reported)
EXAMPLES = 25
#: Operations whose valid bodies can still be refused, for rules between fields that OpenAPI 3.0
#: cannot state: a backtest's `to` must be after `from`, at most backtest_max_range later. Every
#: other check still runs on them (no 5xx, documented statuses, schemas of the answers).
CROSS_FIELD_RULES = {("POST", "/backtests")}


@pytest.fixture(scope="module")
def api_schema(stack: UiStack, api: Api) -> Any:
    host = unique("st")
    stack.emit(host, "disk:/", kind="STATUS", severity=2, text="full")  # something to find
    wait_for_status(api, host, "disk:/", "CRITICAL")
    return schemathesis.openapi.from_url(f"{stack.ui_url}/api/v1/openapi.json")


def operations(schema: Any) -> list[Any]:
    found = [result.ok() for result in schema.get_all_operations()]
    return [op for op in found if op.path != "/stream"]


def property_of(op: Any, mode: GenerationMode) -> Any:
    """The Hypothesis test of one operation: every generated request answered within the contract."""
    excluded = [positive_data_acceptance] if (op.method.upper(), op.path) in CROSS_FIELD_RULES else []

    @given(case=op.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: Any) -> None:
        case.call_and_validate(excluded_checks=excluded)

    return check


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_the_api_keeps_its_contract(api_schema: Any, mode: GenerationMode) -> None:
    ops = operations(api_schema)
    assert len(ops) >= 18, [f"{op.method} {op.path}" for op in ops]
    for op in ops:
        try:
            property_of(op, mode)()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # an operation whose input cannot be wrong (one free-form id)
        except Exception as exc:
            raise AssertionError(f"{op.method.upper()} {op.path} ({mode.value}): {exc}") from exc
