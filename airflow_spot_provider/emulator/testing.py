"""Helpers for tests that run training jobs against the emulator (ours and DAG authors').

with SpotEmulator(config=fast_config(tmp_path)) as emulator:
    sagemaker = emulator.boto3_client("sagemaker")
    sagemaker.create_training_job(**synthetic_request("job-1", "my-bucket", spot=True))
    final = wait_for_job(sagemaker, "job-1")
    assert secondary_statuses(final) == [...]
"""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path
from typing import Any

from airflow_spot_provider.emulator.config import Durations, EmulatorConfig
from airflow_spot_provider.emulator.logs import LOG_GROUP
from airflow_spot_provider.lifecycle import TrainingJobStatus

ROLE_ARN = "arn:aws:iam::123456789012:role/spot-emulator"
SYNTHETIC_IMAGE = "spot-emulator/synthetic"
SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


class JobTimeoutError(AssertionError):
    """A job did not end in time; the message holds its last description."""


def fast_config(data_dir: Path | str, **overrides: Any) -> EmulatorConfig:
    """A configuration whose phases take tens of milliseconds (tests).

    :param data_dir: the data dir.
    :param overrides: more :class:`EmulatorConfig` fields.
    """
    durations = Durations(
        starting_seconds=0.1,
        downloading_min_seconds=0.05,
        uploading_min_seconds=0.05,
        stopping_seconds=0.05,
        interruption_notice_seconds=1.0,
        restart_delay_seconds=0.1,
    )
    settings: dict[str, Any] = {
        "durations": durations,
        "tick_seconds": 0.02,
        "checkpoint_sync_seconds": 0.2,
    }
    settings.update(overrides)
    return EmulatorConfig(data_dir=Path(data_dir), **settings)


def synthetic_request(
    name: str,
    bucket: str,
    *,
    spot: bool = True,
    train_seconds: float = 0.5,
    step_seconds: float = 0.1,
    max_runtime: int = 60,
    max_wait: int | None = 120,
    instance_type: str = "ml.m5.large",
    checkpoint: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """A CreateTrainingJob request for the synthetic image.

    :param name: the job name.
    :param bucket: the S3 bucket for the output and checkpoints.
    :param spot: managed spot training.
    :param train_seconds: how long the synthetic run trains.
    :param step_seconds: its checkpoint step.
    :param max_runtime: ``MaxRuntimeInSeconds``.
    :param max_wait: ``MaxWaitTimeInSeconds`` (ignored for on-demand jobs).
    :param instance_type: ``ResourceConfig.InstanceType``.
    :param checkpoint: give a ``CheckpointConfig`` under ``s3://<bucket>/checkpoints/<name>``.
    :param extra: more request fields (they replace the defaults).
    """
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": max_runtime}
    if spot and max_wait is not None:
        stopping["MaxWaitTimeInSeconds"] = max_wait
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "RoleArn": ROLE_ARN,
        "AlgorithmSpecification": {"TrainingImage": SYNTHETIC_IMAGE, "TrainingInputMode": "File"},
        "HyperParameters": {"train_seconds": str(train_seconds), "step_seconds": str(step_seconds)},
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/output"},
        "ResourceConfig": {"InstanceType": instance_type, "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": spot,
    }
    if checkpoint:
        request["CheckpointConfig"] = {"S3Uri": f"s3://{bucket}/checkpoints/{name}"}
    request.update(extra)
    return request


def script_request(
    name: str, bucket: str, source_dir: Path | str, program: str, **hyperparameters: Any
) -> dict[str, Any]:
    """A script-mode request (scikit-learn framework image) running a local source dir.

    :param name: the job name.
    :param bucket: the S3 bucket for the output and checkpoints.
    :param source_dir: the local directory given as ``sagemaker_submit_directory``.
    :param program: the entry point in it.
    :param hyperparameters: the script's hyperparameters (strings in the request).
    """
    request = synthetic_request(name, bucket)
    request["AlgorithmSpecification"] = {
        "TrainingImage": SKLEARN_IMAGE,
        "TrainingInputMode": "File",
    }
    request["HyperParameters"] = {
        "sagemaker_program": program,
        "sagemaker_submit_directory": str(source_dir),
        **{k: str(v) for k, v in hyperparameters.items()},
    }
    return request


def wait_for_job(
    client: Any, name: str, timeout: float = 30.0, interval: float = 0.05
) -> dict[str, Any]:
    """Poll DescribeTrainingJob until the job is Completed, Failed or Stopped.

    :param client: a boto3 SageMaker client.
    :param name: the job name.
    :param timeout: seconds before :class:`JobTimeoutError`.
    :param interval: seconds between polls.
    :returns: the last description.
    """
    deadline = time.monotonic() + timeout
    while True:
        described: dict[str, Any] = client.describe_training_job(TrainingJobName=name)
        if TrainingJobStatus(described["TrainingJobStatus"]).is_terminal:
            return described
        if time.monotonic() > deadline:
            raise JobTimeoutError(f"{name} did not end within {timeout} s: {described}")
        time.sleep(interval)


def wait_for_secondary(
    client: Any, name: str, secondary: str, timeout: float = 30.0, interval: float = 0.02
) -> dict[str, Any]:
    """Poll until the job's SecondaryStatus is ``secondary``.

    :param client: a boto3 SageMaker client.
    :param name: the job name.
    :param secondary: the SecondaryStatus to wait for.
    :param timeout: seconds before :class:`JobTimeoutError`.
    :param interval: seconds between polls.
    """
    deadline = time.monotonic() + timeout
    while True:
        described: dict[str, Any] = client.describe_training_job(TrainingJobName=name)
        if described["SecondaryStatus"] == secondary:
            return described
        if time.monotonic() > deadline:
            raise JobTimeoutError(f"{name} never reached {secondary} within {timeout} s")
        time.sleep(interval)


def wait_for_log_line(logs: Any, job: str, line: str, timeout: float = 30.0) -> None:
    """Wait until ``line`` shows in a job's log.

    :param logs: a boto3 CloudWatch Logs client.
    :param job: the job name.
    :param line: the exact line.
    :param timeout: seconds before :class:`JobTimeoutError`.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if line in log_lines(logs, job):
                return
        except (IndexError, logs.exceptions.ResourceNotFoundException):
            pass  # no stream yet
        time.sleep(0.05)
    raise JobTimeoutError(f"{line!r} never logged by {job} within {timeout} s")


def secondary_statuses(described: dict[str, Any]) -> list[str]:
    """The ``Status`` of each of a description's ``SecondaryStatusTransitions``, in order.

    :param described: a DescribeTrainingJob response.
    """
    return [t["Status"] for t in described.get("SecondaryStatusTransitions", [])]


def log_lines(logs: Any, name: str) -> list[str]:
    """Every line a job wrote to CloudWatch Logs, stream by stream, page by page.

    :param logs: a boto3 CloudWatch Logs client.
    :param name: the job name (its streams are ``<name>/algo-1-<epoch>``).
    """
    try:
        streams = logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=name + "/")
    except logs.exceptions.ResourceNotFoundException:  # no job has written a line yet
        return []
    lines: list[str] = []
    for stream in streams["logStreams"]:
        kwargs: dict[str, Any] = {
            "logGroupName": LOG_GROUP,
            "logStreamName": stream["logStreamName"],
            "startFromHead": True,
        }
        while True:
            page = logs.get_log_events(**kwargs)
            lines += [event["message"] for event in page["events"]]
            if page["nextForwardToken"] == kwargs.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextForwardToken"]
    return lines


def model_files(s3: Any, described: dict[str, Any]) -> dict[str, bytes]:
    """The files of a job's ``model.tar.gz``, by name.

    :param s3: a boto3 S3 client.
    :param described: the job's DescribeTrainingJob response.
    """
    uri = described["ModelArtifacts"]["S3ModelArtifacts"]
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    blob = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        for member in tar.getmembers():
            extracted = tar.extractfile(member) if member.isfile() else None
            if extracted is not None:
                files[member.name] = extracted.read()
    return files
