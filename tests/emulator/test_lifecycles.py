"""The four spot lifecycles of the SageMaker developer guide, transition by transition."""

from __future__ import annotations

import itertools
import math
from typing import Any

from airflow_spot_provider.emulator.admin import AdminClient
from airflow_spot_provider.emulator.market import BUILTIN_PRICES
from airflow_spot_provider.emulator.testing import (
    secondary_statuses,
    synthetic_request,
    wait_for_job,
)
from airflow_spot_provider.lifecycle import SecondaryStatus as S
from airflow_spot_provider.lifecycle import SpotJobReport, TrainingJobStatus

FIRST_RUN = [S.STARTING, S.DOWNLOADING, S.TRAINING]
SLACK_SECONDS = 2.0  # of a deadline checked at every 0.02 s tick


def _primary_statuses(admin: AdminClient, job: str) -> list[str]:
    """The TrainingJobStatus after each transition, without repeats."""
    seen: list[str] = [TrainingJobStatus.IN_PROGRESS]
    for event in admin.events(job=job, kind="transition"):
        if event["status"] != seen[-1]:
            seen.append(event["status"])
    return seen


def _assert_timeline(described: dict[str, Any]) -> None:
    """Each transition ends when the next starts; the job's clocks are in order."""
    transitions = described["SecondaryStatusTransitions"]
    for current, following in itertools.pairwise(transitions):
        assert current["EndTime"] == following["StartTime"]
        assert current["StartTime"] <= current["EndTime"]
    assert described["CreationTime"] == transitions[0]["StartTime"]
    assert described["LastModifiedTime"] == transitions[-1]["StartTime"]
    assert described["TrainingEndTime"] == transitions[-1]["StartTime"]
    assert all(t["StatusMessage"] for t in transitions)


def test_no_interruption(sm: Any, s3: Any, bucket: str, job_name: str, admin: AdminClient) -> None:
    sm.create_training_job(**synthetic_request(job_name, bucket, train_seconds=0.3))
    final = wait_for_job(sm, job_name)

    assert secondary_statuses(final) == [*FIRST_RUN, S.UPLOADING, S.COMPLETED]
    assert final["TrainingJobStatus"] == TrainingJobStatus.COMPLETED
    assert _primary_statuses(admin, job_name) == [
        TrainingJobStatus.IN_PROGRESS,
        TrainingJobStatus.COMPLETED,
    ]
    _assert_timeline(final)
    assert final["CreationTime"] < final["TrainingStartTime"] < final["TrainingEndTime"]
    # Spot billing: training seconds scaled by the spot/on-demand price ratio, rounded up.
    ratio = 1 - BUILTIN_PRICES["ml.m5.large"][1]
    assert final["TrainingTimeInSeconds"] >= 1
    assert final["BillableTimeInSeconds"] == max(
        1, math.ceil(final["TrainingTimeInSeconds"] * ratio - 1e-9)
    )
    uri = final["ModelArtifacts"]["S3ModelArtifacts"]
    assert uri == f"s3://{bucket}/output/{job_name}/output/model.tar.gz"
    assert s3.head_object(Bucket=bucket, Key=uri.split("/", 3)[3])["ContentLength"] > 0
    report = SpotJobReport.from_describe(final)
    assert report.interruptions == 0 and report.managed_spot


def test_one_interruption_then_success(
    sm: Any, s3: Any, bucket: str, job_name: str, admin: AdminClient
) -> None:
    admin.load_scenario(
        [{"interrupt": {"job": job_name, "at_training_second": 0.25, "attempt": 1}}]
    )
    sm.create_training_job(
        **synthetic_request(job_name, bucket, train_seconds=0.6, step_seconds=0.1)
    )
    final = wait_for_job(sm, job_name)

    assert secondary_statuses(final) == [
        *FIRST_RUN,
        S.INTERRUPTED,
        *FIRST_RUN,
        S.UPLOADING,
        S.COMPLETED,
    ]
    assert final["TrainingJobStatus"] == TrainingJobStatus.COMPLETED
    _assert_timeline(final)
    interrupts = admin.events(job=job_name, kind="interrupt")
    assert [(e["source"], e["start"]) for e in interrupts] == [("market", 1)]
    # The restart resumed from the checkpoint synced to S3 before the interruption.
    checkpoint = s3.get_object(Bucket=bucket, Key=f"checkpoints/{job_name}/step.json")
    assert b'"step": 6' in checkpoint["Body"].read()


def test_two_interruptions_then_max_wait(
    sm: Any, s3: Any, bucket: str, job_name: str, admin: AdminClient
) -> None:
    admin.load_scenario(
        [
            {"interrupt": {"job": job_name, "at_training_second": 0.2, "attempt": 1}},
            {"interrupt": {"job": job_name, "at_training_second": 0.2, "attempt": 2}},
        ]
    )
    # 3 s: the third Training starts about 1 s after creation, with room for a loaded machine.
    request = synthetic_request(
        job_name, bucket, train_seconds=30, step_seconds=0.1, max_runtime=3, max_wait=3
    )
    sm.create_training_job(**request)
    final = wait_for_job(sm, job_name)

    # After the second interruption: Downloading without Starting, as the guide shows it.
    assert secondary_statuses(final) == [
        *FIRST_RUN,
        S.INTERRUPTED,
        *FIRST_RUN,
        S.INTERRUPTED,
        S.DOWNLOADING,
        S.TRAINING,
        S.STOPPING,
        S.MAX_WAIT_TIME_EXCEEDED,
    ]
    assert final["TrainingJobStatus"] == TrainingJobStatus.STOPPED
    assert final["SecondaryStatus"] == S.MAX_WAIT_TIME_EXCEEDED
    assert _primary_statuses(admin, job_name) == [
        TrainingJobStatus.IN_PROGRESS,
        TrainingJobStatus.STOPPING,
        TrainingJobStatus.STOPPED,
    ]
    _assert_timeline(final)
    stopping = final["SecondaryStatusTransitions"][-2]["StartTime"]
    waited = (stopping - final["CreationTime"]).total_seconds()
    # MaxWaitTimeInSeconds counts from creation, waiting plus running: the stop comes once it
    # passed (never before), at a tick soon after (the slack only absorbs a loaded machine).
    assert 3 <= waited < 3 + SLACK_SECONDS
    # SageMaker names the model's place from creation on; no model was uploaded there.
    model_key = final["ModelArtifacts"]["S3ModelArtifacts"].split("/", 3)[3]
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=model_key)
    assert SpotJobReport.from_describe(final).interruptions == 2
    # The checkpoints stay in S3 for a new job to resume from.
    checkpoint = s3.get_object(Bucket=bucket, Key=f"checkpoints/{job_name}/step.json")
    assert b'"step": ' in checkpoint["Body"].read()


def test_never_launched(sm: Any, bucket: str, job_name: str, admin: AdminClient) -> None:
    instance_type = "ml.p3.8xlarge"
    admin.set_capacity(instance_type, False)
    try:
        request = synthetic_request(
            job_name, bucket, instance_type=instance_type, max_runtime=1, max_wait=1
        )
        sm.create_training_job(**request)
        final = wait_for_job(sm, job_name)
    finally:
        admin.set_capacity(instance_type, None)

    assert secondary_statuses(final) == [S.STARTING, S.STOPPING, S.MAX_WAIT_TIME_EXCEEDED]
    assert final["TrainingJobStatus"] == TrainingJobStatus.STOPPED
    assert _primary_statuses(admin, job_name) == [
        TrainingJobStatus.IN_PROGRESS,
        TrainingJobStatus.STOPPING,
        TrainingJobStatus.STOPPED,
    ]
    # No instance ever ran: no start time, no training or billable seconds.
    for absent in ("TrainingStartTime", "TrainingTimeInSeconds", "BillableTimeInSeconds"):
        assert absent not in final
