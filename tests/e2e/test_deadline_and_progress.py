"""The deadline-aware policy and the progress checks, wired into the follower, end to end.

Real Airflow (``dag.test()``, the trigger run inline) against the embedded backend; the DAGs and
their policies are in ``tests/e2e/dags/e2e_spot.py``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
from airflow.utils.state import DagRunState

from airflow_spot_provider.emulator import SpotEmulator
from airflow_spot_provider.emulator.chaos import CapacityGap
from airflow_spot_provider.lifecycle import SecondaryStatus as S
from tests.e2e.conftest import BUCKET, synthetic_config, trainer_config
from tests.e2e.test_spot_training_dags import (
    creates,
    jobs_named,
    run_dag,
    secondary_sequence,
    spot_conf,
    task_state,
    xcom,
)

pytestmark = pytest.mark.e2e


def calls(emulator: SpotEmulator) -> int:
    """SageMaker API calls the backend has answered so far."""
    stats = emulator.admin.stats()["api_calls"]
    return sum(int(n) for op, n in stats.items() if op.startswith("SageMaker."))


def _events(captured: list[dict[str, Any]]) -> str:
    return "\n".join(str(e) for e in captured)


def _switch_scenario(
    emulator: SpotEmulator, sm: Any, name: str, dag_id: str, logical_date: datetime | None = None
) -> dict[str, Any]:
    """Run a chain whose spot attempt waits after an interruption until the policy switches.

    Spot capacity goes once attempt 1 is interrupted, and comes back when it has ended: the spot
    job waits (Starting), then the policy stops it; the on-demand attempt finds capacity.
    Returns the chain's summary (XCom) after checking the jobs and decisions.
    """
    instance = "ml.c5.2xlarge"
    config = synthetic_config(3.0)
    config["ResourceConfig"]["InstanceType"] = instance
    emulator.admin.load_scenario(
        [{"interrupt": {"job": f"{name}-*a1", "at_training_second": 1.0}}], replace=True
    )
    with CapacityGap(emulator, instance, name):
        run = run_dag(dag_id, spot_conf(name, config, 60, 120), logical_date)
    assert run.state == DagRunState.SUCCESS
    sensor = "_sensor" in dag_id
    summary: dict[str, Any] = xcom(run, "wait" if sensor else "train")
    assert [a["outcome"] for a in summary["attempts"]] == ["STOPPED", "COMPLETED"], (
        summary["decisions"],
        [emulator.admin.events(job=a["job_name"]) for a in summary["attempts"]],
        emulator.admin.events(kind="scenario")[-2:],
    )
    assert [a["managed_spot"] for a in summary["attempts"]] == [True, False]
    first, second = jobs_named(sm, name)
    assert S.INTERRUPTED in secondary_sequence(first)
    assert secondary_sequence(first)[-1] is S.STOPPED
    assert second["EnableManagedSpotTraining"] is False
    assert "MaxWaitTimeInSeconds" not in second["StoppingCondition"]
    assert second["CheckpointConfig"] == first["CheckpointConfig"]
    kinds = [(d["kind"], d["rule"]) for d in summary["decisions"]]
    switched = [("switch-to-on-demand", "slack-exhausted"), ("resubmit", "slack-exhausted")]
    # The sensor did not create attempt 1 (the launch task did): its decisions start later.
    created = [] if sensor else [("create", "slack-covers-work")]
    assert kinds == [*created, *switched]
    switch = summary["decisions"][-2]
    deadline = datetime.fromisoformat(switch["reason"].split("deadline ")[1].split(" ")[0])
    assert datetime.fromisoformat(switch["at"]) < deadline
    assert datetime.fromisoformat(str(second["TrainingEndTime"])) < deadline
    return summary


@pytest.mark.parametrize("mode", ["deferred", "worker", "sensor"])
def test_waiting_spot_job_switches_to_on_demand_before_the_deadline(
    emulator: SpotEmulator, sm: Any, name: str, mode: str
) -> None:
    dag_id = "e2e_launch_and_deadline_sensor" if mode == "sensor" else f"e2e_deadline_{mode}"
    summary = _switch_scenario(emulator, sm, name, dag_id)
    # The on-demand attempt is a finding (no spot savings); the advice saw the interruption.
    assert [(f["kind"], f["attempt"]) for f in summary["findings"]] == [("ran_on_demand", 2)]
    assert summary["advice"]["interruptions"] == 1
    assert summary["advice"]["young_daly_interval_seconds"] is not None
    json.dumps(summary)  # plain JSON


@pytest.mark.parametrize("mode", ["deferred", "worker", "sensor"])
def test_templated_task_deadline_reaches_every_mode(
    emulator: SpotEmulator, sm: Any, name: str, mode: str
) -> None:
    # The policy has no deadline: "{{ data_interval_end + macros.timedelta(seconds=60) }}" on
    # the operator (and the sensor) gives it; the switch's reason names the rendered moment.
    # The data interval ends 20 s from now: a loaded machine may take 15 s or more to start the
    # task, which must still find the deadline far enough for attempt 1 to start on spot.
    logical = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=20)
    dag_id = (
        "e2e_launch_and_task_deadline_sensor" if mode == "sensor" else f"e2e_task_deadline_{mode}"
    )
    summary = _switch_scenario(emulator, sm, name, dag_id, logical)
    rendered = (logical + timedelta(seconds=60)).isoformat()
    assert all(f"deadline {rendered}" in d["reason"] for d in summary["decisions"])


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("tomorrow", "must be a timezone-aware datetime or its ISO-8601 text"),
        ("2030-01-01T00:00:00", "must be a timezone-aware datetime or its ISO-8601 text"),
        ("2026-01-01T00:00:00+00:00", "must be after the task's start"),
    ],
)
def test_bad_task_deadline_fails_before_any_aws_call(
    emulator: SpotEmulator, name: str, value: str, rule: str
) -> None:
    before = calls(emulator)
    conf = {**spot_conf(name, synthetic_config(1.0)), "deadline": value}
    # The task's exception, formatted into the captured event.
    exceptions = [structlog.processors.format_exc_info]
    with structlog.testing.capture_logs(processors=exceptions) as captured:
        run = run_dag("e2e_task_deadline_worker", conf)
    assert run.state == DagRunState.FAILED
    assert task_state(run, "train") == "failed"
    assert calls(emulator) == before
    (error,) = [str(e["exception"]) for e in captured if "exception" in e]
    assert "SpotRequestValidationError" in error
    assert f"deadline={value!r}: {rule}" in error


def test_deadline_already_past_creates_no_job(emulator: SpotEmulator, name: str) -> None:
    before = creates(emulator)
    with structlog.testing.capture_logs() as captured:
        run = run_dag("e2e_past_worker", spot_conf(name, synthetic_config(1.0)))
    assert run.state == DagRunState.FAILED
    assert task_state(run, "train") == "failed"
    assert creates(emulator) == before
    assert "at or after the deadline 2026-01-01T00:00:00+00:00: not created" in _events(captured)


def test_empty_checkpoint_prefix_gives_up_with_the_reason(
    emulator: SpotEmulator, sm: Any, name: str
) -> None:
    instance = "ml.c5.xlarge"
    config = synthetic_config(1.0)
    config["ResourceConfig"]["InstanceType"] = instance
    gap = CapacityGap(emulator, instance, name, after_interruption=False)
    with structlog.testing.capture_logs() as captured, gap:  # attempt 1 never launches
        run = run_dag("e2e_progress_worker", spot_conf(name, config, 2, 2))
    assert run.state == DagRunState.FAILED
    (job,) = jobs_named(sm, name)  # no attempt 2: it would start from scratch
    assert job["TrainingJobStatus"] == "Stopped"
    text = _events(captured)
    assert f"no checkpoint objects under s3://{BUCKET}/checkpoints/{name}/" in text
    assert "require_checkpoint_progress=give_up, so no resubmission" in text


def test_stale_checkpoints_are_a_warning_of_the_summary(
    emulator: SpotEmulator, sm: Any, name: str
) -> None:
    instance = "ml.c5.4xlarge"
    # The trainer saves to /opt/ml/checkpoints, but the job syncs /ckpt: nothing new reaches S3.
    config = trainer_config(steps=80)
    config["ResourceConfig"]["InstanceType"] = instance
    prefix = f"checkpoints/{name}/"
    config["CheckpointConfig"] = {"S3Uri": f"s3://{BUCKET}/{prefix}", "LocalPath": "/ckpt"}
    emulator.boto3_client("s3").put_object(Bucket=BUCKET, Key=f"{prefix}old.json", Body=b"{}")
    emulator.admin.load_scenario(
        [{"interrupt": {"job": f"{name}-*a1", "at_training_second": 2.0}}], replace=True
    )
    conf = {**spot_conf(name, config, 10, 10), "checkpoint_s3_uri": None}
    with CapacityGap(emulator, instance, name):  # attempt 1 waits until MaxWait
        run = run_dag("e2e_stale_deferred", conf)
    assert run.state == DagRunState.SUCCESS
    summary = xcom(run, "train")
    assert [a["outcome"] for a in summary["attempts"]] == ["MAX_WAIT_EXCEEDED", "COMPLETED"]
    (stale,) = [f for f in summary["findings"] if f["kind"] == "checkpoints_stale"]
    assert stale["attempt"] == 1 and stale["job_name"] == summary["attempts"][0]["job_name"]
    assert "checkpoints did not advance during attempt 1" in stale["message"]
    assert not [f for f in summary["findings"] if f["kind"] == "no_checkpoints"]
    assert summary["decisions"][-1]["kind"] == "resubmit"
    assert datetime.now(UTC) > datetime.fromisoformat(summary["decisions"][-1]["at"])


SIGTERM_TRAINER_DIR = Path(__file__).resolve().parent / "sigterm_trainer"


@pytest.mark.parametrize("mode", ["worker", "deferred"])
def test_checkpoint_cost_is_measured_from_sigterm_to_the_last_sync(
    emulator: SpotEmulator, name: str, mode: str
) -> None:
    # Attempt 1 is stopped at MaxWait while training; the trainer takes 1 s after SIGTERM to
    # write its checkpoint, which the backend then syncs: the follower lists the prefix before
    # resubmitting and measures the time from Stopping's start to the newest object.
    delay = 1.0
    config = trainer_config()
    config["ResourceConfig"]["InstanceType"] = "ml.m5.2xlarge"
    config["HyperParameters"] = {
        "sagemaker_program": '"train.py"',
        "sagemaker_submit_directory": f'"{SIGTERM_TRAINER_DIR}"',
        "train_seconds": "4",
        "sigterm_delay": str(delay),
    }
    run = run_dag(f"e2e_retry_{mode}", spot_conf(name, config, 3, 3))
    assert run.state == DagRunState.SUCCESS
    summary = xcom(run, "train")
    first = summary["attempts"][0]
    assert first["outcome"] == "MAX_WAIT_EXCEEDED"
    advice = summary["advice"]
    measured = advice["checkpoint_cost_measured"]
    assert set(measured) >= {first["job_name"]}
    # The sync after the process exits, on a shared machine: generous above, never below.
    assert delay <= measured[first["job_name"]] <= delay + 3.0, measured
    assert advice["checkpoint_cost_source"] == "measured"
    assert advice["checkpoint_cost_seconds"] == pytest.approx(
        sum(measured.values()) / len(measured), abs=0.01
    )
