"""Transient API errors are waited out; lasting ones end the task."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
)

from airflow_spot_provider.hooks.errors import ApiErrorBudget, classify_api_error


def _client_error(code: str, status: int) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "DescribeTrainingJob")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (_client_error("ThrottlingException", 400), True),
        (_client_error("SomethingNew", 503), True),
        (_client_error("AccessDeniedException", 400), False),
        (_client_error("ValidationException", 400), False),
        (EndpointConnectionError(endpoint_url="http://x"), True),
        (ReadTimeoutError(endpoint_url="http://x"), True),
        (NoCredentialsError(), False),
        (NoRegionError(), False),
        (KeyError("x"), False),
    ],
)
def test_classification(error: BaseException, transient: bool) -> None:
    classified = classify_api_error(error)
    assert classified.transient is transient
    assert classified.code


def test_budget_counts_only_lasting_errors() -> None:
    budget = ApiErrorBudget(max_errors=2)
    throttled = classify_api_error(_client_error("ThrottlingException", 400))
    denied = classify_api_error(_client_error("AccessDeniedException", 400))
    assert not any(budget.exhausted(throttled) for _ in range(50))
    assert not budget.exhausted(denied)
    assert budget.exhausted(denied)
    assert budget.backoff_seconds(1.0) == 256.0  # the doubling stops after 8 steps
    assert budget.backoff_seconds(2.0) == 300.0  # and never waits past 5 minutes
    budget.reset()
    assert not budget.exhausted(denied)
