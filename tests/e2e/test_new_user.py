"""What a new user of the README met: each fixed, through real Airflow and the embedded backend."""

from __future__ import annotations

import re
from typing import Any

import pytest
import structlog.testing
from airflow.utils.state import DagRunState

from airflow_spot_provider.emulator import SpotEmulator
from tests.e2e.conftest import synthetic_config
from tests.e2e.test_spot_training_dags import run_dag, spot_conf

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
