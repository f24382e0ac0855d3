"""``spot-emulator serve`` as a user runs it: paste the printed connection into a plain boto3
script; stop the emulator mid-training and start it again on the same data dir: nothing is lost,
the job resumes from its checkpoint and completes."""

from __future__ import annotations

import re
import time
from pathlib import Path

from airflow_spot_provider.emulator.machine import HEARTBEAT_SECONDS
from airflow_spot_provider.emulator.testing import (
    log_lines,
    secondary_statuses,
    synthetic_request,
    wait_for_job,
    wait_for_log_line,
    wait_for_secondary,
)
from airflow_spot_provider.lifecycle import SecondaryStatus as S
from airflow_spot_provider.lifecycle import TrainingJobStatus
from tests.emulator.served import clients, serve

SLACK_SECONDS = 3.0  # on top of what a timing must be: room for a loaded machine


def test_restart_mid_training_loses_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    name, bucket = "survives-restart", "restart-bucket"
    with serve(data_dir) as (_process, connection):
        aws = clients(connection)
        assert connection["conn_type"] == "aws"
        aws["s3"].create_bucket(Bucket=bucket)
        # 3 s of training: seconds are left to stop the emulator mid-training, even when loaded.
        request = synthetic_request(name, bucket, train_seconds=3.0, step_seconds=0.1)
        aws["sagemaker"].create_training_job(**request)
        wait_for_secondary(aws["sagemaker"], name, S.TRAINING)
        # Let a few steps reach the checkpoint in S3.
        wait_for_log_line(aws["logs"], name, "step 6/30")
        before = aws["sagemaker"].describe_training_job(TrainingJobName=name)

    with serve(data_dir) as (_process, connection):
        aws = clients(connection)
        final = wait_for_job(aws["sagemaker"], name, timeout=60)
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
        messages = log_lines(aws["logs"], name)
        assert messages[:6] == [f"step {i}/30" for i in range(1, 7)]  # logs kept
        resumed = [m for m in messages if m.startswith("resumed from checkpoint at step")]
        assert len(resumed) == 1
        step = int(re.findall(r"\d+", resumed[0])[0])
        assert step >= 6  # the checkpoint in S3 survived the restart
        assert messages[-1] == "step 30/30"
        key = final["ModelArtifacts"]["S3ModelArtifacts"].split("/", 3)[3]
        assert aws["s3"].head_object(Bucket=bucket, Key=key)["ContentLength"] > 0


def test_crash_mid_training_loses_no_job(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    name, bucket = "survives-crash", "crash-bucket"
    with serve(data_dir, crash=True) as (_process, connection):
        aws = clients(connection)
        aws["s3"].create_bucket(Bucket=bucket)  # on disk before the answer: survives
        # 3 s of training: seconds are left to crash mid-training, even when loaded.
        request = synthetic_request(name, bucket, train_seconds=3.0, step_seconds=0.1)
        aws["sagemaker"].create_training_job(**request)
        wait_for_log_line(aws["logs"], name, "step 3/30")
        time.sleep(0.5)
    crashed_at = time.time()

    with serve(data_dir) as (_process, connection):
        aws = clients(connection)
        final = wait_for_job(aws["sagemaker"], name, timeout=60)
        assert final["TrainingJobStatus"] == TrainingJobStatus.COMPLETED
        statuses = secondary_statuses(final)
        assert statuses[:4] == [S.STARTING, S.DOWNLOADING, S.TRAINING, S.INTERRUPTED]
        assert statuses[-2:] == [S.UPLOADING, S.COMPLETED]
        # The interruption is dated at the last heartbeat before the crash (one a second), not
        # at the restart; the slack absorbs heartbeats a loaded machine delays.
        interrupted = final["SecondaryStatusTransitions"][3]["StartTime"].timestamp()
        assert crashed_at - HEARTBEAT_SECONDS - SLACK_SECONDS < interrupted <= crashed_at
        # S3 is on disk before it answers: the checkpoints written before the crash survive.
        messages = log_lines(aws["logs"], name)
        resumed = [m for m in messages if m.startswith("resumed from checkpoint at step")]
        assert len(resumed) == 1
        assert int(re.findall(r"\d+", resumed[0])[0]) >= 3
        assert messages[-1] == "step 30/30"
