"""The demo app's OpenAPI schema tells the truth: for every documented operation, schemathesis
(pinned: schemathesis==4.32.5, its 4.x Python API) generates requests from the schema, valid
and invalid ones, sends them to the app in this process (its ASGI transport), and checks each
answer against the schema: no server error, a documented status code, a documented content
type, the documented headers and a body matching the documented schema.

The counts at the end say what was exercised: every operation got its examples, and the
answers cover the documented statuses that generated data can reach (a started job's 202, an
unknown job's 404, a bad last id's 400, an invalid body's 422).
"""

from __future__ import annotations

import collections
from typing import Any

import pytest
import schemathesis
from examples.demo_app import app as demo
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support import LONG_TEST_TIMEOUT, wait_until

EXAMPLES = 25
"""Generated requests per operation (half valid, half invalid, as hypothesis draws them)."""
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

pytestmark = pytest.mark.timeout(LONG_TEST_TIMEOUT)


async def demo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The demo's ASGI app without its lifespan: the lifespan's shutdown hook would close the
    module's jobs, which the other demo tests of this process still use. (Refusing the
    lifespan scope before reading from it is how an app says it has none.)"""
    if scope["type"] == "lifespan":
        raise RuntimeError("no lifespan in this test")
    await demo.app(scope, receive, send)


SCHEMA = schemathesis.openapi.from_dict(demo.app.openapi())
DOCUMENTED = {
    (path, method.upper()): {int(status) for status in operation["responses"]}
    for path, methods in demo.app.openapi()["paths"].items()
    for method, operation in methods.items()
}
# What generated requests always reach on each operation (a real job id is never generated,
# so no 200 from the events route, no 204 from DELETE and no 410; a body that is not UTF-8,
# FastAPI's 400, comes only with some draws).
REACHED = {
    ("/process-files", "POST"): {200, 422},
    ("/jobs/process-orders", "POST"): {202, 422},
    ("/jobs/{job_id}/events", "GET"): {400, 404},
    ("/jobs/{job_id}", "DELETE"): {404},
    ("/api/stats", "GET"): {200},
}


@pytest.fixture(autouse=True)
def _no_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo.settings, "item_delay", 0.0)


def test_every_operation_is_exercised() -> None:
    assert set(DOCUMENTED) == set(REACHED)


@pytest.mark.parametrize(("path", "method"), sorted(REACHED))
def test_answers_conform_to_the_schema(path: str, method: str) -> None:
    operation = SCHEMA[path][method]
    statuses: collections.Counter[int] = collections.Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
        ],
    )
    @given(
        case=st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )
    )
    def answer(case: schemathesis.Case) -> None:
        response = case.call(app=demo_app)
        case.validate_response(response, checks=CHECKS)
        statuses[response.status_code] += 1

    answer()

    inputs = operation.path_parameters or operation.query or operation.headers or operation.body
    assert sum(statuses.values()) >= (EXAMPLES // 2 if inputs else 1), statuses
    assert set(statuses) <= DOCUMENTED[(path, method)], statuses
    assert set(statuses) >= REACHED[(path, method)], statuses
    # the jobs the generated POSTs started ran to their end (in schemathesis's loop thread)
    wait_until(lambda: demo.jobs.running == 0, "the generated jobs to end")
