"""The Amazon provider's ``SageMakerHook``, through an Airflow AWS connection that routes
SageMaker, CloudWatch Logs and S3 to the emulator, runs a job to completion and prints the
trainer's log lines.

Slow by the hook's design: with ``print_log=True`` it describes the job every 30 s, whatever
``check_interval`` is, so the test lasts a little over 30 s.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from airflow_spot_provider.emulator import SpotEmulator
from airflow_spot_provider.emulator.testing import script_request
from airflow_spot_provider.lifecycle import TrainingJobStatus

CONN_ID = "spot_emulator"


def test_sagemaker_hook_runs_a_job_and_prints_its_log(
    emulator: SpotEmulator,
    s3: Any,
    bucket: str,
    job_name: str,
    trainer_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", emulator.airflow_connection())
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    # An input channel: the hook checks it exists in S3 (through the connection) first.
    s3.put_object(Bucket=bucket, Key=f"hook-data/{job_name}/train.csv", Body=b"0.1,0.2,1\n")
    config = script_request(
        job_name, bucket, trainer_dir, "train.py", total_steps=12, checkpoint_every=5
    )
    config["InputDataConfig"] = [
        {
            "ChannelName": "train",
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": f"s3://{bucket}/hook-data/{job_name}/",
                }
            },
        }
    ]
    hook = SageMakerHook(aws_conn_id=CONN_ID)  # type: ignore[no-untyped-call]
    with caplog.at_level(logging.INFO):
        response = hook.create_training_job(
            config, wait_for_completion=True, print_log=True, check_interval=1
        )

    assert response["TrainingJobArn"].endswith(f":training-job/{job_name}")
    described = hook.describe_training_job(job_name)
    assert described["TrainingJobStatus"] == TrainingJobStatus.COMPLETED
    printed = caplog.text + "".join(capfd.readouterr())
    for line in ("training steps=12", "step=1/12 loss=", "step=12/12 loss=", "done: step=12"):
        assert line in printed, f"{line!r} not printed by the hook"
    assert "Billable seconds:" in printed
