"""What a new user of the README met: each fixed, through real Airflow and the embedded backend."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import pytest
import structlog.testing
from airflow.utils.state import DagRunState

from airflow_spot_provider.emulator import SpotEmulator
from airflow_spot_provider.exceptions import SpotConfigurationError, SpotRequestValidationError
from airflow_spot_provider.hooks.job_calls import describe_job
from airflow_spot_provider.hooks.jobs import AsyncJobs, SyncJobs
from airflow_spot_provider.operators.spot_training import SageMakerSpotTrainingOperator
from airflow_spot_provider.request import attempt_job_name, task_job_base_name
from tests.e2e.conftest import synthetic_config
from tests.e2e.test_spot_training_dags import creates, run_dag, spot_conf

pytestmark = pytest.mark.e2e


def _texts(captured: list[dict[str, Any]]) -> str:
    """Every captured log event and exception, as one text."""
    return "\n".join(" ".join(str(value) for value in event.values()) for event in captured)


@pytest.mark.parametrize(
    "dag_id", ["e2e_once_worker", "e2e_once_deferred", "e2e_launch_and_sensor"]
)
def test_a_missing_input_bucket_fails_the_task_with_the_failure_reason(
    emulator: SpotEmulator, name: str, dag_id: str
) -> None:
    config = synthetic_config(1.0)
    config["InputDataConfig"] = [
        {
            "ChannelName": "train",
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": f"s3://no-such-bucket-{name}/train/",
                }
            },
        }
    ]
    # The task's exception, formatted into the event that logs it.
    with structlog.testing.capture_logs(
        processors=[structlog.processors.format_exc_info]
    ) as captured:
        run = run_dag(dag_id, spot_conf(name, config))
    assert run.state == DagRunState.FAILED
    text = _texts(captured)
    reason = "FailureReason: ClientError: Data download failed"
    # The task log's line for the ended attempt, and the exception that fails the task.
    assert re.search(rf"Attempt 1 ended: .*FAILED.*{reason}.*NoSuchBucket", text), text[-4000:]
    assert re.search(rf"SpotTrainingError: .*ended FAILED.*{reason}.*NoSuchBucket", text)


def _operator(**kwargs: Any) -> SageMakerSpotTrainingOperator:
    return SageMakerSpotTrainingOperator(
        task_id="train", config=synthetic_config(), max_run=60, max_wait=120, **kwargs
    )


@pytest.mark.parametrize(
    ("job_name", "rule"),
    [
        ("churn_model!", r"must match the pattern \^\[a-zA-Z0-9\]"),
        ("a" * 80, "must be at most 40 characters, not 80"),
        ("-churn", "must match the pattern"),
        (7, "must be a string"),
    ],
)
def test_a_job_name_that_would_be_rewritten_is_refused_when_the_dag_is_parsed(
    job_name: Any, rule: str
) -> None:
    with pytest.raises(SpotRequestValidationError) as caught:
        _operator(job_name=job_name)
    (violation,) = caught.value.violations
    assert (violation.field, violation.value) == ("job_name", job_name)
    assert re.search(rule, violation.rule), violation.rule


def test_a_clean_job_name_starts_every_name_as_it_is() -> None:
    assert _operator(job_name="churn-model").job_name == "churn-model"
    assert attempt_job_name(task_job_base_name("d", "t", "r", prefix="churn-model"), 2).startswith(
        "churn-model-"
    )


def test_a_rendered_job_name_that_would_be_rewritten_fails_before_any_create(
    emulator: SpotEmulator, name: str
) -> None:
    before = creates(emulator)
    with structlog.testing.capture_logs(
        processors=[structlog.processors.format_exc_info]
    ) as captured:
        run = run_dag("e2e_once_worker", spot_conf(f"{name}_model!", synthetic_config(1.0)))
    assert run.state == DagRunState.FAILED
    assert creates(emulator) == before
    assert f"job_name='{name}_model!': must match the pattern" in _texts(captured)


def test_a_job_name_in_config_fails_the_task_before_any_create(
    emulator: SpotEmulator, name: str
) -> None:
    before = creates(emulator)
    config = {**synthetic_config(1.0), "TrainingJobName": "my-own-name"}
    run = run_dag("e2e_once_worker", spot_conf(name, config))
    assert run.state == DagRunState.FAILED
    assert creates(emulator) == before


@pytest.mark.parametrize("dag_id", ["e2e_once_worker", "e2e_once_deferred"])
def test_a_connection_without_a_region_fails_with_a_clear_error(
    emulator: SpotEmulator, name: str, dag_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection = json.loads(emulator.airflow_connection())
    del connection["extra"]["region_name"]
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    before = creates(emulator)
    with structlog.testing.capture_logs(
        processors=[structlog.processors.format_exc_info]
    ) as captured:
        run = run_dag(dag_id, spot_conf(name, synthetic_config(1.0)))
    assert run.state == DagRunState.FAILED
    assert creates(emulator) == before
    text = _texts(captured)
    assert "NoRegionError" not in text
    assert "SpotConfigurationError: region_name=None: no AWS region: set region_name" in text


@pytest.mark.parametrize("adapter", [SyncJobs, AsyncJobs])
def test_a_client_without_a_region_fails_at_once_with_the_clear_error(
    emulator: SpotEmulator,
    adapter: type[SyncJobs] | type[AsyncJobs],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The trigger's clients (AsyncJobs), made in a triggerer whose environment has no region."""
    connection = json.loads(emulator.airflow_connection())
    del connection["extra"]["region_name"]
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    jobs = adapter(aws_conn_id="aws_default", region_name=None, log=logging.getLogger(__name__))
    with pytest.raises(SpotConfigurationError, match="region_name=None: no AWS region"):
        if isinstance(jobs, AsyncJobs):

            async def describe() -> None:
                async with jobs:
                    await jobs.run(describe_job("any-job"))

            asyncio.run(describe())
        else:
            jobs.run(describe_job("any-job"))
