"""Tests of the spot retry policy: decisions, request changes, serialization and the summary."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import logging
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_spot_provider.exceptions import SpotRequestValidationError
from airflow_spot_provider.lifecycle import (
    CAPACITY_ERROR_PREFIX,
    JobOutcome,
    SecondaryStatus,
    SpotJobReport,
    TrainingJobStatus,
)
from airflow_spot_provider.request_rules import (
    DEFAULT_MAX_RUNTIME_SECONDS as RULES_DEFAULT_MAX_RUNTIME,
)
from airflow_spot_provider.request_rules import SAGEMAKER_MAX_RUNTIME_SECONDS
from airflow_spot_provider.retry import (
    DEFAULT_MAX_RUNTIME_SECONDS,
    MAX_WAIT_LIMIT_SECONDS,
    RETRYABLE_OUTCOMES,
    GiveUp,
    RequestChanges,
    Resubmit,
    SpotRetryPolicy,
)
from airflow_spot_provider.summary import format_summary_table, summarize_attempts

S = SecondaryStatus
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CHECKPOINTS = "s3://bucket/checkpoints/train-a"

# (TrainingJobStatus, final SecondaryStatus, FailureReason) of a job that ended with each outcome.
_ENDINGS: dict[JobOutcome | None, tuple[TrainingJobStatus, SecondaryStatus, str | None]] = {
    JobOutcome.COMPLETED: (TrainingJobStatus.COMPLETED, S.COMPLETED, None),
    JobOutcome.MAX_WAIT_EXCEEDED: (TrainingJobStatus.STOPPED, S.MAX_WAIT_TIME_EXCEEDED, None),
    JobOutcome.MAX_RUNTIME_EXCEEDED: (TrainingJobStatus.STOPPED, S.MAX_RUNTIME_EXCEEDED, None),
    JobOutcome.STOPPED: (TrainingJobStatus.STOPPED, S.STOPPED, None),
    JobOutcome.CAPACITY_ERROR: (
        TrainingJobStatus.FAILED,
        S.FAILED,
        f"{CAPACITY_ERROR_PREFIX}: Unable to provision requested ML compute capacity.",
    ),
    JobOutcome.FAILED: (TrainingJobStatus.FAILED, S.FAILED, "AlgorithmError: exit code 1"),
    None: (TrainingJobStatus.IN_PROGRESS, S.TRAINING, None),
}


def describe(
    name: str,
    outcome: JobOutcome | None,
    *,
    interruptions: int = 0,
    training: int | None = None,
    billable: int | None = None,
    instance_type: str = "ml.m5.xlarge",
    instance_count: int = 1,
    spot: bool = True,
    ended: datetime | None = None,
) -> dict[str, Any]:
    """A DescribeTrainingJob response (boto3 shape) for a job that ended with ``outcome``.

    Without ``ended`` the response has no TrainingEndTime, so the policy counts from CreationTime.
    """
    status, final, failure = _ENDINGS[outcome]
    path = [S.STARTING, S.DOWNLOADING, S.TRAINING]
    for _ in range(interruptions):
        path += [S.INTERRUPTED, S.STARTING, S.DOWNLOADING, S.TRAINING]
    if outcome is JobOutcome.COMPLETED:
        path += [S.UPLOADING, S.COMPLETED]
    elif outcome is not None and status is TrainingJobStatus.STOPPED:
        path += [S.STOPPING, final]
    elif outcome is not None:
        path += [S.FAILED]
    transitions = [
        {
            "Status": step.value,
            "StartTime": T0 + timedelta(minutes=i),
            "EndTime": T0 + timedelta(minutes=i + 1),
            "StatusMessage": "",
        }
        for i, step in enumerate(path)
    ]
    response: dict[str, Any] = {
        "TrainingJobName": name,
        "TrainingJobArn": f"arn:aws:sagemaker:eu-west-1:123456789012:training-job/{name}",
        "TrainingJobStatus": status.value,
        "SecondaryStatus": final.value,
        "SecondaryStatusTransitions": transitions,
        "EnableManagedSpotTraining": spot,
        "ResourceConfig": {
            "InstanceType": instance_type,
            "InstanceCount": instance_count,
            "VolumeSizeInGB": 30,
        },
        "CheckpointConfig": {"S3Uri": CHECKPOINTS, "LocalPath": "/opt/ml/checkpoints"},
        "CreationTime": T0,
    }
    if failure:
        response["FailureReason"] = failure
    if training is not None:
        response["TrainingTimeInSeconds"] = training
    if billable is not None:
        response["BillableTimeInSeconds"] = billable
    if ended is not None:
        response["TrainingEndTime"] = ended
    return response


def report(name: str, outcome: JobOutcome | None, **kwargs: Any) -> SpotJobReport:
    return SpotJobReport.from_describe(describe(name, outcome, **kwargs))


def history_of(*outcomes: JobOutcome) -> list[SpotJobReport]:
    return [report(f"train-a-{i}", o) for i, o in enumerate(outcomes, start=1)]


def request(
    *,
    spot: bool = True,
    max_wait: int | None = 7200,
    max_runtime: int | None = 3600,
    checkpoint: str | None = CHECKPOINTS,
    instance_type: str = "ml.m5.xlarge",
) -> dict[str, Any]:
    """A CreateTrainingJob request as the operator sends it."""
    stopping: dict[str, Any] = {}
    if max_runtime is not None:
        stopping["MaxRuntimeInSeconds"] = max_runtime
    if max_wait is not None:
        stopping["MaxWaitTimeInSeconds"] = max_wait
    req: dict[str, Any] = {
        "TrainingJobName": "train-a-1",
        "AlgorithmSpecification": {"TrainingImage": "trainer:latest", "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::123456789012:role/sagemaker",
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/output"},
        "ResourceConfig": {"InstanceType": instance_type, "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": spot,
        "HyperParameters": {"epochs": "10"},
    }
    if checkpoint is not None:
        req["CheckpointConfig"] = {"S3Uri": checkpoint, "LocalPath": "/opt/ml/checkpoints"}
    return req


def as_resubmit(decision: Resubmit | GiveUp) -> Resubmit:
    assert isinstance(decision, Resubmit), decision
    return decision


def as_give_up(decision: Resubmit | GiveUp) -> GiveUp:
    assert isinstance(decision, GiveUp), decision
    return decision


# --- decide: the rules, exhaustively ------------------------------------------------------------

FALLBACKS = [(), ("ml.c5.xlarge",), ("ml.c5.xlarge", "ml.m5.2xlarge")]


@pytest.mark.parametrize(
    "retry_on", [frozenset({JobOutcome.MAX_WAIT_EXCEEDED}), RETRYABLE_OUTCOMES]
)
@pytest.mark.parametrize("outcome", list(JobOutcome))
def test_decide_over_all_outcomes_budgets_and_fallbacks(
    outcome: JobOutcome, retry_on: frozenset[JobOutcome]
) -> None:
    for max_attempts, used, fallbacks, on_demand in itertools.product(
        range(1, 5), range(1, 6), FALLBACKS, (False, True)
    ):
        if max_attempts == 1 and (fallbacks or on_demand):
            continue  # refused by __post_init__, tested below
        policy = SpotRetryPolicy(
            retry_on=retry_on,
            max_attempts=max_attempts,
            instance_type_fallbacks=fallbacks,
            on_demand_fallback=on_demand,
        )
        history = history_of(*[JobOutcome.MAX_WAIT_EXCEEDED] * (used - 1), outcome)
        decision = policy.decide(history, now=NOW, last_request=request())
        case = (outcome, retry_on, max_attempts, used, fallbacks, on_demand, decision)
        if outcome is JobOutcome.COMPLETED:
            assert as_give_up(decision).reason.endswith("completed, nothing to resubmit"), case
        elif outcome not in retry_on:
            assert "does not retry" in as_give_up(decision).reason, case
            assert outcome.value in decision.reason, case
        elif used >= max_attempts:
            assert f"budget of {max_attempts} attempt(s) used" in as_give_up(decision).reason
        else:
            resubmit = as_resubmit(decision)
            assert resubmit.attempt == used + 1 <= max_attempts, case
            assert resubmit.changes.on_demand is (on_demand and used + 1 == max_attempts), case
            expected_type = fallbacks[min(used - 1, len(fallbacks) - 1)] if fallbacks else None
            assert resubmit.changes.instance_type == expected_type, case
            assert f"attempt {used + 1} of {max_attempts}" in resubmit.reason, case
            continue
        assert as_give_up(decision).outcome is outcome, case


def test_default_policy() -> None:
    policy = SpotRetryPolicy()
    assert policy.retry_on == frozenset({JobOutcome.MAX_WAIT_EXCEEDED})
    assert policy.max_attempts == 3
    first = as_resubmit(
        policy.decide(history_of(JobOutcome.MAX_WAIT_EXCEEDED), now=NOW, last_request=request())
    )
    assert (first.attempt, first.delay_seconds, first.changes) == (2, 30.0, RequestChanges())
    assert f"resumes from {CHECKPOINTS}" in first.reason
    assert "no request changes" in first.reason


def test_unfinished_or_missing_attempt_is_a_programming_error() -> None:
    policy = SpotRetryPolicy()
    with pytest.raises(ValueError, match="has not ended"):
        policy.decide([report("train-a-1", None)], now=NOW, last_request=request())
    with pytest.raises(ValueError, match="at least one finished attempt"):
        policy.decide([], now=NOW, last_request=request())
    with pytest.raises(ValueError, match="timezone-aware"):
        policy.decide(
            history_of(JobOutcome.MAX_WAIT_EXCEEDED),
            now=NOW.replace(tzinfo=None),
            last_request=request(),
        )


def test_give_up_reason_names_outcome_set_and_numbers() -> None:
    policy = SpotRetryPolicy(
        retry_on=frozenset({JobOutcome.CAPACITY_ERROR, JobOutcome.MAX_WAIT_EXCEEDED}),
        max_attempts=2,
    )
    stopped = as_give_up(
        policy.decide(history_of(JobOutcome.STOPPED), now=NOW, last_request=request())
    )
    assert stopped.reason == (
        "attempt 1 of 2 (train-a-1) ended STOPPED, which the policy does not retry"
        " (retry_on: CAPACITY_ERROR, MAX_WAIT_EXCEEDED)"
    )
    history = history_of(JobOutcome.MAX_WAIT_EXCEEDED, JobOutcome.CAPACITY_ERROR)
    spent = as_give_up(policy.decide(history, now=NOW, last_request=request()))
    assert (
        spent.reason
        == "attempt 2 of 2 (train-a-2) ended CAPACITY_ERROR: budget of 2 attempt(s) used"
    )
    assert spent.outcome is JobOutcome.CAPACITY_ERROR


def test_empty_retry_on_never_resubmits() -> None:
    policy = SpotRetryPolicy(retry_on=frozenset())
    decision = as_give_up(
        policy.decide(history_of(JobOutcome.MAX_WAIT_EXCEEDED), now=NOW, last_request=request())
    )
    assert "retry_on: nothing" in decision.reason


def test_every_decision_is_logged_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    policy = SpotRetryPolicy()
    with caplog.at_level(logging.INFO, logger="airflow_spot_provider.retry"):
        first = policy.decide(
            history_of(JobOutcome.MAX_WAIT_EXCEEDED), now=NOW, last_request=request()
        )
        second = policy.decide(history_of(JobOutcome.FAILED), now=NOW, last_request=request())
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert messages == [
        f"Spot retry decision: {first.reason}",
        f"Spot retry decision: {second.reason}",
    ]


# --- deadline and checkpoints ---------------------------------------------------------------------


def test_deadline_counts_the_backoff_from_the_end_of_the_last_attempt() -> None:
    history = [report("train-a-1", JobOutcome.MAX_WAIT_EXCEEDED, ended=NOW)]
    on_time = SpotRetryPolicy(deadline=NOW + timedelta(seconds=30.001))
    assert as_resubmit(on_time.decide(history, now=NOW, last_request=request())).delay_seconds == 30
    exactly = SpotRetryPolicy(deadline=NOW + timedelta(seconds=30))
    reason = as_give_up(exactly.decide(history, now=NOW, last_request=request())).reason
    assert reason == (
        "attempt 1 of 3 (train-a-1) ended MAX_WAIT_EXCEEDED at 2025-03-01T12:00:00+00:00:"
        " attempt 2 would start at 2025-03-01T12:00:30+00:00 after a 30.0 s backoff,"
        " at or after the deadline 2025-03-01T12:00:30+00:00"
    )
    passed = SpotRetryPolicy(deadline=NOW - timedelta(hours=1))
    assert isinstance(passed.decide(history, now=NOW, last_request=request()), GiveUp)


def _slow_backoff(deadline_after_end: float) -> SpotRetryPolicy:
    """A 600 s backoff, the deadline ``deadline_after_end`` seconds after NOW (the end)."""
    return SpotRetryPolicy(
        backoff_initial_seconds=600,
        backoff_max_seconds=600,
        deadline=NOW + timedelta(seconds=deadline_after_end),
    )


def test_deciding_again_after_waiting_the_backoff_still_resubmits() -> None:
    # The driver decides, waits what is left of the backoff, then decides again: the attempt
    # starts 600 s after the end both times, before the deadline at 700 s.
    history = [report("train-a-1", JobOutcome.MAX_WAIT_EXCEEDED, ended=NOW)]
    policy = _slow_backoff(700)
    for waited in (0, 10, 599.5, 600):
        now = NOW + timedelta(seconds=waited)
        decision = as_resubmit(policy.decide(history, now=now, last_request=request()))
        assert decision.delay_seconds == 600, waited
        assert decision.attempt == 2


def test_backoff_past_the_deadline_gives_up_whenever_asked() -> None:
    history = [report("train-a-1", JobOutcome.MAX_WAIT_EXCEEDED, ended=NOW)]
    early = _slow_backoff(500)
    for waited in (10, 499, 500, 600):
        now = NOW + timedelta(seconds=waited)
        reason = as_give_up(early.decide(history, now=now, last_request=request())).reason
        assert "would start at 2025-03-01T12:10:00+00:00" in reason, waited
    # A backoff that would fit, but now is already at or past the deadline.
    late = _slow_backoff(700)
    for waited in (700, 701, 86_400):
        now = NOW + timedelta(seconds=waited)
        decision = as_give_up(late.decide(history, now=now, last_request=request()))
        assert decision.outcome is JobOutcome.MAX_WAIT_EXCEEDED
        assert "at or after the deadline 2025-03-01T12:11:40+00:00" in decision.reason


def test_backoff_counts_from_creation_then_now_when_the_end_is_unknown() -> None:
    policy = _slow_backoff(700)
    created = report("train-a-1", JobOutcome.MAX_WAIT_EXCEEDED)  # CreationTime T0, no end
    assert created.end_time is None and created.creation_time == T0
    # The backoff ended long ago (T0 + 600 s): the attempt would start now, before the deadline.
    assert isinstance(policy.decide([created], now=NOW, last_request=request()), Resubmit)
    unknown = dataclasses.replace(created, creation_time=None)
    assert unknown.end_time is None and unknown.creation_time is None
    # Neither time: the backoff counts from now, 600 s, and 600 s fit in 700 s but not in 500 s.
    assert isinstance(policy.decide([unknown], now=NOW, last_request=request()), Resubmit)
    early = _slow_backoff(500)
    assert isinstance(early.decide([unknown], now=NOW, last_request=request()), GiveUp)


def test_deadline_with_a_backoff_beyond_the_datetime_range() -> None:
    policy = SpotRetryPolicy(
        backoff_initial_seconds=1e300, backoff_max_seconds=1e300, deadline=NOW + timedelta(days=1)
    )
    history = [report("train-a-1", JobOutcome.MAX_WAIT_EXCEEDED, ended=NOW)]
    reason = as_give_up(policy.decide(history, now=NOW, last_request=request())).reason
    assert "beyond the datetime range" in reason


def test_naive_end_time_is_refused() -> None:
    aware = report("train-a-1", JobOutcome.MAX_WAIT_EXCEEDED)
    naive = dataclasses.replace(aware, end_time=datetime(2025, 3, 1, 12, 0))
    with pytest.raises(ValueError, match="naive"):
        SpotRetryPolicy().decide([naive], now=NOW, last_request=request())


def test_deadline_in_another_zone_is_kept_as_utc() -> None:
    paris = timezone(timedelta(hours=1))
    policy = SpotRetryPolicy(deadline=datetime(2025, 3, 1, 13, 0, 10, tzinfo=paris))
    assert policy.deadline == NOW + timedelta(seconds=10)
    assert policy.deadline is not None
    assert policy.deadline.utcoffset() == timedelta(0)
    history = [report("train-a-1", JobOutcome.MAX_WAIT_EXCEEDED, ended=NOW)]
    decision = policy.decide(history, now=NOW, last_request=request())
    assert isinstance(decision, GiveUp)  # 30 s of backoff does not fit in 10 s


@pytest.mark.parametrize("checkpoint", [None, ""])
def test_no_checkpoint_refused_unless_allowed(checkpoint: str | None) -> None:
    history = history_of(JobOutcome.MAX_WAIT_EXCEEDED)
    last = request(checkpoint=checkpoint)
    refused = as_give_up(SpotRetryPolicy().decide(history, now=NOW, last_request=last))
    assert refused.reason == (
        "attempt 1 of 3 (train-a-1) ended MAX_WAIT_EXCEEDED: the request has no"
        " CheckpointConfig.S3Uri, so attempt 2 would restart from zero;"
        " set allow_without_checkpoints=True to allow"
    )
    allowed = SpotRetryPolicy(allow_without_checkpoints=True).decide(
        history, now=NOW, last_request=last
    )
    assert "restarts from zero" in as_resubmit(allowed).reason


def test_rule_order_budget_before_deadline_before_checkpoints() -> None:
    policy = SpotRetryPolicy(max_attempts=2, deadline=NOW - timedelta(days=1))
    bare = request(checkpoint=None)
    two = history_of(JobOutcome.MAX_WAIT_EXCEEDED, JobOutcome.MAX_WAIT_EXCEEDED)
    assert "budget" in policy.decide(two, now=NOW, last_request=bare).reason
    one = history_of(JobOutcome.MAX_WAIT_EXCEEDED)
    assert "deadline" in policy.decide(one, now=NOW, last_request=bare).reason


def test_limits_come_from_the_request_rules_without_loading_botocore() -> None:
    assert MAX_WAIT_LIMIT_SECONDS == SAGEMAKER_MAX_RUNTIME_SECONDS == 28 * 86_400
    assert DEFAULT_MAX_RUNTIME_SECONDS == RULES_DEFAULT_MAX_RUNTIME == 86_400
    # botocore's model is several MB: importing the policy (DAG parsing does) must not load it.
    code = (
        "import sys, airflow_spot_provider.retry;"
        " print(sorted(m for m in sys.modules if m.split('.')[0] in ('botocore', 'boto3')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# --- backoff and jitter ---------------------------------------------------------------------------


def test_backoff_sequence_is_exponential_and_capped() -> None:
    policy = SpotRetryPolicy(
        backoff_initial_seconds=30, backoff_multiplier=2, backoff_max_seconds=100, max_attempts=10
    )
    assert [policy.delay_seconds(a, "job") for a in range(2, 7)] == [30, 60, 100, 100, 100]
    assert policy.delay_seconds(100_000, "job") == 100  # no float overflow
    flat = SpotRetryPolicy(backoff_multiplier=1, backoff_max_seconds=600)
    assert {flat.delay_seconds(a, "job") for a in range(2, 50)} == {30}
    instant = SpotRetryPolicy(backoff_initial_seconds=0, backoff_max_seconds=0, backoff_jitter=1)
    assert instant.delay_seconds(100_000, "job") == 0


def test_backoff_through_decide_uses_the_attempt_number() -> None:
    policy = SpotRetryPolicy(max_attempts=5, backoff_initial_seconds=10, backoff_multiplier=3)
    delays = []
    for used in range(1, 5):
        history = history_of(*[JobOutcome.MAX_WAIT_EXCEEDED] * used)
        delays.append(
            as_resubmit(policy.decide(history, now=NOW, last_request=request())).delay_seconds
        )
    assert delays == [10, 30, 90, 270]


def test_jitter_is_deterministic_varied_and_bounded() -> None:
    policy = SpotRetryPolicy(backoff_jitter=0.5, max_attempts=5)
    again = SpotRetryPolicy.from_json(policy.to_json())
    names = [f"train-{i}" for i in range(300)]
    delays = [policy.delay_seconds(2, n) for n in names]
    assert delays == [again.delay_seconds(2, n) for n in names]
    assert all(15 <= d <= 45 for d in delays)
    assert min(delays) < 20
    assert max(delays) > 40
    assert len(set(delays)) > 250
    assert policy.delay_seconds(2, "x") != policy.delay_seconds(3, "x") / 2  # attempt seeds too
    history = history_of(JobOutcome.MAX_WAIT_EXCEEDED)
    first = policy.decide(history, now=NOW, last_request=request())
    assert first == policy.decide(history, now=NOW, last_request=request())


# --- request changes: MaxWait, instance types, on-demand ------------------------------------------


def test_max_wait_grows_per_resubmission_up_to_the_limit() -> None:
    policy = SpotRetryPolicy(max_attempts=30, max_wait_growth=4.0)
    last = request(max_wait=7200, max_runtime=3600)
    seen = []
    for used in range(1, 8):
        history = history_of(*[JobOutcome.MAX_WAIT_EXCEEDED] * used)
        decision = as_resubmit(policy.decide(history, now=NOW, last_request=last))
        last = decision.changes.apply(last)
        seen.append(last["StoppingCondition"]["MaxWaitTimeInSeconds"])
    assert seen == [
        28800,
        115200,
        460800,
        1843200,
        MAX_WAIT_LIMIT_SECONDS,
        MAX_WAIT_LIMIT_SECONDS,
        MAX_WAIT_LIMIT_SECONDS,
    ]
    assert all(isinstance(v, int) for v in seen)


@pytest.mark.parametrize(
    ("growth", "max_wait", "max_runtime", "expected"),
    [
        (1.0, 7200, 3600, None),  # nothing to change
        (1.5, 7200, 3600, 10800),
        (1.0001, 7, 1, 8),  # rounded up, an int
        (1.0, 1800, 3600, 3600),  # raised to MaxRuntime
        (2.0, 1800, None, DEFAULT_MAX_RUNTIME_SECONDS),  # SageMaker's default MaxRuntime
        (2.0, MAX_WAIT_LIMIT_SECONDS + 5, 3600, None),  # accepted before: never lowered
        (1e300, 7200, 3600, MAX_WAIT_LIMIT_SECONDS),
    ],
)
def test_max_wait_growth_bounds(
    growth: float, max_wait: int, max_runtime: int | None, expected: int | None
) -> None:
    policy = SpotRetryPolicy(max_wait_growth=growth)
    last = request(max_wait=max_wait, max_runtime=max_runtime)
    decision = as_resubmit(
        policy.decide(history_of(JobOutcome.MAX_WAIT_EXCEEDED), now=NOW, last_request=last)
    )
    assert decision.changes.max_wait_seconds == expected


def test_max_wait_untouched_on_a_request_without_spot() -> None:
    policy = SpotRetryPolicy(retry_on=frozenset({JobOutcome.CAPACITY_ERROR}), max_wait_growth=2.0)
    last = request(spot=False, max_wait=None)
    decision = as_resubmit(
        policy.decide(history_of(JobOutcome.CAPACITY_ERROR), now=NOW, last_request=last)
    )
    assert decision.changes == RequestChanges()


def test_instance_fallbacks_then_on_demand_on_the_last_attempt_only() -> None:
    policy = SpotRetryPolicy(
        max_attempts=5,
        instance_type_fallbacks=("ml.c5.xlarge", "ml.m5.2xlarge"),
        on_demand_fallback=True,
        max_wait_growth=2.0,
    )
    last = request()
    history = history_of(JobOutcome.MAX_WAIT_EXCEEDED)
    steps = []
    while isinstance(decision := policy.decide(history, now=NOW, last_request=last), Resubmit):
        last = {**decision.changes.apply(last), "TrainingJobName": f"train-a-{decision.attempt}"}
        steps.append(
            (
                last["ResourceConfig"]["InstanceType"],
                last["EnableManagedSpotTraining"],
                last["StoppingCondition"].get("MaxWaitTimeInSeconds"),
            )
        )
        assert last["CheckpointConfig"] == {
            "S3Uri": CHECKPOINTS,
            "LocalPath": "/opt/ml/checkpoints",
        }
        history = [*history, report(last["TrainingJobName"], JobOutcome.MAX_WAIT_EXCEEDED)]
    assert steps == [
        ("ml.c5.xlarge", True, 14400),
        ("ml.m5.2xlarge", True, 28800),
        ("ml.m5.2xlarge", True, 57600),
        ("ml.m5.2xlarge", False, None),
    ]
    assert "budget of 5 attempt(s) used" in decision.reason


def test_instance_fallback_skipped_for_instance_groups() -> None:
    policy = SpotRetryPolicy(instance_type_fallbacks=("ml.c5.xlarge",))
    last = request()
    last["ResourceConfig"] = {
        "InstanceGroups": [
            {"InstanceGroupName": "a", "InstanceType": "ml.m5.xlarge", "InstanceCount": 1}
        ]
    }
    decision = as_resubmit(
        policy.decide(history_of(JobOutcome.MAX_WAIT_EXCEEDED), now=NOW, last_request=last)
    )
    assert decision.changes.instance_type is None
    assert "instance type fallback skipped" in decision.reason
    with pytest.raises(ValueError, match="InstanceGroups"):
        RequestChanges(instance_type="ml.c5.xlarge").apply(last)


def test_apply_copies_deeply_keeps_checkpoints_and_drops_the_name() -> None:
    original = request()
    snapshot = copy.deepcopy(original)
    changes = RequestChanges(instance_type="ml.c5.xlarge", on_demand=True)
    new = changes.apply(original)
    assert original == snapshot
    assert "TrainingJobName" not in new
    assert new["CheckpointConfig"] == original["CheckpointConfig"]
    assert new["CheckpointConfig"] is not original["CheckpointConfig"]
    assert new["EnableManagedSpotTraining"] is False
    assert new["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    assert new["ResourceConfig"]["InstanceType"] == "ml.c5.xlarge"
    new["HyperParameters"]["epochs"] = "99"
    assert original == snapshot
    grown = RequestChanges(max_wait_seconds=9000).apply(request(max_wait=None, max_runtime=None))
    assert grown["StoppingCondition"] == {"MaxWaitTimeInSeconds": 9000}


def test_request_changes_describe_and_validate() -> None:
    assert RequestChanges().describe() == "no request changes"
    text = RequestChanges(max_wait_seconds=7200, instance_type="ml.c5.xlarge").describe()
    assert text == "InstanceType -> ml.c5.xlarge, MaxWaitTimeInSeconds -> 7200"
    assert "on-demand" in RequestChanges(on_demand=True).describe()
    with pytest.raises(SpotRequestValidationError) as caught:
        RequestChanges(max_wait_seconds=0, instance_type="c5.xlarge", on_demand=1)  # type: ignore[arg-type]
    assert caught.value.fields == {
        "RequestChanges.max_wait_seconds",
        "RequestChanges.instance_type",
        "RequestChanges.on_demand",
    }
    with pytest.raises(SpotRequestValidationError, match="must be None when on_demand is True"):
        RequestChanges(max_wait_seconds=7200, on_demand=True)


# --- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("retry_on", frozenset({JobOutcome.COMPLETED}), "may only hold"),
        ("retry_on", frozenset({JobOutcome.STOPPED, JobOutcome.FAILED}), "may only hold"),
        ("retry_on", "MAX_WAIT_EXCEEDED", "set of JobOutcome"),
        ("retry_on", {"NOT_AN_OUTCOME"}, "set of JobOutcome"),
        ("max_attempts", 0, "int >= 1"),
        ("max_attempts", 2.0, "int >= 1"),
        ("max_attempts", True, "int >= 1"),
        ("backoff_initial_seconds", -1, ">= 0.0"),
        ("backoff_initial_seconds", float("nan"), "finite"),
        ("backoff_multiplier", 0.5, ">= 1.0"),
        ("backoff_max_seconds", float("inf"), "finite"),
        ("backoff_max_seconds", 10, ">= 30.0"),
        ("backoff_jitter", 1.5, "<= 1.0"),
        ("backoff_jitter", "0.1", "finite number"),
        ("max_wait_growth", 0.9, ">= 1.0"),
        ("instance_type_fallbacks", "ml.c5.xlarge", "must be a tuple"),
        ("instance_type_fallbacks", ("ml.c5.xlarge", "c5.large", "ml."), "starting with 'ml.'"),
        ("on_demand_fallback", "yes", "True or False"),
        ("deadline", datetime(2025, 3, 1), "timezone-aware"),
        ("deadline", "tomorrow", "timezone-aware"),
        ("allow_without_checkpoints", None, "True or False"),
        ("checkpoint_cost_seconds", 0, "finite number >= 0.001 or None"),
        ("checkpoint_cost_seconds", float("nan"), "finite number >= 0.001 or None"),
        ("checkpoint_cost_seconds", "60", "finite number >= 0.001 or None"),
        ("checkpoint_cost_seconds", 10**400, "finite number >= 0.001 or None"),
    ],
)
def test_each_invalid_field_is_refused(field: str, value: Any, rule: str) -> None:
    with pytest.raises(SpotRequestValidationError) as caught:
        SpotRetryPolicy(**{field: value})
    assert caught.value.fields == {f"SpotRetryPolicy.{field}"}
    assert rule in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_all_violations_come_together() -> None:
    with pytest.raises(SpotRequestValidationError) as caught:
        SpotRetryPolicy(max_attempts=0, backoff_jitter=2, deadline=datetime(2025, 1, 1))
    assert caught.value.fields == {
        "SpotRetryPolicy.max_attempts",
        "SpotRetryPolicy.backoff_jitter",
        "SpotRetryPolicy.deadline",
    }


@pytest.mark.parametrize(
    "kwargs", [{"on_demand_fallback": True}, {"instance_type_fallbacks": ("ml.c5.xlarge",)}]
)
def test_fallbacks_need_a_second_attempt(kwargs: dict[str, Any]) -> None:
    with pytest.raises(SpotRequestValidationError, match="would never be used"):
        SpotRetryPolicy(max_attempts=1, **kwargs)


def test_values_are_normalized() -> None:
    policy = SpotRetryPolicy(
        retry_on={"CAPACITY_ERROR", JobOutcome.MAX_WAIT_EXCEEDED},  # type: ignore[arg-type]
        instance_type_fallbacks=["ml.c5.xlarge"],  # type: ignore[arg-type]
        backoff_initial_seconds=5,
        deadline="2025-03-01T14:00:00+02:00",  # type: ignore[arg-type]
    )
    assert policy.retry_on == frozenset({JobOutcome.CAPACITY_ERROR, JobOutcome.MAX_WAIT_EXCEEDED})
    assert policy.instance_type_fallbacks == ("ml.c5.xlarge",)
    assert isinstance(policy.backoff_initial_seconds, float)
    assert policy.deadline == NOW
    assert hash(policy) == hash(SpotRetryPolicy.from_json(policy.to_json()))
    untyped: Any = SpotRetryPolicy
    with pytest.raises(TypeError):
        untyped(3)  # the constructor is keyword-only


# --- JSON -----------------------------------------------------------------------------------------


def test_to_json_is_plain_and_round_trips() -> None:
    policy = SpotRetryPolicy(
        retry_on=RETRYABLE_OUTCOMES,
        max_attempts=4,
        backoff_jitter=0.25,
        max_wait_growth=1.5,
        instance_type_fallbacks=("ml.c5.xlarge", "ml.m5.2xlarge"),
        on_demand_fallback=True,
        deadline=datetime(2025, 3, 2, 6, 30, 0, 123456, tzinfo=UTC),
        allow_without_checkpoints=True,
    )
    data = policy.to_json()
    assert data == {
        "retry_on": ["CAPACITY_ERROR", "MAX_RUNTIME_EXCEEDED", "MAX_WAIT_EXCEEDED"],
        "max_attempts": 4,
        "backoff_initial_seconds": 30.0,
        "backoff_multiplier": 2.0,
        "backoff_max_seconds": 600.0,
        "backoff_jitter": 0.25,
        "max_wait_growth": 1.5,
        "instance_type_fallbacks": ["ml.c5.xlarge", "ml.m5.2xlarge"],
        "on_demand_fallback": True,
        "deadline": "2025-03-02T06:30:00.123456+00:00",
        "allow_without_checkpoints": True,
        "deadline_aware": False,
        "expected_training_seconds": None,
        "restart_overhead_seconds": 300.0,
        "checkpoint_interval_seconds": 1800.0,
        "checkpoint_cost_seconds": None,
        "deadline_margin_seconds": 900.0,
        "require_checkpoint_progress": "resubmit",
    }
    assert SpotRetryPolicy.from_json(json.loads(json.dumps(data))) == policy
    assert SpotRetryPolicy.from_json({}) == SpotRetryPolicy()
    assert SpotRetryPolicy.from_json({"max_attempts": 5}).max_attempts == 5


def test_from_json_refuses_unknown_keys() -> None:
    with pytest.raises(SpotRequestValidationError) as caught:
        SpotRetryPolicy.from_json({"max_attempt": 5, "retries": 1})
    assert caught.value.fields == {"SpotRetryPolicy.max_attempt", "SpotRetryPolicy.retries"}
    assert "unknown field" in str(caught.value)


# --- summary --------------------------------------------------------------------------------------


def two_attempts() -> list[SpotJobReport]:
    first = describe(
        "train-a-1", JobOutcome.MAX_WAIT_EXCEEDED, interruptions=2, training=1800, billable=540
    )
    second = describe(
        "train-a-2", JobOutcome.COMPLETED, training=1200, billable=360, instance_type="ml.c5.xlarge"
    )
    return [SpotJobReport.from_describe(first), SpotJobReport.from_describe(second)]


def test_summarize_two_attempts() -> None:
    summary = summarize_attempts(two_attempts())
    assert json.loads(json.dumps(summary)) == summary
    first = dict(summary["attempts"][0])
    # What the Spot training view draws its timeline from (tests/test_timeline.py).
    assert first.pop("transitions") == [t.to_json() for t in two_attempts()[0].transitions]
    assert first.pop("creation_time") == "2025-03-01T08:00:00+00:00"
    assert first.pop("end_time") is None
    assert first == {
        "attempt": 1,
        "job_name": "train-a-1",
        "outcome": "MAX_WAIT_EXCEEDED",
        "interruptions": 2,
        "training_seconds": 1800,
        "billable_seconds": 540,
        "savings_percent": 70.0,
        "instance_type": "ml.m5.xlarge",
        "instance_count": 1,
        "managed_spot": True,
    }
    assert summary["attempts"][1]["outcome"] == "COMPLETED"
    assert summary["attempts"][1]["instance_type"] == "ml.c5.xlarge"
    assert summary["totals"] == {
        "attempts": 2,
        "interruptions": 2,
        "training_seconds": 3000,
        "billable_seconds": 900,
        "effective_savings_percent": 70.0,
    }


def test_summary_with_missing_figures() -> None:
    history = [
        report("train-a-1", JobOutcome.MAX_WAIT_EXCEEDED),  # never launched: no figures
        report("train-a-2", JobOutcome.COMPLETED, training=1000, billable=250),
    ]
    totals = summarize_attempts(history)["totals"]
    assert (totals["training_seconds"], totals["billable_seconds"]) == (1000, 250)
    assert totals["effective_savings_percent"] == 75.0
    partial = [report("train-a-1", JobOutcome.MAX_WAIT_EXCEEDED, training=1000), *history[1:]]
    assert summarize_attempts(partial)["totals"]["effective_savings_percent"] is None
    empty = summarize_attempts([])
    assert empty["totals"] == {
        "attempts": 0,
        "interruptions": 0,
        "training_seconds": None,
        "billable_seconds": None,
        "effective_savings_percent": None,
    }
    assert "total (0 attempt(s))" in format_summary_table(empty)


def test_format_summary_table() -> None:
    table = format_summary_table(json.loads(json.dumps(summarize_attempts(two_attempts()))))
    lines = table.splitlines()
    assert len(lines) == 6
    assert lines[0].split() == [
        "#",
        "job",
        "name",
        "outcome",
        "interruptions",
        "training",
        "s",
        "billable",
        "s",
        "savings",
        "instance",
        "spot",
    ]
    assert lines[2].split() == [
        "1",
        "train-a-1",
        "MAX_WAIT_EXCEEDED",
        "2",
        "1800",
        "540",
        "70.0%",
        "1",
        "x",
        "ml.m5.xlarge",
        "yes",
    ]
    assert lines[3].split() == [
        "2",
        "train-a-2",
        "COMPLETED",
        "0",
        "1200",
        "360",
        "70.0%",
        "1",
        "x",
        "ml.c5.xlarge",
        "yes",
    ]
    assert lines[5].split() == ["total", "(2", "attempt(s))", "2", "3000", "900", "70.0%"]
    assert set(lines[1]) == set(lines[4]) == {"-", " "}
    # Fixed width: every numeric column ends where its header ends.
    savings_end = lines[0].index("savings") + len("savings")
    for row in (lines[2], lines[3], lines[5]):
        assert row[savings_end - 1] == "%"
        assert row[savings_end - 5 : savings_end] == "70.0%"


# --- properties -----------------------------------------------------------------------------------

# Retryable outcomes first: hypothesis favours the first values, and those reach every rule.
RETRYING = [
    JobOutcome.MAX_WAIT_EXCEEDED,
    JobOutcome.CAPACITY_ERROR,
    JobOutcome.MAX_RUNTIME_EXCEEDED,
]
OUTCOMES = [*RETRYING, JobOutcome.STOPPED, JobOutcome.FAILED, JobOutcome.COMPLETED]
instance_types = st.from_regex(r"ml\.[a-z][a-z0-9]{0,4}\.[a-z0-9]{1,8}", fullmatch=True)
aware_datetimes = st.datetimes(
    min_value=datetime(2020, 1, 1),
    max_value=datetime(2030, 1, 1),
    timezones=st.integers(min_value=-12 * 60, max_value=14 * 60).map(
        lambda minutes: timezone(timedelta(minutes=minutes))
    ),
)


@st.composite
def policies(draw: st.DrawFn) -> SpotRetryPolicy:
    max_attempts = draw(st.integers(min_value=1, max_value=8))
    initial = draw(st.floats(min_value=0, max_value=1e5, allow_nan=False))
    more = max_attempts > 1
    return SpotRetryPolicy(
        retry_on=draw(st.frozensets(st.sampled_from(RETRYING), min_size=1)),
        max_attempts=max_attempts,
        backoff_initial_seconds=initial,
        backoff_multiplier=draw(st.floats(min_value=1, max_value=1e3)),
        backoff_max_seconds=draw(st.floats(min_value=initial, max_value=1e7)),
        backoff_jitter=draw(st.floats(min_value=0, max_value=1)),
        max_wait_growth=draw(st.floats(min_value=1, max_value=1e6)),
        instance_type_fallbacks=tuple(draw(st.lists(instance_types, max_size=3))) if more else (),
        on_demand_fallback=draw(st.sampled_from([True, False])) if more else False,
        deadline=draw(st.none() | aware_datetimes),
        allow_without_checkpoints=draw(st.booleans()),
    )


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    spot = draw(st.sampled_from([True, False]))
    runtime = draw(st.none() | st.integers(min_value=1, max_value=MAX_WAIT_LIMIT_SECONDS))
    floor = runtime or DEFAULT_MAX_RUNTIME_SECONDS
    wait = draw(st.integers(min_value=floor, max_value=MAX_WAIT_LIMIT_SECONDS)) if spot else None
    checkpoint = draw(st.sampled_from([CHECKPOINTS, None, ""]))
    return request(spot=spot, max_wait=wait, max_runtime=runtime, checkpoint=checkpoint)


@settings(max_examples=200, deadline=None, database=None)
@given(policy=policies(), data=st.data(), now=aware_datetimes, last=requests())
def test_decide_properties(
    policy: SpotRetryPolicy, data: st.DataObject, now: datetime, last: dict[str, Any]
) -> None:
    # Histories up to one past the budget: every rule is reached, resubmissions included.
    used = data.draw(st.integers(min_value=1, max_value=policy.max_attempts + 1))
    history = history_of(
        *data.draw(st.lists(st.sampled_from(OUTCOMES), min_size=used, max_size=used))
    )
    delay = policy.delay_seconds(used + 1, history[-1].job_name)
    # Times within a few backoffs of each other too, or the deadline rarely matters.
    in_backoffs = st.floats(min_value=-2, max_value=2).map(lambda k: timedelta(seconds=delay * k))
    ended = data.draw(st.none() | aware_datetimes | in_backoffs.map(lambda d: now + d))
    history[-1] = dataclasses.replace(history[-1], end_time=ended)
    anchor = data.draw(st.sampled_from([now, ended or T0]))
    deadline = data.draw(st.none() | aware_datetimes | in_backoffs.map(lambda d: anchor + d))
    policy = dataclasses.replace(policy, deadline=deadline)
    snapshot = copy.deepcopy(last)
    decision = policy.decide(history, now=now, last_request=last)
    assert decision == policy.decide(history, now=now, last_request=last)  # pure, repeatable
    assert last == snapshot
    # The rules as a model: the next attempt would start at max(now, end + backoff), the end
    # being TrainingEndTime, else CreationTime (T0 here); it must start before the deadline.
    backoff_from = ended or T0
    fits = policy.deadline is None or (
        now < policy.deadline and (policy.deadline - backoff_from).total_seconds() > delay
    )
    checkpoint = last.get("CheckpointConfig", {}).get("S3Uri")
    expected = (
        history[-1].outcome in policy.retry_on
        and used < policy.max_attempts
        and fits
        and bool(checkpoint or policy.allow_without_checkpoints)
    )
    assert isinstance(decision, Resubmit) is expected, (delay, decision)
    if isinstance(decision, GiveUp):
        assert decision.outcome is history[-1].outcome
        return
    assert decision.attempt == len(history) + 1 <= policy.max_attempts
    assert decision.delay_seconds == delay
    assert 0 <= decision.delay_seconds <= policy.backoff_max_seconds * (1 + policy.backoff_jitter)
    assert not decision.changes.on_demand or decision.attempt == policy.max_attempts
    new = decision.changes.apply(last)
    assert new.get("CheckpointConfig") == last.get("CheckpointConfig")
    if new["EnableManagedSpotTraining"]:
        stopping = new["StoppingCondition"]
        runtime = stopping.get("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME_SECONDS)
        assert runtime <= stopping["MaxWaitTimeInSeconds"] <= MAX_WAIT_LIMIT_SECONDS
        assert stopping["MaxWaitTimeInSeconds"] >= last["StoppingCondition"]["MaxWaitTimeInSeconds"]
    else:
        assert "MaxWaitTimeInSeconds" not in new["StoppingCondition"]


@settings(max_examples=200, deadline=None, database=None)
@given(
    policy=policies(),
    outcome=st.sampled_from(RETRYING),
    deadline_in_backoffs=st.floats(min_value=-0.5, max_value=2),
    waited_fraction=st.floats(min_value=0, max_value=1),
)
def test_deciding_again_during_the_backoff_changes_nothing(
    policy: SpotRetryPolicy,
    outcome: JobOutcome,
    deadline_in_backoffs: float,
    waited_fraction: float,
) -> None:
    # What the driver does: decide when the attempt ends, wait part or all of the backoff,
    # decide again. Both decisions must agree, whatever the deadline.
    history = [report("train-a-1", outcome, ended=NOW)]
    delay = policy.delay_seconds(2, "train-a-1")
    deadline = NOW + timedelta(microseconds=round(delay * deadline_in_backoffs * 1e6))
    policy = dataclasses.replace(policy, deadline=deadline)
    # Whole microseconds, rounded down: never past the end of the backoff.
    later = NOW + timedelta(microseconds=math.floor(delay * waited_fraction * 1e6))
    first = policy.decide(history, now=NOW, last_request=request())
    assert policy.decide(history, now=later, last_request=request()) == first
    if policy.max_attempts > 1 and outcome in policy.retry_on:
        fits = (deadline - NOW).total_seconds() > delay
        assert isinstance(first, Resubmit) is fits, (delay, deadline, first)


@settings(max_examples=200, deadline=None, database=None)
@given(policy=policies())
def test_json_round_trip_property(policy: SpotRetryPolicy) -> None:
    data = json.loads(json.dumps(policy.to_json()))
    again = SpotRetryPolicy.from_json(data)
    assert again == policy
    assert again.to_json() == policy.to_json()


@settings(max_examples=200, deadline=None, database=None)
@given(
    outcome=st.sampled_from(list(JobOutcome)),
    budget=st.integers(min_value=1, max_value=6),
    used=st.integers(min_value=1, max_value=8),
)
def test_resubmits_only_within_budget_and_retry_on(
    outcome: JobOutcome, budget: int, used: int
) -> None:
    policy = SpotRetryPolicy(retry_on=RETRYABLE_OUTCOMES, max_attempts=budget)
    history = history_of(*[JobOutcome.MAX_WAIT_EXCEEDED] * (used - 1), outcome)
    decision = policy.decide(history, now=NOW, last_request=request())
    expected = outcome in RETRYABLE_OUTCOMES and used < budget
    assert isinstance(decision, Resubmit) is expected
