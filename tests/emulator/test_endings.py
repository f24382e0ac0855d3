"""How jobs end: MaxRuntime, StopTrainingJob, algorithm errors, capacity errors, internal errors
(RetryStrategy), the random market; and boto3's waiter on those endings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, WaiterError

from airflow_spot_provider.emulator.admin import AdminApiError, AdminClient
from airflow_spot_provider.emulator.testing import (
    script_request,
    secondary_statuses,
    synthetic_request,
    wait_for_job,
    wait_for_secondary,
)
from airflow_spot_provider.lifecycle import JobOutcome, SpotJobReport, TrainingJobStatus
from airflow_spot_provider.lifecycle import SecondaryStatus as S

CAPACITY_ERROR = (
    "CapacityError: Unable to provision requested ML compute capacity. "
    "Please retry using a different ML instance type."
)
FAST_WAITER = {"Delay": 1, "MaxAttempts": 30}


def test_max_runtime_counts_training_time(sm: Any, bucket: str, job_name: str) -> None:
    request = synthetic_request(job_name, bucket, spot=False, train_seconds=30, max_runtime=1)
    sm.create_training_job(**request)
    final = wait_for_job(sm, job_name)

    assert final["TrainingJobStatus"] == TrainingJobStatus.STOPPED
    assert secondary_statuses(final) == [
        S.STARTING,
        S.DOWNLOADING,
        S.TRAINING,
        S.STOPPING,
        S.MAX_RUNTIME_EXCEEDED,
    ]
    # Stopped once training time reached 1 s, at a tick soon after (slack for a loaded machine).
    assert 1 <= final["TrainingTimeInSeconds"] <= 1 + 2
    # On-demand: billed as trained.
    assert final["BillableTimeInSeconds"] == final["TrainingTimeInSeconds"]
    assert SpotJobReport.from_describe(final).outcome is JobOutcome.MAX_RUNTIME_EXCEEDED


def test_stop_training_job(sm: Any, bucket: str, job_name: str) -> None:
    sm.create_training_job(**synthetic_request(job_name, bucket, train_seconds=30))
    wait_for_secondary(sm, job_name, S.TRAINING)

    sm.stop_training_job(TrainingJobName=job_name)
    # Stopping shows at once, as on SageMaker.
    assert sm.describe_training_job(TrainingJobName=job_name)["TrainingJobStatus"] == (
        TrainingJobStatus.STOPPING
    )
    sm.get_waiter("training_job_completed_or_stopped").wait(
        TrainingJobName=job_name, WaiterConfig=FAST_WAITER
    )
    final = sm.describe_training_job(TrainingJobName=job_name)
    assert final["TrainingJobStatus"] == TrainingJobStatus.STOPPED
    assert secondary_statuses(final)[-2:] == [S.STOPPING, S.STOPPED]
    assert SpotJobReport.from_describe(final).outcome is JobOutcome.STOPPED

    with pytest.raises(ClientError) as raised:
        sm.stop_training_job(TrainingJobName=job_name)
    assert raised.value.response["Error"] == {
        "Code": "ValidationException",
        "Message": "The request was rejected because the training job is in status Stopped.",
    }


def test_waiter_completes_on_completed_and_fails_on_failed(
    sm: Any, bucket: str, job_name: str
) -> None:
    sm.create_training_job(**synthetic_request(job_name, bucket, train_seconds=0.2))
    waiter = sm.get_waiter("training_job_completed_or_stopped")
    waiter.wait(TrainingJobName=job_name, WaiterConfig=FAST_WAITER)
    assert sm.describe_training_job(TrainingJobName=job_name)["TrainingJobStatus"] == (
        TrainingJobStatus.COMPLETED
    )

    failing = job_name + "-f"
    hps = {"train_seconds": "1", "step_seconds": "0.1", "fail_at_step": "2"}
    sm.create_training_job(**synthetic_request(failing, bucket, HyperParameters=hps))
    with pytest.raises(WaiterError, match="Failed"):
        waiter.wait(TrainingJobName=failing, WaiterConfig=FAST_WAITER)


def test_algorithm_error_reports_stderr_tail(
    sm: Any, bucket: str, job_name: str, tmp_path: Path, logs: Any
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "boom.py").write_text(
        "import sys\n"
        "print('about to fail', flush=True)\n"
        "print('x' * 2000, file=sys.stderr)\n"
        "print('ValueError: the data is bad', file=sys.stderr)\n"
        "sys.exit(3)\n"
    )
    sm.create_training_job(**script_request(job_name, bucket, source, "boom.py"))
    final = wait_for_job(sm, job_name)

    assert final["TrainingJobStatus"] == TrainingJobStatus.FAILED
    assert secondary_statuses(final)[-2:] == [S.TRAINING, S.FAILED]
    reason = final["FailureReason"]
    assert reason.startswith("AlgorithmError: ")
    assert reason.endswith("ValueError: the data is bad")
    assert len(reason) <= 1024
    assert SpotJobReport.from_describe(final).outcome is JobOutcome.FAILED
    # stdout and stderr both reach the job's log stream.
    (stream,) = logs.describe_log_streams(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=job_name + "/"
    )["logStreams"]
    events = logs.get_log_events(
        logGroupName="/aws/sagemaker/TrainingJobs",
        logStreamName=stream["logStreamName"],
        startFromHead=True,
    )["events"]
    messages = [e["message"] for e in events]
    assert "about to fail" in messages and "ValueError: the data is bad" in messages


def test_on_demand_without_capacity_fails_with_capacity_error(
    sm: Any, bucket: str, job_name: str, admin: AdminClient
) -> None:
    instance_type = "ml.p3.2xlarge"
    admin.set_capacity(instance_type, False)
    try:
        sm.create_training_job(
            **synthetic_request(job_name, bucket, spot=False, instance_type=instance_type)
        )
        final = wait_for_job(sm, job_name)
    finally:
        admin.set_capacity(instance_type, None)

    assert final["TrainingJobStatus"] == TrainingJobStatus.FAILED
    assert final["FailureReason"] == CAPACITY_ERROR
    assert secondary_statuses(final) == [S.STARTING, S.FAILED]
    assert SpotJobReport.from_describe(final).outcome is JobOutcome.CAPACITY_ERROR


def test_on_demand_jobs_are_not_interrupted(
    sm: Any, bucket: str, job_name: str, admin: AdminClient
) -> None:
    admin.load_scenario([{"interrupt": {"job": job_name, "at_training_second": 0}}])
    sm.create_training_job(
        **synthetic_request(job_name, bucket, spot=False, train_seconds=0.4, step_seconds=0.1)
    )
    wait_for_secondary(sm, job_name, S.TRAINING)
    with pytest.raises(AdminApiError) as raised:
        admin.interrupt(job_name)
    assert raised.value.status == 409
    final = wait_for_job(sm, job_name)
    assert S.INTERRUPTED not in secondary_statuses(final)
    assert final["TrainingJobStatus"] == TrainingJobStatus.COMPLETED


def test_internal_error_is_retried_from_starting(
    sm: Any, bucket: str, job_name: str, admin: AdminClient
) -> None:
    admin.fail(job_name, start=1)
    request = synthetic_request(
        job_name, bucket, train_seconds=0.2, RetryStrategy={"MaximumRetryAttempts": 1}
    )
    sm.create_training_job(**request)
    final = wait_for_job(sm, job_name)

    assert final["TrainingJobStatus"] == TrainingJobStatus.COMPLETED
    assert secondary_statuses(final) == [
        S.STARTING,
        S.DOWNLOADING,
        S.STARTING,
        S.DOWNLOADING,
        S.TRAINING,
        S.UPLOADING,
        S.COMPLETED,
    ]
    assert final["RetryStrategy"] == {"MaximumRetryAttempts": 1}


def test_internal_error_without_retry_fails(
    sm: Any, bucket: str, job_name: str, admin: AdminClient
) -> None:
    sm.create_training_job(**synthetic_request(job_name, bucket, train_seconds=30))
    wait_for_secondary(sm, job_name, S.TRAINING)
    admin.fail(job_name)
    final = wait_for_job(sm, job_name)

    assert final["TrainingJobStatus"] == TrainingJobStatus.FAILED
    assert final["FailureReason"].startswith("InternalServerError: ")
    assert secondary_statuses(final)[-2:] == [S.TRAINING, S.FAILED]


def test_admin_interrupt_and_random_market(
    sm: Any, bucket: str, job_name: str, admin: AdminClient, flaky_type: str
) -> None:
    # Live chaos: an interruption requested over the admin API (2 s of training: still
    # training when the request comes, even on a loaded machine).
    sm.create_training_job(**synthetic_request(job_name, bucket, train_seconds=2.0))
    wait_for_secondary(sm, job_name, S.TRAINING)
    admin.interrupt(job_name)
    final = wait_for_job(sm, job_name)
    assert secondary_statuses(final).count(S.INTERRUPTED) == 1
    assert final["TrainingJobStatus"] == TrainingJobStatus.COMPLETED

    # The seeded random model: about three interruptions per training second on this type, and
    # the job names are random: 3 s of training leave no interruption with odds of e**-9.
    flaky = job_name + "-r"
    sm.create_training_job(
        **synthetic_request(
            flaky, bucket, instance_type=flaky_type, train_seconds=3.0, step_seconds=0.05
        )
    )
    final = wait_for_job(sm, flaky, timeout=60)
    sources = {e["source"] for e in admin.events(job=flaky, kind="interrupt")}
    assert sources == {"market"}
    assert SpotJobReport.from_describe(final).interruptions >= 1
    assert final["TrainingJobStatus"] == TrainingJobStatus.COMPLETED
