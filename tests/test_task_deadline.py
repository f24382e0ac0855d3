"""The operator's and the sensor's ``deadline`` argument: read, checked, put into the policy.

The rendered values reach every mode end to end in ``tests/e2e/test_deadline_and_progress.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pendulum
import pytest

from airflow_spot_provider.exceptions import SpotRequestValidationError
from airflow_spot_provider.operators.spot_training import SageMakerSpotTrainingOperator
from airflow_spot_provider.retry import SpotRetryPolicy
from airflow_spot_provider.sensors.spot_training import SageMakerSpotTrainingSensor
from airflow_spot_provider.task_deadline import read_deadline, task_policy

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
AWARE = SpotRetryPolicy(deadline_aware=True, expected_training_seconds=3600)
CONFIG = {
    "AlgorithmSpecification": {"TrainingImage": "img:1", "TrainingInputMode": "File"},
    "RoleArn": "arn:aws:iam::123456789012:role/R",
    "OutputDataConfig": {"S3OutputPath": "s3://b/out/"},
    "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 1},
}


def refused(value: Any, rule: str, *, policy: SpotRetryPolicy = AWARE) -> None:
    with pytest.raises(SpotRequestValidationError) as caught:
        task_policy(policy, value, now=NOW)
    assert caught.value.fields == {"deadline"}
    assert rule in str(caught.value)


@pytest.mark.parametrize(
    "value",
    [
        "2026-03-02T06:00:00+00:00",  # the text of a rendered template
        "2026-03-02T07:00:00+01:00",  # another offset: the same moment
        " 2026-03-02T06:00:00Z ",
        datetime(2026, 3, 2, 6, tzinfo=UTC),
        datetime(2026, 3, 2, 1, tzinfo=timezone(timedelta(hours=-5))),
        pendulum.datetime(2026, 3, 2, 6, tz="UTC"),  # native rendering of data_interval_end + ...
    ],
)
def test_aware_moments_are_read_in_utc_as_plain_datetimes(value: Any) -> None:
    moment = read_deadline(value)
    assert moment == datetime(2026, 3, 2, 6, tzinfo=UTC)
    assert type(moment) is datetime and moment.tzinfo is UTC


@pytest.mark.parametrize("value", [None, "", "  "])
def test_no_value_is_no_deadline(value: Any) -> None:
    assert read_deadline(value) is None
    plain = SpotRetryPolicy(deadline=NOW + timedelta(hours=1))
    assert task_policy(plain, value, now=NOW) is plain  # the policy's own deadline stands


@pytest.mark.parametrize(
    "value", ["tomorrow", "2026-03-02T06:00:00", datetime(2026, 3, 2), 1767225600, ["x"]]
)
def test_anything_else_is_refused_naming_the_field_the_value_and_the_rule(value: Any) -> None:
    refused(value, "must be a timezone-aware datetime or its ISO-8601 text")


def _read_by_the_policy(value: Any) -> Any:
    try:
        return SpotRetryPolicy(deadline=value).deadline
    except SpotRequestValidationError as error:
        assert error.fields == {"SpotRetryPolicy.deadline"}
        return "refused"


def _read_by_the_task(value: Any) -> Any:
    try:
        return read_deadline(value)
    except SpotRequestValidationError as error:
        assert error.fields == {"deadline"}
        return "refused"


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "  ",
        " 2026-03-02T06:00:00Z ",
        "2026-03-02T07:00:00+01:00",
        datetime(2026, 3, 2, 1, tzinfo=timezone(timedelta(hours=-5))),
        pendulum.datetime(2026, 3, 2, 6, tz="UTC"),
        "tomorrow",
        "2026-03-02T06:00:00",
        datetime(2026, 3, 2),
        1767225600,
    ],
)
def test_the_policy_and_the_task_read_a_deadline_alike(value: Any) -> None:
    by_policy, by_task = _read_by_the_policy(value), _read_by_the_task(value)
    assert by_policy == by_task
    assert type(by_policy) is type(by_task)  # a plain datetime, never pendulum's


def test_the_task_deadline_replaces_the_policys_in_a_new_policy() -> None:
    own = SpotRetryPolicy(deadline=NOW + timedelta(days=9), deadline_aware=True)
    derived = task_policy(own, "2026-03-02T06:00:00+00:00", now=NOW)
    assert derived.deadline == datetime(2026, 3, 2, 6, tzinfo=UTC)
    assert own.deadline == NOW + timedelta(days=9)  # immutable: a new policy was derived
    assert derived.to_json() == {**own.to_json(), "deadline": "2026-03-02T06:00:00+00:00"}
    assert SpotRetryPolicy.from_json(derived.to_json()) == derived  # travels as JSON


def test_a_deadline_at_or_before_the_start_is_refused_only_at_the_start() -> None:
    refused(NOW, "must be after the task's start (2026-03-01T12:00:00+00:00)")
    refused(NOW - timedelta(minutes=1), "must be after the task's start")
    # A resumed task (or a retry) leaves a deadline passed meanwhile to the policy.
    assert task_policy(AWARE, NOW - timedelta(minutes=1), now=None).deadline == NOW - timedelta(
        minutes=1
    )


def test_a_deadline_aware_policy_needs_a_deadline_from_somewhere() -> None:
    refused(None, "is required: the spot_retry_policy is deadline_aware")
    with_own = SpotRetryPolicy(deadline=NOW + timedelta(hours=3), deadline_aware=True)
    assert task_policy(with_own, None, now=NOW) is with_own


def test_static_values_are_checked_when_the_dag_is_parsed() -> None:
    with pytest.raises(SpotRequestValidationError, match="deadline='noon'"):
        SageMakerSpotTrainingOperator(
            task_id="t", config=CONFIG, max_run=60, max_wait=60, deadline="noon"
        )
    with pytest.raises(SpotRequestValidationError, match="deadline=None: is required"):
        SageMakerSpotTrainingSensor(task_id="s", job_name="j", spot_retry_policy=AWARE)
    # A template is checked after rendering; a past static moment only when the task starts
    # (a catch-up run may be parsed long after it).
    templated = "{{ data_interval_end + macros.timedelta(hours=12) }}"
    SageMakerSpotTrainingOperator(
        task_id="t",
        config=CONFIG,
        max_run=60,
        max_wait=60,
        spot_retry_policy=AWARE,
        deadline=templated,
    )
    SageMakerSpotTrainingSensor(
        task_id="s", job_name="j", spot_retry_policy=AWARE, deadline="2020-01-01T00:00:00Z"
    )
    assert "deadline" in SageMakerSpotTrainingOperator.template_fields
    assert "deadline" in SageMakerSpotTrainingSensor.template_fields


def test_a_static_deadline_of_another_type_is_refused_when_the_dag_is_parsed() -> None:
    with pytest.raises(SpotRequestValidationError, match="deadline=12345"):
        SageMakerSpotTrainingOperator(
            task_id="t", config=CONFIG, max_run=60, max_wait=60, deadline=12345
        )
