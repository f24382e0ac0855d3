"""The decision point: what happens next in a chain, from its descriptions alone."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from airflow_spot_provider.attempts import attempt_name
from airflow_spot_provider.lifecycle import JobOutcome, to_datetime
from airflow_spot_provider.next_action import Done, Follow, GiveUp, Submit, next_action
from airflow_spot_provider.retry import SpotRetryPolicy
from tests.seed_lifecycles import describe_response

REQUEST = {
    "AlgorithmSpecification": {"TrainingImage": "img", "TrainingInputMode": "File"},
    "RoleArn": "arn:aws:iam::123456789012:role/r",
    "OutputDataConfig": {"S3OutputPath": "s3://bucket/out/"},
    "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 1},
    "StoppingCondition": {"MaxRuntimeInSeconds": 60, "MaxWaitTimeInSeconds": 120},
    "EnableManagedSpotTraining": True,
    "CheckpointConfig": {"S3Uri": "s3://bucket/checkpoints/"},
}
POLICY = SpotRetryPolicy(max_attempts=2, backoff_initial_seconds=30)


def ended(scenario: str, name: str) -> dict[str, Any]:
    describe = describe_response(scenario)
    describe["TrainingJobName"] = name
    describe["StoppingCondition"] = dict(REQUEST["StoppingCondition"])  # type: ignore[arg-type]
    last = describe["SecondaryStatusTransitions"][-1]
    describe["TrainingEndTime"] = last["StartTime"]
    return describe


def decide(describes: list[dict[str, Any]], base: dict[str, Any] | None = REQUEST) -> Any:
    now = to_datetime("2026-01-01T00:05:00+00:00")
    assert now is not None
    return next_action(
        first_name="j-a1", describes=describes, policy=POLICY, base_request=base, now=now
    )


def test_no_job_yet_submits_the_first_at_once() -> None:
    action = decide([])
    assert action == Submit("j-a1", 1, {**REQUEST, "TrainingJobName": "j-a1"})
    with pytest.raises(ValueError, match="j-a1 does not exist"):
        decide([], base=None)


def test_running_is_followed_completed_is_done() -> None:
    running = ended("no-interruption", "j-a1")
    running["TrainingJobStatus"] = "InProgress"
    running["SecondaryStatus"] = "Training"
    assert decide([running]) == Follow("j-a1", 1)
    done = decide([ended("no-interruption", "j-a1")])
    assert isinstance(done, Done) and done.reports[-1].outcome is JobOutcome.COMPLETED


def test_max_wait_resubmits_after_the_backoff_from_the_end() -> None:
    first = ended("never-launched", "j-a1")
    action = decide([first])
    assert isinstance(action, Submit)
    assert action.job_name == attempt_name("j-a1", 2) == "j-a2"
    assert action.request["TrainingJobName"] == "j-a2"
    assert action.request["CheckpointConfig"] == first["CheckpointConfig"]  # the chain's own
    end = to_datetime(first["TrainingEndTime"])
    assert end is not None and action.not_before == end + timedelta(seconds=30)
    # The same description gives the same action from a sensor (request rebuilt from it).
    again = decide([first], base=None)
    assert isinstance(again, Submit) and again.not_before == action.not_before


def test_exhausted_budget_gives_up_with_every_report() -> None:
    action = decide([ended("never-launched", "j-a1"), ended("never-launched", "j-a2")])
    assert isinstance(action, GiveUp)
    assert "budget" in action.reason
    assert [r.job_name for r in action.reports] == ["j-a1", "j-a2"]
