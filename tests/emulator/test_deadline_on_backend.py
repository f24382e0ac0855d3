"""The deadline-aware decisions on the embedded backend agree with the simulator's.

A small harness plays the follower's part with real boto3 calls: it asks ``first_attempt``,
polls DescribeTrainingJob, asks ``decide_while_waiting`` on each poll and, on
``SwitchToOnDemand``, stops the job and creates the on-demand attempt from the same checkpoint.
The simulator runs the same policy on the same market events (seconds instead of hours); both
must take the same decisions, at about the same times.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_spot_provider.emulator.admin import AdminClient
from airflow_spot_provider.emulator.testing import synthetic_request, wait_for_job
from airflow_spot_provider.lifecycle import JobOutcome, SpotJobReport
from airflow_spot_provider.retry import (
    RETRYABLE_OUTCOMES,
    GiveUp,
    SpotRetryPolicy,
    SwitchToOnDemand,
)
from airflow_spot_provider.simulator.engine import BASE_TIME, run_chain
from airflow_spot_provider.simulator.jobs import JobModel, Price
from airflow_spot_provider.simulator.markets import Availability

INSTANCE = "ml.m5.4xlarge"  # no other test of the session takes its capacity away
TRAIN = 4.0  # seconds of training, a checkpoint every second
POLL = 0.1
DEADLINE = 11.0
OVERHEAD = 0.1  # about the backend's Starting + Downloading in fast_config


def policy(deadline: datetime) -> SpotRetryPolicy:
    return SpotRetryPolicy(
        retry_on=RETRYABLE_OUTCOMES,
        max_attempts=5,
        deadline=deadline,
        deadline_aware=True,
        expected_training_seconds=TRAIN,
        restart_overhead_seconds=OVERHEAD,
        checkpoint_interval_seconds=1.0,
        deadline_margin_seconds=0.5,
    )


Decision = tuple[str, bool, str | None]


def follow(
    sm: Any, admin: AdminClient, name: str, request: dict[str, Any]
) -> tuple[list[Decision], list[float], SpotJobReport]:
    """The follower's part against the backend: decisions, their times, the last report."""
    start = datetime.now(UTC)
    rules = policy(start + timedelta(seconds=DEADLINE))
    first = rules.first_attempt(now=start, request=request)
    assert not isinstance(first, GiveUp)
    decisions: list[Decision] = [("create", first.changes.on_demand, first.rule)]
    times = [0.0]
    request, history, attempt = first.changes.apply(request), [], 1
    sm.create_training_job(TrainingJobName=f"{name}-a{attempt}", **request)
    while True:
        report = SpotJobReport.from_describe(
            sm.describe_training_job(TrainingJobName=f"{name}-a{attempt}")
        )
        if report.is_terminal:
            return decisions, times, report
        now = datetime.now(UTC)
        decision = rules.decide_while_waiting(history, report, now=now, last_request=request)
        if isinstance(decision, SwitchToOnDemand):
            decisions.append(("switch-to-on-demand", True, decision.rule))
            times.append((now - start).total_seconds())
            sm.stop_training_job(TrainingJobName=report.job_name)
            history.append(SpotJobReport.from_describe(wait_for_job(sm, report.job_name)))
            admin.set_capacity(INSTANCE, True)  # the simulator's on-demand capacity is always there
            request, attempt = decision.changes.apply(request), decision.attempt
            sm.create_training_job(TrainingJobName=f"{name}-a{attempt}", **request)
        time.sleep(POLL)


def simulated(
    capacity: Availability, request: dict[str, Any]
) -> tuple[list[Decision], list[float]]:
    job = JobModel(
        work_hours=TRAIN / 3600,
        checkpoint_interval_seconds=1.0,
        checkpoint_cost_seconds=0.0,
        restart_overhead_seconds=OVERHEAD,
        upload_seconds=0.05,
        deadline_factor=DEADLINE / (OVERHEAD + TRAIN + 0.05),  # the same deadline, in seconds
    )
    result = run_chain(
        policy(BASE_TIME + timedelta(seconds=DEADLINE)),
        request,
        capacity,
        job,
        Price(1.0, 0.7),
        poll_seconds=POLL,
        stop_seconds=0.1,
    )
    assert result.met_deadline
    return [(d.kind, d.on_demand, d.rule) for d in result.decisions], [
        d.seconds for d in result.decisions
    ]


@pytest.mark.parametrize("market", ["gap-from-the-start", "interruption-then-gap"])
def test_backend_and_simulator_take_the_same_decisions(
    sm: Any, admin: AdminClient, bucket: str, job_name: str, market: str
) -> None:
    request = synthetic_request(
        job_name, bucket, train_seconds=TRAIN, step_seconds=1.0, instance_type=INSTANCE
    )
    del request["TrainingJobName"]
    try:
        if market == "gap-from-the-start":
            admin.set_capacity(INSTANCE, False)
            capacity = Availability(False)
        else:
            # Capacity leaves at 1 s (the running job keeps it) and the job is interrupted
            # after 2.5 training seconds (2 saved): it then waits for capacity for ever.
            admin.load_scenario(
                [
                    {"no_capacity": {"instance_type": INSTANCE, "from": 1.0}},
                    {"interrupt": {"job": f"{job_name}-a1", "at_training_second": 2.5}},
                ]
            )
            capacity = Availability(True, [OVERHEAD + 2.5])
        decisions, times, last = follow(sm, admin, job_name, request)
    finally:
        admin.set_capacity(INSTANCE, None)
    expected, expected_times = simulated(capacity, request)
    assert (
        decisions
        == expected
        == [
            ("create", False, "slack-covers-work"),
            ("switch-to-on-demand", True, "slack-exhausted"),
        ]
    )
    # Generous: the backend's phases take their own (real, noisy) time.
    assert times[1] == pytest.approx(expected_times[1], abs=1.0), (times, expected_times)
    assert last.outcome is JobOutcome.COMPLETED and not last.managed_spot
    assert last.checkpoint_s3_uri == request["CheckpointConfig"]["S3Uri"]
