"""The chain runner and the operator's parse-time checks, against the embedded backend."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from airflow_spot_provider.emulator import SpotEmulator
from airflow_spot_provider.emulator.chaos import CapacityGap
from airflow_spot_provider.events import ChainState, JobEnded
from airflow_spot_provider.exceptions import SpotRequestValidationError, SpotTrainingError
from airflow_spot_provider.follower import transition_line
from airflow_spot_provider.hooks.spot_training import SageMakerSpotHook
from airflow_spot_provider.job_names import task_job_base_name
from airflow_spot_provider.lifecycle import JobOutcome, SpotJobReport, TrainingJobStatus, json_safe
from airflow_spot_provider.operators.chain import WorkerMode
from airflow_spot_provider.operators.spot_training import SageMakerSpotTrainingOperator
from airflow_spot_provider.position import Position
from airflow_spot_provider.request import build_spot_request
from airflow_spot_provider.retry import SpotRetryPolicy
from airflow_spot_provider.runner import ChainRunner
from airflow_spot_provider.sensors.spot_training import SageMakerSpotTrainingSensor
from tests.e2e.conftest import BUCKET, synthetic_config
from tests.e2e.test_spot_training_dags import jobs_named

pytestmark = pytest.mark.e2e


class Lines:
    """A task logger that keeps what it is told (the runner formats its own lines)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def _keep(self, message: str, *args: Any) -> None:
        self.lines.append(message % args if args else message)

    info = warning = error = _keep


def runner(
    name: str,
    policy: SpotRetryPolicy,
    config: dict[str, Any],
    wait: int = 60,
    state: ChainState | None = None,
) -> ChainRunner:
    request = build_spot_request(
        config, checkpoint_s3_uri=f"s3://{BUCKET}/checkpoints/{name}/", max_run=wait, max_wait=wait
    )
    return ChainRunner(
        jobs=SageMakerSpotHook(aws_conn_id="aws_default").jobs(Lines(), 0.2),
        policy=policy,
        first_name=f"{name}-a1",
        base_request=request,
        log=Lines(),
        poll_interval=0.2,
        state=state,
    )


def test_exhausted_policy_raises_with_every_attempt(emulator: SpotEmulator, name: str) -> None:
    config = synthetic_config(1.0)
    config["ResourceConfig"]["InstanceType"] = "ml.c5.2xlarge"
    policy = SpotRetryPolicy(max_attempts=2, backoff_initial_seconds=0.2)
    gap = CapacityGap(emulator, "ml.c5.2xlarge", "zzz-never", after_interruption=False)
    with gap, pytest.raises(SpotTrainingError) as failure:
        runner(name, policy, config, wait=1).run(WorkerMode())
    error = failure.value
    assert error.outcome is JobOutcome.MAX_WAIT_EXCEEDED
    assert [a.outcome for a in error.attempts] == [JobOutcome.MAX_WAIT_EXCEEDED] * 2
    assert [a.job_name for a in error.attempts] == [f"{name}-a1", f"{name}-a2"]
    assert "budget" in error.reason


def test_launch_only_never_resubmits(emulator: SpotEmulator, sm: Any, name: str) -> None:
    config = synthetic_config(1.0)
    config["ResourceConfig"]["InstanceType"] = "ml.c5.xlarge"
    chain = runner(name, SpotRetryPolicy(max_attempts=3, backoff_initial_seconds=0), config, wait=1)
    with CapacityGap(emulator, "ml.c5.xlarge", "zzz-never", after_interruption=False):
        assert chain.launch()["latest_job_name"] == f"{name}-a1"
        chain.follow_here(f"{name}-a1", just_created=True)  # ends MaxWaitTimeExceeded
        again = chain.launch()  # a retried launch task
    assert again["job_name"] == again["latest_job_name"] == f"{name}-a1"
    assert len(jobs_named(sm, name)) == 1
    assert again["outcome"] == JobOutcome.MAX_WAIT_EXCEEDED


def test_stop_running_stops_the_chain(emulator: SpotEmulator, sm: Any, name: str) -> None:
    chain = runner(name, SpotRetryPolicy(), synthetic_config(60.0, 1.0))
    chain.launch()
    chain.stop_running()
    (job,) = jobs_named(sm, name)
    assert job["TrainingJobStatus"] in (TrainingJobStatus.STOPPING, TrainingJobStatus.STOPPED)


class Deferred(Exception):  # noqa: N818  (what TaskDeferred is to the runner)
    """The task deferred."""


class DeferringMode:
    """A task that defers whenever it would follow or wait (as in ``DeferredMode``)."""

    def follow(self, runner: ChainRunner, job_name: str, *, just_created: bool) -> None:
        raise Deferred(job_name)

    def wait(self, runner: ChainRunner, seconds: float) -> None:
        raise Deferred(seconds)


def _wait_for_end(sm: Any, job_name: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        describe: dict[str, Any] = sm.describe_training_job(TrainingJobName=job_name)
        if SpotJobReport.from_describe(describe).is_terminal:
            return describe
        time.sleep(0.2)
    raise AssertionError(f"{job_name} did not end")


def test_resumed_task_writes_the_ended_attempts_transitions_itself(
    emulator: SpotEmulator, sm: Any, name: str
) -> None:
    # Bug 2: whatever the trigger logged may be gone (the triggerer overwrites its file on the
    # next deferral): the resumed task writes each transition it had not written, once.
    first = runner(name, SpotRetryPolicy(), synthetic_config(0.5))
    with pytest.raises(Deferred):
        first.run(DeferringMode())
    job_name = f"{name}-a1"
    describe = _wait_for_end(sm, job_name)
    report = SpotJobReport.from_describe(describe)
    # The trigger's event says it showed every transition; the task must not take that as written.
    event = JobEnded(job_name, json_safe(describe), Position(job_name, len(report.transitions)))
    carried = ChainState.from_json(json.loads(json.dumps(first.state.to_json())))
    resumed = runner(name, SpotRetryPolicy(), synthetic_config(0.5), state=carried)
    resumed.take_event(event)
    summary = resumed.run(DeferringMode())
    assert summary["outcome"] == JobOutcome.COMPLETED
    written = first.log.lines + resumed.log.lines
    expected = [transition_line(job_name, t) for t in report.transitions]
    assert [line for line in written if line.startswith(f"{job_name}: ")] == expected
    assert sum(line.startswith("Attempt 1 ended:") for line in written) == 1


def test_ended_descriptions_travel_and_are_not_described_again(
    emulator: SpotEmulator, name: str
) -> None:
    first = runner(name, SpotRetryPolicy(), synthetic_config(0.5))
    first.run(WorkerMode())
    carried = ChainState.from_json(json.loads(json.dumps(first.state.to_json())))
    resumed = runner(name, SpotRetryPolicy(), synthetic_config(0.5), state=carried)
    before = emulator.admin.stats()["api_calls"].get("SageMaker.DescribeTrainingJob", 0)
    summary = resumed.run(WorkerMode())
    assert summary["outcome"] == JobOutcome.COMPLETED
    assert emulator.admin.stats()["api_calls"].get("SageMaker.DescribeTrainingJob", 0) == before
    assert not [line for line in resumed.log.lines if line.startswith(f"{name}-a1: ")]


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


def test_sensor_waits_past_the_seven_day_default() -> None:
    sensor = SageMakerSpotTrainingSensor(task_id="wait", job_name="job-a1")
    assert sensor.timeout >= 28 * 24 * 3600  # MaxWait's own limit
