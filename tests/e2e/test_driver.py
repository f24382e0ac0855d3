"""The chain driver and the operator's parse-time checks, against the embedded backend."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from airflow_spot_provider.operators.driver import SpotTrainingDriver

from airflow_spot_provider.emulator import SpotEmulator
from airflow_spot_provider.emulator.chaos import CapacityGap
from airflow_spot_provider.exceptions import SpotRequestValidationError, SpotTrainingError
from airflow_spot_provider.hooks.spot_training import SageMakerSpotHook
from airflow_spot_provider.job_names import task_job_base_name
from airflow_spot_provider.lifecycle import JobOutcome, TrainingJobStatus
from airflow_spot_provider.operators.spot_training import SageMakerSpotTrainingOperator
from airflow_spot_provider.request import build_spot_request
from airflow_spot_provider.retry import SpotRetryPolicy
from airflow_spot_provider.sensors.spot_training import SageMakerSpotTrainingSensor
from tests.e2e.conftest import BUCKET, synthetic_config
from tests.e2e.test_spot_training_dags import jobs_named

pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)


def driver(
    name: str, policy: SpotRetryPolicy, config: dict[str, Any], wait: int = 60
) -> SpotTrainingDriver:
    request = build_spot_request(
        config, checkpoint_s3_uri=f"s3://{BUCKET}/checkpoints/{name}/", max_run=wait, max_wait=wait
    )
    return SpotTrainingDriver(
        hook=SageMakerSpotHook(aws_conn_id="aws_default"),
        policy=policy,
        first_name=f"{name}-a1",
        base_request=request,
        log=log,
    )


def drive(chain: SpotTrainingDriver) -> dict[str, Any]:
    while True:
        step = chain.advance()
        if step.summary is not None:
            return step.summary
        if step.wait_seconds:
            chain.sleep(step.wait_seconds)
        else:
            chain.follow(step.job_name, 0.2)


def test_exhausted_policy_raises_with_every_attempt(emulator: SpotEmulator, name: str) -> None:
    config = synthetic_config(1.0)
    config["ResourceConfig"]["InstanceType"] = "ml.c5.2xlarge"
    policy = SpotRetryPolicy(max_attempts=2, backoff_initial_seconds=0.2)
    gap = CapacityGap(emulator, "ml.c5.2xlarge", "zzz-never", after_interruption=False)
    with gap, pytest.raises(SpotTrainingError) as failure:
        drive(driver(name, policy, config, wait=1))
    error = failure.value
    assert error.outcome is JobOutcome.MAX_WAIT_EXCEEDED
    assert [a.outcome for a in error.attempts] == [JobOutcome.MAX_WAIT_EXCEEDED] * 2
    assert [a.job_name for a in error.attempts] == [f"{name}-a1", f"{name}-a2"]
    assert "budget" in error.reason


def test_launch_only_never_resubmits(emulator: SpotEmulator, sm: Any, name: str) -> None:
    config = synthetic_config(1.0)
    config["ResourceConfig"]["InstanceType"] = "ml.c5.xlarge"
    chain = driver(name, SpotRetryPolicy(max_attempts=3, backoff_initial_seconds=0), config, wait=1)
    with CapacityGap(emulator, "ml.c5.xlarge", "zzz-never", after_interruption=False):
        assert chain.advance(launch_only=True).job_name == f"{name}-a1"
        chain.follow(f"{name}-a1", 0.2)  # ends MaxWaitTimeExceeded
        again = chain.advance(launch_only=True)  # a retried launch task
    assert again.job_name == f"{name}-a1"
    assert len(jobs_named(sm, name)) == 1
    assert chain.created_summary(again.job_name)["outcome"] == JobOutcome.MAX_WAIT_EXCEEDED


def test_stop_running_stops_the_chain(emulator: SpotEmulator, sm: Any, name: str) -> None:
    chain = driver(name, SpotRetryPolicy(), synthetic_config(60.0, 1.0))
    chain.advance()
    chain.stop_running()
    (job,) = jobs_named(sm, name)
    assert job["TrainingJobStatus"] in (TrainingJobStatus.STOPPING, TrainingJobStatus.STOPPED)


def test_static_invalid_config_fails_when_the_dag_is_parsed() -> None:
    config = synthetic_config()
    config["ResourceConfig"]["InstanceCount"] = 0
    with pytest.raises(SpotRequestValidationError) as failure:
        SageMakerSpotTrainingOperator(task_id="t", config=config, max_run=100, max_wait=50)
    assert failure.value.fields >= {
        "ResourceConfig.InstanceCount",
        "StoppingCondition.MaxWaitTimeInSeconds",
    }


def test_templated_config_is_checked_after_rendering_only() -> None:
    SageMakerSpotTrainingOperator(task_id="t", config="{{ dag_run.conf['config'] }}")


def test_a_clear_starts_a_new_chain_and_a_retry_does_not() -> None:
    first = task_job_base_name("dag", "train", "run-1", -1, clear_number=0)
    assert task_job_base_name("dag", "train", "run-1", -1) == first  # a retry
    assert task_job_base_name("dag", "train", "run-1", -1, clear_number=1) != first  # a clear


def test_ended_descriptions_travel_and_are_not_described_again(
    emulator: SpotEmulator, name: str
) -> None:
    first = driver(name, SpotRetryPolicy(), synthetic_config(0.5))
    drive(first)
    carried = json.loads(json.dumps(first.ended_descriptions()))  # as deferral kwargs are
    resumed = driver(name, SpotRetryPolicy(), synthetic_config(0.5))
    resumed.remember_ended(carried)
    before = emulator.admin.stats()["api_calls"].get("SageMaker.DescribeTrainingJob", 0)
    step = resumed.advance()
    assert step.summary is not None and step.summary["outcome"] == JobOutcome.COMPLETED
    assert emulator.admin.stats()["api_calls"].get("SageMaker.DescribeTrainingJob", 0) == before


def test_sensor_waits_past_the_seven_day_default() -> None:
    sensor = SageMakerSpotTrainingSensor(task_id="wait", job_name="job-a1")
    assert sensor.timeout >= 28 * 24 * 3600  # MaxWait's own limit
