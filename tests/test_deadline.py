"""Tests of the deadline-aware decisions: first attempt, per resubmission, while waiting."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_spot_provider.deadline import (
    DeadlineRule,
    check_slack,
    estimate_work,
    saved_seconds,
    training_segments,
)
from airflow_spot_provider.exceptions import SpotRequestValidationError
from airflow_spot_provider.lifecycle import SecondaryStatus, SpotJobReport
from airflow_spot_provider.retry import (
    RETRYABLE_OUTCOMES,
    CreateAttempt,
    GiveUp,
    KeepWaiting,
    Resubmit,
    SpotRetryPolicy,
    SwitchToOnDemand,
)
from tests.spot_reports import T0, job

S = SecondaryStatus
HOUR = 3600.0
WORK = 8 * HOUR  # expected training seconds of the whole job
OVERHEAD = 300.0
INTERVAL = 1800.0
MARGIN = 900.0
# What the rule keeps besides the work: on-demand start, margin, one more interruption.
KEEP = OVERHEAD + MARGIN + OVERHEAD + INTERVAL


def request(*, spot: bool = True) -> dict[str, Any]:
    stopping: dict[str, Any] = {"MaxRuntimeInSeconds": 36_000}
    if spot:
        stopping["MaxWaitTimeInSeconds"] = 36_000
    return {
        "AlgorithmSpecification": {"TrainingImage": "trainer:latest", "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::123456789012:role/sagemaker",
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/output"},
        "ResourceConfig": {"InstanceType": "ml.p3.2xlarge", "InstanceCount": 1},
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": spot,
        "CheckpointConfig": {
            "S3Uri": "s3://bucket/checkpoints/",
            "LocalPath": "/opt/ml/checkpoints",
        },
    }


def aware(deadline_after: float, **kwargs: Any) -> SpotRetryPolicy:
    options: dict[str, Any] = {
        "retry_on": RETRYABLE_OUTCOMES,
        "max_attempts": 5,
        "deadline": T0 + timedelta(seconds=deadline_after),
        "deadline_aware": True,
        "expected_training_seconds": WORK,
        "restart_overhead_seconds": OVERHEAD,
        "checkpoint_interval_seconds": INTERVAL,
        "deadline_margin_seconds": MARGIN,
    }
    return SpotRetryPolicy(**(options | kwargs))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --- first attempt ----------------------------------------------------------------------------


@pytest.mark.parametrize("deadline_aware", [False, True])
def test_a_deadline_already_past_creates_no_attempt(deadline_aware: bool) -> None:
    # The reproduction: a deadline a minute ago must not create attempt 1.
    minute_ago = T0 - timedelta(minutes=1)
    policy = aware(-60) if deadline_aware else SpotRetryPolicy(deadline=minute_ago)
    for now in (T0 - timedelta(minutes=1), T0):
        decision = policy.first_attempt(now=now, request=request())
        assert isinstance(decision, GiveUp), decision
        assert decision.outcome is None
        assert decision.rule is DeadlineRule.DEADLINE_PASSED
        assert decision.at == now
        assert "not created" in decision.reason


def test_first_attempt_without_deadline_or_awareness_is_as_requested() -> None:
    for policy in (SpotRetryPolicy(), SpotRetryPolicy(deadline=at(HOUR))):
        decision = policy.first_attempt(now=T0, request=request())
        assert isinstance(decision, CreateAttempt)
        assert decision.changes.apply(request()) == request()
        assert decision.rule is None


def test_first_attempt_spot_while_the_slack_covers_the_work_else_on_demand() -> None:
    boundary = WORK + KEEP  # the slack the rule needs at the start (no work saved)
    roomy = aware(boundary + 1).first_attempt(now=T0, request=request())
    assert isinstance(roomy, CreateAttempt)
    assert not roomy.changes.on_demand
    assert roomy.rule is DeadlineRule.SLACK_COVERS_WORK
    tight = aware(boundary).first_attempt(now=T0, request=request())
    assert isinstance(tight, CreateAttempt)
    assert tight.changes.on_demand
    assert tight.rule is DeadlineRule.SLACK_EXHAUSTED
    assert tight.changes.apply(request())["EnableManagedSpotTraining"] is False
    assert "on-demand" in tight.reason and "latest on-demand start" in tight.reason


def test_first_attempt_of_an_on_demand_request_stays_as_requested() -> None:
    decision = aware(WORK).first_attempt(now=T0, request=request(spot=False))
    assert isinstance(decision, CreateAttempt)
    assert decision.changes.apply(request(spot=False)) == request(spot=False)


def test_first_attempt_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        aware(WORK * 2).first_attempt(now=datetime(2026, 3, 2), request=request())


# --- while waiting ------------------------------------------------------------------------------

# Attempt 1: started, trained 2 h (+ overhead), interrupted at 2h05m, waiting since.
TRAINED = 2 * HOUR
INTERRUPTED_AT = OVERHEAD + TRAINED
WAITING = job(
    "train-a1",
    [(S.STARTING, 0), (S.DOWNLOADING, 0), (S.TRAINING, OVERHEAD), (S.INTERRUPTED, INTERRUPTED_AT)],
)


def test_waiting_job_switches_exactly_when_the_slack_stops_covering_the_work() -> None:
    deadline_after = 12 * HOUR
    policy = aware(deadline_after)
    remaining = WORK - TRAINED  # 2 h is four whole intervals: nothing lost
    latest = at(deadline_after - remaining - KEEP)
    before = policy.decide_while_waiting(
        [], WAITING, now=latest - timedelta(seconds=1), last_request=request()
    )
    assert isinstance(before, KeepWaiting)
    assert before.rule is DeadlineRule.SLACK_COVERS_WORK
    assert before.recheck_at == latest
    switch = policy.decide_while_waiting([], WAITING, now=latest, last_request=request())
    assert isinstance(switch, SwitchToOnDemand), switch
    assert switch.rule is DeadlineRule.SLACK_EXHAUSTED
    assert switch.attempt == 2
    assert switch.at == latest
    assert switch.changes.on_demand
    new = switch.changes.apply(request())
    assert new["EnableManagedSpotTraining"] is False
    assert new["CheckpointConfig"] == request()["CheckpointConfig"]  # same checkpoint
    assert "MaxWaitTimeInSeconds" not in new["StoppingCondition"]


def test_work_since_the_last_checkpoint_counts_as_lost() -> None:
    extra = 1000.0  # trained past the fourth checkpoint, lost at the interruption
    report = job(
        "train-a1",
        [
            (S.STARTING, 0),
            (S.DOWNLOADING, 0),
            (S.TRAINING, OVERHEAD),
            (S.INTERRUPTED, INTERRUPTED_AT + extra),
        ],
    )
    decision = aware(12 * HOUR).decide_while_waiting(
        [], report, now=at(INTERRUPTED_AT + extra), last_request=request()
    )
    assert isinstance(decision, KeepWaiting)
    assert decision.recheck_at == at(12 * HOUR - (WORK - TRAINED) - KEEP)


@pytest.mark.parametrize(
    ("policy", "running", "req", "rule"),
    [
        (SpotRetryPolicy(deadline=at(HOUR)), WAITING, request(), DeadlineRule.NOT_DEADLINE_AWARE),
        (aware(HOUR), WAITING, request(spot=False), DeadlineRule.ALREADY_ON_DEMAND),
        (
            aware(HOUR),
            job("train-a1", [(S.STARTING, 0), (S.DOWNLOADING, 0), (S.TRAINING, OVERHEAD)]),
            request(),
            DeadlineRule.NOT_WAITING,
        ),
        (aware(HOUR, max_attempts=1), WAITING, request(), DeadlineRule.BUDGET_USED),
    ],
)
def test_waiting_jobs_left_alone(
    policy: SpotRetryPolicy, running: SpotJobReport, req: dict[str, Any], rule: DeadlineRule
) -> None:
    # An hour before the deadline with 6 h of work left: only these rules keep it waiting.
    decision = policy.decide_while_waiting([], running, now=at(3 * HOUR), last_request=req)
    assert isinstance(decision, KeepWaiting), decision
    assert decision.rule is rule
    assert decision.recheck_at is None


def test_the_first_capacity_gap_counts_too() -> None:
    starting = job("train-a1", [(S.STARTING, 0)])
    policy = aware(WORK + KEEP + HOUR)
    keep = policy.decide_while_waiting([], starting, now=at(HOUR - 1), last_request=request())
    assert isinstance(keep, KeepWaiting)
    switch = policy.decide_while_waiting([], starting, now=at(HOUR), last_request=request())
    assert isinstance(switch, SwitchToOnDemand)


def test_previous_attempts_count_towards_the_work_done() -> None:
    first = job(
        "train-a1",
        [
            (S.STARTING, 0),
            (S.DOWNLOADING, 0),
            (S.TRAINING, OVERHEAD),
            (S.STOPPING, INTERRUPTED_AT),
            (S.MAX_WAIT_TIME_EXCEEDED, INTERRUPTED_AT),
        ],
        status="Stopped",
        ended=INTERRUPTED_AT,
    )
    second = job("train-a2", [(S.STARTING, INTERRUPTED_AT + 30)])
    policy = aware(12 * HOUR)
    decision = policy.decide_while_waiting(
        [first], second, now=at(INTERRUPTED_AT + 60), last_request=request()
    )
    assert isinstance(decision, KeepWaiting)
    assert decision.recheck_at == at(12 * HOUR - (WORK - TRAINED) - KEEP)
    late = policy.decide_while_waiting(
        [first], second, now=decision.recheck_at, last_request=request()
    )
    assert isinstance(late, SwitchToOnDemand)
    assert late.attempt == 3


@settings(max_examples=150, deadline=None, database=None)
@given(
    deadline_hours=st.floats(min_value=0.5, max_value=30),
    first=st.floats(min_value=0, max_value=30 * HOUR),
    later=st.floats(min_value=0, max_value=30 * HOUR),
    progress=st.none() | st.floats(min_value=0.05, max_value=1),
)
def test_once_switched_always_switched(
    deadline_hours: float, first: float, later: float, progress: float | None
) -> None:
    # Time passing while a job waits never brings spot back into favour.
    policy = aware(deadline_hours * HOUR)
    start = INTERRUPTED_AT + min(first, later)
    end = INTERRUPTED_AT + max(first, later)
    early = policy.decide_while_waiting(
        [], WAITING, now=at(start), last_request=request(), progress=progress
    )
    late = policy.decide_while_waiting(
        [], WAITING, now=at(end), last_request=request(), progress=progress
    )
    if isinstance(early, SwitchToOnDemand):
        assert isinstance(late, SwitchToOnDemand)
    if isinstance(early, KeepWaiting) and early.recheck_at is not None:
        assert isinstance(late, SwitchToOnDemand) == (at(end) >= early.recheck_at)


# --- per resubmission -------------------------------------------------------------------------

ENDED = job(
    "train-a1",
    [(S.STARTING, 0), (S.STOPPING, 10 * HOUR), (S.MAX_WAIT_TIME_EXCEEDED, 10 * HOUR)],
    status="Stopped",
    ended=10 * HOUR,
)


def test_resubmission_goes_on_demand_when_the_slack_no_longer_covers_the_work() -> None:
    delay = 30.0  # the default backoff of attempt 2
    start = 10 * HOUR + delay
    boundary = start + WORK + KEEP
    spot = aware(boundary + 1).decide([ENDED], now=at(10 * HOUR), last_request=request())
    assert isinstance(spot, Resubmit)
    assert not spot.changes.on_demand
    assert spot.rule is DeadlineRule.SLACK_COVERS_WORK
    on_demand = aware(boundary).decide([ENDED], now=at(10 * HOUR), last_request=request())
    assert isinstance(on_demand, Resubmit)
    assert on_demand.changes.on_demand
    assert on_demand.rule is DeadlineRule.SLACK_EXHAUSTED
    assert "no longer covers" in on_demand.reason


def test_policies_that_are_not_deadline_aware_decide_as_before() -> None:
    plain = SpotRetryPolicy(deadline=at(11 * HOUR))
    decision = plain.decide([ENDED], now=at(10 * HOUR), last_request=request())
    assert isinstance(decision, Resubmit)
    assert decision.rule is None
    assert not decision.changes.on_demand
    past = plain.decide([ENDED], now=at(11 * HOUR), last_request=request())
    assert isinstance(past, GiveUp)
    assert past.rule is DeadlineRule.DEADLINE_PASSED


def test_work_is_learnt_from_the_progress_the_script_reports() -> None:
    def estimate(progress: float | None) -> tuple[float, float, str]:
        work = estimate_work(
            [WAITING],
            at(INTERRUPTED_AT),
            request=request(),
            expected_training_seconds=None,
            restart_overhead_seconds=OVERHEAD,
            checkpoint_interval_seconds=INTERVAL,
            progress=progress,
        )
        return work.total_seconds, work.remaining_seconds, work.source

    # 2 h saved and "25% done": the job is 8 h whatever the policy expected.
    assert estimate(0.25) == (WORK, WORK - TRAINED, "progress")
    # Without progress nor an expected figure, MaxRuntimeInSeconds is the bound.
    assert estimate(None) == (36_000, 36_000 - TRAINED, "max-runtime")


def test_segments_and_saved_seconds() -> None:
    report = job(
        "train-a1",
        [
            (S.STARTING, 0),
            (S.DOWNLOADING, 100),
            (S.TRAINING, 100 + OVERHEAD),
            (S.INTERRUPTED, 100 + OVERHEAD + 4000),
            (S.DOWNLOADING, 9000),
            (S.TRAINING, 9000 + OVERHEAD),
        ],
    )
    now = at(9000 + OVERHEAD + 500)
    assert training_segments(report, now) == [(OVERHEAD + 4000, True), (OVERHEAD + 500, False)]
    saved = saved_seconds(
        [report], now, restart_overhead_seconds=OVERHEAD, checkpoint_interval_seconds=INTERVAL
    )
    assert saved == 2 * INTERVAL + 500


def test_check_slack_boundary() -> None:
    check = check_slack(
        T0, at(1000), 600, restart_overhead_seconds=100, margin_seconds=200, reserve_seconds=99
    )
    assert check.covers and check.latest_switch == at(1)
    exact = check_slack(
        T0, at(1000), 600, restart_overhead_seconds=100, margin_seconds=200, reserve_seconds=100
    )
    assert not exact.covers and exact.slack_seconds == 1000


# --- configuration ----------------------------------------------------------------------------


# The numeric deadline options of SpotRetryPolicy.
DEADLINE_NUMBERS = frozenset(
    {
        "expected_training_seconds",
        "restart_overhead_seconds",
        "checkpoint_interval_seconds",
        "deadline_margin_seconds",
    }
)


def test_deadline_aware_needs_sane_numbers() -> None:
    with pytest.raises(SpotRequestValidationError) as caught:
        SpotRetryPolicy(
            deadline_aware=True,
            expected_training_seconds=0,
            restart_overhead_seconds=-1,
            checkpoint_interval_seconds=float("nan"),
            deadline_margin_seconds="soon",  # type: ignore[arg-type]
        )
    assert caught.value.fields == {f"SpotRetryPolicy.{name}" for name in DEADLINE_NUMBERS}
    with pytest.raises(SpotRequestValidationError, match="deadline_aware"):
        SpotRetryPolicy(deadline_aware="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(DEADLINE_NUMBERS))
def test_an_int_past_floats_range_is_refused_not_an_overflow(name: str) -> None:
    with pytest.raises(SpotRequestValidationError) as caught:
        SpotRetryPolicy(**{name: 10**400})
    (violation,) = caught.value.violations
    assert str(violation).startswith(f"SpotRetryPolicy.{name}=<int of about 401 digits>: must be")


def test_deadline_aware_without_a_deadline_decides_as_not_aware_until_the_task_gives_one() -> None:
    # The deadline may come from the operator's or the sensor's templated ``deadline``
    # (task_deadline.task_policy, which refuses a deadline-aware policy left without one).
    policy = SpotRetryPolicy(deadline_aware=True, expected_training_seconds=WORK)
    decision = policy.first_attempt(now=at(0), request=request())
    assert isinstance(decision, CreateAttempt) and decision.rule is None
    assert not decision.changes.on_demand


def test_rendered_template_deadline_and_json_round_trip() -> None:
    # What the operator gets from "{{ data_interval_end + macros.timedelta(hours=6) }}".
    policy = aware(0, deadline="2026-03-02T12:00:00+00:00")
    assert policy.deadline == at(6 * HOUR)
    data = json.loads(json.dumps(policy.to_json()))
    assert data["deadline_aware"] is True and data["expected_training_seconds"] == WORK
    assert SpotRetryPolicy.from_json(data) == policy


def test_training_time_stands_in_without_transitions() -> None:
    bare = SpotJobReport.from_describe(
        {
            "TrainingJobName": "train-a1",
            "TrainingJobStatus": "Stopped",
            "SecondaryStatus": "MaxWaitTimeExceeded",
            "TrainingTimeInSeconds": int(OVERHEAD + TRAINED),
        }
    )
    saved = saved_seconds(
        [bare], T0, restart_overhead_seconds=OVERHEAD, checkpoint_interval_seconds=INTERVAL
    )
    assert saved == TRAINED


@settings(max_examples=100, deadline=None, database=None)
@given(
    deadline_hours=st.floats(min_value=10, max_value=30),
    waited=st.floats(min_value=0, max_value=1),
    backoff=st.floats(min_value=0, max_value=3600),
)
def test_deciding_again_during_the_backoff_agrees(
    deadline_hours: float, waited: float, backoff: float
) -> None:
    policy = aware(
        deadline_hours * HOUR, backoff_initial_seconds=backoff, backoff_max_seconds=backoff
    )
    ended = at(10 * HOUR)
    first = policy.decide([ENDED], now=ended, last_request=request())
    later = ended + timedelta(seconds=backoff * waited)
    assert policy.decide([ENDED], now=later, last_request=request()) == first


@settings(max_examples=100, deadline=None, database=None)
@given(
    expected=st.none() | st.floats(min_value=1, max_value=1e7),
    overhead=st.floats(min_value=0, max_value=1e5),
    interval=st.floats(min_value=1, max_value=1e5),
    margin=st.floats(min_value=0, max_value=1e5),
)
def test_deadline_options_round_trip_through_json(
    expected: float | None, overhead: float, interval: float, margin: float
) -> None:
    policy = aware(
        12 * HOUR,
        expected_training_seconds=expected,
        restart_overhead_seconds=overhead,
        checkpoint_interval_seconds=interval,
        deadline_margin_seconds=margin,
    )
    assert SpotRetryPolicy.from_json(json.loads(json.dumps(policy.to_json()))) == policy
