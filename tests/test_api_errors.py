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

from airflow_spot_provider.exceptions import SpotApiError
from airflow_spot_provider.hooks.errors import ApiCallError, ApiRetryRule, classify_api_error


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


THROTTLED = ApiCallError("ThrottlingException", "Rate exceeded", transient=True)
DENIED = ApiCallError("AccessDeniedException", "denied", transient=False)


def test_rule_waits_out_transient_errors_for_as_long_as_they_last() -> None:
    rule = ApiRetryRule(max_lasting=2, initial_seconds=1.0, max_seconds=60.0)
    waits = [rule.wait_seconds([THROTTLED] * n) for n in range(1, 200)]
    assert waits[:7] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0]
    assert all(w == 60.0 for w in waits[6:])  # never gives up, never waits past the cap


def test_rule_gives_up_after_n_lasting_errors_whatever_came_between() -> None:
    rule = ApiRetryRule(max_lasting=2)
    assert rule.wait_seconds([DENIED]) is not None
    assert rule.wait_seconds([DENIED, THROTTLED, THROTTLED]) is not None
    assert rule.wait_seconds([DENIED, THROTTLED, DENIED]) is None


def test_tries_raise_spot_api_error_with_the_aws_code() -> None:
    tries = ApiRetryRule(max_lasting=2, initial_seconds=0.5).tries("j-a1")
    denied = _client_error("AccessDeniedException", 400)
    assert tries.wait_after(_client_error("ThrottlingException", 400)) == 0.5
    assert tries.wait_after(denied) == 1.0
    with pytest.raises(SpotApiError) as failure:
        tries.wait_after(denied)
    assert failure.value.code == "AccessDeniedException"
    assert failure.value.job_name == "j-a1"


def test_tries_hand_tolerated_codes_back_and_never_retry_a_bug() -> None:
    tries = ApiRetryRule().tries("j-a1", lasting=1)
    with pytest.raises(ApiCallError) as taken:
        tries.wait_after(_client_error("ResourceInUse", 400), frozenset({"ResourceInUse"}))
    assert taken.value.code == "ResourceInUse"
    with pytest.raises(KeyError):
        tries.wait_after(KeyError("a bug"))
    with pytest.raises(SpotApiError):  # a create's lasting error: at once
        tries.wait_after(_client_error("ValidationException", 400))


@pytest.mark.parametrize(
    "kwargs", [{"max_lasting": 0}, {"max_lasting": True}, {"initial_seconds": 0}]
)
def test_rule_refuses_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ApiRetryRule(**kwargs)  # type: ignore[arg-type]
