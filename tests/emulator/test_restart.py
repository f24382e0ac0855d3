"""``spot-emulator serve`` as a user runs it: paste the printed connection into a plain boto3
script; stop the emulator mid-training and start it again on the same data dir: nothing is lost,
the job resumes from its checkpoint and completes."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from airflow_spot_provider.emulator.machine import HEARTBEAT_SECONDS
from airflow_spot_provider.emulator.testing import (
    secondary_statuses,
    synthetic_request,
    wait_for_job,
    wait_for_secondary,
)
from airflow_spot_provider.lifecycle import SecondaryStatus as S
from airflow_spot_provider.lifecycle import TrainingJobStatus

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
SLACK_SECONDS = 3.0  # on top of what a timing must be: room for a loaded machine


@contextmanager
def serve(data_dir: Path, crash: bool = False) -> Iterator[dict[str, Any]]:
    """Run ``python -m airflow_spot_provider.emulator serve``; yield the printed connection.

    :param data_dir: the data dir.
    :param crash: end it with SIGKILL instead of SIGTERM.
    """
    command = [
        sys.executable,
        "-m",
        "airflow_spot_provider.emulator",
        "serve",
        "--port",
        "0",
        "--data-dir",
        str(data_dir),
        "--tick",
        "0.02",
        "--notice",
        "1",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        seen = []
        for line in process.stdout:
            seen.append(line)
            if line.startswith("export AIRFLOW_CONN_AWS_DEFAULT="):
                # The line is shell: what a user pastes.
                (assignment,) = shlex.split(line.removeprefix("export "))
                yield json.loads(assignment.split("=", 1)[1])
                break
        else:
            raise AssertionError(f"the emulator did not start: {''.join(seen)}")
    finally:
        process.send_signal(signal.SIGKILL if crash else signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
        assert process.returncode == (-signal.SIGKILL if crash else 0), output


def _clients(connection: dict[str, Any]) -> dict[str, Any]:
    """boto3 clients from the Airflow connection JSON, as a plain script would build them."""
    extra = connection["extra"]
    return {
        service: boto3.client(
            service,
            endpoint_url=extra["service_config"][service]["endpoint_url"],
            region_name=extra["region_name"],
            aws_access_key_id=connection["login"],
            aws_secret_access_key=connection["password"],
            config=Config(retries={"total_max_attempts": 1}),
        )
        for service in ("sagemaker", "logs", "s3")
    }


def _messages(logs: Any, job: str) -> list[str]:
    (stream,) = logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=job)[
        "logStreams"
    ]
    events = logs.get_log_events(
        logGroupName=LOG_GROUP, logStreamName=stream["logStreamName"], startFromHead=True
    )["events"]
    return [e["message"] for e in events]


def test_restart_mid_training_loses_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    name, bucket = "survives-restart", "restart-bucket"
    with serve(data_dir) as connection:
        clients = _clients(connection)
        assert connection["conn_type"] == "aws"
        clients["s3"].create_bucket(Bucket=bucket)
        # 3 s of training: seconds are left to stop the emulator mid-training, even when loaded.
        request = synthetic_request(name, bucket, train_seconds=3.0, step_seconds=0.1)
        clients["sagemaker"].create_training_job(**request)
        wait_for_secondary(clients["sagemaker"], name, S.TRAINING)
        # Let a few steps reach the checkpoint in S3.
        wait_for_log(clients["logs"], name, "step 6/30")
        before = clients["sagemaker"].describe_training_job(TrainingJobName=name)

    with serve(data_dir) as connection:
        clients = _clients(connection)
        final = wait_for_job(clients["sagemaker"], name, timeout=60)
        assert final["CreationTime"] == before["CreationTime"]
        assert final["TrainingJobStatus"] == TrainingJobStatus.COMPLETED
        assert secondary_statuses(final) == [
            S.STARTING,
            S.DOWNLOADING,
            S.TRAINING,
            S.INTERRUPTED,  # the emulator went down: the instances were lost
            S.STARTING,
            S.DOWNLOADING,
            S.TRAINING,
            S.UPLOADING,
            S.COMPLETED,
        ]
        messages = _messages(clients["logs"], name)
        assert messages[:6] == [f"step {i}/30" for i in range(1, 7)]  # logs kept
        resumed = [m for m in messages if m.startswith("resumed from checkpoint at step")]
        assert len(resumed) == 1
        step = int(re.findall(r"\d+", resumed[0])[0])
        assert step >= 6  # the checkpoint in S3 survived the restart
        assert messages[-1] == "step 30/30"
        key = final["ModelArtifacts"]["S3ModelArtifacts"].split("/", 3)[3]
        assert clients["s3"].head_object(Bucket=bucket, Key=key)["ContentLength"] > 0


def test_crash_mid_training_loses_no_job(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    name, bucket = "survives-crash", "crash-bucket"
    with serve(data_dir, crash=True) as connection:
        clients = _clients(connection)
        clients["s3"].create_bucket(Bucket=bucket)  # on disk before the answer: survives
        # 3 s of training: seconds are left to crash mid-training, even when loaded.
        request = synthetic_request(name, bucket, train_seconds=3.0, step_seconds=0.1)
        clients["sagemaker"].create_training_job(**request)
        wait_for_log(clients["logs"], name, "step 3/30")
        time.sleep(0.5)
    crashed_at = time.time()

    with serve(data_dir) as connection:
        clients = _clients(connection)
        final = wait_for_job(clients["sagemaker"], name, timeout=60)
        assert final["TrainingJobStatus"] == TrainingJobStatus.COMPLETED
        statuses = secondary_statuses(final)
        assert statuses[:4] == [S.STARTING, S.DOWNLOADING, S.TRAINING, S.INTERRUPTED]
        assert statuses[-2:] == [S.UPLOADING, S.COMPLETED]
        # The interruption is dated at the last heartbeat before the crash (one a second), not
        # at the restart; the slack absorbs heartbeats a loaded machine delays.
        interrupted = final["SecondaryStatusTransitions"][3]["StartTime"].timestamp()
        assert crashed_at - HEARTBEAT_SECONDS - SLACK_SECONDS < interrupted <= crashed_at
        # S3 is on disk before it answers: the checkpoints written before the crash survive.
        messages = _messages(clients["logs"], name)
        resumed = [m for m in messages if m.startswith("resumed from checkpoint at step")]
        assert len(resumed) == 1
        assert int(re.findall(r"\d+", resumed[0])[0]) >= 3
        assert messages[-1] == "step 30/30"


def wait_for_log(logs: Any, job: str, line: str, timeout: float = 20.0) -> None:
    """Wait until a line shows in the job's log stream."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if line in _messages(logs, job):
                return
        except (ValueError, logs.exceptions.ResourceNotFoundException):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{line!r} never logged by {job}")
