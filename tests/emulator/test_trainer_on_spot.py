"""The example trainer (script mode) on the emulator: interrupted twice, it resumes from its
checkpoints and ends with a model bit-identical to an uninterrupted run's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow_spot_provider.emulator.admin import AdminClient
from airflow_spot_provider.emulator.testing import (
    log_lines,
    model_files,
    script_request,
    secondary_statuses,
    wait_for_job,
)
from airflow_spot_provider.lifecycle import SecondaryStatus as S
from airflow_spot_provider.lifecycle import TrainingJobStatus

HYPERPARAMETERS = {
    "total_steps": 150,
    "step_sleep": 0.03,
    "checkpoint_every": 7,
    "learning_rate": 0.2,
}


def test_interrupted_trainer_ends_bit_identical(
    sm: Any,
    s3: Any,
    logs: Any,
    bucket: str,
    job_name: str,
    admin: AdminClient,
    trainer_dir: Path,
) -> None:
    # A training channel, so that Downloading has inputs to copy.
    rows = "\n".join(f"{i % 7 / 7:.3f},{(i * 3) % 11 / 11:.3f},{i % 2}" for i in range(400))
    s3.put_object(Bucket=bucket, Key=f"data/{job_name}/train.csv", Body=rows.encode())
    channel = {
        "ChannelName": "train",
        "DataSource": {
            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/data/{job_name}/"}
        },
    }
    reference, chaos = job_name + "-ref", job_name + "-chaos"
    admin.load_scenario(
        [
            # Late enough that the trainer's SIGTERM handler is in place even when a loaded
            # machine takes a second or two to start Python and numpy.
            {"interrupt": {"job": chaos, "at_training_second": 2.5, "attempt": 1}},
            {"interrupt": {"job": chaos, "at_training_second": 2.0, "attempt": 2}},
        ]
    )
    for name in (reference, chaos):
        request = script_request(name, bucket, trainer_dir, "train.py", **HYPERPARAMETERS)
        request["InputDataConfig"] = [channel]
        sm.create_training_job(**request)
    finals = {name: wait_for_job(sm, name, timeout=90) for name in (reference, chaos)}

    assert secondary_statuses(finals[reference]) == [
        S.STARTING,
        S.DOWNLOADING,
        S.TRAINING,
        S.UPLOADING,
        S.COMPLETED,
    ]
    assert secondary_statuses(finals[chaos]) == [
        S.STARTING,
        S.DOWNLOADING,
        S.TRAINING,
        S.INTERRUPTED,
        S.STARTING,
        S.DOWNLOADING,
        S.TRAINING,
        S.INTERRUPTED,
        S.DOWNLOADING,
        S.TRAINING,
        S.UPLOADING,
        S.COMPLETED,
    ]
    assert all(f["TrainingJobStatus"] == TrainingJobStatus.COMPLETED for f in finals.values())

    expected = model_files(s3, finals[reference])
    got = model_files(s3, finals[chaos])
    assert set(expected) == {"model.npy", "metrics.json"}
    assert got == expected  # bit for bit

    # Each restart restored the checkpoints synced before the interruption (SIGTERM, notice,
    # final sync) and went on from there.
    lines = log_lines(logs, chaos)
    assert sum(line.startswith("SIGTERM: checkpoint saved") for line in lines) == 2
    resumed = [line for line in lines if line.startswith("resumed from checkpoint step=")]
    assert len(resumed) == 2
    steps = [int(line.rsplit("=", 1)[1]) for line in resumed]
    assert 0 < steps[0] < steps[1] < HYPERPARAMETERS["total_steps"]
    assert lines[-1].startswith("done: step=150")
    # The newest checkpoints stay in S3 (the trainer keeps two; deletions were synced).
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"checkpoints/{chaos}/")
    assert len(listed["Contents"]) == 2
