"""The operator and the sensor in real Airflow (``dag.test()``) against the embedded backend."""

from __future__ import annotations

import io
import json
import logging
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog.testing
from airflow.dag_processing.dagbag import DagBag
from airflow.models.variable import Variable
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from airflow.utils.state import DagRunState, TaskInstanceState
from sqlalchemy import select

from airflow_spot_provider.emulator import SpotEmulator
from airflow_spot_provider.emulator.chaos import CapacityGap
from airflow_spot_provider.lifecycle import SecondaryStatus as S
from airflow_spot_provider.lifecycle import TrainingJobStatus
from airflow_spot_provider.links import SageMakerSpotTrainingJobLink
from airflow_spot_provider.position_store import VARIABLE_PREFIX
from tests.conftest import DAGS_FOLDER, E2E_DAGS_FOLDER
from tests.e2e.conftest import BUCKET, synthetic_config, trainer_config

pytestmark = pytest.mark.e2e


def _dag(dag_id: str) -> Any:
    folder = DAGS_FOLDER if dag_id.startswith("example_") else E2E_DAGS_FOLDER
    dag = DagBag(dag_folder=str(folder)).get_dag(dag_id)
    assert dag is not None, dag_id
    return dag


def run_dag(dag_id: str, conf: dict[str, Any], logical_date: datetime | None = None) -> Any:
    """Run a DAG with ``dag.test()`` and return its DagRun.

    :param dag_id: the DAG.
    :param conf: the run's conf.
    :param logical_date: the run's logical date (the same date re-runs the same run).
    """
    return _dag(dag_id).test(run_conf=conf, logical_date=logical_date or datetime.now(UTC))


def task_state(run: Any, task_id: str, map_index: int = -1) -> str:
    return str(run.get_task_instance(task_id, map_index=map_index).state)


def xcom(run: Any, task_id: str, map_index: int = -1, key: str = "return_value") -> Any:
    with create_session() as session:
        row = session.scalar(
            select(XComModel).where(
                XComModel.dag_id == run.dag_id,
                XComModel.run_id == run.run_id,
                XComModel.task_id == task_id,
                XComModel.map_index == map_index,
                XComModel.key == key,
            )
        )
        assert row is not None, f"no XCom of {task_id}"
        return XComModel.deserialize_value(row)


def jobs_named(sm: Any, base: str) -> list[dict[str, Any]]:
    """Every job whose name contains ``base``, described, oldest first."""
    pages = sm.get_paginator("list_training_jobs").paginate(NameContains=base, MaxResults=100)
    names = [s["TrainingJobName"] for page in pages for s in page["TrainingJobSummaries"]]
    described = [sm.describe_training_job(TrainingJobName=n) for n in names]
    return sorted(described, key=lambda d: d["CreationTime"])


def secondary_sequence(describe: dict[str, Any]) -> list[S]:
    return [S(t["Status"]) for t in describe["SecondaryStatusTransitions"]]


def creates(emulator: SpotEmulator) -> int:
    return int(emulator.admin.stats()["api_calls"].get("SageMaker.CreateTrainingJob", 0))


def spot_conf(
    name: str, config: dict[str, Any], max_run: int = 60, max_wait: int = 120
) -> dict[str, Any]:
    return {
        "name": name,
        "config": config,
        "checkpoint_s3_uri": f"s3://{BUCKET}/checkpoints/{name}/",
        "max_run": max_run,
        "max_wait": max_wait,
    }


# --- the seed's four lifecycles ---------------------------------------------------------------


@pytest.mark.parametrize("mode", ["deferred", "worker"])
def test_no_interruption_completes(emulator: SpotEmulator, sm: Any, name: str, mode: str) -> None:
    run = run_dag(f"e2e_once_{mode}", spot_conf(name, synthetic_config(1.0)))
    assert run.state == DagRunState.SUCCESS
    summary = xcom(run, "train")
    assert summary["outcome"] == "COMPLETED"
    assert summary["totals"]["interruptions"] == 0
    assert summary["model_artifact_uri"].endswith("/output/model.tar.gz")
    (job,) = jobs_named(sm, name)
    assert secondary_sequence(job) == [
        S.STARTING,
        S.DOWNLOADING,
        S.TRAINING,
        S.UPLOADING,
        S.COMPLETED,
    ]


def test_one_interruption_then_success(emulator: SpotEmulator, sm: Any, name: str) -> None:
    emulator.admin.load_scenario(
        [{"interrupt": {"job": f"{name}*", "at_training_second": 0.5, "attempt": 1}}], replace=True
    )
    run = run_dag("e2e_once_deferred", spot_conf(name, synthetic_config(1.5)))
    assert run.state == DagRunState.SUCCESS
    summary = xcom(run, "train")
    assert summary["totals"]["interruptions"] == 1
    assert summary["totals"]["attempts"] == 1
    (job,) = jobs_named(sm, name)
    assert secondary_sequence(job) == [
        *(S.STARTING, S.DOWNLOADING, S.TRAINING, S.INTERRUPTED),
        *(S.STARTING, S.DOWNLOADING, S.TRAINING, S.UPLOADING, S.COMPLETED),
    ]


def test_two_interruptions_then_max_wait_fails_without_budget(
    emulator: SpotEmulator, sm: Any, name: str
) -> None:
    emulator.admin.load_scenario(
        [
            {"interrupt": {"job": f"{name}*", "at_training_second": 0.5, "attempt": 1}},
            {"interrupt": {"job": f"{name}*", "at_training_second": 0.5, "attempt": 2}},
        ],
        replace=True,
    )
    # MaxWait leaves room for both interruptions and restarts on a loaded machine.
    run = run_dag("e2e_once_deferred", spot_conf(name, synthetic_config(30), 8, 8))
    assert run.state == DagRunState.FAILED
    assert task_state(run, "train") == TaskInstanceState.FAILED
    (job,) = jobs_named(sm, name)  # a budget of one attempt: nothing resubmitted
    assert job["SecondaryStatus"] == S.MAX_WAIT_TIME_EXCEEDED
    assert secondary_sequence(job)[-4:] == [
        S.DOWNLOADING,
        S.TRAINING,
        S.STOPPING,
        S.MAX_WAIT_TIME_EXCEEDED,
    ]
    assert secondary_sequence(job).count(S.INTERRUPTED) == 2


def test_never_launched_fails_without_budget(emulator: SpotEmulator, sm: Any, name: str) -> None:
    config = synthetic_config(1.0)
    config["ResourceConfig"]["InstanceType"] = "ml.c5.9xlarge"
    emulator.admin.load_scenario(
        [{"no_capacity": {"instance_type": "ml.c5.9xlarge"}}], replace=True
    )
    run = run_dag("e2e_once_worker", spot_conf(name, config, 2, 2))
    assert run.state == DagRunState.FAILED
    (job,) = jobs_named(sm, name)
    assert secondary_sequence(job) == [S.STARTING, S.STOPPING, S.MAX_WAIT_TIME_EXCEEDED]


# --- resubmission -----------------------------------------------------------------------------


def _model_bytes(emulator: SpotEmulator, uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    archive = emulator.boto3_client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.extractfile("model.npy")
        assert member is not None
        return member.read()


@pytest.mark.parametrize("mode", ["deferred", "worker"])
def test_max_wait_is_resubmitted_and_resumes_from_checkpoint(
    emulator: SpotEmulator, sm: Any, name: str, mode: str
) -> None:
    reference = run_dag(f"e2e_once_{mode}", spot_conf(f"r{uuid.uuid4().hex[:8]}", trainer_config()))
    assert reference.state == DagRunState.SUCCESS
    expected = _model_bytes(emulator, xcom(reference, "train")["model_artifact_uri"])

    instance = "ml.g4dn.xlarge"
    config = trainer_config()
    config["ResourceConfig"]["InstanceType"] = instance
    emulator.admin.load_scenario(
        [{"interrupt": {"job": f"{name}-*a1", "at_training_second": 1.0}}], replace=True
    )
    with CapacityGap(emulator, instance, name):  # until attempt 1 has hit MaxWait
        # MaxRuntime counts training time: generous, so a loaded machine does not end it first.
        run = run_dag(f"e2e_retry_{mode}", spot_conf(name, config, 10, 10))
    assert run.state == DagRunState.SUCCESS
    summary = xcom(run, "train")
    outcomes = [a["outcome"] for a in summary["attempts"]]
    assert outcomes[0] == "MAX_WAIT_EXCEEDED" and outcomes[-1] == "COMPLETED"
    jobs = jobs_named(sm, name)
    assert len(jobs) == len(outcomes)
    assert {j["CheckpointConfig"]["S3Uri"] for j in jobs} == {f"s3://{BUCKET}/checkpoints/{name}/"}
    assert _model_bytes(emulator, summary["model_artifact_uri"]) == expected
    # Names mean the same in every mode; the console link opens the latest job (bug 5).
    assert summary["job_name"] == summary["first_job_name"] == jobs[0]["TrainingJobName"]
    assert summary["latest_job_name"] == jobs[-1]["TrainingJobName"]
    assert xcom(run, "train", key="job_name") == jobs[0]["TrainingJobName"]
    link = xcom(run, "train", key=SageMakerSpotTrainingJobLink.key)
    assert link["job_name"] == jobs[-1]["TrainingJobName"]


def test_exhausted_policy_fails_with_every_attempt(
    emulator: SpotEmulator, sm: Any, name: str
) -> None:
    config = synthetic_config(1.0)
    config["ResourceConfig"]["InstanceType"] = "ml.c5.4xlarge"
    emulator.admin.load_scenario(
        [{"no_capacity": {"instance_type": "ml.c5.4xlarge"}}], replace=True
    )
    run = run_dag("e2e_retry_deferred", spot_conf(name, config, 1, 1))
    assert run.state == DagRunState.FAILED
    jobs = jobs_named(sm, name)
    assert len(jobs) == 3  # the policy's budget, no more
    assert all(j["SecondaryStatus"] == S.MAX_WAIT_TIME_EXCEEDED for j in jobs)


@pytest.mark.parametrize("mode", ["deferred", "worker"])
def test_backoff_longer_than_the_hand_back_logs_nothing_twice(
    emulator: SpotEmulator, sm: Any, name: str, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Bug 3: max_run = max_wait = 5, two attempts 4 s apart, no capacity: the task waits out the
    # backoff (deferred: on a TimeDeltaTrigger) and must not log attempt 1 again when it resumes.
    config = synthetic_config(1.0)
    config["ResourceConfig"]["InstanceType"] = "ml.c5.18xlarge"
    emulator.admin.load_scenario(
        [{"no_capacity": {"instance_type": "ml.c5.18xlarge"}}], replace=True
    )
    with (
        structlog.testing.capture_logs() as captured,
        caplog.at_level(logging.INFO, logger="airflow_spot_provider.retry"),
    ):
        run = run_dag(f"e2e_backoff_{mode}", spot_conf(name, config, 5, 5))
    assert run.state == DagRunState.FAILED
    jobs = jobs_named(sm, name)
    assert len(jobs) == 2
    lines = [str(e.get("event", "")) for e in captured]
    for job in jobs:
        job_name = job["TrainingJobName"]
        written = [line for line in lines if line.startswith(f"{job_name}: ")]
        assert len(written) == len(set(written)) == len(job["SecondaryStatusTransitions"])
    ended = [line.split(":")[0] for line in lines if line.startswith("Attempt ")]
    assert ended == ["Attempt 1 ended", "Attempt 2 ended"]
    decisions = [r for r in caplog.records if r.getMessage().startswith("Spot retry decision")]
    assert len(decisions) == 2  # one after each attempt: resubmit, then give up
    waits = [line for line in lines if line.startswith("Waiting ")]
    assert len(waits) <= 1


# --- idempotency, validation, throttling -------------------------------------------------------


def test_retried_task_reattaches_instead_of_duplicating(
    emulator: SpotEmulator, sm: Any, name: str
) -> None:
    before = creates(emulator)
    run = run_dag("e2e_worker_lost", spot_conf(name, synthetic_config(1.0)))
    assert run.state == DagRunState.SUCCESS
    assert run.get_task_instance("train").try_number == 2  # the first try died
    assert creates(emulator) == before + 1
    (job,) = jobs_named(sm, name)
    assert xcom(run, "train")["job_name"] == job["TrainingJobName"]


def test_invalid_config_fails_before_any_create(emulator: SpotEmulator, name: str) -> None:
    before = creates(emulator)
    config = synthetic_config()
    config["ResourceConfig"]["InstanceCount"] = 0
    run = run_dag("e2e_once_worker", spot_conf(name, config, max_run=100, max_wait=50))
    assert run.state == DagRunState.FAILED
    assert creates(emulator) == before


@pytest.mark.parametrize("mode", ["deferred", "worker"])
def test_throttling_fails_no_task(emulator: SpotEmulator, name: str, mode: str) -> None:
    emulator.admin.load_scenario(
        [{"throttle": {"operation": "DescribeTrainingJob", "count": 6}}], replace=True
    )
    run = run_dag(f"e2e_once_{mode}", spot_conf(name, synthetic_config(1.0)))
    assert run.state == DagRunState.SUCCESS
    throttled = [e for e in emulator.admin.events() if e["kind"] == "throttle"]
    assert throttled, "the scenario throttled nothing"


# --- launch and sensor as two tasks; the mapped sweep -------------------------------------------


def test_sensor_in_reschedule_mode_resubmits(emulator: SpotEmulator, sm: Any, name: str) -> None:
    config = synthetic_config(1.0)
    config["ResourceConfig"]["InstanceType"] = "ml.p3.2xlarge"
    gap = CapacityGap(emulator, "ml.p3.2xlarge", name, after_interruption=False)
    with structlog.testing.capture_logs() as captured, gap:  # attempt 1 never launches
        run = run_dag("e2e_launch_and_sensor", spot_conf(name, config, 2, 2))
    assert run.state == DagRunState.SUCCESS
    summary = xcom(run, "wait")
    assert [a["outcome"] for a in summary["attempts"]][-1] == "COMPLETED"
    jobs = jobs_named(sm, name)
    assert len(jobs) == summary["totals"]["attempts"] >= 2
    # Each poke runs in a new task run; the saved position keeps each transition to one line.
    lines = [str(e.get("event", "")) for e in captured if str(e.get("event", "")).startswith(name)]
    expected = sum(len(j["SecondaryStatusTransitions"]) for j in jobs)
    assert len(lines) == len(set(lines)) == expected
    with create_session() as session:  # the saved positions went with the chain's end
        keys = session.scalars(select(Variable.key)).all()
    assert not [k for k in keys if k.startswith(VARIABLE_PREFIX) and name in k]


# --- killing the task ----------------------------------------------------------------------------


def _wait_for(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_killed_worker_task_stops_its_job(emulator: SpotEmulator, sm: Any, name: str) -> None:
    conf = spot_conf(name, synthetic_config(60.0, 1.0), max_run=120, max_wait=120)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow",
            "dags",
            "test",
            "e2e_once_worker",
            "-c",
            json.dumps(conf),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: any(j["SecondaryStatus"] == S.TRAINING for j in jobs_named(sm, name)))
        proc.send_signal(signal.SIGTERM)  # what Airflow sends a task it kills
        proc.wait(timeout=60)
    finally:
        proc.kill()
    (job,) = jobs_named(sm, name)
    assert job["TrainingJobStatus"] in (TrainingJobStatus.STOPPING, TrainingJobStatus.STOPPED)
    _wait_for(lambda: jobs_named(sm, name)[0]["SecondaryStatus"] == S.STOPPED)


def test_task_group_under_mapping(emulator: SpotEmulator, sm: Any, name: str) -> None:
    run = run_dag("e2e_mapped_group", spot_conf(name, synthetic_config(0.5)))
    assert run.state == DagRunState.SUCCESS
    reports = [xcom(run, "_one_chain.spot.report", map_index=i) for i in (0, 1)]
    assert all(r["outcome"] == "COMPLETED" for r in reports)
    assert reports[0]["job_name"] != reports[1]["job_name"]  # one chain per mapped instance
    assert len(jobs_named(sm, name)) == 2
