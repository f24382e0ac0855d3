"""The decision point: what happens next in a chain, from its descriptions alone."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from airflow_spot_provider.attempts import attempt_name
from airflow_spot_provider.exceptions import SpotRequestValidationError
from airflow_spot_provider.lifecycle import JobOutcome, to_datetime
from airflow_spot_provider.next_action import Done, Follow, GiveUp, Submit, Switch, next_action
from airflow_spot_provider.progress import no_checkpoints
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


# --- the deadline-aware policy and the progress requirement, wired in ---------------------------

T0 = "2026-01-01T00:00:00+00:00"
DEADLINE_POLICY = SpotRetryPolicy(
    max_attempts=2,
    backoff_initial_seconds=0,
    deadline=to_datetime("2026-01-01T00:10:00+00:00"),
    deadline_aware=True,
    expected_training_seconds=60,
    restart_overhead_seconds=10,
    checkpoint_interval_seconds=10,
    deadline_margin_seconds=300,
)


def _at(seconds: int) -> str:
    moment = to_datetime(T0)
    assert moment is not None
    return (moment + timedelta(seconds=seconds)).isoformat()


def waiting(stopped: bool = False, waits: str = "Starting") -> dict[str, Any]:
    """A spot job interrupted at 40 s, waiting since; stopped at 250 s if ``stopped``."""
    steps = [("Starting", 0), ("Downloading", 5), ("Training", 10), ("Interrupted", 40)]
    steps.append((waits, 45))
    if stopped:
        steps += [("Stopping", 250), ("Stopped", 251)]
    transitions = [
        {"Status": s, "StartTime": _at(t), "StatusMessage": s}
        | ({"EndTime": _at(steps[i + 1][1])} if i + 1 < len(steps) else {})
        for i, (s, t) in enumerate(steps)
    ]
    describe: dict[str, Any] = {
        **REQUEST,
        "TrainingJobName": "j-a1",
        "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/j-a1",
        "TrainingJobStatus": "Stopped" if stopped else "InProgress",
        "SecondaryStatus": steps[-1][0],
        "SecondaryStatusTransitions": transitions,
        "CreationTime": _at(0),
    }
    if stopped:
        describe["TrainingEndTime"] = _at(251)
    return describe


def deadline_decide(describes: list[dict[str, Any]], at: int, **kwargs: Any) -> Any:
    now = to_datetime(_at(at))
    assert now is not None
    return next_action(
        first_name="j-a1",
        describes=describes,
        policy=kwargs.pop("policy", DEADLINE_POLICY),
        base_request=REQUEST,
        now=now,
        **kwargs,
    )


def test_a_waiting_spot_job_is_switched_once_the_slack_is_gone() -> None:
    # Need: 60 s work + 10 restart + 300 margin + 20 reserve = 390 s before 00:10: 00:03:30.
    assert isinstance(deadline_decide([waiting()], 100), Follow)
    switch = deadline_decide([waiting()], 300)
    assert isinstance(switch, Switch) and switch.job_name == "j-a1"
    assert switch.decision.attempt == 2 and switch.decision.changes.on_demand
    # Already stopped by the runner: followed to its end, not stopped twice.
    assert isinstance(deadline_decide([waiting()], 300, switched=["j-a1"]), Follow)
    # A job holding instances is never switched; nor without deadline_aware.
    assert isinstance(deadline_decide([waiting(waits="Training")], 300), Follow)
    assert isinstance(deadline_decide([waiting()], 300, policy=POLICY), Follow)


def test_the_stopped_attempt_of_a_switch_is_resubmitted_on_demand() -> None:
    for switched in (["j-a1"], []):  # recorded by the runner, or re-evaluated after a retry
        action = deadline_decide([waiting(stopped=True)], 255, switched=switched)
        assert isinstance(action, Submit), switched
        assert action.attempt == 2 and action.not_before is not None
        assert action.request["EnableManagedSpotTraining"] is False
        assert "MaxWaitTimeInSeconds" not in action.request["StoppingCondition"]
        assert action.request["CheckpointConfig"] == REQUEST["CheckpointConfig"]
        assert action.decision is not None and action.decision["rule"] == "slack-exhausted"


def test_a_user_stop_is_not_a_switch() -> None:
    # Stopped while training: the policy never switches a job that holds instances.
    action = deadline_decide([waiting(stopped=True, waits="Training")], 255)
    assert isinstance(action, GiveUp) and action.outcome is JobOutcome.STOPPED
    # Stopped while waiting, before the latest on-demand start (210 s): a user's stop too.
    early = waiting(stopped=True)
    early["SecondaryStatusTransitions"][-2]["StartTime"] = _at(100)
    early["SecondaryStatusTransitions"][-3]["EndTime"] = _at(100)
    action = deadline_decide([early], 255)
    assert isinstance(action, GiveUp) and action.outcome is JobOutcome.STOPPED


def test_a_deadline_already_past_creates_nothing() -> None:
    action = deadline_decide([], 700)
    assert isinstance(action, GiveUp) and action.reports == () and action.outcome is None
    assert "at or after the deadline" in action.reason
    start = deadline_decide([], 0)
    assert isinstance(start, Submit) and start.request["EnableManagedSpotTraining"] is True
    late = deadline_decide([], 300)  # too late for spot: attempt 1 starts on-demand
    assert isinstance(late, Submit) and late.request["EnableManagedSpotTraining"] is False


def test_give_up_on_an_empty_prefix_turns_a_resubmission_into_a_give_up() -> None:
    empty = no_checkpoints([], "s3://bucket/checkpoints/", 2)
    assert empty is not None
    last = ended("never-launched", "j-a1")
    assert isinstance(decide([last]), Submit)
    strict = replace(POLICY, require_checkpoint_progress="give_up")
    kept, action = (
        deadline_decide([last], 300, policy=policy, findings=[empty]) for policy in (POLICY, strict)
    )
    assert isinstance(kept, Submit)
    assert isinstance(action, GiveUp)
    assert "require_checkpoint_progress=give_up" in action.reason


def test_require_checkpoint_progress_is_checked_and_round_trips() -> None:
    strict = SpotRetryPolicy(require_checkpoint_progress="give_up")
    assert SpotRetryPolicy.from_json(strict.to_json()) == strict
    with pytest.raises(SpotRequestValidationError, match="require_checkpoint_progress"):
        SpotRetryPolicy(require_checkpoint_progress="maybe")
