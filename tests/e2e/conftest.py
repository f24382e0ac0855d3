"""The embedded backend and a real Airflow DB for the end-to-end tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_spot_provider.emulator import SpotEmulator

BUCKET = "e2e"
TRAINER_DIR = Path(__file__).resolve().parents[2] / "dags" / "training"


@pytest.fixture(scope="session")
def emulator(airflow_db: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpotEmulator]:
    """One emulator for the session, reached by Airflow through ``aws_default``."""
    with SpotEmulator(data_dir=tmp_path_factory.mktemp("emulator")) as emu:
        os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = emu.airflow_connection()
        emu.boto3_client("s3").create_bucket(Bucket=BUCKET)
        yield emu
        os.environ.pop("AIRFLOW_CONN_AWS_DEFAULT", None)


@pytest.fixture
def sm(emulator: SpotEmulator) -> Any:
    """A boto3 SageMaker client on the emulator."""
    return emulator.boto3_client("sagemaker")


@pytest.fixture
def name() -> str:
    """A base job name unique to the test (scenarios match jobs by it)."""
    return f"t{uuid.uuid4().hex[:10]}"


def synthetic_config(train_seconds: float = 2.0, step_seconds: float = 0.25) -> dict[str, Any]:
    """A request for the synthetic image: no process, one checkpoint per step.

    :param train_seconds: training time the job needs.
    :param step_seconds: seconds per step.
    """
    return {
        "AlgorithmSpecification": {
            "TrainingImage": "spot-emulator/synthetic:latest",
            "TrainingInputMode": "File",
        },
        "RoleArn": "arn:aws:iam::123456789012:role/e2e",
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/models/"},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "HyperParameters": {"train_seconds": str(train_seconds), "step_seconds": str(step_seconds)},
    }


def trainer_config(steps: int = 40, step_sleep: float = 0.05) -> dict[str, Any]:
    """A script-mode request running the example trainer from the repository.

    :param steps: training steps.
    :param step_sleep: seconds per step.
    """
    config = synthetic_config()
    config["AlgorithmSpecification"]["TrainingImage"] = (
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
    )
    config["HyperParameters"] = {
        "sagemaker_program": '"train.py"',
        "sagemaker_submit_directory": f'"{TRAINER_DIR}"',
        "total_steps": str(steps),
        "step_sleep": str(step_sleep),
        "checkpoint_every": "5",
    }
    return config
